"""A full server disk is a 507 with a clear text, and the HTTP client shows that text.

The store lives on a real 2 MiB tmpfs (mounted for the test: it needs root)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from serverutil import Server, running_server

from manifest_tool.errors import RemoteError
from manifest_tool.remotes.base import ARTIFACT, Upload
from manifest_tool.remotes.http import HttpRemote

A = "alice"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0 or os.geteuid() != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def srv(small_disk: Path) -> Iterator[Server]:
    with running_server(small_disk, users=[A]) as server:
        yield server


def test_a_full_disk_is_507_and_the_client_says_so(srv: Server) -> None:
    remote = HttpRemote(srv.url, srv.keys[A])
    remote.create_node(f"/{A}", "art", ARTIFACT)
    data = os.urandom(3 * 1024 * 1024)
    resp = requests.post(
        f"{srv.url}/apis/v1/objects",
        headers=srv.headers(A),
        params={"path": f"/{A}/art/big"},
        files={"content": ("big", data)},
        timeout=30,
    )
    assert resp.status_code == 507
    assert resp.json()["error"].startswith("server disk full")
    upload = Upload("big", hashlib.md5(data).hexdigest(), len(data), data=data)
    with pytest.raises(RemoteError) as caught:
        remote.put_object(f"/{A}/art", upload)
    message = str(caught.value)
    assert "server disk full" in message and "is the server running" not in message
    assert list((srv.data / "blobs" / "tmp").iterdir()) == []  # no partial blob kept
    assert remote.list_objects(f"/{A}/art") == []
    small = Upload("small", hashlib.md5(b"ok").hexdigest(), 2, data=b"ok")
    assert remote.put_object(f"/{A}/art", small).size_bytes == 2  # still serving
    assert "Traceback" not in srv.logs()
