"""The object calls: list, put, get, delete, each on ``path=NODE_PATH/KEY``."""

from __future__ import annotations

import re
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidInput
from ..paths import check_key
from ..remotes.base import HOLDS_OBJECTS, ObjectInfo
from ..remotes.blobs import md5_from_header
from ..remotes.store import Store
from .context import (
    context,
    field,
    int_query,
    page_size,
    pagination,
    query,
    read_json,
    run,
    user_of,
)
from .download import object_response
from .formdata import receive_content

MD5_RE = re.compile(r"[0-9a-fA-F]{32}")  # use fullmatch: "$" would accept a trailing newline


def resolve_object(store: Store, user: str, path: str) -> tuple[str, str]:
    """Split ``/user/folder/artifact/key/...`` into the node's path and the key.

    The node is the first prefix that is an Artifact or a Run (neither has child
    nodes).
    """
    if not path.startswith("/"):
        raise InvalidInput(f"object path {path!r} must start with '/'")
    parts = path[1:].split("/")
    for depth in range(2, len(parts)):
        prefix = "/" + "/".join(parts[:depth])
        if store.node_info(user, prefix).type in HOLDS_OBJECTS:
            return prefix, check_key("/".join(parts[depth:]), "object key", allow_reserved=True)
    raise InvalidInput(f"{path!r} is not NODE_PATH/KEY below an Artifact or Run node")


def expected_md5(request: Request) -> str | None:
    """The verified-write MD5: ``Content-MD5`` (base64) or ``md5=<hex>``."""
    from_header = md5_from_header(request.headers.get("content-md5"))
    if from_header:
        return from_header
    value = request.query_params.get("md5")
    if value is None:
        return None
    if not MD5_RE.fullmatch(value):
        raise InvalidInput("query parameter 'md5' must be 32 hex digits")
    return value.lower()


async def target(request: Request) -> tuple[str, str, str]:
    """(user, node path, key) of an object call, the node checked to exist."""
    user = await user_of(request)
    node_path, key = await run(resolve_object, context(request).store, user, query(request, "path"))
    return user, node_path, key


async def list_objects(request: Request) -> Response:
    user = await user_of(request)
    node = query(request, "path")
    page = int_query(request, "page", 1, 1 << 30)
    size = page_size(request)
    after = request.query_params.get("after")  # keyset paging (docs/protocol.md)
    listing = context(request).store.list_objects
    objects, total = await run(listing, user, node, page, size, after)
    body = {"data": [o.to_api() for o in objects], "pagination": pagination(page, size, total)}
    return JSONResponse(body)


async def put_object(request: Request) -> Response:
    user, node_path, key = await target(request)
    md5, ctx = expected_md5(request), context(request)

    def store(chunks: Iterator[bytes]) -> ObjectInfo:
        return ctx.store.put_object(user, node_path, key, chunks, md5)

    info = await receive_content(request, ctx, user, store)
    return JSONResponse(info.to_api())


async def get_object(request: Request) -> Response:
    user, node_path, key = await target(request)
    info, blob = await run(context(request).store.object_blob, user, node_path, key)
    return await object_response(info, blob, request.headers.get("range"))


async def delete_objects(request: Request) -> Response:
    user = await user_of(request)
    data = await read_json(request)
    node = field(data, "node", str)
    keys = field(data, "paths", list)
    if not all(isinstance(k, str) for k in keys):
        raise InvalidInput("field 'paths' must be a list of object keys")
    most = context(request).limits.delete_keys
    if len(keys) > most:  # one call is one write transaction: keep it short for others
        raise InvalidInput(f"field 'paths' lists {len(keys)} keys; at most {most} per request")
    await run(context(request).store.delete_objects, user, node, keys)
    return JSONResponse({})
