"""A round-robin HTTP/1.1 reverse proxy for tests and benches (standard library only).

Every *request*, not every connection, goes to the next replica: consecutive calls
on one keep-alive connection, and the parts of one multipart upload, land on
different replicas. Bodies stream both ways in bounded blocks (Content-Length,
chunked, or until close), so a 1 GiB upload never sits in memory. A replica that
refuses the connection is skipped (nothing was sent, so any request may go to the
next one); a request no replica takes gets 502.

A real deployment puts nginx or haproxy here; this one exists so the tests can
prove that replicas share all their state.

    python tests/rrproxy.py [--port 8080] http://127.0.0.1:8081 http://127.0.0.1:8082
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

BLOCK = 256 * 1024  # one read/write step of a streamed body
MAX_HEAD = 64 * 1024  # request or response line plus headers
MAX_HEADERS = 128
MAX_CONNECTIONS = 256
CLIENT_IDLE_S = 60.0  # keep-alive wait for a client's next request
CONNECT_TIMEOUT_S = 5.0
POOL_IDLE_S = 2.0  # under uvicorn's 5 s keep-alive: a pooled connection is never stale
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
}


class BadMessage(Exception):
    """A request or response that is not HTTP/1.x as this proxy understands it."""


class ReplicaGone(Exception):
    """The replica closed or broke its connection before its response began."""


def _discard(task: asyncio.Future[None]) -> None:
    """Cancel a body copy whose outcome no longer matters, and read its error."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


@dataclass(frozen=True)
class Head:
    start: str  # the request or status line
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()}

    def encode(self, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
        lines = [self.start]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in HOP_BY_HOP]
        lines += [f"{k}: {v}" for k, v in extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next message head, or None when the peer closed before sending one."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise BadMessage("connection closed inside a message head") from e
    except asyncio.LimitOverrunError as e:
        raise BadMessage("message head too large") from e
    lines = raw.decode("latin-1").split("\r\n")[:-2]
    if len(lines) > MAX_HEADERS + 1:
        raise BadMessage("too many header lines")
    headers = []
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip():
            raise BadMessage(f"bad header line {line[:80]!r}")
        headers.append((key, value.strip()))
    return Head(lines[0], tuple(headers))


@dataclass(frozen=True)
class Framing:
    """How a message body ends."""

    length: int | None  # bytes of a Content-Length body; None: chunked or until close
    chunked: bool
    until_close: bool


NO_BODY = Framing(0, False, False)


def framing(head: Head, *, request: bool) -> Framing:
    if "chunked" in head.tokens("transfer-encoding"):
        return Framing(None, True, False)
    value = head.get("content-length")
    if value is not None:
        if not value.isdigit():
            raise BadMessage(f"bad Content-Length {value!r}")
        return Framing(int(value), False, False)
    return NO_BODY if request else Framing(None, False, True)


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        block = await reader.read(min(n, BLOCK))
        if not block:
            raise BadMessage("connection closed inside a body")
        writer.write(block)
        await writer.drain()
        n -= len(block)


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pass chunked framing through as it is, reading only the sizes."""
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as e:
            raise BadMessage(f"bad chunk size {size_text[:20]!r}") from e
        if size == 0:
            break
        await copy_exact(reader, writer, size + 2)  # the data and its CRLF
    while True:  # trailers, up to the empty line
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        if line == b"\r\n":
            break
    await writer.drain()


async def copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, how: Framing
) -> None:
    if how.chunked:
        await copy_chunked(reader, writer)
    elif how.length is not None:
        await copy_exact(reader, writer, how.length)
    else:
        while block := await reader.read(BLOCK):
            writer.write(block)
            await writer.drain()


@dataclass
class Upstream:
    host: str
    port: int
    requests: int = 0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = field(
        default_factory=list
    )

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if not reader.at_eof() and time.monotonic() - since < POOL_IDLE_S:
                return reader, writer
            writer.close()
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=MAX_HEAD), CONNECT_TIMEOUT_S
        )

    def release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.append((reader, writer, time.monotonic()))


def error_response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class RoundRobinProxy:
    """The proxy's state on its event loop: the replicas and whose turn it is."""

    def __init__(self, upstreams: list[str], max_body: int | None = None) -> None:
        if not upstreams:
            raise ValueError("at least one upstream URL")
        self.upstreams = [self._parse(u) for u in upstreams]
        # like nginx's client_max_body_size: a larger declared body gets 413 at once,
        # and the connection is closed without reading it
        self.max_body = max_body
        self._turn = itertools.count()
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _parse(url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://HOST:PORT, not {url!r}")
        return Upstream(parts.hostname, parts.port)

    async def _open_next(
        self,
    ) -> tuple[Upstream, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next replica in turn that accepts a connection."""
        start = next(self._turn)
        for i in range(len(self.upstreams)):
            upstream = self.upstreams[(start + i) % len(self.upstreams)]
            try:
                reader, writer = await upstream.connect()
            except (OSError, TimeoutError):
                continue
            upstream.requests += 1
            return upstream, reader, writer
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with self._slots:
                while await self._one_exchange(reader, writer):
                    pass
        except (BadMessage, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gets a closed connection; nothing else to clean up
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Forward one request and its response; True if the client connection stays."""
        try:
            head = await asyncio.wait_for(read_head(reader), CLIENT_IDLE_S)
        except BadMessage as e:
            writer.write(error_response("400 Bad Request", f"bad request: {e}\n"))
            await writer.drain()
            return False
        if head is None:
            return False
        method, _, rest = head.start.partition(" ")
        request_body = framing(head, request=True)
        if self.max_body is not None and (request_body.length or 0) > self.max_body:
            writer.write(error_response("413 Payload Too Large", "body too large\n"))
            await writer.drain()
            return False
        keep_client = rest.endswith("HTTP/1.1") and "close" not in head.tokens("connection")
        opened = await self._open_next()
        if opened is None:
            writer.write(error_response("502 Bad Gateway", "no replica accepts connections\n"))
            await writer.drain()
            return False
        upstream, up_reader, up_writer = opened
        up_writer.write(head.encode((("Connection", "keep-alive"),)))
        sending = asyncio.ensure_future(copy_body(reader, up_writer, request_body))
        try:
            relayed = await self._relay_response(method, up_reader, writer, keep_client)
        except ReplicaGone as e:
            _discard(sending)
            up_writer.close()
            writer.write(error_response("502 Bad Gateway", f"{e}\n"))
            await writer.drain()
            return False
        except BaseException:
            _discard(sending)
            up_writer.close()
            raise
        keep_upstream, keep_client = relayed
        # A response sent before the whole request body was read (an early 4xx) leaves
        # neither connection at a message boundary; the last drain may still be running.
        await asyncio.wait({sending}, timeout=0.2)
        if not sending.done() or sending.exception() is not None:
            _discard(sending)
            keep_upstream = keep_client = False
        if keep_upstream:
            upstream.release(up_reader, up_writer)
        else:
            up_writer.close()
        return keep_client

    async def _relay_response(
        self,
        method: str,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_client: bool,
    ) -> tuple[bool, bool]:
        """Stream the response (after any 1xx); (reuse upstream?, keep client?)."""
        while True:
            try:
                head = await read_head(up_reader)
            except (BadMessage, OSError) as e:
                raise ReplicaGone(f"replica failed before answering: {e}") from e
            if head is None:
                raise ReplicaGone("replica closed the connection without answering")
            status = head.start.split(" ", 2)[1] if head.start.count(" ") else ""
            if not (status.startswith("1") and status != "101"):
                break
            writer.write(head.encode())  # 100 Continue and friends, passed on
            await writer.drain()
        no_body = method == "HEAD" or status in {"204", "304"}
        how = NO_BODY if no_body else framing(head, request=False)
        keep_upstream = "close" not in head.tokens("connection") and not how.until_close
        keep_client = keep_client and not how.until_close
        extra = () if keep_client else (("Connection", "close"),)
        writer.write(head.encode(extra))
        await copy_body(up_reader, writer, how)
        await writer.drain()
        return keep_upstream, keep_client

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for upstream in self.upstreams:
            for _, w, _ in upstream.idle:
                w.close()
            upstream.idle.clear()


@dataclass
class RunningProxy:
    """A proxy serving on its own thread and event loop; ``url`` is where to send."""

    url: str
    proxy: RoundRobinProxy
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stopped: asyncio.Event

    @property
    def counts(self) -> list[int]:
        """Requests sent to each replica so far, in the order given."""
        return [u.requests for u in self.proxy.upstreams]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopped.set)
            self.thread.join(30)


async def _serve(
    proxy: RoundRobinProxy,
    host: str,
    port: int,
    stopped: asyncio.Event,
    ready: queue.Queue[int | BaseException],
) -> None:
    server = await asyncio.start_server(proxy.handle, host, port, limit=MAX_HEAD)
    ready.put(server.sockets[0].getsockname()[1])
    async with server:
        await stopped.wait()
        server.close()
        await proxy.close()
        await server.wait_closed()


def start_proxy(
    upstreams: list[str], host: str = "127.0.0.1", port: int = 0, max_body: int | None = None
) -> RunningProxy:
    """Start a proxy on a free loopback port (or ``port``) in a background thread."""
    proxy = RoundRobinProxy(upstreams, max_body)
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    ready: queue.Queue[int | BaseException] = queue.Queue()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_serve(proxy, host, port, stopped, ready))
        except BaseException as e:
            ready.put(e)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="rrproxy", daemon=True)
    thread.start()
    bound = ready.get(timeout=10)
    if isinstance(bound, BaseException):
        raise RuntimeError(f"proxy did not start: {bound}") from bound
    return RunningProxy(f"http://{host}:{bound}", proxy, loop, thread, stopped)


@contextlib.contextmanager
def running_proxy(upstreams: list[str], max_body: int | None = None) -> Iterator[RunningProxy]:
    proxy = start_proxy(upstreams, max_body=max_body)
    try:
        yield proxy
    finally:
        proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstreams", nargs="+", metavar="URL", help="http://HOST:PORT of a replica")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args()
    proxy = start_proxy(args.upstreams, args.host, args.port)
    print(f"proxying {proxy.url} to {' '.join(args.upstreams)}", flush=True)
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    done.wait()
    proxy.stop()


if __name__ == "__main__":
    main()
