"""uvicorn's HTTP protocol with a header timeout and a header size limit, which
uvicorn lacks.

uvicorn closes a connection idle between requests (``timeout_keep_alive``), but a
client that opens one and sends its headers a byte at a time keeps it for ever, and
one that sends endless header bytes grows the server's memory. Here a request's
headers must be complete within ``header_timeout_s`` of its first byte (or of the
connection), and within ``MAX_HEADER_BYTES``.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
LINGER_S = 2.0


def _too_large() -> bytes:
    body = json.dumps({"error": f"request headers over {MAX_HEADER_BYTES} bytes"}).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0  # received while headers are due (the timer runs)
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of what the client was sending, read only to be dropped
        super().data_received(data)
        if self._header_timer is None:  # headers complete (a body may follow)
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse()

    def _refuse(self) -> None:
        """Answer 431 and close gently: closing with unread bytes would send a reset
        that destroys the answer before the client reads it."""
        self._disarm()
        self._refused = True
        self.transport.write(_too_large())
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._header_bytes = 0
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s}
    )
