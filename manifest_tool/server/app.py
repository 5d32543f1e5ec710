"""The ASGI app: docs/protocol.md's calls over one Store (embedded or shared)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..remotes.store import Store
from . import batch, graphs, health, multipart, nodes, objects, ui
from .accesslog import AccessLog
from .context import Context, refuse_nul_in_url, user_of
from .errors import error_response
from .limits import Limits
from .metrics import ROUTE_KEY, Metrics, metrics
from .sweeper import sweeping

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    data: Path | Store, prefix: str = "", limits: Limits | None = None
) -> AccessLog:
    """The server over ``data`` (a store, or the embedded store's directory), its API
    mounted below ``prefix``."""
    store = data if isinstance(data, Store) else Store(Path(data))
    routes = _routes()
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    app = Starlette(
        routes=[Mount(prefix, routes=routes)] if prefix else routes,
        exception_handlers={404: not_found},
        lifespan=sweeping(store),
    )
    app.state.ctx = Context.over(store, limits or Limits())
    app.state.metrics = Metrics()
    return AccessLog(app, app.state.metrics)


def endpoint(func: Endpoint) -> Endpoint:
    """Every error a handler raises becomes its protocol answer."""

    @wraps(func)
    async def wrapper(request: Request) -> Response:
        try:
            refuse_nul_in_url(request)
            return await func(request)
        except Exception as err:
            return error_response(err)

    return wrapper


async def not_found(_request: Request, _exc: Exception) -> Response:
    """An unknown route: 404 with an empty body, which T9k's SDK reads as a wrong
    server URL ('Incorrect URL') rather than as a missing node."""
    return Response(status_code=404)


async def userinfo(request: Request) -> Response:
    return JSONResponse({"preferred_username": await user_of(request)})


async def openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


def openapi_document() -> dict[str, Any]:
    text = resources.files("manifest_tool").joinpath("schemas/openapi.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def _routes() -> list[BaseRoute]:
    table: dict[str, dict[str, Endpoint]] = {
        "/oauth2/userinfo": {"GET": userinfo},
        "/openapi.json": {"GET": openapi},
        "/healthz": {"GET": health.healthz},
        "/metrics": {"GET": metrics},
        "/apis/v1/nodes": {
            "GET": nodes.list_nodes,
            "POST": nodes.create_node,
            "PUT": nodes.update_node,
            "DELETE": nodes.delete_node,
        },
        "/apis/v1/nodes/info": {"GET": nodes.node_info},
        "/apis/v1/nodes/infos": {"POST": nodes.node_infos},
        "/apis/v1/graphs": {"GET": graphs.get_graph, "POST": graphs.add_edges},
        "/apis/v1/objects/ls": {"GET": objects.list_objects},
        "/apis/v1/objects": {"GET": objects.get_object, "POST": objects.put_object},
        "/apis/v1/objects/delete": {"POST": objects.delete_objects},
        "/apis/v1/objects/batch": {"POST": batch.put_batch},
        "/apis/v1/objects/multipart": {"POST": multipart.start},
        "/apis/v1/objects/multipart/{upload_id}": {
            "PUT": multipart.put_part,
            "POST": multipart.finish,
            "DELETE": multipart.abort,
        },
    }
    return [*(_route(path, handlers) for path, handlers in table.items()), *ui.routes()]


def _route(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route per path, so a 405's ``Allow`` lists every method the path has."""

    async def dispatch(request: Request) -> Response:
        request.scope[ROUTE_KEY] = path  # /metrics counts by template, not by path
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint(dispatch), methods=list(handlers))
