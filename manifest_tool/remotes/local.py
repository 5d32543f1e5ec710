"""The ``file:`` remote: the embedded store, called in-process as one user."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import NodeNotFound, RemoteError
from .base import Lineage, Node, ObjectInfo, Upload
from .store import Store

READ_BLOCK = 1024 * 1024


class LocalRemote:
    def __init__(self, root: Path, user: str) -> None:
        self.url = f"file:{root}"
        try:
            self.store = Store(root)
        except (OSError, sqlite3.Error) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise RemoteError(
                f"cannot open the store at {root}: {reason} "
                "(point the file: remote at a directory you can write)"
            ) from None
        self.user = user

    def whoami(self) -> str:
        return self.user

    def node_info(self, path: str) -> Node | None:
        try:
            return self.store.node_info(self.user, path)
        except NodeNotFound:
            return None

    def list_nodes(self, parent: str) -> list[Node]:
        nodes, _ = self.store.list_nodes(self.user, parent, size=1_000_000)
        return nodes

    def create_node(
        self,
        parent: str,
        name: str,
        type: str,
        labels: Sequence[str] = (),
        description: str = "",
        extra: str = "{}",
    ) -> str:
        return self.store.create_node(self.user, parent, name, type, labels, description, extra)

    def update_node(self, path: str, **fields: Any) -> Node:
        return self.store.update_node(self.user, path, fields)

    def set_if_unchanged(self, path: str, revision: int, **fields: Any) -> Node:
        return self.store.update_node(self.user, path, fields, if_revision=revision)

    def delete_node(self, path: str) -> None:
        self.store.delete_node(self.user, path)

    def lineage(self, node: str) -> Lineage:
        return self.store.lineage(self.user, node)

    def add_edges(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.store.add_edges(self.user, pairs)

    def list_objects(self, node_path: str) -> list[ObjectInfo]:
        objects, _ = self.store.list_objects(self.user, node_path, size=10_000_000)
        return objects

    def put_object(self, node_path: str, upload: Upload) -> ObjectInfo:
        chunks = [upload.data] if upload.data is not None else _read(upload.source)
        return self.store.put_object(self.user, node_path, upload.key, chunks, upload.md5)

    def put_objects(self, node_path: str, uploads: Sequence[Upload]) -> list[ObjectInfo]:
        """Many small objects in one store transaction (see ``Store.put_batch``)."""
        items = [
            (u.key, [u.data] if u.data is not None else _read(u.source), u.md5) for u in uploads
        ]
        return self.store.put_batch(self.user, node_path, items)

    def get_object(self, node_path: str, key: str, dest: Path) -> None:
        _, blob = self.store.object_blob(self.user, node_path, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        os.close(fd)
        try:
            shutil.copyfile(blob, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete_objects(self, node_path: str, keys: Iterable[str]) -> None:
        self.store.delete_objects(self.user, node_path, keys)

    def close(self) -> None:
        self.store.close()


def _read(path: str | Path | None) -> Iterator[bytes]:
    assert path is not None, "an Upload has a source or data"
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_BLOCK):
            yield chunk
