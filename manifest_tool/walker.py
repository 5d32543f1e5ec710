"""The directory walk behind dir and glob objects: one os.scandir recursion.

Symlinks and hidden names are handled per the object's policy; a followed link that
leads back into the walk's own ancestry is reported, not followed forever, and links
that reach one directory over and over (a fan-out: two links per level make 2**24
paths in 24 levels) are reported once the walk has entered it ``MAX_VISITS`` times.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .files import FileList
from .model import LocalFile

_NOTHING: frozenset[str] = frozenset()
MAX_VISITS = 16  # times one real directory may be walked through different links
_Dir = tuple[str, str, str, tuple[str, ...]]  # path, key prefix, realpath, link parents


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

    def walk(self, top: str) -> FileList:
        """Every file below ``top``, keyed ``key_top`` + its path below top."""
        found = FileList()
        stack: list[_Dir] = [(top, self.key_top, os.path.realpath(top), ())]
        while stack:
            directory = stack.pop()
            try:
                self._scan(directory, found, stack)
            except OSError as err:
                self.problems.append(
                    f"cannot read directory '{self._shown(directory[1]) or '.'}': "
                    f"{err.strerror} (check its permissions)"
                )
        return found

    def _scan(self, directory: _Dir, found: FileList, stack: list[_Dir]) -> None:
        """One directory's files into ``found``, its subdirectories onto ``stack``.

        The hot loop: each entry is seen once, with one lstat per file and nothing but
        string concatenation for its key; its source path is the directory's prefix +
        its name, which the file list rebuilds on demand instead of keeping.
        """
        path, rel, real, link_parents = directory
        skip = self.skip_at_root if real == self.root_real else _NOTHING
        hide = self.hide
        here = found.directory(path if path.endswith("/") else path + "/", len(rel))
        # the file list's columns, appended to here: a method call per file costs a
        # fifth of the walk
        keys, dirs = found.keys.append, found.dir_of.append
        sizes, ctimes, inodes = found.sizes.append, found.ctimes.append, found.inodes.append
        with os.scandir(path) as entries:
            for entry in entries:
                name = entry.name
                if name in skip or (hide and name[0] == "."):
                    continue
                if entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted since the directory was read: not declared
                    keys(rel + name)
                    dirs(here)
                    sizes(st.st_size)
                    ctimes(st.st_ctime_ns)
                    inodes(st.st_ino)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, f"{rel}{name}/", f"{real}/{name}", link_parents))
                elif entry.is_symlink():
                    self._link(entry, rel, (*link_parents, real), found, stack)
                else:
                    self.warnings.append(f"skipped '{self._shown(rel + name)}': not a file")

    def _shown(self, key: str) -> str:
        return self.shown_top + key[len(self.key_top) :]

    def _link(
        self,
        entry: os.DirEntry[str],
        parent_rel: str,
        parents: tuple[str, ...],
        found: FileList,
        stack: list[_Dir],
    ) -> None:
        rel = parent_rel + entry.name
        shown = self._shown(rel)
        if self.symlinks == "skip":
            return
        if self.symlinks == "error":
            self.problems.append(f"'{shown}' is a symlink (remove it, or set symlinks: skip)")
            return
        target = os.path.realpath(entry.path)
        try:
            st = os.stat(entry.path)
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
                stack.append((entry.path, rel + "/", target, parents))
        elif stat.S_ISREG(st.st_mode):
            found.append(LocalFile(rel, entry.path, st.st_size, st.st_ctime_ns, st.st_ino))
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
