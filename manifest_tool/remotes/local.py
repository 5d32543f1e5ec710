"""The ``file:`` remote: the embedded store, called in-process as one user."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MissingSource, NodeNotFound, RemoteError, write_error
from ..reading import read_at_most
from .base import ContentWrites, Lineage, Node, ObjectInfo, Upload
from .blobs import FileReader
from .gc import maybe_collect
from .store import Store

READ_BLOCK = 1024 * 1024
PAGE = 10_000  # objects per page of iter_objects


class LocalRemote:
    # objects per batch: each batch is one transaction, and every transaction writes
    # again the index pages its random blob hashes touch, so fewer and larger ones
    # write far less (a batch holds at most 8 MiB, see publish.upload_all)
    batch_count = 4096

    def __init__(self, root: Path, user: str) -> None:
        self.url = f"file:{root}"
        self.root = root
        try:
            self.store = Store(root)
        except (OSError, sqlite3.Error) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise RemoteError(
                f"cannot open the store at {root}: {reason} "
                "(point the file: remote at a directory you can write)"
            ) from None
        self.user = user
        self.writes = ContentWrites()
        maybe_collect(self.store)  # what killed writers left behind, once a day

    def whoami(self) -> str:
        return self.user

    def node_info(self, path: str) -> Node | None:
        try:
            return self.store.node_info(self.user, path)
        except NodeNotFound:
            return None

    def node_infos(self, paths: Sequence[str]) -> list[Node | None]:
        return self.store.node_infos(self.user, paths)

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
        with self._writing():
            return self.store.create_node(self.user, parent, name, type, labels, description, extra)

    def update_node(self, path: str, **fields: Any) -> Node:
        with self._writing():
            return self.store.update_node(self.user, path, fields)

    def set_if_unchanged(self, path: str, revision: int, **fields: Any) -> Node:
        return self.store.update_node(self.user, path, fields, if_revision=revision)

    def delete_node(self, path: str) -> None:
        with self._writing():
            self.store.delete_node(self.user, path)

    def lineage(self, node: str) -> Lineage:
        return self.store.lineage(self.user, node)

    def add_edges(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.store.add_edges(self.user, pairs)

    def list_objects(self, node_path: str) -> list[ObjectInfo]:
        objects, _ = self.store.list_objects(self.user, node_path, size=10_000_000)
        return objects

    def iter_objects(self, node_path: str) -> Iterator[ObjectInfo]:
        """The node's objects a page at a time: a check that only reads each once need
        not hold a listing of 300,000 at once."""
        page = 1
        while True:
            objects, total = self.store.list_objects(self.user, node_path, page, PAGE)
            yield from objects
            if not objects or page * PAGE >= total:
                return
            page += 1

    def put_object(self, node_path: str, upload: Upload) -> ObjectInfo:
        chunks = _chunks(upload)
        with self._writing():
            info = self.store.put_object(self.user, node_path, upload.key, chunks, upload.md5)
        self.writes.add(node_path, [upload.key])
        return info

    def put_objects(self, node_path: str, uploads: Sequence[Upload]) -> list[ObjectInfo]:
        """Many small objects in one store transaction (see ``Store.put_batch``)."""
        items = [(u.key, _chunks(u), u.md5) for u in uploads]
        with self._writing():
            infos = self.store.put_batch(self.user, node_path, items)
        self.writes.add(node_path, [u.key for u in uploads])
        return infos

    def get_object(self, node_path: str, key: str, dest: Path) -> None:
        info, blob = self.store.object_blob(self.user, node_path, key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    if isinstance(blob, FileReader):  # in the kernel, from the open blob
                        _send(blob.fh.fileno(), out.fileno(), info.size_bytes)
                    else:
                        for chunk in blob.chunks(0, info.size_bytes):
                            out.write(chunk)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            blob.close()

    def delete_objects(self, node_path: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self._writing():
            self.store.delete_objects(self.user, node_path, keys)
        self.writes.add(node_path, keys)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or a failing store is one line naming the store, not a trace.
        Reading a source can fail too (MissingSource from our reader), which passes."""
        try:
            yield
        except OSError as err:
            raise write_error(err, self.root) from None
        except sqlite3.OperationalError as err:
            if "full" in str(err):
                raise write_error(OSError(errno.ENOSPC, str(err)), self.root) from None
            raise RemoteError(f"the store at {self.root} failed: {err}") from None

    def close(self) -> None:
        self.store.close()


def _send(src: int, dst: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, size - offset)
        if sent == 0:
            break
        offset += sent


def _chunks(upload: Upload) -> Iterable[bytes]:
    if upload.data is not None:
        return [upload.data]
    small = upload.size < READ_BLOCK
    chunks = _read_small(upload.source, upload.size) if small else _read(upload.source)
    if upload.on_bytes is None:
        return chunks
    return _counted(chunks, upload.on_bytes)


def _read_small(path: str | Path | None, size: int) -> Iterator[bytes]:
    """A small file in one read of its descriptor (a batch holds thousands); one byte
    past its size, so that a file that grew since it was hashed fails the MD5 check."""
    assert path is not None, "an Upload has a source or data"
    try:
        data = read_at_most(path, size + 1)
    except OSError as err:
        raise MissingSource(f"cannot read '{path}': {err.strerror} (check it)") from None
    if data:
        yield data


def _counted(chunks: Iterator[bytes], on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        on_bytes(len(chunk))  # after the store wrote it


def _read(path: str | Path | None) -> Iterator[bytes]:
    assert path is not None, "an Upload has a source or data"
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, errors told apart from writes
    except OSError as err:
        raise MissingSource(f"cannot read '{path}': {err.strerror} (check it)") from None
    with fh:
        while chunk := _read_block(fh, path):
            yield chunk


def _read_block(fh: Any, path: str | Path) -> bytes:
    try:
        return fh.read(READ_BLOCK)  # type: ignore[no-any-return]
    except OSError as err:
        raise MissingSource(f"cannot read '{path}': {err.strerror} (check it)") from None
