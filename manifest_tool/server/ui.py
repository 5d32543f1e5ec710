"""The read-only web UI at ``/ui/``: server-rendered pages over the caller's tree.

The API key lives in a cookie (HttpOnly, SameSite=Strict, Path=/ui), never in a
URL. Every page reads the store through the same calls, and so the same per-user
checks, as the API: another user's path is 403, a missing one 404. Pages have no
JavaScript; the Content-Security-Policy forbids any, so a hostile node name that
slipped past autoescaping still could not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import ManifestToolError, NodeNotFound, PermissionDenied
from ..remotes.base import HOLDS_OBJECTS, Lineage, Node, ObjectInfo
from ..remotes.store import Store
from ..render import human_size
from .body import read_limited
from .context import authenticate, context, int_query, run
from .download import object_response
from .errors import error_response
from .metrics import ROUTE_KEY
from .objects import resolve_object
from .redact import UI_COOKIE

PAGE_SIZE = 200  # children or objects per page
HISTORY_BYTES = 64 * 1024  # parsed on every page view: kept small (a few hundred entries)
HISTORY_ENTRIES = 100  # the most recent entries shown
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form's Origin "null"
}

templates = Environment(
    loader=PackageLoader("manifest_tool.server", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


templates.filters["size"] = human_size  # binary units, as the CLI prints them
templates.filters["url"] = lambda path: quote(path, safe="/")


# -- what a page shows, read in one worker-thread call -------------------------------
@dataclass
class NodeView:
    node: Node
    page: int
    total: int = 0
    children: list[Node] = field(default_factory=list)
    objects: list[ObjectInfo] = field(default_factory=list)
    history: list[list[tuple[str, str]]] = field(default_factory=list)
    lineage: Lineage | None = None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / PAGE_SIZE))


def node_view(store: Store, user: str, path: str, page: int) -> NodeView:
    node = store.node_info(user, path)
    view = NodeView(node, page)
    if node.type in HOLDS_OBJECTS:
        view.objects, view.total = store.list_objects(user, node.path, page, PAGE_SIZE)
        view.history = history(store, user, node.path)
        view.lineage = store.lineage(user, node.id)
    else:
        view.children, view.total = store.list_nodes(user, node.path, None, page, PAGE_SIZE)
    return view


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def history(store: Store, user: str, node_path: str) -> list[list[tuple[str, str]]]:
    """The ``remote`` list of the node's metadata.yaml, newest first, as (key, value)
    pairs of scalars; anything unreadable or too large shows as no history."""
    try:
        info, blob = store.object_blob(user, node_path, "metadata.yaml")
    except NodeNotFound:
        return []
    if info.size_bytes > HISTORY_BYTES:
        blob.close()
        return []
    try:  # the C loader: a page view must not hold the interpreter for long
        data = yaml.load(blob.read_bytes(), Loader=_LOADER)
    except (yaml.YAMLError, OSError, ValueError, RecursionError):
        return []
    entries = data.get("remote") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    rows = [_scalars(e) for e in entries[-HISTORY_ENTRIES:] if isinstance(e, dict)]
    return rows[::-1]


def _scalars(entry: dict[Any, Any]) -> list[tuple[str, str]]:
    """Only scalar values: a nested value (or a YAML alias bomb) is never expanded."""
    kinds = (str, int, float, bool)
    return [(str(k), str(v)) for k, v in entry.items() if isinstance(v, kinds)]


# -- pages --------------------------------------------------------------------------
def base_of(request: Request) -> str:
    """``/ui`` below any prefix the server mounts its routes under."""
    return request.url_for("ui_home").path.rstrip("/")


def page(request: Request, name: str, code: int = 200, **values: Any) -> HTMLResponse:
    html = templates.get_template(name).render(base=base_of(request), **values)
    return HTMLResponse(html, code, headers=SECURITY_HEADERS)


def error_page(request: Request, err: Exception, user: str | None) -> HTMLResponse:
    """The status the API would answer, with its text for a client error."""
    status = error_response(err).status_code
    message = str(err) if status < 500 and isinstance(err, ManifestToolError) else ""
    return page(request, "error.html", status, status=status, message=message, user=user)


async def ui_user(request: Request) -> str | None:
    """The user the cookie's key belongs to, or None; the API's brute-force limit
    applies to cookies too."""
    key = request.cookies.get(UI_COOKIE)
    if not key:
        return None
    return await authenticate(request, key)


def _to_login(request: Request) -> Response:
    return RedirectResponse(base_of(request) + "/", 303, headers=SECURITY_HEADERS)


def same_origin(request: Request) -> None:
    """A form post from another site is refused: SameSite keeps our cookie off it, but
    a forged login would still sign the victim in as the forger."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise PermissionDenied("permission denied: a form posted from another site")


async def home(request: Request) -> Response:
    request.scope[ROUTE_KEY] = "/ui/"
    try:
        user = await ui_user(request)
    except Exception as err:
        return error_page(request, err, None)
    if user is None:
        return page(request, "login.html", user=None, failed=False)
    return RedirectResponse(f"{base_of(request)}/n/{quote(user)}", 303, headers=SECURITY_HEADERS)


async def login(request: Request) -> Response:
    request.scope[ROUTE_KEY] = "/ui/login"
    try:
        same_origin(request)
        limits = context(request).limits
        form = dict(parse_qsl((await read_limited(request, 4096, limits.body_idle_s)).decode()))
        key = form.get("apikey", "").strip()
        user = await authenticate(request, key) if key else None
    except Exception as err:
        return error_page(request, err, None)
    if user is None:  # never echo the key back
        return page(request, "login.html", 401, user=None, failed=True)
    answer = RedirectResponse(f"{base_of(request)}/n/{quote(user)}", 303, SECURITY_HEADERS)
    answer.set_cookie(
        UI_COOKIE,
        key,
        path=base_of(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


async def logout(request: Request) -> Response:
    request.scope[ROUTE_KEY] = "/ui/logout"
    try:
        same_origin(request)
    except PermissionDenied as err:
        return error_page(request, err, None)
    answer = _to_login(request)
    answer.delete_cookie(UI_COOKIE, path=base_of(request), httponly=True, samesite="strict")
    return answer


async def browse(request: Request) -> Response:
    request.scope[ROUTE_KEY] = "/ui/n/{path}"
    user = None
    try:
        user = await ui_user(request)
        if user is None:
            return _to_login(request)
        path = "/" + request.path_params["path"]
        number = int_query(request, "page", 1, 1 << 30)
        view = await run(node_view, context(request).store, user, path, number)
    except Exception as err:
        return error_page(request, err, user)
    return page(request, "node.html", user=user, view=view, node=view.node)


async def download(request: Request) -> Response:
    """An object, streamed with the cookie's user's rights; an attachment, sandboxed,
    so a user's uploaded HTML never renders as a page of this origin."""
    request.scope[ROUTE_KEY] = "/ui/o/{path}"
    user = None
    try:
        user = await ui_user(request)
        if user is None:
            return _to_login(request)
        store = context(request).store
        node_path, key = await run(resolve_object, store, user, "/" + request.path_params["path"])
        info, blob = await run(store.object_blob, user, node_path, key)
        answer = await object_response(info, blob, request.headers.get("range"))
    except Exception as err:
        return error_page(request, err, user)
    answer.headers["Cache-Control"] = "no-store"  # the attachment headers are set for all
    return answer


def routes() -> list[Route]:
    return [
        Route("/ui/", home, methods=["GET"], name="ui_home"),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/n/{path:path}", browse, methods=["GET"]),
        Route("/ui/o/{path:path}", download, methods=["GET"]),
    ]
