"""The node calls: list children, info, create, update, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidInput
from ..remotes.base import TYPES_BY_STORAGE
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


async def list_nodes(request: Request) -> Response:
    user = await user_of(request)
    parent = query(request, "parent")
    kind = request.query_params.get("type") or None
    page = int_query(request, "page", 1, 1 << 30)
    size = page_size(request)
    nodes, total = await run(context(request).store.list_nodes, user, parent, kind, page, size)
    body = {"data": [n.to_api() for n in nodes], "pagination": pagination(page, size, total)}
    return JSONResponse(body)


async def node_info(request: Request) -> Response:
    user = await user_of(request)
    node = await run(context(request).store.node_info, user, query(request, "node"))
    return JSONResponse(node.to_api())


BATCH_INFO = 1000  # paths in one batch read: one short read transaction


async def node_infos(request: Request) -> Response:
    """Extension: many nodes by path in one call; null where a node is absent."""
    user = await user_of(request)
    data = await read_json(request)
    if set(data) - {"nodes"}:
        raise InvalidInput(f"unknown fields {sorted(set(data) - {'nodes'})}: send only 'nodes'")
    paths = data.get("nodes")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidInput("field 'nodes' must be a list of node paths")
    if len(paths) > BATCH_INFO:
        raise InvalidInput(f"at most {BATCH_INFO} nodes in one batch read, not {len(paths)}")
    found = await run(context(request).store.node_infos, user, paths)
    return JSONResponse({"data": [n.to_api() if n else None for n in found]})


async def create_node(request: Request) -> Response:
    user = await user_of(request)
    data = await read_json(request)
    args = (
        field(data, "parent", str),
        field(data, "name", str),
        _type(data),
        _labels(data.get("labels")),
        field(data, "description", str, ""),
        field(data, "extra", str, "{}"),
    )
    node_id = await run(context(request).store.create_node, user, *args)
    return JSONResponse({"id": node_id})


async def update_node(request: Request) -> Response:
    user = await user_of(request)
    data = await read_json(request)
    path = field(data, "node", str)
    revision = _revision(data.get("ifObjectsRevision"))
    changes = {k: v for k, v in data.items() if k not in ("node", "ifObjectsRevision")}
    for name in ("name", "description", "extra"):
        if name in changes:
            field(changes, name, str)
    if "labels" in changes:
        changes["labels"] = _labels(changes["labels"])
    node = await run(context(request).store.update_node, user, path, changes, revision)
    return JSONResponse(node.to_api())


async def delete_node(request: Request) -> Response:
    user = await user_of(request)
    path = field(await read_json(request), "node", str)
    await run(context(request).store.delete_node, user, path)
    return JSONResponse({})


MAX_REVISION = 2**63 - 1  # revisions are 64-bit columns: a larger number cannot match


def _revision(value: Any) -> int | None:
    """The compare-and-set condition of an update (an extension), if any."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_REVISION:
        raise InvalidInput("field 'ifObjectsRevision' must be an integer from 0 to 2^63-1")
    return value


def _type(data: dict[str, Any]) -> str:
    """The node type from ``type``, else from T9k's ``storageType``."""
    if data.get("type") is not None:
        return field(data, "type", str)
    storage = data.get("storageType", 0)
    if storage not in TYPES_BY_STORAGE or isinstance(storage, bool):
        raise InvalidInput("field 'storageType' must be 0 (Folder) or 2 (Artifact)")
    return TYPES_BY_STORAGE[storage]


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("field 'labels' must be a list of strings")
    return value
