"""The graphs calls of T9k's SDK (``Run.upload``): read and add lineage edges."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidInput
from .context import context, query, read_json, run, user_of


async def get_graph(request: Request) -> Response:
    user = await user_of(request)
    found = await run(context(request).store.lineage, user, query(request, "current"))
    return JSONResponse(found.to_api())


async def add_edges(request: Request) -> Response:
    user = await user_of(request)
    pairs = _pairs((await read_json(request)).get("graphs"))
    await run(context(request).store.add_edges, user, pairs)
    return JSONResponse({})


def _pairs(value: Any) -> list[tuple[str, str]]:
    """``[{"from": ID, "to": ID}, ...]`` as the SDK sends it, checked."""
    if not isinstance(value, list):
        raise InvalidInput('field \'graphs\' must be a list of {"from": ID, "to": ID}')
    pairs = []
    for item in value:
        ends = (item.get("from"), item.get("to")) if isinstance(item, dict) else (None, None)
        if not all(isinstance(end, str) and end for end in ends):
            raise InvalidInput('each of \'graphs\' must be {"from": ID, "to": ID} (node ids)')
        pairs.append((str(ends[0]), str(ends[1])))
    return pairs
