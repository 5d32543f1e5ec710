"""Garbage collection of the embedded store: after killed applies the store holds
exactly the blobs its objects refer to, and every object still reads back intact."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import Project, cli_env, run_cli, store_rows

from manifest_tool.cli import main

DAY = 24 * 3600
MiB = 1024 * 1024
MANIFEST = "version: 1\nartifacts:\n  - name: data\n    objects: [{dir: d}]\n"


def gc(store: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["gc", "--data", str(store), *args], env=cli_env())


def blob_files(store: Path) -> set[str]:
    """The stored blobs: files, and small ones inline in the database."""
    root = store / "blobs"
    inline = store_rows(store, "SELECT hash FROM blobs WHERE data IS NOT NULL")
    return {p.parent.name + p.name for p in root.glob("??/*") if p.is_file()} | {
        r["hash"] for r in inline
    }


def referenced(store: Path) -> set[str]:
    return {r["blob"] for r in store_rows(store, "SELECT blob FROM objects")}


def assert_every_object_reads_back(store: Path) -> None:
    rows = store_rows(
        store,
        "SELECT o.blob, o.md5, o.size, b.data FROM objects o LEFT JOIN blobs b ON b.hash = o.blob",
    )
    for row in rows:
        data = row["data"]
        if data is None:
            data = (store / "blobs" / row["blob"][:2] / row["blob"][2:]).read_bytes()
        assert (len(data), hashlib.md5(data).hexdigest()) == (row["size"], row["md5"])


def test_killed_applies_then_gc_leave_exactly_the_referenced_blobs(project: Project) -> None:
    rng = random.Random(9)
    project.manifest(MANIFEST)
    for i in range(24):
        project.write(f"d/f{i:02}.bin", os.urandom(MiB))
    cmd = [sys.executable, "-m", "manifest_tool", "apply", "--workers", "2"]
    started = time.monotonic()
    assert run_cli("apply", cwd=project.root).code == 0
    full = time.monotonic() - started  # kills land within one apply's duration
    mid_run = 0
    for _ in range(20):  # bounded: each round lasts at most one apply
        for i in rng.sample(range(24), 8):  # new content: old blobs become collectable
            project.write(f"d/f{i:02}.bin", os.urandom(MiB))
        proc = subprocess.Popen(cmd, cwd=project.root, env=cli_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.95) * full)
        mid_run += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert mid_run >= 5  # 13-14 of 20 here: kills interrupted running applies
    store = project.store
    dry = gc(store, "--grace", "0", "--dry-run")
    assert dry.exit_code == 0, dry.output
    result = gc(store, "--grace", "0")
    assert result.exit_code == 0, result.output
    assert result.output.replace("removed", "would remove") == dry.output
    assert blob_files(store) == referenced(store)
    assert list((store / "blobs" / "tmp").iterdir()) == []
    assert_every_object_reads_back(store)
    assert run_cli("apply", cwd=project.root).code == 0  # and the store still works
    assert blob_files(store) == referenced(store)
    assert_every_object_reads_back(store)


def _aged(path: Path, data: bytes = b"x", age: float = DAY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - age
    os.utime(path, (old, old))
    return path


def test_gc_removes_only_old_unreferenced_garbage(project: Project) -> None:
    project.manifest(MANIFEST)
    project.write("d/kept.txt", "kept")
    assert run_cli("apply", cwd=project.root).code == 0
    store = project.store
    kept = referenced(store)
    for blob in kept:  # a referenced blob stays, however old
        path = store / "blobs" / blob[:2] / blob[2:]
        if path.exists():  # small ones are inline in the database
            _aged(path, path.read_bytes())
    orphan = _aged(store / "blobs" / "ab" / ("c" * 62), b"orphan")
    # Ten minutes old: past --grace 60, not yet what opening the store sweeps by itself.
    old_tmp = _aged(store / "blobs" / "tmp" / "up-old", b"12345", age=600)
    new_tmp = store / "blobs" / "tmp" / "up-live"
    new_tmp.write_bytes(b"in flight")
    part = _aged(store / "uploads" / "dead" / "3", b"part")
    os.utime(part.parent, (time.time() - DAY, time.time() - DAY))

    dry = gc(store, "--grace", "60", "--dry-run")
    assert dry.exit_code == 0
    assert dry.output.splitlines()[-1] == (
        "would remove 1 orphan blob(s), 1 temp file(s), 1 stale upload(s): 15 bytes"
    )
    assert orphan.exists() and old_tmp.exists() and part.exists()

    result = gc(store, "--grace", "60")
    assert f"removed blob {orphan} (6 bytes)" in result.output
    assert not orphan.exists() and not old_tmp.exists() and not part.parent.exists()
    assert new_tmp.exists()  # younger than the grace period: maybe an upload in flight
    assert blob_files(store) == kept == referenced(store)
    assert_every_object_reads_back(store)


def test_gc_refuses_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    result = gc(tmp_path / "typo")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {tmp_path / 'typo'} is not a manifest-tool store (no store.sqlite in it)"
    )
    assert not (tmp_path / "typo").exists()


def test_opening_the_store_sweeps_once_a_day(project: Project) -> None:
    project.manifest(MANIFEST)
    project.write("d/a.txt", "a")
    assert run_cli("apply", cwd=project.root).code == 0
    store = project.store
    leftover = _aged(store / "blobs" / "ab" / ("d" * 62), b"orphan of a killed apply")
    assert run_cli("plan", cwd=project.root).code == 0
    assert leftover.exists()  # swept at most once a day
    _aged(store / "gc-stamp", b"")
    assert run_cli("plan", cwd=project.root).code == 0
    assert not leftover.exists()


def test_the_server_sweeps_its_store_when_it_starts(project: Project, tmp_path: Path) -> None:
    from serverutil import start

    project.manifest(MANIFEST)
    project.write("d/kept.txt", "kept")
    assert run_cli("apply", cwd=project.root).code == 0
    store = project.store
    kept = referenced(store)
    orphan = _aged(store / "blobs" / "ab" / ("c" * 62), b"orphan")
    old_tmp = _aged(store / "blobs" / "tmp" / "up-old", b"12345")
    part = _aged(store / "uploads" / "dead" / "3", b"part")
    os.utime(part.parent, (time.time() - DAY, time.time() - DAY))
    server = start(store, tmp_path / "logs")
    try:
        deadline = time.monotonic() + 20
        while (orphan.exists() or old_tmp.exists() or part.exists()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
    finally:
        server.stop()
    assert not orphan.exists() and not old_tmp.exists() and not part.parent.exists()
    assert blob_files(store) == kept == referenced(store)
