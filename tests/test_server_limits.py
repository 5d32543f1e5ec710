"""Bodies, counts and odd input: each bounded or refused with a 4xx naming the problem,
never a 500, whatever the transfer encoding."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from serverutil import Server, running_server

A = "alice"
MiB = 1024 * 1024
JSON_LIMIT = 16 * MiB
ART = f"/{A}/art"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--body-timeout", "1.5", "--header-timeout", "1.5"]
    with running_server(tmp_path_factory.mktemp("limits"), users=[A], extra_args=args) as server:
        call(
            server,
            "POST",
            "/apis/v1/nodes",
            json={"parent": f"/{A}", "name": "art", "type": "Artifact"},
        )
        put = call(
            server,
            "POST",
            "/apis/v1/objects",
            params={"path": f"{ART}/obj"},
            files={"content": ("obj", b"0123456789")},
        )
        assert put.status_code == 200
        yield server
        assert "Traceback" not in server.logs() and "unexpected error" not in server.logs()


def call(
    srv: Server, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> requests.Response:
    headers = {**srv.headers(A), **(headers or {})}
    return requests.request(method, srv.url + path, headers=headers, timeout=30, **kw)


def raw(
    srv: Server,
    method: str,
    target: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    chunked: bool,
) -> tuple[int, str]:
    """Send a body as given (chunked or not), then read the answer."""
    parts = urlsplit(srv.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, target)
        for name, value in {**headers, **srv.headers(A)}.items():
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered early; its answer is still there to read
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def big_json(size: int) -> Iterator[bytes]:
    yield b'{"parent": "/alice", "name": "big", "type": "Folder", "description": "'
    for _ in range(size // MiB):
        yield b"x" * MiB
    yield b'"}'


@pytest.mark.parametrize("chunked", [True, False])
def test_a_json_body_over_the_limit_is_413_whatever_the_encoding(
    srv: Server, chunked: bool
) -> None:
    size = JSON_LIMIT + MiB
    headers = {"Content-Type": "application/json"}
    if not chunked:
        headers["Content-Length"] = str(sum(len(c) for c in big_json(size)))
    status, body = raw(srv, "POST", "/apis/v1/nodes", headers, big_json(size), chunked)
    assert status == 413 and str(JSON_LIMIT) in body, body
    assert call(srv, "GET", "/apis/v1/nodes/info", params={"node": f"/{A}/big"}).status_code == 404


def test_a_chunked_json_body_under_the_limit_is_accepted(srv: Server) -> None:
    body = json.dumps({"parent": f"/{A}", "name": "chunked", "type": "Folder"}).encode()
    headers = {"Content-Type": "application/json"}
    status, text = raw(srv, "POST", "/apis/v1/nodes", headers, iter([body[:10], body[10:]]), True)
    assert status == 200, text


def test_delete_of_more_keys_than_the_limit_is_400(srv: Server) -> None:
    paths = [f"k{i}" for i in range(10_001)]
    resp = call(srv, "POST", "/apis/v1/objects/delete", json={"node": ART, "paths": paths})
    assert resp.status_code == 400 and "at most 10000" in resp.json()["error"]
    resp = call(srv, "POST", "/apis/v1/objects/delete", json={"node": ART, "paths": paths[:10_000]})
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/apis/v1/nodes", "/apis/v1/objects/ls"])
def test_listing_pages_are_capped(srv: Server, path: str) -> None:
    params = {"parent": f"/{A}", "path": ART, "size": "10001"}
    resp = call(srv, "GET", path, params=params)
    assert resp.status_code == 400 and "10000" in resp.json()["error"]


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=" + "9" * 5000 + "-", 416),
        ("bytes=0-" + "9" * 5000, 206),
        ("bytes=-" + "9" * 5000, 206),
        ("bytes=" + "9" * 5000 + "-" + "9" * 5001, 416),
    ],
    ids=["start", "end", "suffix", "both"],
)
def test_a_range_of_thousands_of_digits_is_answered(srv: Server, header: str, status: int) -> None:
    resp = call(
        srv,
        "GET",
        "/apis/v1/objects",
        params={"path": f"{ART}/obj"},
        headers={"Range": header},
    )
    assert resp.status_code == status, resp.text
    if status == 206:
        assert resp.content == b"0123456789"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"node": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
        b'{"parent": "/alice", "name": "\\ud800", "type": "Folder"}',
        b'{"parent": "/alice", "name": "ok", "type": "Folder", "description": "\\udfff"}',
        b'{"node": "/alice/art", "paths": ["\\ud83d"]}',
        b'{"node": "/alice/\\udc80", "description": "x"}',
        b'{"parent": "/alice", "name": "' + b"9" * 5000 + b'"}',
        b'{"parent": "/alice", "name": ' + b"9" * 5000 + b"}",
        b"\xff\xfe{}",
    ],
    ids=[
        "deep-list",
        "deep-object",
        "surrogate-name",
        "surrogate-description",
        "surrogate-key",
        "surrogate-node",
        "long-digits-string",
        "long-number",
        "not-utf8",
    ],
)
def test_hostile_json_is_400(srv: Server, body: bytes) -> None:
    for method, path in (
        ("POST", "/apis/v1/nodes"),
        ("PUT", "/apis/v1/nodes"),
        ("POST", "/apis/v1/objects/delete"),
    ):
        resp = call(
            srv,
            method,
            path,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert 400 <= resp.status_code < 500, (path, resp.text)
        assert resp.status_code != 400 or "error" in resp.json() or "not found" in resp.text


@pytest.mark.parametrize(
    "query",
    [
        "node=/alice/%ED%A0%80",
        "node=/alice/%C0%AF",
        "node=%ff%fe",
        "node=/alice/%00",
        "node=" + "9" * 5000,
    ],
    ids=["surrogate", "overlong", "not-utf8", "nul", "long"],
)
def test_undecodable_queries_are_4xx(srv: Server, query: str) -> None:
    resp = requests.get(f"{srv.url}/apis/v1/nodes/info?{query}", headers=srv.headers(A), timeout=10)
    assert 400 <= resp.status_code < 500, resp.text


def test_a_body_that_stops_is_408(srv: Server) -> None:
    parts = urlsplit(srv.url)
    for target, ctype in (
        ("/apis/v1/nodes", "application/json"),
        (f"/apis/v1/objects?path={ART}/stalled", "multipart/form-data; boundary=b"),
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            auth = srv.headers(A)["Authorization"]
            sock.sendall(
                f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: 1000\r\n\r\n--b\r\n".encode()
            )
            started = time.monotonic()
            answer = b"".join(iter(lambda: sock.recv(4096), b"")).decode()  # until closed
            assert answer.startswith("HTTP/1.1 408"), answer
            assert time.monotonic() - started < 5
            assert "sent nothing for 1.5 s" in answer
    assert (
        call(srv, "GET", "/apis/v1/objects/ls", params={"path": ART}).json()["pagination"]["total"]
        == 1
    )


def test_headers_that_never_end_are_dropped(srv: Server) -> None:
    parts = urlsplit(srv.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /oauth2/userinfo HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(3):  # a header line now and then is not enough
            time.sleep(0.4)
            sock.sendall(b"X-Slow: 1\r\n")
        assert sock.recv(4096) == b""  # closed by the server...
        assert time.monotonic() - started < 5  # ...after its header timeout


def test_headers_over_the_limit_are_431(srv: Server) -> None:
    parts = urlsplit(srv.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /oauth2/userinfo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(OSError):  # the server answers and closes mid-way
            for _ in range(64):
                sock.sendall(b"a" * 16384)
        answer = b"".join(iter(lambda: sock.recv(4096), b"")).decode()
    assert answer.startswith("HTTP/1.1 431") and "65536" in answer, answer
    assert call(srv, "GET", "/oauth2/userinfo").status_code == 200
