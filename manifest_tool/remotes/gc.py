"""Garbage in a store: what killed writers leave, found through the database, removed safely.

A process killed mid-write leaves temp files in ``blobs/tmp/`` (files) or an intent
naming an S3 key (S3); one killed between a commit and collecting a replaced blob
leaves a blob row no object refers to; a killed server leaves multipart parts. Nothing
refers to any of them, but nothing else removes them either.

Safe against concurrent writers (see ``blobrows``): a blob is removed only with its
row locked and no object referring to it, checked after the lock; S3 keys are only
ever deleted when the database names them (an intent, a blob row), never because a
bucket listing shows them. Only garbage idle for ``grace`` seconds is touched, which
keeps in-flight writes and downloads alive. One collector at a time: on PostgreSQL
under an advisory lock (another replica's sweep skips its turn), on SQLite the
single writer orders everything.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import blobrows
from .db import ADVISORY_GC
from .store import Store

GRACE_S = 3600.0  # an hour: far longer than any single write takes to finish
SWEEP_EVERY_S = 24 * 3600.0  # the automatic sweep on open, at most this often
STAMP = "gc-stamp"


@dataclass(frozen=True)
class Item:
    kind: str  # "blob", "temp file" (an unfinished write), "upload"
    path: str  # a file, an S3 key, or an upload id
    size: int


@dataclass(frozen=True)
class Report:
    items: tuple[Item, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.items)

    def count(self, kind: str) -> int:
        return sum(1 for item in self.items if item.kind == kind)


def collect(
    store: Store, grace: float = GRACE_S, dry_run: bool = False, wait: bool = True
) -> Report:
    """Remove (or, with ``dry_run``, only list) the store's garbage older than ``grace``.

    With ``wait`` false, a collector already running elsewhere makes this one return
    an empty report at once (the periodic sweep of another replica)."""
    with _exclusive(store, wait) as mine:
        if not mine:
            return Report(())
        cutoff = time.time() - grace
        items: list[Item] = []
        if store.root is not None and store.blobs.kind == "files":
            items += _file_garbage(store, cutoff, dry_run)
        items += _db_garbage(store, _stamp(cutoff), dry_run)
    return Report(tuple(items))


def _file_garbage(store: Store, cutoff: float, dry_run: bool) -> list[Item]:
    assert store.root is not None
    items = [*_temp_files(store, cutoff), *_stale_uploads(store, cutoff)]
    if not dry_run:
        for item in items:
            _remove(Path(item.path))
        _drop_upload_rows(store, [Path(i.path).name for i in items if i.kind == "upload"])
    return items + _orphan_blobs(store, cutoff, dry_run)


def _db_garbage(store: Store, cutoff: str, dry_run: bool) -> list[Item]:
    """Blob rows without objects, stale intents, idle shared uploads."""
    from .shared_multipart import drop_upload, idle_uploads

    items: list[Item] = []
    for upload_id in idle_uploads(store, cutoff):
        if dry_run or drop_upload(store, upload_id):
            items.append(Item("upload", upload_id, 0))
    files_too = store.blobs.kind != "files"
    for blob, size in blobrows.unused_blobs(store.db, cutoff, files_too):
        if dry_run or blobrows.remove_unused(store.db, store.blobs, blob, cutoff) is not None:
            items.append(Item("blob", blob, size))
    for location in blobrows.stale_intents(store.db, cutoff):
        size = store.blobs.leftover_size(location)
        if dry_run or blobrows.clear_intent(store.db, store.blobs, location):
            items.append(Item("temp file", location, size))
    return items


@contextmanager
def _exclusive(store: Store, wait: bool) -> Iterator[bool]:
    """One collector at a time across processes (PostgreSQL's advisory lock)."""
    if store.db.dialect != "postgresql":
        yield True
        return
    conn: Any = store.db.connect()  # type: ignore[attr-defined]
    try:
        if wait:
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_GC,))
            got = True
        else:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_GC,)).fetchone()
            got = bool(row[0])
        yield got
    finally:
        conn.close()  # ends the session, and with it the lock


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )


def maybe_collect(store: Store) -> None:
    """The occasional sweep on open: at most once a day per store, never failing."""
    if store.root is None:
        return
    stamp = store.root / STAMP
    try:
        if time.time() - stamp.stat().st_mtime < SWEEP_EVERY_S:
            return
    except FileNotFoundError:
        stamp.touch()  # a new store has no garbage: start the clock
        return
    except OSError:
        return
    try:
        stamp.touch()
        collect(store)
    except OSError:
        pass  # garbage stays for the next sweep; the command itself must not fail


def _old_files(directory: Path, cutoff: float) -> Iterator[tuple[Path, int]]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False) and st.st_mtime < cutoff:
            yield Path(entry.path), st.st_size


def _temp_files(store: Store, cutoff: float) -> list[Item]:
    return [Item("temp file", str(p), n) for p, n in _old_files(store.blobs.tmp, cutoff)]


def _stale_uploads(store: Store, cutoff: float) -> list[Item]:
    """Upload folders with no write since ``cutoff`` (a live upload writes its parts)."""
    items: list[Item] = []
    assert store.root is not None
    root = store.root / "uploads"
    if not root.is_dir():
        return items
    with os.scandir(root) as entries:
        for entry in entries:
            try:  # an upload that finishes now removes its folder: skip it, go on
                if not entry.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(entry.path) as parts:
                    files = [entry.stat(), *(os.stat(f) for f in parts)]
            except OSError:
                continue
            if max(st.st_mtime for st in files) < cutoff:
                size = sum(st.st_size for st in files[1:])
                items.append(Item("upload", entry.path, size))
    return items


def _drop_upload_rows(store: Store, upload_ids: list[str]) -> None:
    if upload_ids:
        with store.db.write() as conn:
            conn.executemany("DELETE FROM uploads WHERE id = ?", [(i,) for i in upload_ids])


def _orphan_blobs(store: Store, cutoff: float, dry_run: bool) -> list[Item]:
    """Old blob files no object refers to: listed without a lock (a long scan must
    not block writers), each then removed under its row's lock if still unused."""
    with store.db.read() as conn:
        candidates = [
            (path, size)
            for sub in sorted(os.listdir(store.blobs.root))
            if len(sub) == 2
            for path, size in _old_files(store.blobs.root / sub, cutoff)
            if not blobrows.referenced(conn, path.parent.name + path.name)
        ]
    if dry_run:
        return [Item("blob", str(p), n) for p, n in candidates]
    removed = []
    for path, size in candidates:
        blob = path.parent.name + path.name
        if blobrows.remove_unused(store.db, store.blobs, blob, None) is not None:
            removed.append(Item("blob", str(path), size))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
