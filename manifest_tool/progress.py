"""Progress on a terminal (upload bars, the hashing phase); nothing at all elsewhere.

Sizes are binary (KiB, MiB, GiB), as in every summary. Bars advance by the bytes each
upload has read so far, so a single large object moves the bar while it is sent.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import click

from .colors import use_color
from .plan import ArtifactPlan
from .remotes.base import Upload
from .render import human_size

# Below this much to hash, planning is quick enough that a notice is only noise.
HASH_NOTICE_BYTES = 32 * 1024 * 1024
HASH_NOTICE_FILES = 2000

_hash_notice: ContextVar[Callable[[int, int], None] | None] = ContextVar(
    "hash_notice", default=None
)


def announce_hashing(count: int, size: int) -> None:
    """Called by the planner before it hashes ``count`` files of ``size`` bytes."""
    notice = _hash_notice.get()
    if notice is not None and (size >= HASH_NOTICE_BYTES or count >= HASH_NOTICE_FILES):
        notice(count, size)


def hashing_text(count: int, size: int) -> str:
    return f"hashing {count} file{'s' if count != 1 else ''}, {human_size(size)}"


@contextmanager
def hashing_notices(enabled: bool, no_color: bool) -> Iterator[None]:
    """While planning: say on stderr (a terminal only) that a long hashing phase runs."""
    if not (enabled and sys.stderr.isatty()):
        yield
        return
    color = use_color(no_color, sys.stderr)

    def notice(count: int, size: int) -> None:
        text = hashing_text(count, size) + " ..."
        click.echo(click.style(text, dim=True) if color else text, err=True)

    token = _hash_notice.set(notice)
    try:
        yield
    finally:
        _hash_notice.reset(token)


@dataclass
class Bars:
    """Callbacks for Applier: one bar per artifact, advanced by bytes read for sending."""

    progress: Any = None
    _task: Any = None
    _sent: dict[str, int] = field(default_factory=dict)  # per key, at most its size
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_start(self, ap: ArtifactPlan, uploads: Iterable[Upload]) -> None:
        with self._lock:
            self._sent.clear()
            if self.progress is not None and uploads:
                total = sum(u.size for u in uploads) or 1
                self._task = self.progress.add_task(ap.name, total=total)

    def on_bytes(self, upload: Upload, count: int) -> None:
        self._advance(upload, self._sent.get(upload.key, 0) + count)

    def on_upload(self, upload: Upload) -> None:
        self._advance(upload, upload.size)
        with self._lock:  # sent whole: nothing more to count for it
            self._sent.pop(upload.key, None)

    def _advance(self, upload: Upload, done: int) -> None:
        """Move to ``done`` bytes of ``upload``, never past its size: a retry reads the
        file again, and a batch reports each object when it completes."""
        with self._lock:
            before = self._sent.get(upload.key, 0)
            now = min(max(done, before), upload.size)
            self._sent[upload.key] = now
            if self.progress is not None and self._task is not None and now > before:
                self.progress.advance(self._task, now - before)


@contextmanager
def progress_bars(enabled: bool, no_color: bool = False) -> Iterator[Bars]:
    if not (enabled and sys.stderr.isatty()):
        yield Bars()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        _speed_column(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True, no_color=not use_color(no_color, sys.stderr))
    with Progress(*columns, console=console, transient=True) as progress:
        yield Bars(progress)


def _speed_column() -> Any:
    """Rich's TransferSpeedColumn speaks MB/s; ours, like every size here, MiB/s."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class BinarySpeed(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{human_size(speed)}/s", style="cyan")

    return BinarySpeed()
