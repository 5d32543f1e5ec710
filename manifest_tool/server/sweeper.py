"""The server's garbage sweep: at start and then periodically, in its own thread.

A killed server leaves multipart parts and temp files, a killed writer an orphan
blob; ``remotes.gc`` finds them safely (a grace period, and a re-check under the
write lock). The sweep runs in a daemon thread so requests are never held up, and a
failing sweep is logged and tried again next period: it must never stop the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..remotes.gc import collect
from ..remotes.store import Store

SERVER_SWEEP_EVERY_S = 6 * 3600.0  # a server runs for long: more often than on open
log = logging.getLogger("manifest_tool.server")


def sweeping(store: Store, every: float = SERVER_SWEEP_EVERY_S) -> Callable[[Any], Any]:
    """A Starlette lifespan that sweeps ``store`` at start and every ``every`` seconds."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=_loop, args=(store, every, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    return lifespan


def _loop(store: Store, every: float, stop: threading.Event) -> None:
    while not stop.is_set():
        _sweep(store)
        stop.wait(every)


def _sweep(store: Store) -> None:
    try:
        report = collect(store, wait=False)  # another replica's sweep: skip this turn
    except Exception:  # the next period tries again; serving goes on
        log.exception("garbage sweep failed")
        return
    if report.items:
        log.warning("garbage sweep: removed %d item(s), %d bytes", len(report.items), report.size)
