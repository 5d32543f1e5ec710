"""Many declared files held as columns, read as LocalFiles.

A tree of 300,000 files as LocalFile tuples costs ~310 bytes a file (the tuple, its
key, its source path and two large ints); as columns it costs ~110: one key string,
three machine-word arrays, and a directory index from which the source path is
rebuilt on demand (a walked file's source is its directory's path + its name, and
its name is the tail of its key). Every reader sees a sequence of LocalFiles.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, islice
from operator import lt
from typing import overload

from .model import LocalFile

Prefix = tuple[str, int]  # source prefix, and where the key's tail starts


class FileList(Sequence[LocalFile]):
    """LocalFiles as columns; each file's source is ``prefix + key[cut:]``."""

    __slots__ = ("_dir_ids", "ctimes", "dir_of", "dirs", "inodes", "keys", "sizes")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.dirs: list[Prefix] = []
        self._dir_ids: dict[Prefix, int] = {}
        self.dir_of = array("I")
        self.sizes = array("q")
        self.ctimes = array("q")
        self.inodes = array("Q")

    def directory(self, prefix: str, cut: int) -> int:
        """The id of the source prefix ``prefix`` for keys whose tail starts at ``cut``."""
        at = (prefix, cut)
        found = self._dir_ids.get(at)
        if found is None:
            found = self._dir_ids[at] = len(self.dirs)
            self.dirs.append(at)
        return found

    def add(self, key: str, directory: int, size: int, ctime_ns: int, inode: int) -> None:
        self.keys.append(key)
        self.dir_of.append(directory)
        self.sizes.append(size)
        self.ctimes.append(ctime_ns)
        self.inodes.append(inode)

    def append(self, f: LocalFile) -> None:
        """Any file: its source is kept whole (its key's tail is empty)."""
        self.add(f.key, self.directory(f.source, len(f.key)), f.size, f.changed_ns, f.inode)

    def extend(self, files: Iterable[LocalFile]) -> None:
        if isinstance(files, FileList):
            base = [self.directory(*d) for d in files.dirs]
            self.keys.extend(files.keys)
            if base == list(range(len(base))):
                self.dir_of.extend(files.dir_of)
            else:
                self.dir_of.extend(array("I", map(base.__getitem__, files.dir_of)))
            self.sizes.extend(files.sizes)
            self.ctimes.extend(files.ctimes)
            self.inodes.extend(files.inodes)
        else:
            for f in files:
                self.append(f)

    @classmethod
    def of(cls, files: Iterable[LocalFile]) -> FileList:
        out = cls()
        out.extend(files)
        return out

    def source(self, index: int) -> str:
        prefix, cut = self.dirs[self.dir_of[index]]
        return prefix + self.keys[index][cut:]

    def sources(self) -> Iterator[str]:
        dirs = self.dirs
        for key, d in zip(self.keys, self.dir_of, strict=True):
            prefix, cut = dirs[d]
            yield prefix + key[cut:]

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> LocalFile: ...
    @overload
    def __getitem__(self, index: slice) -> FileList: ...
    def __getitem__(self, index: int | slice) -> LocalFile | FileList:
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        return LocalFile(
            self.keys[index], self.source(index), self.sizes[index],
            self.ctimes[index], self.inodes[index],
        )  # fmt: skip

    def __iter__(self) -> Iterator[LocalFile]:
        return map(LocalFile, self.keys, self.sources(), self.sizes, self.ctimes, self.inodes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileList):
            return list(self) == list(other)
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FileList({len(self)} files)"

    def take(self, indices: Iterable[int]) -> FileList:
        """The files at ``indices``, in that order."""
        order = indices if isinstance(indices, list) else list(indices)
        out = FileList()
        out.dirs, out._dir_ids = list(self.dirs), dict(self._dir_ids)
        keys, dir_of, sizes, ctimes, inodes = (
            self.keys, self.dir_of, self.sizes, self.ctimes, self.inodes,
        )  # fmt: skip
        out.keys = [keys[i] for i in order]
        out.dir_of = array("I", [dir_of[i] for i in order])
        out.sizes = array("q", [sizes[i] for i in order])
        out.ctimes = array("q", [ctimes[i] for i in order])
        out.inodes = array("Q", [inodes[i] for i in order])
        return out

    def where(self, keep: Callable[[str], object]) -> FileList:
        """The files whose key passes ``keep``."""
        flags = list(map(keep, self.keys))
        if all(flags):
            return self
        return self.take(compress(range(len(self)), flags))

    def rekeyed(self, cut: int, prefix: str) -> FileList:
        """Every key as ``prefix + key[cut:]``; sources unchanged (each key's tail stays
        inside the part that was cut off only when ``cut`` reaches into no file's name)."""
        out = FileList()
        shift = len(prefix) - cut
        for d in self.dirs:
            out.directory(d[0], d[1] + shift)
        out.keys = [prefix + k[cut:] for k in self.keys]
        out.dir_of, out.sizes = array("I", self.dir_of), array("q", self.sizes)
        out.ctimes, out.inodes = array("q", self.ctimes), array("Q", self.inodes)
        return out

    def sorted(self) -> FileList:
        """Sorted by key (a walk's files already are: then this is one pass)."""
        keys = self.keys
        if all(map(lt, keys, islice(keys, 1, None))):
            return self
        return self.take(sorted(range(len(keys)), key=keys.__getitem__))


def as_file_list(files: Sequence[LocalFile]) -> FileList:
    return files if isinstance(files, FileList) else FileList.of(files)
