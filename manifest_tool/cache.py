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
from itertools import islice
from pathlib import Path
from typing import Any, overload

from .files import FileList, as_file_list
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
        files = as_file_list(rows)  # type: ignore[arg-type]  # a LocalFile is a StatRow
        return cls(
            SEP.join(files.keys),
            _joined(files.sources()),
            files.sizes.tobytes(),
            files.ctimes.tobytes(),
            files.inodes.tobytes(),
        )

    def holds(self, files: FileList) -> bool:
        """Whether ``files`` are exactly these rows, compared column by column without
        building a second copy of the index (sources are rebuilt a chunk at a time)."""
        return (
            files.sizes.tobytes() == self.sizes
            and files.ctimes.tobytes() == self.mtimes
            and files.inodes.tobytes() == self.inodes
            and SEP.join(files.keys) == self.keys
            and _same_joined(self.sources, files.sources())
        )

    def iter_rows(self) -> Iterator[StatRow]:
        """The rows one at a time, each built only when reached."""
        if not self.keys and not self.sizes:
            return iter(())
        sizes, mtimes, inodes = array("q"), array("q"), array("Q")
        sizes.frombytes(self.sizes)
        mtimes.frombytes(self.mtimes)
        inodes.frombytes(self.inodes)
        keys, sources = _split(self.keys), _split(self.sources)
        return zip(keys, sources, sizes, mtimes, inodes, strict=True)

    def rows(self) -> tuple[StatRow, ...]:
        if not self.keys and not self.sizes:
            return ()
        sizes, mtimes, inodes = array("q"), array("q"), array("Q")
        sizes.frombytes(self.sizes)
        mtimes.frombytes(self.mtimes)
        inodes.frombytes(self.inodes)
        keys, sources = self.keys.split(SEP), self.sources.split(SEP)
        return tuple(zip(keys, sources, sizes, mtimes, inodes, strict=True))


_CHUNK = 4096  # strings joined at a time: a few hundred KiB, not the whole column


def _joined(parts: Iterable[str]) -> str:
    """``SEP.join(parts)`` without holding every part at once."""
    it = iter(parts)
    chunks = []
    while chunk := list(islice(it, _CHUNK)):
        chunks.append(SEP.join(chunk))
    return SEP.join(chunks)


def _same_joined(joined: str, parts: Iterable[str]) -> bool:
    """Whether ``joined == SEP.join(parts)``, a chunk of parts at a time."""
    it, at, first = iter(parts), 0, True
    while chunk := list(islice(it, _CHUNK)):
        piece = SEP.join(chunk) if first else SEP + SEP.join(chunk)
        if not joined.startswith(piece, at):
            return False
        at, first = at + len(piece), False
    return at == len(joined)


def _split(joined: str) -> Iterator[str]:
    """``joined.split(SEP)`` one part at a time."""
    at = 0
    while True:
        end = joined.find(SEP, at)
        if end < 0:
            yield joined[at:]
            return
        yield joined[at:end]
        at = end + 1


class Md5s(Sequence[str]):
    """Hex MD5s over 16 raw bytes each: 16 bytes a file where a str costs 81."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __len__(self) -> int:
        return len(self.raw) // 16

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.raw[index * 16 : index * 16 + 16].hex()

    def __iter__(self) -> Iterator[str]:
        raw = self.raw
        return (raw[i : i + 16].hex() for i in range(0, len(raw), 16))


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
        raw = md5s.raw if isinstance(md5s, Md5s) else bytes.fromhex("".join(md5s))
        return cls(alt, digest, Columns.of(rows), raw, references)

    @cached_property
    def stats(self) -> tuple[StatRow, ...]:
        return self.columns.rows()

    @property
    def md5s(self) -> Md5s:
        return Md5s(self.md5_bytes)

    def matches(self, rows: Sequence[StatRow]) -> bool:
        """Whether ``rows`` are exactly the rows indexed, compared column by column."""
        return self.columns.holds(as_file_list(rows))  # type: ignore[arg-type]

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
