"""Hostile load on 127.0.0.1 only, bounded in count and time: slow uploads and wrong
keys must not stop the server from answering everyone else."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from serverutil import Server, running_server

A, E = "alice", "erin"
SLOW_CLIENTS = 100
TRICKLE_S = 5.0


def userinfo_seconds(srv: Server, user: str) -> float:
    started = time.monotonic()
    resp = requests.get(f"{srv.url}/oauth2/userinfo", headers=srv.headers(user), timeout=10)
    assert resp.json() == {"preferred_username": user}
    return time.monotonic() - started


@contextlib.contextmanager
def slow_uploads(srv: Server, count: int) -> Iterator[list[socket.socket]]:
    """``count`` uploads whose headers are complete and whose bodies then crawl."""
    parts = urlsplit(srv.url)
    auth = srv.headers(A)["Authorization"]
    head = (
        f"POST /apis/v1/objects?path=/{A}/art/slow HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {auth}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
            socks.append(sock)
            sock.sendall(head)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_slow_uploads_do_not_stall_other_users(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A, E]) as srv:
        resp = requests.post(
            f"{srv.url}/apis/v1/nodes",
            headers=srv.headers(A),
            json={"parent": f"/{A}", "name": "art", "type": "Artifact"},
            timeout=10,
        )
        assert resp.status_code == 200
        with slow_uploads(srv, SLOW_CLIENTS) as socks:
            time.sleep(1.0)  # every upload is in its handler, waiting for body bytes
            waits, deadline = [], time.monotonic() + TRICKLE_S
            while time.monotonic() < deadline:
                for sock in socks:  # one byte per client per second
                    with contextlib.suppress(OSError):
                        sock.send(b"-")
                waits.append(userinfo_seconds(srv, E))
                time.sleep(max(0.0, 1.0 - waits[-1]))
        assert len(waits) >= 4 and max(waits) < 1.0, waits
        assert userinfo_seconds(srv, A) < 1.0  # the slow uploads' user too, once they end


def get_from(srv: Server, source: str, key: str) -> http.client.HTTPResponse:
    parts = urlsplit(srv.url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=10, source_address=(source, 0)
    )
    conn.request("GET", "/oauth2/userinfo", headers={"Authorization": f"Bearer {key}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


@pytest.mark.timeout(60)
def test_failed_logins_are_rate_limited_per_address(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A]) as srv:
        good, here, there = srv.keys[A], "127.0.0.1", "127.0.0.2"
        for _ in range(30):  # successes spend nothing
            assert get_from(srv, here, good).status == 200
        statuses = [get_from(srv, here, str(uuid.uuid4())).status for _ in range(40)]
        assert statuses[:20] == [400] * 20 and set(statuses[20:]) == {429}, statuses
        limited = get_from(srv, here, str(uuid.uuid4()))
        assert limited.status == 429 and 1 <= int(limited.headers["Retry-After"]) <= 10
        assert get_from(srv, there, good).status == 200  # another address: unaffected
        assert get_from(srv, there, str(uuid.uuid4())).status == 400
        time.sleep(int(limited.headers["Retry-After"]))
        assert get_from(srv, here, good).status == 200  # and this one earns tries back
