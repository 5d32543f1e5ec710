"""One apply at a time per manifest directory.

Two applies of one checkout (a second terminal, ``watch`` beside a manual apply)
would interleave their writes to the lock file and the remote. The second one fails
at once with a line naming the first; the operating system drops the lock when the
holder exits, however it exits, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .errors import ApplyBusy

GITIGNORE = "# Local state of manifest-tool; commit the lock file instead.\n*\n"


@contextmanager
def exclusive_apply(em_dir: Path) -> Iterator[None]:
    """Hold ``.em/apply.lock`` for the duration, or fail naming its holder."""
    prepare(em_dir)
    fd = os.open(em_dir / "apply.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise ApplyBusy(
                f"another apply is running in {em_dir.parent} ({holder}); "
                "wait for it to finish, then run apply again"
            ) from None
        os.ftruncate(fd, 0)
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()}, since {stamp}".encode(), 0)
        yield
    finally:
        os.close(fd)


def prepare(em_dir: Path) -> None:
    """``.em/`` holds local state and maybe the embedded store: never commit it."""
    marker = em_dir / ".gitignore"
    if not marker.exists():
        em_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(GITIGNORE)
