"""An access log that never writes an API key (uvicorn's would print ``?apikey=``),
and error bodies that never echo one back (a key pasted into a path, say)."""

from __future__ import annotations

import logging
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .redact import redact_query, scrub, secrets_of

log = logging.getLogger("manifest_tool.access")
ERROR_BODY_LIMIT = 64 * 1024  # error bodies are short; a longer one is passed on as is
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # a decoded path may hold "\n": no forged lines


class AccessLog:
    """ASGI middleware: one line per request, with the key removed from the query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, secrets = time.perf_counter(), secrets_of(scope)
        errors = _ErrorScrubber(send, secrets)
        try:
            await self.app(scope, receive, errors.send)
        finally:
            if log.isEnabledFor(logging.INFO):
                self._line(scope, errors.status, time.perf_counter() - started, secrets)

    @staticmethod
    def _line(scope: Scope, status: int, elapsed: float, secrets: frozenset[str]) -> None:
        query = redact_query(scope.get("query_string", b"").decode("latin-1"), secrets)
        target = scrub(scope.get("path", "") + (f"?{query}" if query else ""), secrets)
        target = CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", target)
        client = (scope.get("client") or ("-", 0))[0]
        log.info('%s "%s %s" %d %.3fs', client, scope.get("method"), target, status, elapsed)


class _ErrorScrubber:
    """Passes a response on, holding back an error's body to mask the request's keys."""

    def __init__(self, send: Send, secrets: frozenset[str]) -> None:
        self._send, self._secrets = send, secrets
        self.status = 0
        self._start: Message | None = None
        self._body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status >= 400 and self._secrets:
                self._start = message
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            self._body += message.get("body", b"")
            if message.get("more_body", False) and len(self._body) <= ERROR_BODY_LIMIT:
                return
            await self._flush(message.get("more_body", False))
            return
        await self._send(message)

    async def _flush(self, more: bool) -> None:
        assert self._start is not None
        body = self._body
        if not more:
            body = scrub(body.decode("utf-8", "replace"), self._secrets).encode()
            MutableHeaders(scope=self._start)["content-length"] = str(len(body))
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": body, "more_body": more})
        self._start, self._body = None, b""
