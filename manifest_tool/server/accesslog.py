"""An access log that never writes an API key (uvicorn's would print ``?apikey=``),
and error bodies that never echo one back (a key pasted into a path, say).

A line: ISO 8601 time, client, user (``-`` when unknown), request, status, response
bytes, duration. No header is ever written, so neither ``Authorization`` nor the
web UI's key cookie can reach the log. The same pass feeds ``/metrics``.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import USER_KEY
from .metrics import ROUTE_KEY, UNMATCHED, Metrics
from .redact import redact_query, scrub, secrets_of

log = logging.getLogger("manifest_tool.access")
ERROR_BODY_LIMIT = 64 * 1024  # error bodies are short; a longer one is passed on as is
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # a decoded path may hold "\n": no forged lines


class AccessLog:
    """ASGI middleware: one line per request, with the key removed from the query."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, secrets = time.perf_counter(), secrets_of(scope)
        errors = _ErrorScrubber(send, secrets)
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counting, errors.send)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get(ROUTE_KEY, UNMATCHED)
            self.metrics.record(
                scope.get("method", "-"), route, errors.status, errors.sent, received, elapsed
            )
            if log.isEnabledFor(logging.INFO):
                self._line(scope, errors, elapsed, secrets)

    @staticmethod
    def _line(
        scope: Scope, answer: _ErrorScrubber, elapsed: float, secrets: frozenset[str]
    ) -> None:
        query = redact_query(scope.get("query_string", b"").decode("latin-1"), secrets)
        target = scrub(scope.get("path", "") + (f"?{query}" if query else ""), secrets)
        target = CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", target)
        client = (scope.get("client") or ("-", 0))[0]
        user = CONTROL_RE.sub("?", scope.get(USER_KEY) or "-")
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        log.info(
            '%s %s %s "%s %s" %d %d %.3fs',
            stamp, client, user, scope.get("method"), target, answer.status, answer.sent, elapsed,
        )


class _ErrorScrubber:
    """Passes a response on, holding back an error's body to mask the request's keys."""

    def __init__(self, send: Send, secrets: frozenset[str]) -> None:
        self._send, self._secrets = send, secrets
        self.status = 0
        self.sent = 0  # response body bytes passed on
        self._start: Message | None = None
        self._body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and self._start is None:
            self.sent += len(message.get("body", b""))
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
        self.sent += len(body)
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": body, "more_body": more})
        self._start, self._body = None, b""
