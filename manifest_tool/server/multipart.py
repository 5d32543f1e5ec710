"""The multipart upload calls: start, put a part, finish (verified), abort."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidInput
from ..remotes.multipart import MAX_PARTS
from .context import context, int_query, read_json, run
from .formdata import receive_content
from .objects import expected_md5, target


async def start(request: Request) -> Response:
    user, node_path, key = await target(request)
    upload_id = await run(context(request).multipart.start, user, node_path, key)
    return JSONResponse({"uploadId": upload_id})


async def put_part(request: Request) -> Response:
    user, node_path, key = await target(request)
    upload_id = request.path_params["upload_id"]
    number = int_query(request, "partNumber", 0, MAX_PARTS)
    if number == 0:
        raise InvalidInput("missing query parameter 'partNumber'")
    ctx = context(request)

    def store(chunks: Iterator[bytes]) -> str:
        etag: str = ctx.multipart.put_part(user, upload_id, node_path, key, number, chunks)
        return etag

    etag = await receive_content(request, ctx, user, store)
    return JSONResponse({"eTag": etag})


async def finish(request: Request) -> Response:
    user, node_path, key = await target(request)
    md5 = expected_md5(request)
    parts = _parts(await read_json(request))
    info = await run(
        context(request).multipart.finish,
        user,
        request.path_params["upload_id"],
        node_path,
        key,
        parts,
        md5,
    )
    return JSONResponse(info.to_api())


async def abort(request: Request) -> Response:
    user, node_path, key = await target(request)
    await run(
        context(request).multipart.abort, user, request.path_params["upload_id"], node_path, key
    )
    return JSONResponse({})


def _parts(data: dict[str, Any]) -> list[tuple[int, str]]:
    """``{"parts": [{"etag", "partNumber"}]}`` as (number, etag) pairs."""
    parts = data.get("parts")
    if not isinstance(parts, list) or not parts or len(parts) > MAX_PARTS:
        raise InvalidInput(f"field 'parts' must list 1 to {MAX_PARTS} parts")
    out = []
    for part in parts:
        number = part.get("partNumber") if isinstance(part, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_PARTS:
            raise InvalidInput("each part needs a 'partNumber' between 1 and 10000")
        out.append((number, str(part.get("etag") or "")))
    return out
