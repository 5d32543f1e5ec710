"""The directory walk behind dir and glob objects: one os.scandir recursion.

Files come out sorted by key, so the caller's sort finds them in order: each
directory's entries are sorted by name (a subdirectory as its name + "/", which is how
its files' keys compare), and its files are added in runs between subdirectories.
Each directory is read through its own descriptor, and its files stat'ed relative to
it: the kernel then resolves one name per file, not the whole path.
Symlinks and hidden names are handled per the object's policy; a followed link that
leads back into the walk's own ancestry is reported, not followed forever, and links
that reach one directory over and over (a fan-out: two links per level make 2**24
paths in 24 levels) are reported once the walk has entered it ``MAX_VISITS`` times.
"""

from __future__ import annotations

import os
import stat
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple, Protocol

from .files import FileList

_NOTHING: frozenset[str] = frozenset()
_NAME = attrgetter("name")
# read a directory through a descriptor, where the platform can
_BY_FD = os.scandir in os.supports_fd
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
MAX_VISITS = 16  # times one real directory may be walked through different links


class _Entry(Protocol):
    """A file to stat: an os.DirEntry, or a link already followed."""

    @property
    def name(self) -> str: ...
    def stat(self, *, follow_symlinks: bool = ...) -> os.stat_result: ...


class _Linked(NamedTuple):
    """A symlink to a file, followed: its name, and its target's stat."""

    name: str
    target: os.stat_result

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self.target


class _Dir(NamedTuple):
    path: str
    rel: str  # the key prefix of its files
    real: str  # its realpath
    link_parents: tuple[str, ...]  # realpaths of the links' directories on the way here


class _Run(NamedTuple):
    """Files of one directory, sorted by name, with no subdirectory between them."""

    path: str
    rel: str
    names: list[str]
    stats: list[os.stat_result]


@dataclass
class Walker:
    """One directory walk's policies, and the problems and warnings it found."""

    root_real: str  # realpath of the manifest's directory
    skip_at_root: frozenset[str]  # .em, the lock file, the manifest
    symlinks: str
    hide: bool
    key_top: str  # the key prefix of the files below the walk's top
    shown_top: str  # the walk's top as messages name it: relative to the manifest
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    visits: dict[str, int] = field(default_factory=dict)  # real directory -> times entered
    fanned_out: bool = False  # one report per walk, then no more links to directories

    def walk(self, top: str, real_top: str | None = None) -> FileList:
        """Every file below ``top`` (whose realpath is ``real_top``), keyed ``key_top`` +
        its path below top, by key."""
        found = FileList()
        real = real_top or os.path.realpath(top)
        stack: list[_Dir | _Run] = [_Dir(top, self.key_top, real, ())]
        while stack:
            item = stack.pop()
            try:
                if isinstance(item, _Run):
                    _add_run(item, found)
                else:
                    stack += reversed(self._scan(item))
            except OSError as err:
                self.problems.append(
                    f"cannot read directory '{self._shown(item.rel) or '.'}': "
                    f"{err.strerror} (check its permissions)"
                )
        return found

    def _scan(self, directory: _Dir) -> list[_Dir | _Run]:
        """One directory's runs of files and its subdirectories, in key order.

        The hot path: the files are picked out by the type the directory itself
        records, then stat'ed together while the directory is open.
        """
        path, rel, real, _ = directory
        subdirs: list[tuple[str, _Dir]] = []
        fd = os.open(path, _DIRECTORY) if _BY_FD else None
        try:
            with os.scandir(path if fd is None else fd) as listing:
                entries = list(listing)
            skip = self.skip_at_root if real == self.root_real else _NOTHING
            if skip or self.hide:
                entries = [e for e in entries if not self._skipped(e.name, skip)]
            files: list[_Entry] = [e for e in entries if e.is_file(follow_symlinks=False)]
            if len(files) < len(entries):
                self._not_files(directory, entries, files, subdirs)
            files.sort(key=_NAME)
            names, stats = _stat_all(files)
        finally:
            if fd is not None:
                os.close(fd)
        if not subdirs:
            return [_Run(path, rel, names, stats)] if names else []
        return _interleaved(path, rel, names, stats, sorted(subdirs))

    def _skipped(self, name: str, skip: frozenset[str]) -> bool:
        return name in skip or (self.hide and name[0] == ".")

    def _not_files(
        self,
        directory: _Dir,
        entries: list[os.DirEntry[str]],
        files: list[_Entry],
        subdirs: list[tuple[str, _Dir]],
    ) -> None:
        """The directory's entries that are not plain files: subdirectories onto
        ``subdirs``, links per the policy, anything else a warning."""
        path, rel, real, link_parents = directory
        at = path if path.endswith("/") else path + "/"
        for entry in entries:
            name = entry.name
            if entry.is_file(follow_symlinks=False):
                continue
            if entry.is_dir(follow_symlinks=False):
                sub = _Dir(at + name, f"{rel}{name}/", f"{real}/{name}", link_parents)
                subdirs.append((name + "/", sub))
            elif entry.is_symlink():
                self._link(at + name, rel, (*link_parents, real), files, subdirs)
            else:
                self.warnings.append(f"skipped '{self._shown(rel + name)}': not a file")

    def _shown(self, key: str) -> str:
        return self.shown_top + key[len(self.key_top) :]

    def _link(
        self,
        link: str,
        parent_rel: str,
        parents: tuple[str, ...],
        files: list[_Entry],
        subdirs: list[tuple[str, _Dir]],
    ) -> None:
        name = os.path.basename(link)
        rel = parent_rel + name
        shown = self._shown(rel)
        if self.symlinks == "skip":
            return
        if self.symlinks == "error":
            self.problems.append(f"'{shown}' is a symlink (remove it, or set symlinks: skip)")
            return
        target = os.path.realpath(link)
        try:
            st = os.stat(link)
        except OSError:
            self.problems.append(f"symlink '{shown}' is broken (fix or remove it)")
            return
        if self.symlinks == "follow" and not inside(target, self.root_real):
            self.problems.append(
                f"symlink '{shown}' points to '{target}', outside the manifest's directory "
                "(set symlinks: follow-external to allow it, or symlinks: skip)"
            )
        elif stat.S_ISDIR(st.st_mode):
            if any(inside(p, target) for p in parents):
                self.problems.append(f"symlink '{shown}' loops back to '{target}' (remove it)")
            elif self._revisit(target, shown):
                subdirs.append((name + "/", _Dir(link, rel + "/", target, parents)))
        elif stat.S_ISREG(st.st_mode):
            files.append(_Linked(name, st))
        else:
            self.warnings.append(f"skipped '{shown}': not a file")

    def _revisit(self, target: str, shown: str) -> bool:
        """Whether to walk ``target`` once more through a link; reported once when not."""
        count = self.visits.get(target, 0) + 1
        self.visits[target] = count
        if count > MAX_VISITS and not self.fanned_out:
            self.fanned_out = True
            self.problems.append(
                f"symlinks reach '{target}' more than {MAX_VISITS} times (last via '{shown}'): "
                "a symlink fan-out? remove the links, or set symlinks: skip"
            )
        return not self.fanned_out


def inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _interleaved(
    path: str,
    rel: str,
    names: list[str],
    stats: list[os.stat_result],
    subdirs: list[tuple[str, _Dir]],
) -> list[_Dir | _Run]:
    """Runs of files (sorted by name) and ``subdirs`` (sorted by name + "/"), merged
    into the order of their keys."""
    out: list[_Dir | _Run] = []
    at = 0
    for key, sub in subdirs:
        cut = bisect_left(names, key, at)
        if cut > at:
            out.append(_Run(path, rel, names[at:cut], stats[at:cut]))
        out.append(sub)
        at = cut
    if at < len(names):
        out.append(_Run(path, rel, names[at:], stats[at:]))
    return out


def _stat_all(files: list[_Entry]) -> tuple[list[str], list[os.stat_result]]:
    """Names and stats of ``files``; a file deleted since its directory was read is
    left out: it is not declared any more."""
    try:
        return [f.name for f in files], [f.stat(follow_symlinks=False) for f in files]
    except FileNotFoundError:
        names, stats = [], []
        for f in files:
            try:
                stats.append(f.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            names.append(f.name)
        return names, stats


def _add_run(run: _Run, found: FileList) -> None:
    """A run's files into ``found``'s columns, a column at a time (a method call per
    file and column cost a fifth of the walk)."""
    path, rel, names, stats = run
    here = found.directory(path if path.endswith("/") else path + "/", len(rel))
    found.keys += [rel + name for name in names]
    found.dir_of += array("I", [here]) * len(names)
    found.sizes += array("q", [st.st_size for st in stats])
    found.ctimes += array("q", [st.st_ctime_ns for st in stats])
    found.inodes += array("Q", [st.st_ino for st in stats])


def plain_files(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Every file below ``root`` as (path, posix path relative to root), sorted: the
    walk of the Python API's ``add_dir`` and of loading a local artifact directory.
    Nothing is skipped: every name may be an object (downloads stage outside)."""
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found.append((os.path.join(dirpath, name), rel))
    return found
