"""Predictable bad input is one line naming the file, exit 1: never a trace or a hang.

The real CLI, in-process through click's CliRunner where it can be (a case that must
drop privileges runs it as a subprocess), real files under tmp_path, and real small
tmpfs mounts for a full disk. Each case also checks nothing reached the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import cli_env, store_rows

from manifest_tool.cli import main

ROOT = Path(__file__).resolve().parent.parent
ONE_DIR = "version: 1\nartifacts:\n  - name: a\n    objects: [{dir: d}]\n"


def run(cwd: Path, *args: str) -> Result:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), env=cli_env())
    finally:
        os.chdir(old)


def one_line(result: Result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def nothing_stored(root: Path) -> bool:
    store = root / ".em" / "store"
    return not store.exists() or not store_rows(store, "SELECT 1 FROM objects")


def test_yaml_alias_bomb(tmp_path: Path) -> None:
    lines = ["version: 1", "l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    (tmp_path / "artifacts.yaml").write_text("\n".join(lines) + "\n" + ONE_DIR[11:])
    started = time.monotonic()
    line = one_line(run(tmp_path, "plan"))
    assert line.startswith("error: artifacts.yaml:") and "expands to more than" in line
    assert time.monotonic() - started < 20
    assert nothing_stored(tmp_path)


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = opening * 10_000 + ("" if opening == "[" else "1") + closing * 10_000
    (tmp_path / "artifacts.yaml").write_text(f"version: 1\nx: {body}\n" + ONE_DIR[11:])
    line = one_line(run(tmp_path, "plan"))
    assert line.startswith("error: artifacts.yaml:2:") and "nesting too deep" in line


def test_symlink_fan_out_of_24_levels(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    for level in range(1, 25):
        (tmp_path / f"l{level}").mkdir()
    (tmp_path / "l24" / "f.txt").write_text("f")
    (tmp_path / "d").mkdir()
    for where, level in [("d", 1)] + [(f"l{i}", i + 1) for i in range(1, 24)]:
        for name in ("a", "b"):
            (tmp_path / where / name).symlink_to(f"../l{level}")
    started = time.monotonic()
    line = one_line(run(tmp_path, "plan"))
    assert "artifacts.yaml:4: artifact 'a': dir 'd': symlinks reach" in line
    assert "a symlink fan-out?" in line
    assert time.monotonic() - started < 20
    assert nothing_stored(tmp_path)


def test_a_link_or_two_to_one_directory_is_still_fine(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "v3").mkdir()
    (tmp_path / "v3" / "w.bin").write_text("w")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "latest").symlink_to("../v3")
    (tmp_path / "d" / "stable").symlink_to("../v3")
    assert run(tmp_path, "plan").exit_code == 0


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "fine.txt").write_text("ok")
    with open(os.path.join(os.fsencode(tmp_path / "d"), b"bad\xff\xfe.txt"), "wb") as fh:
        fh.write(b"x")
    line = one_line(run(tmp_path, "apply"))
    assert line == (
        "error: artifacts.yaml:4: artifact 'a': 'd/bad\\xff\\xfe.txt' is not a valid UTF-8 "
        "name (rename it)"
    )
    assert nothing_stored(tmp_path)


def test_a_4090_character_source_path(tmp_path: Path) -> None:
    rel = "/".join(["p" * 200] * 20)[: 4090 - len("/x.txt")] + "/x.txt"
    (tmp_path / "artifacts.yaml").write_text(
        f"version: 1\nartifacts:\n  - name: a\n    objects: [{{file: '{rel}'}}]\n"
    )
    line = one_line(run(tmp_path, "plan"))
    assert line.startswith("error: artifacts.yaml:4: artifact 'a': file 'pppp")


NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
          "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="root reads any file: the test drops its override capability with setpriv",
)
def test_an_unreadable_file_inside_a_dir_source(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ok.txt").write_text("ok")
    locked = tmp_path / "d" / "locked.bin"
    locked.write_text("no")
    locked.chmod(0)
    env = {**cli_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [*NO_DAC, sys.executable, "-m", "manifest_tool", "apply"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot read '{locked}': Permission denied (check it exists and is readable)"
    ]
    assert nothing_stored(tmp_path)


def test_pull_of_a_255_byte_name(tmp_path: Path) -> None:
    name = "n" * 251 + ".bin"
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_text("long")
    assert run(tmp_path, "apply").exit_code == 0
    result = run(tmp_path, "pull", "a", "--dest", "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "d" / name).read_text() == "long"


@contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounts a tmpfs: needs root"
)


@needs_mount
def test_full_disk_under_the_file_store(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big.bin").write_bytes(os.urandom(3_000_000))
    with small_disk(tmp_path / "small") as disk:
        line = one_line(run(tmp_path, "apply", "--remote", f"file:{disk}/store"))
        assert line == (
            f"error: disk full at {disk}/store: free some space, then run the command again"
        )
        assert not store_rows(disk / "store", "SELECT 1 FROM objects")
        assert not list((disk / "store" / "blobs" / "tmp").iterdir())  # no partial blob kept


@needs_mount
def test_full_disk_on_pull(tmp_path: Path) -> None:
    (tmp_path / "artifacts.yaml").write_text(ONE_DIR)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big.bin").write_bytes(os.urandom(3_000_000))
    assert run(tmp_path, "apply").exit_code == 0
    with small_disk(tmp_path / "small") as disk:
        line = one_line(run(tmp_path, "pull", "a", "--dest", str(disk / "out")))
        assert line == (
            f"error: disk full at {disk}/out/d/big.bin: free some space, then run the command "
            "again"
        )
        assert not (disk / "out" / "d" / "big.bin").exists()
        assert list((disk / "out").rglob("*")) == []  # no partial file left anywhere
