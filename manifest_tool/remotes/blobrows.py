"""Which blob holds a content: the ``blobs`` rows, decided under row locks.

Every blob has a row keyed by its strong hash: its bytes (inline), or where they
live (an S3 key; a file's place is its hash). Dedup is decided here, in the
database, whatever the backend: the first commit to insert the hash's row wins;
any other writer of the same content drops its own copy after its commit.

The rule that keeps GC from deleting a blob someone is about to use: a commit that
references a blob holds its row (the insert, or ``FOR SHARE`` on PostgreSQL) until
it commits, and whoever removes a blob first locks its row ``FOR UPDATE`` and only
then checks, in a fresh statement, that no object refers to it. On SQLite the
single writer gives the same order.

Intents (``intents`` rows) name S3 keys written but not yet referenced. A commit
deletes its intent in the same transaction; GC marks an old intent ``doomed``
before deleting its key, so a very late commit finds its intent doomed and fails
instead of referencing a deleted key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from ..errors import RemoteError
from .blobs import BlobInfo, BlobWriter
from .db import Conn, Database

Cleanup = Callable[[], None]
GONE = "the upload took too long and its bytes were collected; send it again"


def now() -> str:
    from .store import now as stamp

    return stamp()


class Intents:
    """The database side of S3 intents; each call is its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, location: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO intents (location, created_at) VALUES (?, ?)", (location, now())
            )

    def touch(self, location: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE intents SET created_at = ? WHERE location = ? AND doomed = 0",
                (now(), location),
            )

    def forget(self, location: str | None) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM intents WHERE location = ?", (location,))


def claim_intent(conn: Conn, location: str) -> None:
    """In a commit: the intent for ``location`` is ours to clear, or GC took the key."""
    row = conn.execute(
        "DELETE FROM intents WHERE location = ? AND doomed = 0 RETURNING location", (location,)
    ).fetchone()
    if row is None:
        raise RemoteError(GONE)


def commit_blob(
    conn: Conn, db: Database, backend: Any, writer: BlobWriter, info: BlobInfo
) -> Cleanup | None:
    """Make ``info.blob`` exist for this transaction's objects (call in hash order).

    Returns what to do after the commit when the writer lost the dedup race.
    """
    data = writer.inline
    sink = writer.sink
    location = sink.location if sink is not None else None
    for _ in range(20):
        won = conn.execute(
            "INSERT INTO blobs (hash, size, data, location, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (hash) DO NOTHING RETURNING hash",
            (info.blob, info.size, data, location, now()),
        ).fetchone()
        if won is not None:
            if location is not None:
                claim_intent(conn, location)
            backend.place(writer, info)
            return None
        held = conn.execute(
            "SELECT hash FROM blobs WHERE hash = ?" + db.lock_share, (info.blob,)
        ).fetchone()
        if held is not None:
            return lambda: backend.drop_unused(writer)
        # removed between our insert and our lock: insert again
    raise RemoteError(f"blob {info.blob} could not be stored: its row kept changing")


ROWS_PER_INSERT = 199  # 5 parameters a row: under 999, SQLite's limit before 3.32


def commit_blobs(
    conn: Conn, db: Database, backend: Any, items: Sequence[tuple[BlobWriter, BlobInfo]]
) -> list[Cleanup]:
    """Make each ``info.blob`` exist for this transaction's objects: blobs distinct,
    in hash order (two commits sharing blobs take their row locks in one order).

    The first insert of a hash wins and places its bytes; a writer that lost keeps
    the row share-locked until its commit and drops its own copy afterwards. On
    SQLite, one insert per 199 rows, not a round trip per blob: for a batch of 1,000
    small objects those round trips were most of the commit. On PostgreSQL each blob
    goes through ``commit_blob``, so that every locker takes rows in hash order.
    Returns what to do after the commit.
    """
    if db.dialect != "sqlite":  # row locks, taken one at a time in hash order
        made = (commit_blob(conn, db, backend, w, info) for w, info in items)
        return [cleanup for cleanup in made if cleanup is not None]
    # SQLite: one writer at a time and no row locks, so no order to keep
    later: list[Cleanup] = []
    pending = list(items)
    stamp = now()
    for _ in range(20):
        won: set[str] = set()
        for start in range(0, len(pending), ROWS_PER_INSERT):
            won.update(_insert_rows(conn, pending[start : start + ROWS_PER_INSERT], stamp))
        lost = []
        for writer, info in pending:
            if info.blob not in won:
                lost.append((writer, info))
                continue
            location = writer.sink.location if writer.sink is not None else None
            if location is not None:
                claim_intent(conn, location)
            backend.place(writer, info)
        if not lost:
            return later
        held = _held(conn, db, [info.blob for _, info in lost])
        later += [partial(backend.drop_unused, w) for w, info in lost if info.blob in held]
        # removed between our insert and our lock: insert again
        pending = [(w, info) for w, info in lost if info.blob not in held]
        if not pending:
            return later
    raise RemoteError(f"blob {pending[0][1].blob} could not be stored: its row kept changing")


def _insert_rows(
    conn: Conn, rows: Sequence[tuple[BlobWriter, BlobInfo]], stamp: str
) -> list[str]:
    """Insert the blobs' rows that do not exist yet; the hashes this insert made."""
    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
    params: list[Any] = []
    for writer, info in rows:
        sink = writer.sink
        location = sink.location if sink is not None else None
        params += (info.blob, info.size, writer.inline, location, stamp)
    made = conn.execute(
        f"INSERT INTO blobs (hash, size, data, location, created_at) VALUES {values}"
        " ON CONFLICT (hash) DO NOTHING RETURNING hash",
        params,
    ).fetchall()
    return [row[0] for row in made]


def _held(conn: Conn, db: Database, blobs: Sequence[str]) -> set[str]:
    """Which of ``blobs`` have rows, each now share-locked for this transaction."""
    held: set[str] = set()
    for start in range(0, len(blobs), ROWS_PER_INSERT):
        chunk = blobs[start : start + ROWS_PER_INSERT]
        marks = ", ".join(["?"] * len(chunk))
        rows = conn.execute(
            f"SELECT hash FROM blobs WHERE hash IN ({marks})" + db.lock_share, chunk
        ).fetchall()
        held.update(row[0] for row in rows)
    return held


def lookup(conn: Conn, blob: str) -> tuple[bytes | None, str | None]:
    """(inline bytes, S3 key) of a blob; (None, None) for a file blob."""
    row = conn.execute("SELECT data, location FROM blobs WHERE hash = ?", (blob,)).fetchone()
    if row is None:
        return None, None
    data = row[0]
    return (bytes(data) if data is not None else None), row[1]


def referenced(conn: Conn, blob: str) -> bool:
    row = conn.execute("SELECT 1 FROM objects WHERE blob = ? LIMIT 1", (blob,)).fetchone()
    return row is not None


def lock_for_removal(conn: Conn, db: Database, backend: Any, blob: str) -> Any:
    """The blob's row locked FOR UPDATE (made first for a file that has none), or None
    when an object refers to the blob or there is nothing to remove.

    A row is made only for a blob file that has none. Made for a blob whose row is
    simply gone (two deletes collecting one blob), it would be a row without bytes
    that a later put of the same content takes as its blob, and loses its bytes to.
    """
    row = conn.execute(
        "SELECT hash, data IS NOT NULL AS inline, location, created_at, released_at"
        " FROM blobs WHERE hash = ?" + db.lock_update,
        (blob,),
    ).fetchone()
    if row is None and not backend.has_file(blob):
        return None  # removed already
    if row is None:  # a file from before the blobs table, or left by a rolled-back commit
        conn.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, -1, ?)"
            " ON CONFLICT (hash) DO NOTHING",
            (blob, now()),
        )
        row = conn.execute(
            "SELECT hash, data IS NOT NULL AS inline, location, created_at, released_at"
            " FROM blobs WHERE hash = ?" + db.lock_update,
            (blob,),
        ).fetchone()
    if row is None or referenced(conn, blob):
        return None
    return row


COLLECT_CHUNK = 500  # blobs released per transaction: one commit each, not one per blob


def collect(db: Database, backend: Any, blobs: Iterable[str]) -> None:
    """Blobs whose last object just went: removed now where no reader can be cut short
    (inline rows; files, read through open descriptors), else stamped as released for
    GC to remove after its grace."""
    ordered = sorted(set(blobs))  # one lock order for every replica: no deadlock
    for start in range(0, len(ordered), COLLECT_CHUNK):
        for blob in _collect_rows(db, backend, ordered[start : start + COLLECT_CHUNK]):
            _remove_file(db, backend, blob)


def _collect_rows(db: Database, backend: Any, blobs: Sequence[str]) -> list[str]:
    """Inline rows deleted and deferred keys stamped in one transaction; the file
    blobs left, each to unlink under its own row lock (a rollback must not find a
    row whose file is gone)."""
    files = []
    with db.write() as conn:
        for blob in blobs:
            row = lock_for_removal(conn, db, backend, blob)
            if row is None:
                continue
            if row["inline"]:
                conn.execute("DELETE FROM blobs WHERE hash = ?", (blob,))
            elif backend.deferred_removal:
                conn.execute("UPDATE blobs SET released_at = ? WHERE hash = ?", (now(), blob))
            else:
                files.append(blob)
    return files


def _remove_file(db: Database, backend: Any, blob: str) -> None:
    with db.write() as conn:
        row = lock_for_removal(conn, db, backend, blob)
        if row is not None:
            conn.execute("DELETE FROM blobs WHERE hash = ?", (blob,))
            backend.remove(blob, row["location"])


def remove_unused(db: Database, backend: Any, blob: str, cutoff: str | None) -> int | None:
    """Remove one blob if no object refers to it and (with ``cutoff``) it has been
    idle since then; the bytes freed, or None when kept. An S3 key becomes a doomed
    intent in the same transaction, so a kill before its deletion leaves it findable."""
    with db.write() as conn:
        row = lock_for_removal(conn, db, backend, blob)
        if row is None:
            return None
        if cutoff is not None and (row["released_at"] or row["created_at"]) >= cutoff:
            return None
        size = conn.execute("SELECT size FROM blobs WHERE hash = ?", (blob,)).fetchone()[0]
        conn.execute("DELETE FROM blobs WHERE hash = ?", (blob,))
        location = row["location"]
        if location is not None:
            doom(conn, location)
        elif not row["inline"]:
            backend.remove(blob, None)  # a file: unlinked while its row is locked
    if location is not None:
        backend.remove(blob, location)
        forget(db, location)
    return max(int(size), 0)


def doom(conn: Conn, location: str) -> None:
    """Mark ``location`` for deletion, in the transaction that drops its last reference."""
    conn.execute(
        "INSERT INTO intents (location, created_at, doomed) VALUES (?, ?, 1)"
        " ON CONFLICT (location) DO UPDATE SET doomed = 1",
        (location, now()),
    )


def forget(db: Database, location: str) -> None:
    with db.write() as conn:
        conn.execute("DELETE FROM intents WHERE location = ?", (location,))


def stale_intents(db: Database, cutoff: str) -> list[str]:
    """Keys written but never referenced (older than ``cutoff``), or doomed."""
    with db.read() as conn:
        rows = conn.execute(
            "SELECT location FROM intents WHERE doomed = 1 OR created_at < ? ORDER BY location",
            (cutoff,),
        ).fetchall()
    return [r[0] for r in rows]


def clear_intent(db: Database, backend: Any, location: str) -> bool:
    """Delete an intent's S3 key (and any multipart upload on it), then the intent;
    False when a commit claimed it meanwhile."""
    with db.write() as conn:
        held = conn.execute(
            "UPDATE intents SET doomed = 1 WHERE location = ? RETURNING location", (location,)
        ).fetchone()
        if held is None:
            return False
        used = conn.execute(
            "SELECT 1 FROM blobs WHERE location = ? UNION ALL"
            " SELECT 1 FROM upload_parts WHERE location = ?",
            (location, location),
        ).fetchone()
        if used is not None:  # referenced after all: only the intent is stale
            conn.execute("DELETE FROM intents WHERE location = ?", (location,))
            return False
    backend.abort_uploads(location)
    backend.remove(None, location)
    forget(db, location)
    return True


def unused_blobs(db: Database, cutoff: str, files_too: bool) -> list[tuple[str, int]]:
    """(hash, size) of blobs no object refers to, idle since ``cutoff`` (confirmed
    again on removal). Without ``files_too``, rows of blob files are left to the scan
    of the files themselves."""
    only = "" if files_too else " AND (b.data IS NOT NULL OR b.location IS NOT NULL)"
    with db.read() as conn:
        rows = conn.execute(
            "SELECT hash, size FROM blobs b WHERE COALESCE(b.released_at, b.created_at) < ?"
            " AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.blob = b.hash)" + only
            + " ORDER BY hash",
            (cutoff,),
        ).fetchall()
    return [(r[0], max(int(r[1]), 0)) for r in rows]
