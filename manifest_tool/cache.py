"""What we already know about local files, so a no-op costs one stat walk.

Two small files under ``.em/cache/``, both plain caches: losing or corrupting one
only costs a re-hash, never a wrong answer, because every entry is keyed by the
file's (size, mtime_ns, inode).
- ``hashes``: source path -> (size, mtime_ns, inode, md5), shared by all artifacts.
- ``staged/<artifact>``: what apply last put in the artifact's local directory:
  the alternative name, the content digest, and key -> (source, size, mtime_ns,
  inode, md5) sorted by key. When a fresh walk yields the same tuple list, the
  artifact is unchanged and nothing is hashed or even looked up.
"""

from __future__ import annotations

import gc
import marshal
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .localdir import write_atomic

Stat = tuple[int, int, int]  # size, mtime_ns, inode
FORMAT = 1


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building 100,000 tuples sets off the cyclic collector again and again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _load(path: Path) -> tuple[Any, int]:
    """The cache's data and its file's mtime_ns (None, 0 when absent or unusable).

    The mtime guards against "racily clean" entries, as git's index does: a file
    whose mtime is not older than the cache may have changed again within the same
    clock tick without changing its stat, so such entries are not trusted.
    """
    try:
        with open(path, "rb") as fh, gc_paused():
            written = os.fstat(fh.fileno()).st_mtime_ns
            data = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return None, 0
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None, 0
    return data, written


class HashCache:
    """Loaded on first use: a no-op plan never needs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, tuple[int, int, int, str]] | None = None
        self._written_ns = 0
        self.dirty = False

    @property
    def entries(self) -> dict[str, tuple[int, int, int, str]]:
        if self._entries is None:
            data, self._written_ns = _load(self.path)
            self._entries = data["entries"] if data else {}
        return self._entries

    def get(self, source: str, stat: Stat) -> str | None:
        entry = self.entries.get(source)
        if entry is not None and entry[:3] == stat and stat[1] < self._written_ns:
            return entry[3]
        return None

    def put(self, source: str, stat: Stat, md5: str) -> None:
        self.entries[str(source)] = (*stat, md5)
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            write_atomic(self.path, marshal.dumps({"format": FORMAT, "entries": self.entries}))
            self.dirty = False


StatRow = tuple[str, str, int, int, int]  # key, source, size, mtime_ns, inode


@dataclass(frozen=True)
class Staged:
    """An artifact's local directory as apply last left it.

    ``stats`` is sorted by key; ``md5s`` runs parallel to it. Two lists rather than
    one because the no-op check compares ``stats`` with a fresh walk as a whole.
    """

    alternative_name: str
    digest: str
    stats: tuple[StatRow, ...]
    md5s: tuple[str, ...]
    references: tuple[tuple[str, str], ...]
    written_ns: int = 0  # the index file's mtime; rows as new or newer are not trusted

    def trusted(self, row: StatRow) -> bool:
        return row[3] < self.written_ns


def staged_path(cache_dir: Path, name: str) -> Path:
    return cache_dir / "staged" / name


def load_staged(cache_dir: Path, name: str) -> Staged | None:
    data, written = _load(staged_path(cache_dir, name))
    if data is None:
        return None
    try:
        return Staged(
            data["alt"],
            data["digest"],
            tuple(data["stats"]),
            tuple(data["md5s"]),
            tuple(data["references"]),
            written,
        )
    except (KeyError, TypeError):
        return None


def save_staged(cache_dir: Path, name: str, staged: Staged) -> None:
    data = {
        "format": FORMAT,
        "alt": staged.alternative_name,
        "digest": staged.digest,
        # marshal takes plain tuples only (a LocalFile is a NamedTuple)
        "stats": [tuple(row) for row in staged.stats],
        "md5s": list(staged.md5s),
        "references": list(staged.references),
    }
    write_atomic(staged_path(cache_dir, name), marshal.dumps(data))


def drop_staged(cache_dir: Path, name: str) -> None:
    staged_path(cache_dir, name).unlink(missing_ok=True)
