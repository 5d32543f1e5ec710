"""What we already know about local files, so a no-op costs one stat walk.

Small files under ``.em/cache/``, all plain caches: losing or corrupting one only
costs a re-hash or a re-parse, never a wrong answer, because every entry is keyed by
the file's (size, ctime_ns, inode), or by a text's SHA-256.
- ``hashes``: source path -> (size, ctime_ns, inode, md5), shared by all artifacts.
- ``indexes/<manifest file name>``: the manifest's hash index, every artifact's
  files as the last plan saw them: the content digest, and key -> (source, size,
  ctime_ns, inode, md5) sorted by key. When a fresh walk yields the same rows, the
  artifact is unchanged and nothing is hashed or even looked up. One file per
  manifest (two manifests in one directory may both have an artifact of one name),
  read once per plan and written once, only when an artifact's entry changed.
- ``clock``: touched to read the file system's time before files are hashed.
- ``parsed/<file name>``: a manifest's or a lock's parse, under its text's SHA-256.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import stat
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from operator import eq
from pathlib import Path
from typing import Any, BinaryIO, overload

from .files import FileList, as_file_list
from .localdir import write_atomic

Stat = tuple[int, int, int]  # size, ctime_ns, inode
FORMAT = 4  # 4: one index per manifest, sources by directory


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


_WHOLE_READ = 4 * 1024 * 1024
MAX_CACHE_FILE = 1 << 30  # bytes: an index of 300,000 files takes tens of MB


@contextmanager
def open_cache_file(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """A file under ``.em/cache`` opened for reading, with its stat, if it is a regular
    file of sane size. Anything else put there (a FIFO, a link to a device) must not
    hang or flood a plan: OSError, which every reader takes as a miss."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CACHE_FILE:
            raise OSError(f"{path} is not a cache file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        yield fh, st


def read_cache_text(path: Path) -> str:
    """A small cache file's text (``open_cache_file``'s checks; OSError or
    UnicodeDecodeError, a ValueError, when it is not one)."""
    with open_cache_file(path) as (fh, _):
        return fh.read().decode()


def _load(path: Path) -> tuple[Any, int]:
    """The cache's data and its file's mtime_ns (None, 0 when absent or unusable).

    The cache file's mtime guards against "racily clean" entries, as git's index
    does: a file whose ctime is not older than the cache may have changed again within
    the same clock tick without changing its stat, so such entries are not trusted.
    """
    try:
        with open_cache_file(path) as (fh, st), gc_paused():
            written = st.st_mtime_ns
            # marshal.load reads a file object by object: slow for many small ones (a
            # parsed manifest), while the long columns of a big index go straight into
            # place without a second copy of the file in memory
            small = st.st_size < _WHOLE_READ
            data = marshal.loads(fh.read()) if small else marshal.load(fh)
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
        self._since_ns: int | None = None
        self.dirty = False

    def since_ns(self) -> int:
        """The file system's time before this plan first read a file to hash it
        (taken on the first call, which comes before any file is read): an index
        entry made from what was read does not trust rows changed since."""
        if self._since_ns is None:
            self._since_ns = fs_now_ns(self.path.parent)
        return self._since_ns

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
        if not entries:
            return
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
Prefix = tuple[str, int]  # a file list's source prefix, and where the key's tail starts


@dataclass(frozen=True)
class Columns:
    """Stat rows as a few flat values: a 100,000-row index loads and compares in
    milliseconds as a handful of objects, where 100,000 tuples cost most of a second.
    Sources are kept as the file list keeps them: a directory's path per file."""

    keys: str  # SEP-joined
    dirs: tuple[Prefix, ...]
    dir_of: bytes
    sizes: bytes
    ctimes: bytes
    inodes: bytes

    @classmethod
    def of(cls, rows: Sequence[StatRow]) -> Columns:
        files = as_file_list(rows)  # type: ignore[arg-type]  # a LocalFile is a StatRow
        return cls(
            SEP.join(files.keys),
            tuple(files.dirs),
            files.dir_of.tobytes(),
            files.sizes.tobytes(),
            files.ctimes.tobytes(),
            files.inodes.tobytes(),
        )

    def holds(self, files: FileList) -> bool:
        """Whether ``files`` are exactly these rows, compared column by column without
        building a row per file (sources too, when both name their directories alike)."""
        return (
            files.sizes.tobytes() == self.sizes
            and files.ctimes.tobytes() == self.ctimes
            and files.inodes.tobytes() == self.inodes
            and SEP.join(files.keys) == self.keys
            and self._same_sources(files)
        )

    def _same_sources(self, files: FileList) -> bool:
        if files.dir_of.tobytes() == self.dir_of and tuple(files.dirs) == self.dirs:
            return True  # (so this index's directory ids are sound, too)
        sources = self._sources()
        return sources is not None and all(map(eq, files.sources(), sources))

    def _sources(self) -> Iterator[str] | None:
        """Each row's source, rebuilt; None when a directory id is out of range (a
        damaged index: checked here, on the slow path, not on every load)."""
        dir_of = array("I", self.dir_of)
        dirs = self.dirs
        if max(dir_of, default=0) >= len(dirs):
            return None
        return (
            dirs[d][0] + key[dirs[d][1] :] for key, d in zip(_split(self.keys), dir_of, strict=True)
        )

    def iter_rows(self) -> Iterator[StatRow]:
        """The rows one at a time, each built only when reached (none when damaged)."""
        sources = self._sources()
        if sources is None or (not self.keys and not self.sizes):
            return iter(())
        sizes, ctimes = array("q", self.sizes), array("q", self.ctimes)
        inodes = array("Q", self.inodes)
        return zip(_split(self.keys), sources, sizes, ctimes, inodes, strict=True)

    def rows(self) -> tuple[StatRow, ...]:
        return tuple(self.iter_rows())

    def to_data(self) -> tuple[Any, ...]:
        return (self.keys, self.dirs, self.dir_of, self.sizes, self.ctimes, self.inodes)

    @classmethod
    def from_data(cls, data: Any) -> Columns:
        """The columns ``to_data`` made, checked enough that a damaged entry is refused
        here rather than misread later."""
        keys, dirs, dir_of, sizes, ctimes, inodes = data
        dirs = tuple((str(prefix), int(cut)) for prefix, cut in dirs)
        n = len(sizes) // 8
        if not (
            isinstance(keys, str)
            and all(isinstance(b, bytes) for b in (dir_of, sizes, ctimes, inodes))
            and len(dir_of) == 4 * n
            and len(sizes) == len(ctimes) == len(inodes) == 8 * n
            and (keys.count(SEP) + 1 if keys or n else 0) == n
        ):
            raise ValueError("damaged index columns")
        return cls(keys, dirs, dir_of, sizes, ctimes, inodes)


def _same_source(files: FileList, i: int, indexed: Prefix) -> bool:
    """Whether file ``i``'s source is the one an index row of the same key names
    through ``indexed`` (two file lists may split one path differently)."""
    prefix, cut = indexed
    return files.source(i) == prefix + files.keys[i][cut:]


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
    """An artifact's local files as a plan last hashed them: their stat rows (sorted
    by key), their MD5s, its references and digest."""

    alternative_name: str
    digest: str
    columns: Columns
    md5_bytes: bytes  # 16 raw bytes per row
    references: tuple[tuple[str, str], ...]
    # the file system's time before those files were read: a row changed at or after
    # it may have changed again after it was read, within one tick of the clock
    # ("racily clean", as git's index calls it), so it is not trusted
    since_ns: int = 0

    @classmethod
    def build(
        cls,
        alt: str,
        digest: str,
        rows: Sequence[StatRow],
        md5s: Sequence[str],
        references: tuple[tuple[str, str], ...],
        since_ns: int = 0,
    ) -> Staged:
        raw = md5s.raw if isinstance(md5s, Md5s) else bytes.fromhex("".join(md5s))
        return cls(alt, digest, Columns.of(rows), raw, references, since_ns)

    @cached_property
    def stats(self) -> tuple[StatRow, ...]:
        return self.columns.rows()

    @property
    def md5s(self) -> Md5s:
        return Md5s(self.md5_bytes)

    def matches(self, rows: Sequence[StatRow]) -> bool:
        """Whether ``rows`` are exactly the rows indexed, compared column by column."""
        return self.columns.holds(as_file_list(rows))  # type: ignore[arg-type]

    def vouched(self, files: FileList) -> tuple[bytearray, list[int]]:
        """The MD5s this entry holds for ``files`` (16 raw bytes each), and the indices
        of the files it cannot vouch for: new, changed or moved since, racily clean,
        or anything at all when the entry is damaged. Their 16 bytes are to be filled.

        Column by column, without a row object per file: one changed file in 100,000
        must not cost what hashing them all would."""
        c, n = self.columns, len(files)
        dir_of = array("I", c.dir_of)
        if max(dir_of, default=0) >= len(c.dirs):
            return bytearray(16 * n), list(range(n))
        aligned = SEP.join(files.keys) == c.keys  # the same files, in the same order
        if aligned:
            rows: Sequence[int] = range(n)
            raw = bytearray(self.md5_bytes)
        else:
            at = {key: j for j, key in enumerate(_split(c.keys))} if c.sizes else {}
            rows = [at.get(key, -1) for key in files.keys]
            raw = bytearray(16 * n)
        sizes, ctimes, inodes = array("q", c.sizes), array("q", c.ctimes), array("Q", c.inodes)
        since, md5s, dirs, mine = self.since_ns, self.md5_bytes, c.dirs, files.dirs
        unknown: list[int] = []
        for i, j, size, ctime, inode, d in zip(
            count(), rows, files.sizes, files.ctimes, files.inodes, files.dir_of
        ):
            if (
                j < 0 or ctime >= since or size != sizes[j] or ctime != ctimes[j]
                or inode != inodes[j]
                or (mine[d] != dirs[dir_of[j]] and not _same_source(files, i, dirs[dir_of[j]]))
            ):  # fmt: skip
                unknown.append(i)
                raw[16 * i : 16 * i + 16] = bytes(16)
            elif not aligned:
                raw[16 * i : 16 * i + 16] = md5s[16 * j : 16 * j + 16]
        return raw, unknown

    def to_data(self) -> tuple[Any, ...]:
        refs = tuple(tuple(r) for r in self.references)
        data = (self.alternative_name, self.digest, self.since_ns, self.md5_bytes, refs)
        return (*data, self.columns.to_data())

    @classmethod
    def from_data(cls, data: Any) -> Staged:
        alt, digest, since_ns, md5_bytes, refs, columns = data
        staged = cls(
            str(alt),
            str(digest),
            Columns.from_data(columns),
            md5_bytes,
            tuple((str(k), str(u)) for k, u in refs),
            int(since_ns),
        )
        if not isinstance(md5_bytes, bytes) or len(md5_bytes) * 8 != 16 * len(columns[3]):
            raise ValueError("damaged index MD5s")
        return staged


class StagedIndex:
    """One manifest's hash index: its artifacts' Staged entries, read once per plan
    (each entry parsed when first asked for) and written once, when one changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data, _ = _load(path)
        entries = data.get("artifacts") if data else None
        self._data: dict[str, Any] = entries if isinstance(entries, dict) else {}
        self._staged: dict[str, Staged | None] = {}
        self.dirty = False

    def get(self, name: str) -> Staged | None:
        """The artifact's entry; None when there is none, or it is damaged."""
        if name not in self._staged:
            try:
                self._staged[name] = Staged.from_data(self._data[name])
            except (KeyError, TypeError, ValueError, OverflowError):
                self._staged[name] = None
        return self._staged[name]

    def put(self, name: str, staged: Staged) -> None:
        self._staged[name] = staged
        self._data[name] = staged.to_data()
        self.dirty = True

    def save(self, declared: Collection[str]) -> None:
        """Write the index if an entry changed, keeping only artifacts still declared."""
        kept = {name: data for name, data in self._data.items() if name in declared}
        if not self.dirty and len(kept) == len(self._data):
            return
        with suppress(OSError, ValueError):  # only a cache: the next plan hashes again
            write_atomic(self.path, marshal.dumps({"format": FORMAT, "artifacts": kept}))
        self.dirty = False


def index_path(cache_dir: Path, manifest: Path) -> Path:
    return cache_dir / "indexes" / manifest.name


def fs_now_ns(cache_dir: Path) -> int:
    """The file system's own clock, as it stamps a file's ctime (touching a marker
    file): 0, which trusts nothing, when the cache cannot be written."""
    marker = cache_dir / "clock"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        # not blocking, not through a link: a FIFO put there fails (ENXIO), not waits
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_NOFOLLOW
        fd = os.open(marker, flags, 0o644)
        try:
            os.utime(fd)
            return os.fstat(fd).st_mtime_ns
        finally:
            os.close(fd)
    except OSError:
        return 0


def parsed(source: Path, kind: str, text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, the text of the file ``source`` (a manifest or a lock),
    remembered in ``.em/cache/parsed/`` beside it under the text's SHA-256: a
    1,000-artifact manifest or lock takes a tenth of a second to parse, and a
    millisecond to load. Kept only when ``parse`` returns plain values (marshal's),
    and only where ``.em/cache`` exists already (validating makes no ``.em``)."""
    cache_dir = source.absolute().parent / ".em" / "cache"
    path = cache_dir / "parsed" / source.name
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    data, _ = _load(path)
    if data is not None and data.get("key") == (kind, digest) and "value" in data:
        return data["value"]
    value = parse(text)
    if cache_dir.is_dir():
        with suppress(OSError, ValueError):  # a value marshal cannot write: not kept
            keep = {"format": FORMAT, "key": (kind, digest), "value": value}
            write_atomic(path, marshal.dumps(keep))
    return value
