"""Multipart uploads any replica can serve: the state in the database, the parts in S3.

Each part is stored as it arrives, by whichever replica receives it: inline in its
``upload_parts`` row when small, else under its own write-once S3 key (an intent
first, cleared when the row is committed, as for blobs). Nothing lives in a
process, so a restart loses nothing and any replica accepts any part, any finish.

Finish streams the listed parts, in order, through one blob writer on the replica
that finishes: that is where the object's strong hash (BLAKE3, which cannot be
combined from per-part hashes) and MD5 are computed, and the final blob is written
to S3 as its own multipart upload of fixed 8 MiB parts. So clients may send parts of
any size (S3's 5 MiB minimum applies only to the parts the writer makes), at the
cost of one read and one write of the object inside the store at finish.

Uploads left idle past GC's grace are aborted by GC (their part keys deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidInput, NodeNotFound
from . import blobrows
from .base import ObjectInfo
from .multipart import _limited, check_part_number
from .store import Store, now


class SharedMultipart:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, user: str, node_path: str, key: str) -> str:
        import uuid

        self.store._check_target(user, node_path, key)
        upload_id = uuid.uuid4().hex
        with self.store.db.write() as conn:
            conn.execute(
                "INSERT INTO uploads (id, node_path, key, owner, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (upload_id, node_path, key, user, now()),
            )
        return upload_id

    def _check(self, conn: Any, user: str, upload_id: str, node_path: str, key: str) -> None:
        row = conn.execute(
            "SELECT owner, node_path, key FROM uploads WHERE id = ?", (upload_id,)
        ).fetchone()
        if row is None or (row[0], row[1], row[2]) != (user, node_path, key):
            raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")

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
        db = self.store.db
        with db.read() as conn:
            self._check(conn, user, upload_id, node_path, key)
        writer = self.store.writer()
        try:
            writer.write_all(_limited(chunks, max_size))
            info = writer.finish()
            location = writer.sink.location if writer.sink is not None else None
            with db.write() as conn:
                # the upload row, held: an abort or finish on another replica waits
                touched = conn.execute(
                    "UPDATE uploads SET created_at = ? WHERE id = ? RETURNING id",
                    (now(), upload_id),
                ).fetchone()
                if touched is None:
                    raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
                if location is not None:
                    blobrows.claim_intent(conn, location)
                old = conn.execute(
                    "SELECT location FROM upload_parts WHERE upload_id = ? AND number = ?",
                    (upload_id, number),
                ).fetchone()
                conn.execute(
                    "INSERT INTO upload_parts (upload_id, number, md5, size, data, location,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id, number)"
                    " DO UPDATE SET md5 = excluded.md5, size = excluded.size,"
                    " data = excluded.data, location = excluded.location,"
                    " created_at = excluded.created_at",
                    (upload_id, number, info.md5, info.size, writer.inline, location, now()),
                )
                replaced = old[0] if old is not None else None
                if replaced is not None:  # a resend replaces the earlier copy, as in S3
                    blobrows.doom(conn, replaced)
        except BaseException:
            writer.discard()
            raise
        if replaced is not None:
            self._delete(replaced)
        return info.md5

    def finish(
        self,
        user: str,
        upload_id: str,
        node_path: str,
        key: str,
        parts: Sequence[tuple[int, str]],
        expected_md5: str | None = None,
    ) -> ObjectInfo:
        if not parts:
            raise InvalidInput("a multipart finish needs at least one part")
        with self.store.db.read() as conn:
            self._check(conn, user, upload_id, node_path, key)
            rows = {  # metadata only: each inline part's bytes are read as it is copied
                r[0]: r
                for r in conn.execute(
                    "SELECT number, md5, size, location FROM upload_parts WHERE upload_id = ?",
                    (upload_id,),
                ).fetchall()
            }
        numbers = sorted(number for number, _ in parts)
        if len(set(numbers)) != len(numbers):
            raise InvalidInput(f"upload {upload_id}: list each part once; parts {numbers}")
        for number, etag in sorted(parts):
            row = rows.get(number)
            if row is None:
                raise InvalidInput(f"part {number} of upload {upload_id} was never uploaded")
            if etag.strip('"').lower() != row[1]:
                raise InvalidInput(f"part {number}: eTag {etag!r} does not match its bytes")
        writer = self.store.writer()
        try:
            for number in numbers:
                self._copy_part(upload_id, rows[number], writer)
            info = writer.finish(expected_md5)
        except BaseException:
            writer.discard()
            with self.store.db.read() as conn:  # an abort deleted the parts under us
                self._check(conn, user, upload_id, node_path, key)
            raise
        doomed: list[str] = []

        def claim(conn: Any) -> None:  # in the commit's transaction: finish or abort wins
            dropped = _drop_rows(conn, self.store, upload_id)
            if dropped is None:
                raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
            doomed.extend(dropped)

        done = self.store.commit_object(user, node_path, key, writer, info, claim)
        _remove_keys(self.store, doomed)
        return done

    def _copy_part(self, upload_id: str, row: Any, writer: Any) -> None:
        number, md5, size, location = row
        if location is None:  # inline
            with self.store.db.read() as conn:
                held = conn.execute(
                    "SELECT data FROM upload_parts WHERE upload_id = ? AND number = ?"
                    " AND md5 = ?",
                    (upload_id, number, md5),
                ).fetchone()
            if held is None:
                raise InvalidInput(f"part {number} of upload {upload_id} changed; finish again")
            writer.write(bytes(held[0]))
            return
        reader = self.store.blobs.open("", location)
        try:
            for chunk in reader.chunks(0, size):
                writer.write(chunk)
        finally:
            reader.close()

    def abort(self, user: str, upload_id: str, node_path: str, key: str) -> None:
        with self.store.db.read() as conn:
            self._check(conn, user, upload_id, node_path, key)
        if not drop_upload(self.store, upload_id):  # a finish took it first
            raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")

    def _delete(self, location: str) -> None:
        self.store.blobs.remove(None, location)
        blobrows.forget(self.store.db, location)


def drop_upload(store: Store, upload_id: str) -> bool:
    """Forget an upload and delete its part keys (doomed first); False if gone."""
    with store.db.write() as conn:
        locations = _drop_rows(conn, store, upload_id)
    if locations is None:
        return False
    _remove_keys(store, locations)
    return True


def _drop_rows(conn: Any, store: Store, upload_id: str) -> list[str] | None:
    """The upload's rows deleted (its part keys doomed) in the caller's transaction,
    the upload row locked first: of a finish and an abort, exactly one finds it.
    The part keys to delete after the commit; None if the upload was gone."""
    held = conn.execute(
        "SELECT id FROM uploads WHERE id = ?" + store.db.lock_update, (upload_id,)
    ).fetchone()
    if held is None:
        return None
    # the parts before the upload: its delete would cascade them away unseen
    rows = conn.execute(
        "DELETE FROM upload_parts WHERE upload_id = ? RETURNING location", (upload_id,)
    ).fetchall()
    conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
    locations = [r[0] for r in rows if r[0] is not None]
    for location in locations:
        blobrows.doom(conn, location)
    return locations


def _remove_keys(store: Store, locations: list[str]) -> None:
    for location in locations:
        store.blobs.remove(None, location)
        blobrows.forget(store.db, location)


def idle_uploads(store: Store, cutoff: str) -> list[str]:
    """Shared uploads with no part since ``cutoff`` (the embedded store's in-process
    uploads are swept with their folders instead)."""
    if not uses_shared(store):
        return []
    with store.db.read() as conn:
        rows = conn.execute(
            "SELECT id FROM uploads WHERE created_at < ? ORDER BY id", (cutoff,)
        ).fetchall()
    return [r[0] for r in rows]


def uses_shared(store: Store) -> bool:
    return bool(store.blobs.kind == "s3")


def multipart_for(store: Store) -> Any:
    """The multipart implementation for ``store``: shared state for S3 stores, the
    in-process assembly (one write, no re-read) for blob files."""
    if uses_shared(store):
        return SharedMultipart(store)
    from .multipart import Multipart

    return Multipart(store)
