"""File events for ``watch``: which paths matter, collecting them, and the observers.

Paths are plain absolute strings built the way the manifest loader builds them
(``os.path.abspath``, no symlink resolution), so event paths and source roots compare
as strings.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from .model import ArtifactSpec, Manifest
from .sources import static_prefix

# Opened, closed-without-write and attribute events come from readers (our own
# hashing) and from hard-linking sources into .em/; they never change content.
_CONTENT_EVENTS = frozenset(
    {
        EVENT_TYPE_CREATED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_MOVED,
        EVENT_TYPE_CLOSED,
    }
)
TICK = 0.05  # how often waits look at the clock and the stop flag


def source_roots(manifest: Manifest, spec: ArtifactSpec) -> tuple[str, ...]:
    """The files and directories an artifact's objects read, existing or not.

    Derived from the specs rather than ``Expansion.sources``: an expansion leaves out
    a ``dir:`` that does not exist yet and fails as a whole on one missing file, and
    those are exactly the paths whose appearance a watch must notice.
    """
    roots: list[str] = []
    for obj in spec.objects:
        if obj.kind == "reference":
            continue
        rel = static_prefix(obj.source) if obj.kind == "glob" else obj.source
        roots.append(os.path.normpath(os.path.join(manifest.root, rel)))
    return tuple(roots)


def related(path: str, root: str) -> bool:
    """Whether a change at ``path`` can change what ``root`` holds: the root itself,
    anything below it, or a directory above it (created, deleted or moved)."""
    return (
        path == root
        or path.startswith(root.rstrip(os.sep) + os.sep)
        or root.startswith(path.rstrip(os.sep) + os.sep)
    )


@dataclass(frozen=True)
class Routes:
    """Where events go: the manifest file, and each artifact's source roots."""

    manifest: str
    roots: Mapping[str, tuple[str, ...]]  # artifact name -> source roots
    ignored_dirs: tuple[str, ...]  # .em/ and a file: store: our own writes
    ignored_files: tuple[str, ...]  # the lock file
    ignored_prefixes: tuple[str, ...]  # temp files of the atomic lock write

    def ignored(self, path: str) -> bool:
        if path in self.ignored_files or path.startswith(self.ignored_prefixes):
            return True
        return any(path == d or path.startswith(d + os.sep) for d in self.ignored_dirs)

    def relevant(self, path: str) -> bool:
        if self.ignored(path):
            return False
        return path == self.manifest or bool(self.artifacts({path}))

    def artifacts(self, paths: Iterable[str]) -> set[str]:
        return {
            name
            for name, roots in self.roots.items()
            if any(related(p, r) for p in paths for r in roots)
        }


def make_routes(
    manifest: Manifest,
    specs: Iterable[ArtifactSpec],
    lock_file: str,
    extra_ignored: Iterable[str] = (),
) -> Routes:
    root = str(manifest.root)
    lock_dir, lock_name = os.path.split(lock_file)
    return Routes(
        manifest=str(manifest.path),
        roots={spec.name: source_roots(manifest, spec) for spec in specs},
        ignored_dirs=(os.path.join(root, ".em"), *extra_ignored),
        ignored_files=(lock_file,),
        ignored_prefixes=(os.path.join(lock_dir, f".{lock_name}."),),
    )


def watch_dirs(roots: Iterable[str], manifest_dir: str) -> dict[str, bool]:
    """The directories to observe (path -> recursive) so that every root is covered.

    A directory root is watched recursively; a file root, or one that does not exist
    yet, through its nearest existing directory (re-synced after each batch, so a
    directory that appears gets its own recursive watch).
    """
    wanted: dict[str, bool] = {manifest_dir: False}
    for root in roots:
        if os.path.isdir(root):
            wanted[root] = True
            continue
        parent = os.path.dirname(root)
        while parent != os.path.dirname(parent) and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        wanted.setdefault(parent, False)
    covered = [d for d, recursive in wanted.items() if recursive]
    return {
        d: recursive
        for d, recursive in wanted.items()
        if not any(d != c and d.startswith(c.rstrip(os.sep) + os.sep) for c in covered)
    }


class Collector(FileSystemEventHandler):
    """Gathers the relevant paths that changed, and when the last one arrived."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes  # replaced whole on a manifest reload, never mutated
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._last = 0.0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CONTENT_EVENTS:
            return
        if event.event_type == EVENT_TYPE_MODIFIED and event.is_directory:
            return  # its children's own events say what changed
        self.add(_text(p) for p in (event.src_path, event.dest_path) if p)

    def add(self, paths: Iterable[str]) -> None:
        routes = self.routes
        keep = {p for p in paths if routes.relevant(p)}
        if keep:
            with self._lock:
                self._paths |= keep
                self._last = time.monotonic()

    def wait_batch(
        self, quiet: float, stopping: Callable[[], bool], until: float | None = None
    ) -> set[str]:
        """The changed paths once none has changed for ``quiet`` seconds; an empty set
        when ``until`` (a monotonic time) passes first, or on stop."""
        while not stopping():
            with self._lock:
                now = time.monotonic()
                if self._paths and now - self._last >= quiet:
                    paths, self._paths = self._paths, set()
                    return paths
            if until is not None and now >= until:
                return set()
            time.sleep(TICK)
        return set()


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def watch_limit_hit(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EMFILE) or "inotify" in str(err)


class Observers:
    """The watchdog observer and its watches; falls back to polling at the OS limit."""

    def __init__(
        self, handler: Collector, poll: bool, interval: float, warn: Callable[[str], None]
    ) -> None:
        self.handler, self.interval, self.warn = handler, interval, warn
        self.polling = poll
        self.observer = self._new()
        # path -> (recursive, inode of the directory when scheduled, watch)
        self.watches: dict[str, tuple[bool, int, ObservedWatch]] = {}

    def _new(self) -> BaseObserver:
        observer = PollingObserver(timeout=self.interval) if self.polling else Observer()
        observer.daemon = True
        observer.start()
        return observer

    def sync(self, wanted: Mapping[str, bool]) -> None:
        """Watch exactly ``wanted``. A watch whose directory was removed, or removed and
        made again, is renewed: its emitter ended with the old directory (and the new one
        may even have the old inode number)."""
        live = {e.watch for e in self.observer.emitters if e.is_alive()}
        for path, (recursive, inode, watch) in list(self.watches.items()):
            if wanted.get(path) != recursive or watch not in live or _inode(path) != inode:
                del self.watches[path]
                self._unschedule(watch)
        for path, recursive in wanted.items():
            if path not in self.watches and os.path.isdir(path):
                self._schedule(path, recursive)

    def _schedule(self, path: str, recursive: bool) -> None:
        inode = _inode(path)
        if inode is None:
            return  # gone since it was listed; the next sync watches its parent
        try:
            watch = self.observer.schedule(self.handler, path, recursive=recursive)
        except FileNotFoundError:
            return  # gone since it was listed; the next sync watches its parent
        except OSError as err:
            if self.polling or not watch_limit_hit(err):
                self.warn(f"cannot watch {path}: {err}")
                return
            self._fall_back(err)
            self._schedule(path, recursive)
            return
        self.watches[path] = (recursive, inode, watch)

    def _unschedule(self, watch: ObservedWatch) -> None:
        # Its emitter may already have ended with its directory.
        with contextlib.suppress(KeyError, OSError):
            self.observer.unschedule(watch)

    def _fall_back(self, err: OSError) -> None:
        self.warn(f"{err} (raise fs.inotify.max_user_watches); polling instead")
        old = self.watches
        self.close()
        self.polling = True
        self.observer, self.watches = self._new(), {}
        for path, (recursive, _, _) in old.items():
            self._schedule(path, recursive)

    def close(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
