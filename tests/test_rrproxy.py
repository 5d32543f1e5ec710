"""The round-robin proxy the scale-out tests put in front of two replicas: per-request
alternation on one keep-alive connection, bodies streamed both ways with bounded
memory, chunked framing, and dead replicas skipped."""

from __future__ import annotations

import hashlib
import http.client
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from rrproxy import running_proxy

MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB


def blocks(total: int) -> Iterator[bytes]:
    for i in range(0, total, len(BLOCK)):
        yield (i.to_bytes(8, "big") + BLOCK)[: min(len(BLOCK), total - i)]


def digest(total: int) -> str:
    h = hashlib.sha256()
    for b in blocks(total):
        h.update(b)
    return h.hexdigest()


class Replica(BaseHTTPRequestHandler):
    """A tiny upstream: /who names it, /sink hashes a body, /source streams one."""

    protocol_version = "HTTP/1.1"
    name = "?"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                yield self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            block = self.rfile.read(min(left, MiB))
            left -= len(block)
            yield block

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/who":
            return self._send(self.name.encode())
        query = parse_qs(url.query)
        total, chunked = int(query["n"][0]), query.get("chunked") == ["1"]
        self.send_response(200)
        self.send_header("X-Replica", self.name)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        for block in blocks(total):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def do_PUT(self) -> None:
        h, n = hashlib.sha256(), 0
        for block in self._body():
            h.update(block)
            n += len(block)
        self._send(f"{self.name} {n} {h.hexdigest()}".encode())


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    servers = []
    for name in ("a", "b"):
        handler = type(f"Replica_{name}", (Replica,), {"name": name})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_request_on_one_connection_goes_to_the_next_replica(replicas: list[str]) -> None:
    with running_proxy(replicas) as proxy:
        conn = connect(proxy.url)
        answers, socks = [], set()
        for _ in range(6):
            conn.request("GET", "/who")
            answers.append(conn.getresponse().read().decode())
            socks.add(id(conn.sock))
        conn.close()
        assert answers in (["a", "b"] * 3, ["b", "a"] * 3)
        assert len(socks) == 1, "the client connection was not kept alive"
        assert proxy.counts == [3, 3]


def test_chunked_bodies_pass_both_ways(replicas: list[str]) -> None:
    total = 5 * MiB + 123
    with running_proxy(replicas) as proxy:
        conn = connect(proxy.url)
        conn.request("PUT", "/sink", body=blocks(total), encode_chunked=True)
        first = conn.getresponse().read().decode().split()
        conn.request("GET", f"/source?n={total}&chunked=1")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        got = hashlib.sha256(response.read()).hexdigest()
        conn.request("GET", "/who")  # still one healthy keep-alive connection
        last = conn.getresponse().read().decode()
        conn.close()
    assert first[1:] == [str(total), digest(total)]
    assert got == digest(total)
    assert {first[0], response.getheader("X-Replica"), last} == {"a", "b"}


def test_a_refusing_replica_is_skipped_and_none_gives_502(replicas: list[str]) -> None:
    dead = f"http://127.0.0.1:{dead_port()}"
    with running_proxy([replicas[0], dead]) as proxy:
        conn = connect(proxy.url)
        for _ in range(4):
            conn.request("GET", "/who")
            assert conn.getresponse().read() == b"a"
        conn.close()
    with running_proxy([dead]) as proxy:
        conn = connect(proxy.url)
        conn.request("GET", "/who")
        response = conn.getresponse()
        assert response.status == 502 and b"no replica" in response.read()


def test_100_continue_is_relayed_before_the_body(replicas: list[str]) -> None:
    """As curl does for large uploads: headers, wait for 100 Continue, then the body."""
    body = b"x" * 70_000
    with running_proxy(replicas) as proxy:
        parts = urlsplit(proxy.url)
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=30) as sock:
            sock.sendall(
                b"PUT /sink HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            interim = sock.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100"), interim
            sock.sendall(body)
            answer = b""
            while not answer.endswith(hashlib.sha256(body).hexdigest().encode()):
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b" 70000 " in answer


def test_large_bodies_stream_through_with_bounded_memory(
    replicas: list[str], tmp_path: Path
) -> None:
    """256 MiB up and down through the proxy process, whose peak RSS stays far below."""
    total = 256 * MiB
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("rrproxy.py")), *replicas],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        conn = connect(url)
        conn.request("PUT", "/sink", body=blocks(total), headers={"Content-Length": str(total)})
        put = conn.getresponse().read().decode().split()
        conn.request("GET", f"/source?n={total}")
        response, h, n = conn.getresponse(), hashlib.sha256(), 0
        while block := response.read(MiB):
            h.update(block)
            n += len(block)
        conn.close()
        status = Path(f"/proc/{proc.pid}/status").read_text()
    finally:
        proc.terminate()
        proc.wait(30)
    assert put[1:] == [str(total), digest(total)]
    assert (n, h.hexdigest()) == (total, digest(total))
    peak_kib = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
    assert peak_kib < 80 * 1024, f"the proxy peaked at {peak_kib} KiB"
    assert proc.returncode == 0
