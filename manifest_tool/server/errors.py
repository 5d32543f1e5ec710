"""Our typed errors as HTTP answers, with the status codes and texts of docs/protocol.md.

The texts a T9k client matches on (``node not found [...]``, ``Invalid conflicting
node Name``, ``permission denied``, ``api key ... not found``) are plain text; every
other error is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import errno
import logging
import sqlite3

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..errors import (
    AuthError,
    ChecksumMismatch,
    InvalidInput,
    ManifestToolError,
    NameConflict,
    NodeNotFound,
    NotAFolder,
    PermissionDenied,
    RemoteError,
    RevisionMismatch,
)

log = logging.getLogger("manifest_tool.server")


class BodyTooLarge(ManifestToolError):
    """A request body over the server's limit (413)."""


class BodyTimeout(ManifestToolError):
    """The client stopped sending its body (408)."""


class RateLimited(ManifestToolError):
    """Too many failed logins from one address (429)."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins from this address; retry in {retry_after} s")


class TooManyUploads(ManifestToolError):
    """A user already writes as many uploads as one user may at once (429)."""

    retry_after = 1

    def __init__(self, user: str, most: int) -> None:
        super().__init__(
            f"user {user} already has {most} uploads being written; retry when one finishes"
        )


class NoApiKey(AuthError):
    """The request carried no key (401)."""


class EmptyApiKey(AuthError):
    """``apikey=`` with nothing after it (400, in the words of T9k's gateway)."""


class UnknownApiKey(AuthError):
    """The key is not one the server issued, or it was revoked (400)."""


class RangeNotSatisfiable(ManifestToolError):
    """A ``Range`` that lies outside the object (416)."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"range not satisfiable: the object has {size} bytes")


DETAIL_HEADER = "X-Error-Detail"  # extension: why a T9k-worded refusal happened
# T9k's gateway's text for an empty key; its SDK matches the start of it
EMPTY_KEY = "query is needed: apikey"
DISK_FULL = "server disk full: nothing was stored; free space on the server, then retry"


def error_response(err: Exception) -> Response:
    """The answer for ``err``; anything unexpected is logged and becomes a 500."""
    if isinstance(err, ManifestToolError):
        return _known(err)
    if _disk_full(err):
        return _json(DISK_FULL, 507)
    if isinstance(err, ClientDisconnect):
        return _json("the client went away before the body was complete", 400)
    if isinstance(err, RecursionError):  # parsers of client input, nested too deeply
        return _json("input nested too deeply", 400)
    if isinstance(err, UnicodeError):  # client text no file name or database can hold
        return _json("text that cannot be stored as UTF-8 (a lone surrogate?)", 400)
    engine = _engine_of(err)
    if engine is not None:  # a shared store's engine failed or is restarting: retry
        log.warning("%s error: %s", engine, str(err).splitlines()[0] if str(err) else err)
        return _json(f"the store's {engine} failed; nothing was changed by this call, retry", 503)
    return _unexpected(err)


def _engine_of(err: Exception) -> str | None:
    """Which engine of a shared store raised ``err`` (by its library), if one did."""
    module = type(err).__module__
    if module.startswith("psycopg"):
        return "database"
    if module.startswith(("botocore", "boto3", "urllib3")):
        return "blob storage"
    return None


def _unexpected(err: Exception) -> Response:
    log.error("unexpected error", exc_info=err)
    return _json("internal server error (see the server's log)", 500)


def _known(err: ManifestToolError) -> Response:
    if isinstance(err, NodeNotFound):
        return PlainTextResponse(str(err), 404)
    if isinstance(err, NameConflict):
        return PlainTextResponse(str(err), 400)
    if isinstance(err, PermissionDenied):
        return PlainTextResponse("permission denied", 403)
    if isinstance(err, NotAFolder):
        return _not_a_folder(err)
    if isinstance(err, EmptyApiKey):
        return PlainTextResponse(EMPTY_KEY, 400)
    if isinstance(err, UnknownApiKey):
        return PlainTextResponse("api key not found\n", 400)
    if isinstance(err, NoApiKey):
        return _json(str(err), 401)
    if isinstance(err, RangeNotSatisfiable):
        return _json(str(err), 416, {"Content-Range": f"bytes */{err.size}"})
    if isinstance(err, RevisionMismatch):
        return _json(str(err), 412)
    if isinstance(err, BodyTooLarge):
        return _json(str(err), 413)
    if isinstance(err, BodyTimeout):
        return _json(str(err), 408, {"Connection": "close"})
    if isinstance(err, RateLimited | TooManyUploads):
        return _json(str(err), 429, {"Retry-After": str(err.retry_after)})
    if isinstance(err, ChecksumMismatch | InvalidInput):
        return _json(str(err), 400)
    if isinstance(err, RemoteError):  # the server's own engines (a shared store's)
        return _json(str(err), 503)
    return _unexpected(err)


def _not_a_folder(err: NotAFolder) -> Response:
    """403 with T9k's exact body, so its SDK raises RuntimeError('Permission denied').

    Not a 404 'node not found': the SDK would read that as a missing folder and, with
    make_folder, find the node there and retry the create without end. The reason
    travels in a header our own client reads.
    """
    return PlainTextResponse("permission denied", 403, headers={DETAIL_HEADER: str(err)})


def _disk_full(err: Exception) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err)


def _json(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)
