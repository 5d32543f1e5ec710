"""Handing a stream of chunks to a function on a thread of its own.

Storing a multipart part hashes its bytes twice (the part's MD5 for its eTag, the
whole object's MD5 and BLAKE3 for the blob) and writes them once. hashlib, blake3
and file writes release the GIL on large buffers, so the two hashes of one chunk run
on two cores when one of them is fed to another thread: a part is stored in the time
of its slower half instead of the sum of both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

DEPTH = 4  # chunks in flight: a few MiB per upload, whatever the part's size


class Feed:
    """``consume(chunk)`` for each ``put(chunk)``, in order, on one helper thread.

    Used as a context manager: a normal exit waits until every chunk was consumed
    and raises the consumer's error if it had one; an exit on an error stops the
    consumer after the chunk it is on. Either way the consumer is done with its
    state when the ``with`` block ends, so the caller may then undo or reuse it.
    """

    def __init__(self, consume: Callable[[bytes], None], depth: int = DEPTH) -> None:
        self._consume = consume
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop = kind is not None
        self._queue.put(None)  # the consumer drains what is queued, so this cannot hang
        self._thread.join()
        if kind is None and self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._stop or self._error is not None:
                continue  # drop the rest: the caller is failing anyway
            try:
                self._consume(chunk)
            except BaseException as err:  # raised in the caller's thread
                self._error = err
