"""Multipart uploads on the embedded store, assembled while the parts arrive.

Clients send parts 1..N in order, so each part that is next in line is streamed
straight into one "assembly" blob writer, which hashes (MD5 + BLAKE3) as it writes.
Finish then only verifies and renames: one write and one pass of each hash, where
storing parts and re-reading them at finish cost two of each. The assembly runs on a
thread of its own (see feed.py) beside the part's own MD5 (its eTag), so the two
MD5s of each byte take two cores, not twice the time. A part that arrives
early waits in ``uploads/<id>/`` and is appended once the gap before it fills.

Nothing is visible under the key before finish commits the verified blob. The
assembly state lives in this process only: after a restart the assembled bytes are
lost, and the upload must be aborted and started again.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import blake3

from ..errors import InvalidInput, NodeNotFound
from .base import ObjectInfo
from .blobs import BlobWriter, FileSink
from .feed import Feed
from .store import Store, now

MAX_PARTS = 10000  # S3's limit, which clients size their parts by


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise InvalidInput(f"partNumber must be between 1 and {MAX_PARTS}")


PART_READ = 1024 * 1024
IDLE_S = 24 * 3600
RESTARTED = "upload was interrupted by a server restart; abort and upload again"


class _Mark(NamedTuple):
    size: int
    md5: hashlib._Hash
    strong: blake3.blake3


class _Assembly(BlobWriter):
    """A blob writer straight into a temp file (never inline) that can take back a
    part that broke off half-way, so that the client's resend of it does not leave
    the first attempt's bytes in the object."""

    def __init__(self, folder: Path) -> None:
        self._file = FileSink(str(folder))
        super().__init__(lambda: self._file, inline_max=-1)

    def mark(self) -> _Mark:
        return _Mark(self.size, self._md5.copy(), self._strong.copy())

    def rewind(self, mark: _Mark) -> None:
        self.size, self._md5, self._strong = mark.size, mark.md5.copy(), mark.strong.copy()
        self._buf = bytearray()
        self._file.fh.truncate(mark.size)  # a buffered truncate flushes first
        self._file.fh.seek(mark.size)

    def discard(self) -> None:
        super().discard()
        self._file.discard()


class _Parked(NamedTuple):
    path: Path
    md5: str


@dataclass
class _Upload:
    """One upload's assembly; every field is read and changed under Multipart._lock,
    except ``writer``, which only the thread that set ``busy`` touches."""

    folder: Path
    writer: _Assembly | None = None
    next: int = 1  # the part number the assembly expects next
    done: dict[int, str] = field(default_factory=dict)  # assembled part -> its md5
    parked: dict[int, _Parked] = field(default_factory=dict)  # early parts, on disk
    busy: bool = False  # a thread is appending to the writer
    closed: bool = False  # finish or abort owns the upload now
    touched: float = field(default_factory=time.monotonic)


class Multipart:
    def __init__(self, store: Store) -> None:
        assert store.root is not None, "in-process multipart needs the embedded store"
        self.store = store
        self.root = store.root / "uploads"
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}

    def start(self, user: str, node_path: str, key: str) -> str:
        self.store._check_target(user, node_path, key)
        self._sweep()
        upload_id = uuid.uuid4().hex
        with self.store.db.write() as conn:
            conn.execute(
                "INSERT INTO uploads (id, node_path, key, owner, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (upload_id, node_path, key, user, now()),
            )
        (self.root / upload_id).mkdir()
        with self._lock:
            self._uploads[upload_id] = _Upload(self.root / upload_id)
        return upload_id

    def _dir(self, user: str, upload_id: str, node_path: str, key: str) -> Path:
        with self.store.db.read() as conn:
            row = conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        if (
            row is None
            or row["owner"] != user
            or (row["node_path"], row["key"]) != (node_path, key)
        ):
            raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
        return self.root / upload_id

    def _open(self, upload_id: str) -> _Upload:
        """The live state (caller holds the lock). finish and abort delete the row
        before they forget the state, so a row without state means a restart."""
        up = self._uploads.get(upload_id)
        if up is None:
            with self.store.db.read() as conn:
                row = conn.execute("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)).fetchone()
            if row is None:
                raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
            raise InvalidInput(RESTARTED)
        if up.closed:
            raise InvalidInput(f"upload {upload_id} is being finished or aborted")
        up.touched = time.monotonic()
        return up

    # -- parts ------------------------------------------------------------------------
    def put_part(
        self,
        user: str,
        upload_id: str,
        node_path: str,
        key: str,
        number: int,
        chunks: Iterable[bytes],
        max_size: int | None = None,
    ) -> str:
        check_part_number(number)
        self._dir(user, upload_id, node_path, key)
        limited = _limited(chunks, max_size)
        with self._lock:
            up = self._open(upload_id)
            resent, append = number < up.next, number == up.next and not up.busy
            up.busy = up.busy or append
        if resent:  # a retry of an assembled part: only its md5 is needed
            return self._resent(up, number, _md5_of(limited))
        if append:
            return self._append(up, upload_id, number, limited)
        return self._park(up, upload_id, number, limited)

    def _resent(self, up: _Upload, number: int, md5: str) -> str:
        with self._lock:
            same = up.done.get(number) == md5
        if not same:
            raise InvalidInput(
                f"part {number} was already assembled with other bytes; "
                "abort and restart the upload"
            )
        return md5

    def _append(self, up: _Upload, upload_id: str, number: int, chunks: Iterator[bytes]) -> str:
        """Stream the next part into the assembly (the caller set ``busy``)."""
        digest = hashlib.md5()
        try:
            with self._extending(up) as writer, Feed(writer.write) as feed:
                for chunk in chunks:
                    feed.put(chunk)  # the object's hashes and write, beside the part's MD5
                    digest.update(chunk)
        except BaseException:
            with contextlib.suppress(Exception):  # the body's error is the one to report
                self._drain(up, upload_id)  # a resend of this part may be parked
            raise
        self._advance(up, number, digest.hexdigest())
        self._drain(up, upload_id)
        return digest.hexdigest()

    @contextmanager
    def _extending(self, up: _Upload) -> Iterator[_Assembly]:
        """The assembly writer, taken back to where it was if the part breaks off."""
        writer = up.writer = up.writer or _Assembly(up.folder)
        mark = writer.mark()
        try:
            yield writer
        except BaseException:
            writer.rewind(mark)
            raise

    def _park(self, up: _Upload, upload_id: str, number: int, chunks: Iterator[bytes]) -> str:
        """Keep an early part on disk until the parts before it are assembled."""
        path = up.folder / f"part-{number}.{uuid.uuid4().hex}"
        md5 = _save(path, chunks)
        claim, old = False, None
        with self._lock:
            closed, late = up.closed, number < up.next
            if not (closed or late):
                old, up.parked[number] = up.parked.get(number), _Parked(path, md5)
                claim = number == up.next and not up.busy
                up.busy = up.busy or claim
        if closed or late:
            path.unlink(missing_ok=True)
            if closed:
                raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
            return self._resent(up, number, md5)  # assembled while this copy arrived
        if old is not None:  # a resend replaces the earlier copy, as in S3
            old.path.unlink(missing_ok=True)
        if claim:
            self._drain(up, upload_id)
        return md5

    def _advance(self, up: _Upload, number: int, md5: str) -> None:
        with self._lock:
            up.done[number], up.next = md5, number + 1
            stale = up.parked.pop(number, None)  # a resend that came in meanwhile
        if stale is not None:
            stale.path.unlink(missing_ok=True)

    def _drain(self, up: _Upload, upload_id: str) -> None:
        """Append parked parts that are now next, then give up ``busy``."""
        while True:
            with self._lock:
                number = up.next
                item = None if up.closed else up.parked.pop(number, None)
                up.busy = item is not None
                closed = up.closed
            if item is None:
                break
            try:
                with self._extending(up) as writer:
                    _copy(item.path, writer)
            except BaseException:
                with self._lock:
                    up.parked.setdefault(number, item)
                    up.busy = False
                raise
            self._advance(up, number, item.md5)
            item.path.unlink(missing_ok=True)
        if closed:  # aborted while we held the writer: cleaning it up is ours
            if up.writer is not None:
                up.writer.discard()
            raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")

    # -- finish and abort ---------------------------------------------------------------
    def finish(
        self,
        user: str,
        upload_id: str,
        node_path: str,
        key: str,
        parts: Sequence[tuple[int, str]],
        expected_md5: str | None = None,
    ) -> ObjectInfo:
        self._dir(user, upload_id, node_path, key)
        if not parts:
            raise InvalidInput("a multipart finish needs at least one part")
        with self._lock:
            up = self._open(upload_id)
            if up.busy:
                raise InvalidInput(
                    f"a part of upload {upload_id} is still arriving; "
                    "finish once every part was answered"
                )
            up.closed = True
        try:
            writer = self._whole(up, upload_id, parts)
        except BaseException:
            with self._lock:
                up.closed = False  # nothing consumed: the client may fix its list
            raise
        try:
            info = writer.finish(expected_md5)
            return self.store.commit_object(user, node_path, key, writer, info)
        finally:
            self._forget(upload_id)  # the assembly is used up, committed or not

    def _whole(self, up: _Upload, upload_id: str, parts: Sequence[tuple[int, str]]) -> BlobWriter:
        """A writer holding the listed parts, their eTags checked (``up`` is closed)."""
        numbers = sorted(number for number, _ in parts)
        for number, etag in sorted(parts):
            parked = up.parked.get(number)
            md5 = up.done.get(number) or (parked.md5 if parked else None)
            if md5 is None:
                raise InvalidInput(f"part {number} of upload {upload_id} was never uploaded")
            if etag.strip('"').lower() != md5:
                raise InvalidInput(f"part {number}: eTag {etag!r} does not match its bytes")
        if up.writer is not None and numbers == list(range(1, up.next)):
            writer, up.writer = up.writer, None
            return writer
        if len(set(numbers)) == len(numbers) and all(n in up.parked for n in numbers):
            return self._concat([up.parked[n].path for n in numbers])
        raise InvalidInput(
            f"upload {upload_id}: list each of the parts 1 to {up.next - 1} once; "
            f"parts {numbers} cannot be joined"
        )

    def _concat(self, paths: list[Path]) -> BlobWriter:
        """The slow path, for a list that is not the assembled sequence."""
        writer = self.store.writer()
        try:
            for path in paths:
                _copy(path, writer)
        except BaseException:
            writer.discard()
            raise
        return writer

    def abort(self, user: str, upload_id: str, node_path: str, key: str) -> None:
        self._dir(user, upload_id, node_path, key)
        with self._lock:
            up = self._uploads.get(upload_id)
            if up is not None:
                if up.closed:
                    raise InvalidInput(f"upload {upload_id} is being finished or aborted")
                up.closed = True
        self._forget(upload_id)

    def _forget(self, upload_id: str) -> None:
        """Drop the row first: see ``_open``. A busy writer is left to its thread."""
        self._drop(upload_id)
        with self._lock:
            up = self._uploads.pop(upload_id, None)
            idle = up is not None and not up.busy
        if idle and up is not None and up.writer is not None:
            up.writer.discard()

    def _drop(self, upload_id: str) -> None:
        with self.store.db.write() as conn:
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def _sweep(self) -> None:
        """Forget uploads idle for a day, and those a restart left behind."""
        cutoff = time.monotonic() - IDLE_S
        with self._lock:
            idle = [i for i, u in self._uploads.items() if u.touched < cutoff and not u.busy]
            for upload_id in idle:
                self._uploads[upload_id].closed = True
            live = set(self._uploads)
        old = (
            (datetime.now(UTC) - timedelta(seconds=IDLE_S))
            .isoformat("T", "microseconds")
            .replace("+00:00", "Z")
        )
        with self.store.db.read() as conn:
            rows = conn.execute("SELECT id FROM uploads WHERE created_at < ?", (old,)).fetchall()
        orphans = [r[0] for r in rows if r[0] not in live]
        for upload_id in idle + orphans:
            self._forget(upload_id)


def _limited(chunks: Iterable[bytes], max_size: int | None) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise InvalidInput(f"part larger than the server's limit of {max_size} bytes")
        yield chunk


def _md5_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.md5()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _save(path: Path, chunks: Iterable[bytes]) -> str:
    digest = hashlib.md5()
    try:
        with open(path, "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _copy(path: Path, writer: BlobWriter) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(PART_READ):
            writer.write(chunk)
