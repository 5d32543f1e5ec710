"""Our typed errors as HTTP answers, with the status codes and texts of docs/protocol.md.

The texts a T9k client matches on (``node not found [...]``, ``Invalid conflicting
node Name``, ``permission denied``, ``api key ... not found``) are plain text; every
other error is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..errors import (
    AuthError,
    ChecksumMismatch,
    InvalidInput,
    ManifestToolError,
    NameConflict,
    NodeNotFound,
    PermissionDenied,
    RevisionMismatch,
)

log = logging.getLogger("manifest_tool.server")


class BodyTooLarge(ManifestToolError):
    """A request body over the server's limit (413)."""


class NoApiKey(AuthError):
    """The request carried no key (401)."""


class UnknownApiKey(AuthError):
    """The key is not one the server issued, or it was revoked (400)."""


class RangeNotSatisfiable(ManifestToolError):
    """A ``Range`` that lies outside the object (416)."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"range not satisfiable: the object has {size} bytes")


def error_response(err: Exception) -> Response:
    """The answer for ``err``; anything unexpected is logged and becomes a 500."""
    if isinstance(err, NodeNotFound):
        return PlainTextResponse(str(err), 404)
    if isinstance(err, NameConflict):
        return PlainTextResponse(str(err), 400)
    if isinstance(err, PermissionDenied):
        return PlainTextResponse("permission denied", 403)
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
    if isinstance(err, ClientDisconnect):
        return _json("the client went away before the body was complete", 400)
    if isinstance(err, ChecksumMismatch | InvalidInput):
        return _json(str(err), 400)
    log.error("unexpected error", exc_info=err)
    return _json("internal server error (see the server's log)", 500)


def _json(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)
