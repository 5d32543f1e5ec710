"""An access log that never writes an API key (uvicorn's would print ``?apikey=``)."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("manifest_tool.access")
APIKEY_RE = re.compile(r"(^|&)(apikey=)[^&]*", re.IGNORECASE)


def redact(query: str) -> str:
    return APIKEY_RE.sub(r"\1\2***", query)


class AccessLog:
    """ASGI middleware: one line per request, with the key removed from the query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            if log.isEnabledFor(logging.INFO):
                self._line(scope, status, time.perf_counter() - started)

    @staticmethod
    def _line(scope: Scope, status: int, elapsed: float) -> None:
        query = redact(scope.get("query_string", b"").decode("latin-1"))
        target = scope.get("path", "") + (f"?{query}" if query else "")
        client = (scope.get("client") or ("-", 0))[0]
        log.info('%s "%s %s" %d %.3fs', client, scope.get("method"), target, status, elapsed)
