"""What every handler needs: the store, the acting user, checked parameters.

Store calls touch SQLite and the disk, so they run in worker threads and never
block the event loop.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.requests import Request

from ..errors import InvalidInput
from ..remotes.shared_multipart import multipart_for
from ..remotes.store import Store
from ..remotes.users import user_for_key
from .authlimit import AuthLimiter
from .body import parse_json_object, read_limited
from .errors import EmptyApiKey, NoApiKey, TooManyUploads, UnknownApiKey
from .limits import Limits
from .redact import is_secret_param

T = TypeVar("T")
USER_KEY = "manifest_tool.user"  # in the scope once the request's key is known: the log's


@dataclass(frozen=True)
class Context:
    store: Store
    multipart: Any  # Multipart or SharedMultipart: the same calls
    limits: Limits
    auth: AuthLimiter
    uploads: CapacityLimiter  # the threads uploads write with, apart from all others
    # uploads each user is writing now; touched only on the event loop, so no lock
    writing: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def over(cls, store: Store, limits: Limits) -> Context:
        auth = AuthLimiter(limits.auth_failures, limits.auth_window_s)
        uploads = CapacityLimiter(limits.upload_threads)
        return cls(store, multipart_for(store), limits, auth, uploads)


@contextmanager
def upload_slot(ctx: Context, user: str) -> Iterator[None]:
    """One of ``user``'s upload slots, or 429: a user who trickles many uploads holds
    at most ``uploads_per_user`` of the upload threads, and others keep theirs."""
    held = ctx.writing.get(user, 0)
    if held >= ctx.limits.uploads_per_user:
        raise TooManyUploads(user, ctx.limits.uploads_per_user)
    ctx.writing[user] = held + 1
    try:
        yield
    finally:
        ctx.writing[user] -= 1
        if not ctx.writing[user]:
            del ctx.writing[user]


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread."""
    return await anyio.to_thread.run_sync(partial(func, *args, **kwargs))


def api_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer`` or, as T9k clients send it, ``apikey``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("apikey") or None


async def user_of(request: Request) -> str:
    """The user the request's key belongs to; looked up on every call so a revoke
    takes effect at once."""
    key = api_key(request)
    if key is None and request.query_params.get("apikey") == "":
        raise EmptyApiKey("empty api key")
    if key is None:
        raise NoApiKey("no api key: send 'Authorization: Bearer KEY' or '?apikey=KEY'")
    user = await authenticate(request, key)
    if user is None:
        raise UnknownApiKey("api key not found")
    return user


async def authenticate(request: Request, key: str) -> str | None:
    """The user ``key`` belongs to, or None (counted as a failed login); the one check
    behind the API's keys and the web UI's cookie."""
    ctx = context(request)
    address = request.client.host if request.client else "-"
    ctx.auth.check(address)  # before the lookup: a blocked address learns nothing
    user = await run(user_for_key, ctx.store.db, key)
    if user is None:
        ctx.auth.failed(address)
        return None
    request.scope[USER_KEY] = user  # for the access log
    return user


def refuse_nul_in_url(request: Request) -> None:
    """A path or query parameter holding NUL: a 400 naming it, on every engine alike
    (PostgreSQL's text cannot hold NUL; SQLite's can, so it would answer otherwise)."""
    for kind, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if is_secret_param(name):  # a key is hashed, never stored: T9k's answer stands
                continue
            if "\x00" in name or "\x00" in str(value):
                raise InvalidInput(f"{kind} parameter {name!r} must not contain a NUL character")


def query(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise InvalidInput(f"missing query parameter {name!r}")
    return value


def page_size(request: Request) -> int:
    return int_query(request, "size", 1000, context(request).limits.page_size)


INTEGER_RE = re.compile(r"-?[0-9]+")


def int_query(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not INTEGER_RE.fullmatch(raw):  # int() would also take " 1" and other scripts' digits
        raise InvalidInput(f"query parameter {name!r} must be an integer")
    value = int(raw) if len(raw) <= 19 else high + 1  # int() refuses 4,300+ digits
    if not 1 <= value <= high:
        raise InvalidInput(f"query parameter {name!r} must be between 1 and {high}")
    return value


async def read_json(request: Request) -> dict[str, Any]:
    """A small JSON object body (node and delete calls), refused when not an object."""
    limits = context(request).limits
    return parse_json_object(await read_limited(request, limits.json_body, limits.body_idle_s))


def field(data: dict[str, Any], name: str, kind: type[T], default: T | None = None) -> T:
    """``data[name]`` checked to be a ``kind``; absent -> ``default`` or an error."""
    value = data.get(name)
    if value is None:
        if default is None:
            raise InvalidInput(f"missing field {name!r}")
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidInput(f"field {name!r} must be a {kind.__name__}")
    return value


def pagination(page: int, size: int, total: int) -> dict[str, int]:
    return {"page": page, "size": size, "total": total}
