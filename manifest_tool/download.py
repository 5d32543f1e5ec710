"""Downloading a node's objects into a directory: verified, atomic, never clobbering.

Every object is fetched into a staging directory beside the destination (a sibling,
so the final rename stays on one filesystem, and outside it, so that no object of
any name is ever taken for staging) under a numbered name, checked against its MD5,
and only then moved to its place. A local file that
differs from what would be written is refused unless ``force``, before anything is
fetched, so a refused pull writes nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import ChecksumMismatch, ManifestToolError, write_error
from .hashing import md5_file
from .paths import check_key
from .remotes.base import ObjectInfo, Remote

WORKERS = 4
STAGING_PREFIX = ".manifest-tool-download-"


def fetch_all(
    remote: Remote,
    node_path: str,
    objects: Sequence[ObjectInfo],
    dest: Path,
    force: bool = False,
) -> int:
    """Make ``dest`` hold ``objects``; returns how many were fetched (the rest were
    already there, byte for byte)."""
    targets = [(o, dest / check_key(o.path, what="remote object key", allow_reserved=True))
               for o in objects]  # fmt: skip
    _refuse_nesting(node_path, [o.path for o in objects])
    todo = [(o, path) for o, path in targets if not _holds(path, o)]
    if not force:
        _refuse_overwrites(node_path, todo)
    if not todo:
        return 0
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, dest) from None
    staging = _staging_dir(dest)
    try:
        jobs = [(o, path, staging / str(i)) for i, (o, path) in enumerate(todo)]
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda job: _fetch(remote, node_path, *job), jobs))
        # every object is here and verified: only now does anything in dest change
        for _, path, part in jobs:
            _place(part, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(todo)


def _place(part: Path, path: Path) -> None:
    try:
        _make_room(path)
        os.replace(part, path)
    except OSError as err:
        raise write_error(err, path) from None


def _staging_dir(dest: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{dest.name}-", dir=dest.parent))
    except OSError as err:
        raise ManifestToolError(
            f"cannot download into {dest}: no room to stage beside it in {dest.parent} "
            f"({err.strerror or err}); choose a destination in a writable folder"
        ) from None


def _refuse_nesting(node_path: str, keys: Sequence[str]) -> None:
    """Objects 'x' and 'x/y' cannot both be files in a directory: refuse, never drop one."""
    present = set(keys)
    for key in keys:
        cut = key.rfind("/")
        while cut > 0:
            if key[:cut] in present:
                raise ManifestToolError(
                    f"{node_path} holds both '{key[:cut]}' and '{key}', which no directory "
                    "can hold at once: nothing was written"
                )
            cut = key.rfind("/", 0, cut)


def _holds(path: Path, obj: ObjectInfo) -> bool:
    try:
        return path.is_file() and path.stat().st_size == obj.size_bytes and (
            md5_file(path) == obj.checksum
        )
    except OSError:
        return False


def _refuse_overwrites(node_path: str, todo: Sequence[tuple[ObjectInfo, Path]]) -> None:
    clashes = [path for _, path in todo if path.exists() or _file_above(path)]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise ManifestToolError(
            f"{clashes[0]} differs from what {node_path} holds{more}: "
            "nothing was written; pull --force overwrites local files"
        )


def _file_above(path: Path) -> bool:
    """A file where the object needs a folder."""
    return any(p.is_file() for p in path.parents)


def _fetch(remote: Remote, node_path: str, obj: ObjectInfo, path: Path, part: Path) -> None:
    """Fetch ``obj`` into ``part`` (its staging name for ``path``), verified."""
    try:
        remote.get_object(node_path, obj.path, part)
    except OSError as err:  # a full disk, say: name the file the user asked for
        raise write_error(err, path) from None
    got = md5_file(part)
    if got != obj.checksum or part.stat().st_size != obj.size_bytes:
        raise ChecksumMismatch(
            f"object {obj.path!r} of {node_path} is corrupt: md5 {got}, expected "
            f"{obj.checksum} (nothing was written; ask the server's admin to check its storage)"
        )


def _make_room(dest: Path) -> None:
    """With --force: a folder in the file's place, or a file in a folder's, goes."""
    for parent in reversed(dest.parents):
        if parent.is_file() or parent.is_symlink():
            parent.unlink()
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
