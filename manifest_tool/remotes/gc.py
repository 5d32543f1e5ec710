"""Garbage in the embedded store: what a killed writer leaves, found and removed safely.

A process killed mid-write leaves temp files in ``blobs/tmp/``; one killed between a
blob's rename and its transaction's commit, or between replacing an object and
collecting the old blob, leaves a blob no object refers to; a killed server leaves
multipart parts in ``uploads/<id>/``. Nothing refers to any of them, but nothing
else removes them either.

Safe against concurrent writers: a blob is renamed into place and referenced inside
one write transaction, so an unreferenced blob re-checked under the write lock can
never be one an upload is about to reference. Only garbage older than ``grace``
seconds is touched as well, which is what keeps an in-flight temp file or multipart
upload (no lock covers those) alive.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .store import Store

GRACE_S = 3600.0  # an hour: far longer than any single write takes to finish
SWEEP_EVERY_S = 24 * 3600.0  # the automatic sweep on open, at most this often
STAMP = "gc-stamp"


@dataclass(frozen=True)
class Item:
    kind: str  # "blob", "temp file", "upload"
    path: Path
    size: int


@dataclass(frozen=True)
class Report:
    items: tuple[Item, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.items)

    def count(self, kind: str) -> int:
        return sum(1 for item in self.items if item.kind == kind)


def collect(store: Store, grace: float = GRACE_S, dry_run: bool = False) -> Report:
    """Remove (or, with ``dry_run``, only list) the store's garbage older than ``grace``."""
    cutoff = time.time() - grace
    items = [*_temp_files(store, cutoff), *_stale_uploads(store, cutoff)]
    if not dry_run:
        for item in items:
            _remove(item.path)
        _drop_upload_rows(store, [i.path.name for i in items if i.kind == "upload"])
    items += _orphan_blobs(store, cutoff, dry_run)
    return Report(tuple(items))


def maybe_collect(store: Store) -> None:
    """The occasional sweep on open: at most once a day per store, never failing."""
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
    return [Item("temp file", p, n) for p, n in _old_files(store.blobs.tmp, cutoff)]


def _stale_uploads(store: Store, cutoff: float) -> list[Item]:
    """Upload folders with no write since ``cutoff`` (a live upload writes its parts)."""
    items: list[Item] = []
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
                items.append(Item("upload", Path(entry.path), sum(st.st_size for st in files[1:])))
    return items


def _drop_upload_rows(store: Store, upload_ids: list[str]) -> None:
    if upload_ids:
        with store.db.write() as conn:
            conn.executemany("DELETE FROM uploads WHERE id = ?", [(i,) for i in upload_ids])


def _orphan_blobs(store: Store, cutoff: float, dry_run: bool) -> list[Item]:
    """Old blobs no object refers to: listed without the lock (a long scan must not
    block writers), then re-checked and removed under it."""
    conn = store.db.conn()
    candidates = [
        (path, size)
        for sub in sorted(os.listdir(store.blobs.root))
        if len(sub) == 2
        for path, size in _old_files(store.blobs.root / sub, cutoff)
        if not _referenced(conn, path)
    ]
    if dry_run or not candidates:
        return [Item("blob", p, n) for p, n in candidates]
    removed = []
    with store.db.write() as wconn:
        for path, size in candidates:
            if not _referenced(wconn, path):
                _remove(path)
                removed.append(Item("blob", path, size))
    return removed


def _referenced(conn: sqlite3.Connection, path: Path) -> bool:
    blob = path.parent.name + path.name
    row = conn.execute("SELECT 1 FROM objects WHERE blob = ? LIMIT 1", (blob,))
    return row.fetchone() is not None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
