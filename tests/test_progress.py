"""Progress that moves (issue 14): bytes reported during an upload, a visible hashing
phase, binary units, colour on a terminal only, plain output when piped."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import USER, Project, cli_env, run_cli

from manifest_tool.hashing import md5_file
from manifest_tool.progress import Bars
from manifest_tool.remotes import open_remote
from manifest_tool.remotes.base import Upload

MiB = 1024 * 1024
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
ONE = "version: 1\nartifacts:\n  - name: big\n    objects:\n      - file: big.bin\n"


def _big(path: Path, size: int) -> Upload:
    path.write_bytes(os.urandom(size))
    return Upload("big.bin", md5_file(path), size, source=str(path))


def _put(remote: Any, upload: Upload) -> list[int]:
    seen: list[int] = []
    with_callback = Upload(upload.key, upload.md5, upload.size, upload.source,
                           on_bytes=seen.append)  # fmt: skip
    parent, name = "/" + USER, f"art-{uuid.uuid4().hex[:8]}"
    remote.create_node(parent, name, "Artifact")
    remote.put_object(f"{parent}/{name}", with_callback)
    return seen


def test_the_embedded_store_reports_bytes_while_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANIFEST_TOOL_USER", USER)
    remote = open_remote(f"file:{tmp_path / 'store'}", tmp_path)
    seen = _put(remote, _big(tmp_path / "big.bin", 5 * MiB + 7))
    assert len(seen) >= 5 and sum(seen) == 5 * MiB + 7


@pytest.mark.parametrize("multipart", [False, True])
def test_http_reports_bytes_while_it_sends(
    tmp_path: Path,
    http_server: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    multipart: bool,
) -> None:
    from manifest_tool.remotes import http

    if multipart:  # 12 MiB in 5 MiB parts, each reporting as it goes
        monkeypatch.setattr(http, "MULTIPART_ABOVE", MiB)
    url, key = http_server
    monkeypatch.setenv("MANIFEST_TOOL_API_KEY", key)
    remote = open_remote(url, tmp_path)
    seen = _put(remote, _big(tmp_path / "big.bin", 12 * MiB))
    assert len(seen) >= 12 and sum(seen) == 12 * MiB


class FakeProgress:
    def __init__(self) -> None:
        self.advances: list[int] = []

    def add_task(self, name: str, total: int) -> int:
        return 1

    def advance(self, task: int, n: int) -> None:
        self.advances.append(n)


def test_bars_move_with_bytes_and_never_count_an_object_twice() -> None:
    from manifest_tool.plan import ArtifactPlan

    fake = FakeProgress()
    bars = Bars(fake)
    up = Upload("k", "m", 3 * MiB, source="x")
    bars.on_start(ArtifactPlan("a", "/u", "/u/a", "create"), [up])
    bars.on_bytes(up, MiB)
    assert fake.advances == [MiB]  # the bar moved before the object completed
    bars.on_bytes(up, MiB)
    bars.on_bytes(up, 5 * MiB)  # a retry reads the file again: capped at its size
    bars.on_upload(up)
    assert sum(fake.advances) == 3 * MiB


# -- on a terminal, and piped -------------------------------------------------------------


def run_on_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> bytes:
    """Run the CLI with stdout and stderr on a pseudo-terminal; all it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "manifest_tool", *args],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out


def tty_env(**extra: str) -> dict[str, str]:
    env = cli_env(TERM="xterm-256color", COLUMNS="120")
    env.pop("NO_COLOR", None)
    env.update(extra)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


@pytest.fixture
def big(project: Project) -> Project:
    project.write("big.bin", os.urandom(40 * MiB))
    project.manifest(ONE)
    return project


def test_a_terminal_gets_the_hashing_phase_colour_and_binary_units(big: Project) -> None:
    out = run_on_pty(["plan"], big.root, tty_env())
    assert b"hashing 1 file, 40.0 MiB" in out
    assert ANSI.search(out), out
    assert b"(40.0 MiB)" in out
    applied = run_on_pty(["apply"], big.root, tty_env())
    text = ANSI.sub(b"", applied)
    assert b"MiB/s" in text or b"/40.0 MiB" in text, text  # the bar, in binary units
    assert b"MB" not in text.replace(b"MiB", b"")


@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color", "group --no-color"])
def test_no_color_and_the_flag_turn_colour_off(big: Project, how: str) -> None:
    if how == "NO_COLOR":
        out = run_on_pty(["plan"], big.root, tty_env(NO_COLOR="1"))
    elif how == "--no-color":
        out = run_on_pty(["plan", "--no-color"], big.root, tty_env())
    else:
        out = run_on_pty(["--no-color", "plan"], big.root, tty_env())
    assert b"+ big" in out
    assert not ANSI.search(out), out


def test_piped_output_is_only_results(big: Project) -> None:
    env = cli_env(TERM="xterm-256color")
    planned = run_cli("plan", cwd=big.root, env=env)
    assert planned.code == 0
    assert "hashing" not in planned.err and planned.err == ""
    assert "\x1b" not in planned.out
    applied = run_cli("apply", cwd=big.root, env=env)
    assert applied.code == 0 and applied.err == "", applied.err
    assert "\x1b" not in applied.out and applied.out.startswith("big: create")


def test_errors_are_red_on_a_terminal_only(project: Project) -> None:
    project.manifest(ONE)  # big.bin is missing
    master, slave = pty.openpty()
    for env, args, red in (
        (tty_env(), ["validate"], True),
        (tty_env(NO_COLOR="1"), ["validate"], False),
        (tty_env(), ["validate", "--no-color"], False),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "manifest_tool", *args],
            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=slave, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1
        written = os.read(master, 65536)
        assert b"big.bin" in written
        assert written.startswith(b"\x1b[31m\x1b[1merror:" if red else b"error:"), written
    os.close(slave)
    os.close(master)
    piped = run_cli("validate", cwd=project.root, env=tty_env())
    assert piped.err.startswith("error: ") and "\x1b" not in piped.err
