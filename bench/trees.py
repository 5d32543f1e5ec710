"""The benchmarks' source trees: built once under the work directory and kept.

Each tree lives in a directory named by its shape and is built only when its marker
is missing; runs change files in place and put them back rather than rebuild (creating
many files right after deleting many is 8-10x slower for minutes on these machines).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
MARKER = ".bench-built"
# what the benchmarks write beside a tree; git status leaves it out like any ignored file
GIT_EXCLUDE = f"/{MARKER}\n/.em/\n/*.yaml\n/*.lock\n/.dvc/\n/.dvcignore\n/*.dvc\n"


def small_file(d: int, f: int, noise: bytes) -> bytes:
    """1 KiB, distinct per (directory, file), so no two objects share a blob."""
    return noise[:1000] + d.to_bytes(4) + f.to_bytes(4) + noise[1008:KiB]


def files_tree(root: Path, files: int, dirs: int) -> Path:
    """``files`` files of 1 KiB in ``dirs`` directories under root/data, committed to git."""
    if (root / MARKER).exists():
        (root / ".git" / "info" / "exclude").write_text(GIT_EXCLUDE)
        return root
    noise = os.urandom(KiB)
    per_dir = files // dirs
    for d in range(dirs):
        sub = root / "data" / f"d{d:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (sub / f"f{f:04d}.bin").write_bytes(small_file(d, f, noise))
    git = ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    (root / ".git" / "info" / "exclude").write_text(GIT_EXCLUDE)
    subprocess.run([*git, "add", "data"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], cwd=root, check=True)
    (root / MARKER).touch()
    return root


def files_in(root: Path, dirs: int) -> list[Path]:
    """The first ``dirs`` directories of a files tree, in order."""
    return [root / "data" / f"d{d:04d}" for d in range(dirs)]


def many_tree(root: Path, artifacts: int, per: int) -> Path:
    """``artifacts`` directories of ``per`` files of 1 KiB under root/a."""
    if (root / MARKER).exists():
        return root
    noise = os.urandom(KiB)
    for d in range(artifacts):
        sub = root / "a" / f"d{d:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(per):
            (sub / f"f{f:02d}.bin").write_bytes(small_file(d, f, noise))
    (root / MARKER).touch()
    return root


def write_big(path: Path, mib: int) -> None:
    """``mib`` MiB that share no block with any other file written here."""
    block = os.urandom(MiB)
    with open(path, "wb") as fh:
        for i in range(mib):
            fh.write(i.to_bytes(8) + block[8:])


def big_tree(root: Path, count: int, mib: int) -> Path:
    """``count`` files of ``mib`` MiB each: root/data/b0.bin, b1.bin, ..."""
    if (root / MARKER).exists():
        return root
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_big(root / "data" / f"b{i}.bin", mib)
    (root / MARKER).touch()
    return root


class Edited:
    """One file changed in place for a measure, then put back byte for byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.original = path.read_bytes()

    def __enter__(self) -> Path:
        self.path.write_bytes(self.original[::-1] + os.urandom(8))
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.write_bytes(self.original)
