"""Multipart uploads on the embedded store: parts on disk, one verified commit.

Parts live in ``uploads/<id>/<partNumber>`` until the finish call streams them, in
order, into one blob writer; nothing is visible under the key before that.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import InvalidInput, NodeNotFound
from .base import ObjectInfo
from .store import Store, now

PART_READ = 1024 * 1024


class Multipart:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "uploads"

    def start(self, user: str, node_path: str, key: str) -> str:
        self.store._check_target(user, node_path, key)
        upload_id = uuid.uuid4().hex
        with self.store.db.write() as conn:
            conn.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?)",
                (upload_id, node_path, key, user, now()),
            )
        (self.root / upload_id).mkdir()
        return upload_id

    def _dir(self, user: str, upload_id: str, node_path: str, key: str) -> Path:
        row = (
            self.store.db.conn()
            .execute("SELECT * FROM uploads WHERE id = ?", (upload_id,))
            .fetchone()
        )
        if (
            row is None
            or row["owner"] != user
            or (row["node_path"], row["key"]) != (node_path, key)
        ):
            raise NodeNotFound(upload_id, f"upload not found [{upload_id}]")
        return self.root / upload_id

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
        if not 1 <= number <= 10000:
            raise InvalidInput("partNumber must be between 1 and 10000")
        folder = self._dir(user, upload_id, node_path, key)
        digest, size, tmp = hashlib.md5(), 0, folder / f".{number}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    fh.close()
                    tmp.unlink()
                    raise InvalidInput(f"part larger than the server's limit of {max_size} bytes")
                digest.update(chunk)
                fh.write(chunk)
        tmp.replace(folder / str(number))
        return digest.hexdigest()

    def finish(
        self,
        user: str,
        upload_id: str,
        node_path: str,
        key: str,
        parts: Sequence[tuple[int, str]],
        expected_md5: str | None = None,
    ) -> ObjectInfo:
        folder = self._dir(user, upload_id, node_path, key)
        if not parts:
            raise InvalidInput("a multipart finish needs at least one part")
        writer = self.store.writer()
        try:
            for number, etag in sorted(parts):
                part = folder / str(number)
                if not part.is_file():
                    raise InvalidInput(f"part {number} of upload {upload_id} was never uploaded")
                digest = hashlib.md5()
                with open(part, "rb") as fh:
                    while chunk := fh.read(PART_READ):
                        digest.update(chunk)
                        writer.write(chunk)
                if etag.strip('"').lower() != digest.hexdigest():
                    raise InvalidInput(f"part {number}: eTag {etag!r} does not match its bytes")
            info = writer.finish(expected_md5)
        except BaseException:
            writer.discard()
            raise
        obj = self.store.commit_object(user, node_path, key, writer, info)
        self._drop(upload_id)
        return obj

    def abort(self, user: str, upload_id: str, node_path: str, key: str) -> None:
        self._dir(user, upload_id, node_path, key)
        self._drop(upload_id)

    def _drop(self, upload_id: str) -> None:
        with self.store.db.write() as conn:
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        shutil.rmtree(self.root / upload_id, ignore_errors=True)
