"""Big files to our own server go as one streamed put; parts only where bodies are capped.

Multipart makes the server hash every byte twice (each part's MD5 for its eTag, then
the whole object's); our server takes a put of any size, so an apply that knows it
talks to it (its batch node read answered) sends one. A proxy in front that caps
bodies turns the client back to parts for the rest of its run.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from conftest import USER, Project, cli_env, run_in_process
from rrproxy import running_proxy
from serverutil import running_server

MiB = 1024 * 1024
MANIFEST = (
    "version: 1\nartifacts:\n  - name: big\n    folder: big\n    make_folder: true\n"
    "    objects: [{dir: data}]\n"
)


@pytest.fixture
def big(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    from manifest_tool.remotes import http

    monkeypatch.setattr(http, "MULTIPART_ABOVE", MiB)  # 12 MiB counts as big
    project.manifest(MANIFEST)
    project.write("data/big.bin", os.urandom(12 * MiB))
    project.write("data/small.txt", "small\n")
    return project


def apply(project: Project, url: str, key: str) -> None:
    env = cli_env(MANIFEST_TOOL_API_KEY=key)
    result = run_in_process("apply", "--remote", url, cwd=project.root, env=env)
    assert result.code == 0, result.err


def stored_md5(data: Path, path: str) -> str:
    from manifest_tool.remotes.store import Store

    store = Store(data)
    try:
        objects, _ = store.list_objects(USER, path)
    finally:
        store.close()
    return {o.path: o.checksum for o in objects}["data/big.bin"]


def test_a_big_file_is_one_put_to_our_server(big: Project, tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", users=[USER]) as server:
        apply(big, server.url, server.keys[USER])
        log = server.settled_logs()
        data = server.data
    assert len(re.findall(r'"POST /apis/v1/objects\?path=[^"]*big\.bin" 200', log)) == 1
    assert "multipart" not in log
    want = hashlib.md5((big.root / "data/big.bin").read_bytes()).hexdigest()
    assert stored_md5(data, f"/{USER}/big/big") == want


def test_a_proxy_that_caps_bodies_turns_the_client_to_parts(
    big: Project, tmp_path: Path
) -> None:
    with running_server(tmp_path / "srv", users=[USER]) as server:
        with running_proxy([server.url], max_body=6 * MiB) as proxy:  # parts are 5 MiB
            apply(big, proxy.url, server.keys[USER])
        log = server.settled_logs()
        data = server.data
    assert not re.findall(r'"POST /apis/v1/objects\?path=[^"]*big\.bin"', log)  # never got through
    assert len(re.findall(r'"PUT /apis/v1/objects/multipart/[^"]*partNumber=\d+" 200', log)) == 3
    want = hashlib.md5((big.root / "data/big.bin").read_bytes()).hexdigest()
    assert stored_md5(data, f"/{USER}/big/big") == want
