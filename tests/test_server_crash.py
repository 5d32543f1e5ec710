"""SIGKILL the server in the middle of an upload: nothing partial is ever visible."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from serverutil import Server, running_server, start

from manifest_tool.errors import RemoteError
from manifest_tool.remotes.base import ARTIFACT, Upload
from manifest_tool.remotes.http import HttpRemote

A = "alice"
MiB = 1024 * 1024


def blob_count(data: Path) -> int:
    return sum(1 for p in (data / "blobs").glob("??/*") if p.is_file())


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def restart(old: Server) -> Server:
    new = start(old.data, old.log_dir)
    new.keys = old.keys
    return new


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, users=[A]) as server:
        HttpRemote(server.url, server.keys[A]).create_node(f"/{A}", "art", ARTIFACT)
        yield server


def test_kill_during_streamed_put(srv: Server, tmp_path: Path) -> None:
    sent_enough, release = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="content"; filename="f"\r\n\r\n'
        for i in range(64):
            if i == 16:
                sent_enough.set()
                release.wait(30)
            yield os.urandom(MiB)
        yield b"\r\n--b--\r\n"

    def send() -> None:
        with contextlib.suppress(requests.RequestException):  # the server dies under it
            requests.post(
                f"{srv.url}/apis/v1/objects",
                params={"path": f"/{A}/art/big"},
                headers={**srv.headers(A), "Content-Type": "multipart/form-data; boundary=b"},
                data=body(),
                timeout=30,
            )

    sender = threading.Thread(target=send)
    sender.start()
    assert sent_enough.wait(30)
    wait_for(
        lambda: any(p.stat().st_size > 8 * MiB for p in (srv.data / "blobs" / "tmp").iterdir())
    )
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    release.set()
    sender.join(30)
    assert blob_count(srv.data) == 0

    again = restart(srv)
    try:
        remote = HttpRemote(again.url, again.keys[A])
        assert remote.list_objects(f"/{A}/art") == []
        data = os.urandom(3 * MiB)
        remote.put_object(
            f"/{A}/art", Upload("big", hashlib.md5(data).hexdigest(), len(data), data=data)
        )
        out = tmp_path / "out"
        remote.get_object(f"/{A}/art", "big", out)
        assert out.read_bytes() == data
        assert blob_count(again.data) == 1
    finally:
        again.stop()


def test_kill_during_multipart_upload(srv: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(big, "wb") as fh:
        for i in range(400):
            fh.write(block[i:] + block[:i])
    md5 = hashlib.md5(big.read_bytes()).hexdigest()
    upload = Upload("model.bin", md5, big.stat().st_size, source=big)
    failures: list[Exception] = []

    def send() -> None:
        try:
            HttpRemote(srv.url, srv.keys[A]).put_object(f"/{A}/art", upload)
        except RemoteError as err:
            failures.append(err)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: any(d.is_dir() and any(d.iterdir()) for d in (srv.data / "uploads").iterdir()))
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    sender.join(60)
    assert failures and "cannot reach" in str(failures[0])
    assert blob_count(srv.data) == 0

    again = restart(srv)
    try:
        remote = HttpRemote(again.url, again.keys[A])
        assert remote.list_objects(f"/{A}/art") == []
        assert remote.put_object(f"/{A}/art", upload).checksum == md5
        assert [(o.path, o.checksum) for o in remote.list_objects(f"/{A}/art")] == [
            ("model.bin", md5)
        ]
        assert blob_count(again.data) == 1
    finally:
        again.stop()
