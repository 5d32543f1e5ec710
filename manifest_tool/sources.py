"""Expand an artifact's objects (file, dir, glob, reference) into files and references.

Paths are relative to the manifest's directory. Globs use the .gitignore dialect
(``pathspec``), matched against paths relative to that directory. Walks never
enter the manifest's own ``.em/`` directory and never pick up the lock file or the
manifest itself. Every problem is collected; one ManifestInvalid lists them all.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import gc_paused
from .errors import InvalidInput, ManifestInvalid
from .files import FileList
from .model import ArtifactSpec, Expansion, LocalFile, Manifest, ObjectSpec, Reference
from .paths import (
    CONTROL_CHARACTERS,
    MAX_SEGMENT_BYTES,
    RESERVED_ROOT_NAMES,
    check_key,
    join_key,
    key_clash,
    resolve_obj_path,
)
from .walker import Walker, inside

if TYPE_CHECKING:
    import pathspec

_WILDCARDS = frozenset("*?[\\")
_KEY = attrgetter("key")
_MAX_CLASHES = 10  # a whole tree declared twice would otherwise print every file


def _drop_excluded(found: FileList, patterns: tuple[str, ...], cut: int) -> FileList:
    """A dir's files but those its exclude patterns match, relative to the dir itself."""
    if not patterns or not found:
        return found
    exclude = compile_patterns(patterns).match_file
    return found.where(lambda key: not exclude(key[cut:]))


# --- glob helpers, also used by the loader to report bad patterns early ----------------


def compile_patterns(lines: Iterable[str]) -> pathspec.PathSpec[pathspec.Pattern]:
    import pathspec  # only manifests with globs need it: keep it off the no-op path

    return pathspec.PathSpec.from_lines("gitignore", lines)


def check_glob(pattern: str) -> None:
    """Raise InvalidInput unless ``pattern`` is a usable include pattern."""
    check_exclude(pattern)
    if compile_patterns([pattern]).patterns[0].include is False:
        raise InvalidInput(f"pattern {pattern!r} starts with '!' (put negations under exclude:)")


def check_exclude(pattern: str) -> None:
    """Raise InvalidInput unless ``pattern`` is a usable .gitignore-style pattern."""
    try:
        spec = compile_patterns([pattern])
    except ValueError as err:
        raise InvalidInput(f"invalid pattern {pattern!r}: {err}") from None
    if not spec.patterns or spec.patterns[0].include is None:
        raise InvalidInput(f"pattern {pattern!r} matches nothing (it is blank or a '#' comment)")


def glob_folder(obj_path: str | None) -> str:
    """A glob's obj_path as a folder key ('' for the artifact's root)."""
    folder = (obj_path or "").strip("/")
    return check_key(folder, what=f"obj_path {obj_path!r}") if folder else ""


def _include_test(pattern: str) -> Callable[[str], object]:
    """A fast test for one checked include pattern: its own regex, skipping PathSpec's
    per-call path normalisation (a third of the time on a large tree)."""
    compiled = compile_patterns([pattern]).patterns[0]
    import pathspec

    if isinstance(compiled, pathspec.RegexPattern) and compiled.regex is not None:
        return compiled.regex.match
    return compiled.match_file


def static_prefix(pattern: str) -> str:
    """The leading directories of ``pattern`` that hold no wildcard: where a walk starts."""
    body = pattern.rstrip("/")
    if "/" not in body:  # .gitignore: a pattern without '/' matches at any depth
        return ""
    fixed: list[str] = []
    for part in body.lstrip("/").split("/")[:-1]:
        if _WILDCARDS.intersection(part):
            break
        fixed.append(part)
    return "/".join(fixed)


# --- public entry points ---------------------------------------------------------------


def expand(manifest: Manifest, spec: ArtifactSpec, tree: Tree | None = None) -> Expansion:
    """The files and references ``spec`` declares; ManifestInvalid lists every problem."""
    with gc_paused():
        result = _Expander(tree or Tree(manifest), spec).run()
    if isinstance(result, list):
        raise ManifestInvalid(result)
    return result


def expand_all(manifest: Manifest, specs: Iterable[ArtifactSpec]) -> dict[str, Expansion]:
    """Every artifact expanded; one ManifestInvalid collects the problems of all of them."""
    out: dict[str, Expansion] = {}
    problems: list[str] = []
    tree = Tree(manifest)
    for spec in specs:
        try:
            out[spec.name] = expand(manifest, spec, tree)
        except ManifestInvalid as err:
            problems.extend(err.problems)
    if problems:
        raise ManifestInvalid(problems)
    return out


class Tree:
    """The manifest's directory as every artifact's expansion sees it, worked out once
    per plan: 1,000 artifacts resolving the same directories again and again spent a
    tenth of a second in lstat calls."""

    def __init__(self, manifest: Manifest) -> None:
        self.root = str(manifest.root)
        self.root_real = os.path.realpath(self.root)
        lock = f"{manifest.path.stem}.lock"
        self.skip_at_root = frozenset({".em", lock, manifest.path.name})
        self.shown = _shown(manifest.path)
        self._reals = {self.root: self.root_real}

    def local(self, rel: str) -> str:
        return os.path.normpath(os.path.join(self.root, rel))

    def shown_below(self, path: str) -> str:
        """``path`` (a ``local`` one) relative to the manifest's directory, posix style."""
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1 :]
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def realpath(self, path: str) -> str:
        """``os.path.realpath`` of a ``local`` path, each directory above it resolved
        once per plan: only the last component is looked at (is it a link?)."""
        found = self._reals.get(path)
        if found is None:
            parent, name = os.path.split(path)
            if not name or parent == path:
                found = os.path.realpath(path)
            else:
                joined = os.path.join(self.realpath(parent), name)
                found = os.path.realpath(joined) if os.path.islink(joined) else joined
            self._reals[path] = found
        return found


# --- one artifact ----------------------------------------------------------------------


class _Expander:
    """Expands one artifact's objects, collecting problems instead of stopping."""

    def __init__(self, tree: Tree, spec: ArtifactSpec) -> None:
        self.spec = spec
        self.tree = tree
        self.root = tree.root
        self.root_real = tree.root_real
        self.shown = tree.shown
        self.files = FileList()
        self.refs: list[Reference] = []
        self.owner: dict[str, int] = {}  # key -> index of the object that declared it
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def run(self) -> Expansion | list[str]:
        handlers: dict[str, Callable[[int, ObjectSpec], None]] = {
            "file": self._file,
            "dir": self._dir,
            "glob": self._glob,
            "reference": self._reference,
        }
        for index, obj in enumerate(self.spec.objects):
            try:
                handlers[obj.kind](index, obj)
            except InvalidInput as err:
                self._problem(obj, str(err))
        self._check_nesting()
        if self.problems:
            return self.problems
        self.refs.sort(key=_KEY)
        return Expansion(
            files=self.files.sorted(),
            references=tuple(self.refs),
            warnings=tuple(self.warnings),
        )

    def _check_nesting(self) -> None:
        """An object path cannot be a file and a folder at once ('x' and 'x/y'): no
        directory could hold both, so a pull would lose one of them."""
        if len(self.spec.objects) < 2:
            return  # one object's keys are one tree's paths: none is another's folder
        owner, found = self.owner, 0
        folders = {key[: key.rfind("/")] for key in owner if "/" in key}
        if not any(map(partial(_held_above, owner), folders)):
            return  # the usual case, found over the few folders rather than every key
        for key, index in owner.items():
            cut = key.rfind("/")
            while cut > 0 and key[:cut] not in owner:
                cut = key.rfind("/", 0, cut)
            if cut > 0:
                self._problem(
                    self.spec.objects[index],
                    f"object path '{key}' is below '{key[:cut]}', which is a file of this "
                    "artifact (give one of them another obj_path)",
                )
                found += 1
                if found == _MAX_CLASHES:
                    return

    def _problem(self, obj: ObjectSpec, message: str) -> None:
        self.problems.append(f"{self.shown}:{obj.line}: artifact '{self.spec.name}': {message}")

    def _warning(self, obj: ObjectSpec, message: str) -> None:
        self.warnings.append(f"{self.shown}:{obj.line}: artifact '{self.spec.name}': {message}")

    def _local(self, rel: str) -> str:
        return self.tree.local(rel)

    def _outside(self, obj: ObjectSpec, path: str) -> bool:
        """Whether ``path`` leaves the manifest's tree against the object's policy."""
        real = self.tree.realpath(path)
        if obj.symlinks == "follow-external" or inside(real, self.root_real):
            return False
        self._problem(
            obj,
            f"{obj.kind} '{obj.source}' resolves to '{real}', outside the manifest's directory "
            "(copy it in, or set symlinks: follow-external)",
        )
        return True

    def _file(self, index: int, obj: ObjectSpec) -> None:
        key = resolve_obj_path(obj.source, obj.obj_path)
        path = self._local(obj.source)
        what = f"file '{obj.source}'"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._problem(obj, f"{what} does not exist (create it or fix the path)")
        except OSError as err:
            return self._problem(obj, f"{what}: {err.strerror} (check the path)")
        if stat.S_ISDIR(st.st_mode):
            return self._problem(obj, f"{what} is a directory (use dir: for it)")
        if not stat.S_ISREG(st.st_mode):
            return self._problem(obj, f"{what} is not a regular file (point at one)")
        if not os.access(path, os.R_OK):
            return self._problem(obj, f"{what} is not readable (check its permissions)")
        if not self._outside(obj, path):
            item = LocalFile(key, path, st.st_size, st.st_ctime_ns, st.st_ino)
            self._add_files(index, obj, FileList.of([item]))
        return None

    def _dir(self, index: int, obj: ObjectSpec) -> None:
        prefix = resolve_obj_path(obj.source, obj.obj_path) + "/"
        top = self._local(obj.source)
        if not os.path.isdir(top):
            what = (
                "is not a directory (use file: for it)"
                if os.path.exists(top)
                else ("does not exist (create it or fix the path)")
            )
            return self._problem(obj, f"dir '{obj.source}' {what}")
        if self._outside(obj, top):
            return None
        shown_top = self.tree.shown_below(top) + "/"
        found = self._walk(obj, top, prefix, shown_top)
        self._add_files(index, obj, _drop_excluded(found, obj.exclude, len(prefix)))
        return None

    def _glob(self, index: int, obj: ObjectSpec) -> None:
        check_glob(obj.source)
        folder = glob_folder(obj.obj_path)
        start = static_prefix(obj.source)
        top = self._local(start)
        found = FileList()
        if os.path.isdir(top):
            if self._outside(obj, top):
                return None
            rel_top = f"{start}/" if start else ""
            found = self._walk(obj, top, rel_top, rel_top)
        matched = self._match(obj, found)
        if not matched:
            return self._no_match(obj)
        self._add_files(index, obj, self._rekey(obj, folder, matched))
        return None

    def _rekey(self, obj: ObjectSpec, folder: str, matched: FileList) -> FileList:
        """Matches (keyed by their path in the manifest's directory) keyed for the artifact:
        ``folder`` + their path below ``base``."""
        base = "" if obj.base is None else os.path.normpath(obj.base).replace(os.sep, "/")
        under = "" if base in ("", ".") else base + "/"
        cut = len(under)

        def keep(rel: str) -> bool:
            if not rel.startswith(under):
                self._problem(
                    obj, f"'{rel}' matches but is not under base '{obj.base}' (widen base)"
                )
            elif not folder and rel[cut:] in RESERVED_ROOT_NAMES:
                self._problem(
                    obj, f"'{rel}' would land on the reserved '{rel[cut:]}' (set obj_path)"
                )
            else:
                return True
            return False

        kept = matched.where(keep)
        prefix = join_key(folder, "")
        if not (prefix or cut):
            return kept
        return kept.rekeyed(cut, prefix)

    def _reference(self, index: int, obj: ObjectSpec) -> None:
        ref = Reference(resolve_obj_path(obj.source, obj.obj_path), obj.source)
        self._claim(index, obj, [ref])
        self.refs.append(ref)

    def _walk(self, obj: ObjectSpec, top: str, key_top: str, shown_top: str) -> FileList:
        hide = obj.hidden == "exclude"
        skip = self.tree.skip_at_root
        walker = Walker(self.root_real, skip, obj.symlinks, hide, key_top, shown_top)
        found = walker.walk(top, self.tree.realpath(top))
        for message in sorted(walker.problems):  # scandir order is the filesystem's
            self._problem(obj, f"{obj.kind} '{obj.source}': {message}")
        for message in sorted(walker.warnings):
            self._warning(obj, f"{obj.kind} '{obj.source}': {message}")
        return found

    def _match(self, obj: ObjectSpec, found: FileList) -> FileList:
        matched = found.where(_include_test(obj.source))
        if obj.exclude and matched:
            exclude = compile_patterns(obj.exclude).match_file
            matched = matched.where(lambda key: not exclude(key))
        return matched

    def _no_match(self, obj: ObjectSpec) -> None:
        message = f"glob '{obj.source}' matched no files"
        if obj.if_no_files_found == "error":
            self._problem(obj, f"{message} (fix the pattern, or set if_no_files_found: warn)")
        elif obj.if_no_files_found == "warn":
            self._warning(obj, message)

    def _add_files(self, index: int, obj: ObjectSpec, files: FileList) -> None:
        keys = "".join(files.keys)  # one scan over all keys, not one per file
        if "\\" in keys:
            for key in files.keys:
                if "\\" in key:
                    message = f"'{key}' has a backslash, which object paths cannot hold"
                    self._problem(obj, f"{message} (rename it)")
        if not keys.isascii():
            files = self._drop_undecodable(obj, files)
        longest = max(map(len, files.keys), default=0)
        # isprintable is false for every control character and runs at memory speed,
        # where the regex takes 50 ms over 300,000 keys
        control = not keys.isprintable() and CONTROL_CHARACTERS.search(keys)
        if control or longest > MAX_SEGMENT_BYTES:
            for key in files.keys:  # the rare case: the key rules say what is wrong
                try:
                    check_key(key)
                except InvalidInput as err:
                    self._problem(obj, str(err))
        self._claim(index, obj, files)
        if self.files:
            self.files.extend(files)
        else:
            self.files = files  # the first object's files: no copy

    def _drop_undecodable(self, obj: ObjectSpec, files: FileList) -> FileList:
        """Files whose names are not UTF-8 (os.fsdecode kept the raw bytes as
        surrogates) cannot be object keys: each is reported, with its bytes shown."""

        def decodable(key: str) -> bool:
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(key).decode("utf-8", "backslashreplace")
                self._problem(obj, f"'{shown}' is not a valid UTF-8 name (rename it)")
                return False
            return True

        return files.where(decodable)

    def _claim(self, index: int, obj: ObjectSpec, items: Sequence[LocalFile | Reference]) -> None:
        """Record which object declared each key; a key declared twice is a problem."""
        if len(self.spec.objects) < 2:
            return  # no other object to clash with (nor to nest in: _check_nesting)
        owner = self.owner
        keys = items.keys if isinstance(items, FileList) else map(_KEY, items)
        new = dict.fromkeys(keys, index)
        if not owner:
            self.owner = new
            return
        taken = sorted(owner.keys() & new.keys())
        first_owners = {key: owner[key] for key in taken}
        owner.update(new)
        owner.update(first_owners)
        if not taken:
            return
        declared: dict[str, LocalFile | Reference] = {x.key: x for x in self.files}
        declared.update((x.key, x) for x in self.refs)
        mine = {item.key: item for item in items}
        for key in taken[:_MAX_CLASHES]:
            other = self.spec.objects[owner[key]]
            where = f"({other.kind} '{other.source}', line {other.line})"
            first = f"{_describe(declared[key], self.root)} {where}"
            self._problem(obj, key_clash(key, first, _describe(mine[key], self.root)))
        if len(taken) > _MAX_CLASHES:
            more = len(taken) - _MAX_CLASHES
            self._problem(obj, f"... and {more} more object paths taken twice")


def _held_above(owner: dict[str, int], folder: str) -> bool:
    """Whether ``folder`` or a folder above it is a key of ``owner``."""
    cut = len(folder)
    while cut > 0:
        if folder[:cut] in owner:
            return True
        cut = folder.rfind("/", 0, cut)
    return False


def _describe(item: LocalFile | Reference, root: str) -> str:
    if isinstance(item, Reference):
        return f"reference '{item.uri}'"
    return f"file '{os.path.relpath(item.source, root)}'"


def _shown(path: Path) -> str:
    """The manifest's path as a user would type it: relative to the cwd when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel
