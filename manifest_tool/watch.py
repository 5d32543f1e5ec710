"""``watch``: apply once, then re-plan and apply the artifacts whose sources change.

One loop on the calling thread does all planning and applying, so rounds never
overlap; watchdog threads only collect paths. Changes that arrive during a round wait
in the collector and become the next round, with the state of that moment. Every
outcome is reported through ``emit`` as a JSON-ready dict; the library never prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apply import Applied, Applier
from .applylock import exclusive_apply
from .config import file_url_path, resolve_remote_url
from .errors import (
    ApplyBusy,
    InvalidInput,
    ManifestInvalid,
    ManifestToolError,
    RemoteError,
    write_log,
)
from .lockfile import lock_path
from .manifest import load_manifest
from .model import Manifest
from .plan import Plan
from .watch_events import TICK, Collector, Observers, Routes, make_routes, watch_dirs
from .workspace import Workspace, make_plan, open_workspace

Event = dict[str, Any]
Emit = Callable[[Event], None]
BACKOFF_FIRST_S = 1.0
BACKOFF_CAP_S = 30.0
SETTLE_LIMIT = 20  # checks before a file that keeps changing is planned anyway


@dataclass(frozen=True)
class WatchOptions:
    manifest_file: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    remote_url: str | None = None
    targets: tuple[str, ...] = ()
    debounce: float = 0.5
    poll: bool = False
    workers: int = 4


class Watcher:
    """``run()`` blocks until ``stop()`` (safe to call from a signal handler)."""

    def __init__(self, options: WatchOptions, emit: Emit) -> None:
        self.options, self.emit = options, emit
        self.manifest_path = os.path.abspath(options.manifest_file)
        # Until a manifest loads, only the manifest file itself matters.
        self.collector = Collector(Routes(self.manifest_path, {}, (), (), ()))
        self.rounds = 0
        self._stopping = False
        self._manifest: Manifest | None = None
        self._ws: Workspace | None = None
        self._retry: set[str] = set()
        self._retry_at = 0.0
        self._backoff = 0.0
        self._observers: Observers | None = None

    def stop(self) -> None:
        self._stopping = True  # a plain flag: taking a lock in a signal handler can deadlock

    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        if not os.path.exists(self.manifest_path):
            raise InvalidInput(f"{self.manifest_path}: no such manifest (create it or pass -f)")
        if self._reload():
            self._check_targets()
        interval = max(self.options.debounce, 0.25)
        self._observers = Observers(self.collector, self.options.poll, interval, self._warn)
        try:
            self._sync_watches()
            self.emit(self._start_event())
            self._round(self._selected(), "start")
            while not self._stopping:
                try:
                    self._step()
                except Exception as err:  # one bad batch must not end the watch
                    self._unexpected(err)
        finally:
            self._observers.close()
            self._close_workspace()
            self.emit({"event": "stopped", "rounds": self.rounds})

    def _start_event(self) -> Event:
        assert self._observers is not None
        return {
            "event": "start",
            "manifest": self.manifest_path,
            "artifacts": sorted(self._selected()),
            "watching": sorted(self._observers.watches),
            "observer": "polling" if self._observers.polling else "native",
            "debounce": self.options.debounce,
        }

    def _step(self) -> None:
        until = self._retry_at if self._retry else None
        paths = self.collector.wait_batch(self.options.debounce, self.stopping, until)
        if self._stopping:
            return
        reloaded = self.manifest_path in paths and self._reload()
        self._sync_watches()
        paths.discard(self.manifest_path)
        names = set(self._selected()) if reloaded else self.collector.routes.artifacts(paths)
        reason = "manifest" if reloaded else "files" if names else "retry"
        names |= self._retry
        if paths:
            self._settle(paths)
        if names and not self._stopping:
            self._round(names, reason, changed=len(paths))

    def _check_targets(self) -> None:
        assert self._manifest is not None
        have = [a.name for a in self._manifest.artifacts]
        unknown = sorted(set(self.options.targets) - set(have))
        if unknown:
            raise InvalidInput(
                f"no artifact named {unknown[0]!r} in the manifest (have: {', '.join(have)})"
            )

    # --- the manifest and the watches -------------------------------------------------

    def _reload(self) -> bool:
        """Load the manifest; on problems report them and keep the last good one."""
        try:
            manifest = load_manifest(Path(self.manifest_path), self.options.overrides)
        except ManifestInvalid as err:
            self.emit({"event": "invalid-manifest", "problems": err.problems})
            return False
        self._manifest = manifest
        self._close_workspace()
        self.collector.routes = self._routes(manifest)
        return True

    def _routes(self, manifest: Manifest) -> Routes:
        lock = str(lock_path(manifest.path))
        store = self._store_dir(manifest)
        specs = manifest.select(self.options.targets)
        return make_routes(manifest, specs, lock, [store] if store else [])

    def _store_dir(self, manifest: Manifest) -> str | None:
        """A ``file:`` store inside the watched tree is written by every apply."""
        url = resolve_remote_url(self.options.remote_url, manifest.remote_url, manifest.root)
        try:
            return str(file_url_path(url, manifest.root)) if url.startswith("file:") else None
        except InvalidInput:
            return None

    def _selected(self) -> list[str]:
        if self._manifest is None:
            return []
        targets = self.options.targets
        return [a.name for a in self._manifest.artifacts if not targets or a.name in targets]

    def _sync_watches(self) -> None:
        assert self._observers is not None
        routes = self.collector.routes
        roots = [r for name in self._selected() for r in routes.roots[name]]
        self._observers.sync(watch_dirs(roots, os.path.dirname(self.manifest_path)))

    def _warn(self, message: str) -> None:
        self.emit({"event": "warning", "message": message})

    # --- a round ----------------------------------------------------------------------

    def _round(self, names: Iterable[str], reason: str, changed: int = 0) -> None:
        order = [n for n in self._selected() if n in set(names)]
        if not order:  # an empty target list would mean every artifact to make_plan
            return
        self.rounds += 1
        started = time.monotonic()
        try:
            plan = make_plan(self._workspace(), tuple(order))
            results = self._apply(plan) if plan.changes or plan.errors else []
        except RemoteError as err:
            self._close_workspace()
            self._retry_later(order, str(err))
            return
        except ApplyBusy as err:  # a manual apply is running: try again after it
            self._retry_later(order, str(err))
            return
        except ManifestInvalid as err:
            self.emit({"event": "invalid-manifest", "round": self.rounds, "problems": err.problems})
            return
        except ManifestToolError as err:
            self.emit({"event": "error", "round": self.rounds, "message": str(err)})
            return
        except Exception as err:  # one bad round must not end the watch
            self._unexpected(err)
            return
        self._retry, self._backoff = set(), 0.0
        seconds = time.monotonic() - started
        self.emit(self._round_event(order, reason, changed, plan, results, seconds))

    def _unexpected(self, err: Exception) -> None:
        log = write_log("manifest-tool-watch-")
        message = f"unexpected {type(err).__name__}: {err} (details in {log})"
        self.emit({"event": "error", "round": self.rounds, "message": message})

    def _apply(self, plan: Plan) -> list[Applied]:
        ws = self._workspace()
        with exclusive_apply(ws.em_dir):
            applier = Applier(
                ws.remote, ws.lock_file, ws.lock(), self.options.workers, sealed=ws.sealed
            )
            return applier.apply(plan)

    def _round_event(
        self,
        names: list[str],
        reason: str,
        changed: int,
        plan: Plan,
        results: list[Applied],
        seconds: float,
    ) -> Event:
        return {
            "event": "round",
            "round": self.rounds,
            "artifacts": names,
            "reason": reason,
            "changed": changed,
            "changes": plan.changes,
            "uploaded": sum(r.uploaded for r in results),
            "bytes": sum(r.uploaded_bytes for r in results),
            "deleted": sum(r.deleted for r in results),
            "seconds": round(seconds, 3),
        }

    def _retry_later(self, names: list[str], message: str) -> None:
        self._backoff = min(BACKOFF_CAP_S, self._backoff * 2 or BACKOFF_FIRST_S)
        self._retry |= set(names)
        self._retry_at = time.monotonic() + self._backoff
        self.emit(
            {"event": "error", "round": self.rounds, "message": message, "retry_in": self._backoff}
        )

    def _workspace(self) -> Workspace:
        if self._ws is None:
            o = self.options
            self._ws = open_workspace(
                Path(self.manifest_path), o.overrides, o.remote_url, manifest=self._manifest
            )
        return self._ws

    def _close_workspace(self) -> None:
        if self._ws is not None:
            self._ws.remote.close()
            self._ws = None

    # --- waiting -------------------------------------------------------------------

    def _settle(self, paths: set[str]) -> None:
        """Wait until the changed files' size and mtime hold still across two checks,
        so a file still being written is not uploaded half-done."""
        before = {p: _stamp(p) for p in paths}
        for _ in range(SETTLE_LIMIT):
            if not self._sleep(self.options.debounce):
                return
            after = {p: _stamp(p) for p in paths}
            if after == before:
                return
            before = after

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(TICK, max(0.0, deadline - time.monotonic())))
        return not self._stopping


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)
