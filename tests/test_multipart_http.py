"""Big objects through the real server's multipart calls, as the HTTP client sends them:
every byte verified against the client's MD5 before the object appears."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from conftest import USER

from manifest_tool.errors import ChecksumMismatch
from manifest_tool.remotes import http, open_remote
from manifest_tool.remotes.base import Upload

MiB = 1024 * 1024


@pytest.fixture
def remote(
    tmp_path: Path, http_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> http.HttpRemote:
    monkeypatch.setattr(http, "MULTIPART_ABOVE", MiB)  # 13 MiB: parts of 5, 5 and 3 MiB
    url, key = http_server
    monkeypatch.setenv("MANIFEST_TOOL_API_KEY", key)
    remote = open_remote(url, tmp_path)
    assert isinstance(remote, http.HttpRemote)
    return remote


def _artifact(remote: http.HttpRemote) -> str:
    name = f"art-{uuid.uuid4().hex[:8]}"
    remote.create_node("/" + USER, name, "Artifact")
    return f"/{USER}/{name}"


def test_a_big_object_arrives_whole_with_its_md5(remote: http.HttpRemote, tmp_path: Path) -> None:
    data = os.urandom(13 * MiB + 5)
    (tmp_path / "big.bin").write_bytes(data)
    node, md5 = _artifact(remote), hashlib.md5(data).hexdigest()
    info = remote.put_object(node, Upload("big.bin", md5, len(data), str(tmp_path / "big.bin")))
    assert (info.checksum, info.size_bytes) == (md5, len(data))
    remote.get_object(node, "big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data


def test_a_file_changed_since_it_was_hashed_is_refused_and_not_stored(
    remote: http.HttpRemote, tmp_path: Path
) -> None:
    """Every part goes through and gets its eTag; the finish's Content-MD5 (the
    plan's digest) no longer matches, so nothing appears under the key."""
    data = bytearray(os.urandom(13 * MiB))
    planned = hashlib.md5(data).hexdigest()
    data[7 * MiB] ^= 1  # one bit in the second part
    (tmp_path / "big.bin").write_bytes(data)
    node = _artifact(remote)
    with pytest.raises(ChecksumMismatch, match=f"expected md5 {planned}"):
        remote.put_object(node, Upload("big.bin", planned, len(data), str(tmp_path / "big.bin")))
    assert remote.list_objects(node) == []
