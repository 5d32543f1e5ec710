"""Upload progress bars on a terminal; nothing at all elsewhere."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .plan import ArtifactPlan
from .remotes.base import Upload


@dataclass
class Bars:
    """Callbacks for Applier: one bar per artifact, advanced by bytes sent."""

    progress: Any = None
    _task: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_start(self, ap: ArtifactPlan, uploads: list[Upload]) -> None:
        if self.progress is not None and uploads:
            total = sum(u.size for u in uploads) or 1
            self._task = self.progress.add_task(ap.name, total=total)

    def on_upload(self, upload: Upload) -> None:
        if self.progress is not None and self._task is not None:
            with self._lock:
                self.progress.advance(self._task, upload.size)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Bars]:
    if not (enabled and sys.stderr.isatty()):
        yield Bars()
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        yield Bars(progress)
