"""What we already know about local files, so a no-op costs one stat walk.

Two small files under ``.em/cache/``, both plain caches: losing or corrupting one
only costs a re-hash, never a wrong answer, because every entry is keyed by the
file's (size, ctime_ns, inode).
- ``hashes``: source path -> (size, ctime_ns, inode, md5), shared by all artifacts.
- ``staged/<artifact>``: the artifact's hash index as the last plan saw it: the
  content digest, and key -> (source, size, ctime_ns, inode, md5) sorted by key.
  When a fresh walk yields the same tuple list, the artifact is unchanged and
  nothing is hashed or even looked up.
"""

from __future__ import annotations

import gc
import marshal
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .localdir import write_atomic

Stat = tuple[int, int, int]  # size, ctime_ns, inode
FORMAT = 3  # 3: rows keyed by ctime, not mtime


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

    The cache file's mtime guards against "racily clean" entries, as git's index
    does: a file whose ctime is not older than the cache may have changed again within
    the same clock tick without changing its stat, so such entries are not trusted.
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
    """MD5s of files hashed but not yet in an artifact's index, keyed by path and stat.

    Loaded on first use: a no-op plan never needs it.
    """

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

    def forget(self, sources: Iterable[str]) -> None:
        """Drop entries the staged index now covers: this cache then holds only files
        hashed since the last apply, and stays small enough to load in no time."""
        entries = self.entries
        for source in sources:
            if entries.pop(source, None) is not None:
                self.dirty = True

    def save(self) -> None:
        if self.dirty:
            with suppress(OSError):  # only a cache: the next plan hashes again
                write_atomic(self.path, marshal.dumps({"format": FORMAT, "entries": self.entries}))
            self.dirty = False


StatRow = tuple[str, str, int, int, int]  # key, source, size, ctime_ns, inode
SEP = "\0"  # cannot occur in a path


@dataclass(frozen=True)
class Columns:
    """Stat rows as a few flat values: a 100,000-row index loads and compares in
    milliseconds as five objects, where 100,000 tuples cost most of a second."""

    keys: str
    sources: str
    sizes: bytes
    mtimes: bytes
    inodes: bytes

    @classmethod
    def of(cls, rows: Sequence[StatRow]) -> Columns:
        return cls(
            SEP.join([r[0] for r in rows]),
            SEP.join([r[1] for r in rows]),
            array("q", [r[2] for r in rows]).tobytes(),
            array("q", [r[3] for r in rows]).tobytes(),
            array("Q", [r[4] for r in rows]).tobytes(),
        )

    def rows(self) -> tuple[StatRow, ...]:
        if not self.keys and not self.sizes:
            return ()
        sizes, mtimes, inodes = array("q"), array("q"), array("Q")
        sizes.frombytes(self.sizes)
        mtimes.frombytes(self.mtimes)
        inodes.frombytes(self.inodes)
        keys, sources = self.keys.split(SEP), self.sources.split(SEP)
        return tuple(zip(keys, sources, sizes, mtimes, inodes, strict=True))


@dataclass(frozen=True)
class Staged:
    """An artifact's local directory as apply last left it: its stat rows (sorted by
    key), their MD5s, its references and digest."""

    alternative_name: str
    digest: str
    columns: Columns
    md5_bytes: bytes  # 16 raw bytes per row
    references: tuple[tuple[str, str], ...]
    written_ns: int = 0  # the index file's mtime; rows as new or newer are not trusted

    @classmethod
    def build(
        cls,
        alt: str,
        digest: str,
        rows: Sequence[StatRow],
        md5s: Sequence[str],
        references: tuple[tuple[str, str], ...],
    ) -> Staged:
        raw = bytes.fromhex("".join(md5s))
        return cls(alt, digest, Columns.of(rows), raw, references)

    @cached_property
    def stats(self) -> tuple[StatRow, ...]:
        return self.columns.rows()

    @cached_property
    def md5s(self) -> tuple[str, ...]:
        raw = self.md5_bytes
        return tuple(raw[i : i + 16].hex() for i in range(0, len(raw), 16))

    def matches(self, rows: Sequence[StatRow]) -> bool:
        """Whether ``rows`` are exactly the rows indexed, compared column by column."""
        return Columns.of(rows) == self.columns

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
            Columns(*data["columns"]),
            data["md5s"],
            tuple(tuple(r) for r in data["references"]),
            written,
        )
    except (KeyError, TypeError, ValueError):
        return None


def save_staged(cache_dir: Path, name: str, staged: Staged) -> None:
    c = staged.columns
    data = {
        "format": FORMAT,
        "alt": staged.alternative_name,
        "digest": staged.digest,
        "columns": (c.keys, c.sources, c.sizes, c.mtimes, c.inodes),
        "md5s": staged.md5_bytes,
        "references": [tuple(r) for r in staged.references],
    }
    with suppress(OSError):  # only a cache: the next plan hashes again
        write_atomic(staged_path(cache_dir, name), marshal.dumps(data))
