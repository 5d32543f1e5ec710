"""The embedded store: per-user trees of nodes, objects kept as blobs.

This is the server's logic: the ``file:`` remote calls it in-process and
``manifest-tool serve`` exposes it over HTTP. Every call names the acting user, who
may touch only paths below ``/<user>/``.
"""

from __future__ import annotations

import json
import mimetypes
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidInput,
    NameConflict,
    NodeNotFound,
    NotAFolder,
    PermissionDenied,
    RevisionMismatch,
)
from ..paths import RESERVED_ROOT_NAMES, check_key
from . import graph
from .base import ARTIFACT, FOLDER, HOLDS_OBJECTS, RUN, Lineage, Node, ObjectInfo
from .blobs import BlobInfo, BlobStore, BlobWriter
from .db import Database

NODE_TYPES = (FOLDER, ARTIFACT, RUN)
UPDATABLE = ("name", "labels", "description", "extra")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def norm_path(path: str) -> str:
    """A node path made canonical, or InvalidInput for anything that could escape."""
    if not path.startswith("/"):
        raise InvalidInput(f"node path {path!r} must start with '/'")
    parts = path.strip("/").split("/")
    for part in parts:
        check_name(part)
    return "/" + "/".join(parts)


def check_name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or len(name) > 255:
        raise InvalidInput(f"invalid node name {name!r}")
    if any(ord(c) < 32 for c in name) or "\\" in name:
        raise InvalidInput(f"invalid node name {name!r}")
    return name


def split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.root / "store.sqlite")
        self.blobs = BlobStore(self.root / "blobs")
        (self.root / "uploads").mkdir(exist_ok=True)

    # -- access -----------------------------------------------------------------
    def _own(self, user: str, path: str) -> str:
        """Canonical path, if ``user`` may touch it (their root and below)."""
        path = norm_path(path)
        if path.split("/")[1] != user:
            raise PermissionDenied(
                f"permission denied: user '{user}' may not touch {path} (only paths below /{user}/)"
            )
        return path

    def _ensure_root(self, conn: sqlite3.Connection, user: str) -> None:
        check_name(user)
        stamp = now()
        conn.execute(
            "INSERT OR IGNORE INTO nodes (id, path, parent, name, owner, type, created_at,"
            " updated_at) VALUES (?, ?, '/', ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), f"/{user}", user, user, FOLDER, stamp, stamp),
        )

    def _row(self, conn: sqlite3.Connection, path: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM nodes WHERE path = ?", (path,)).fetchone()
        if row is None:
            raise NodeNotFound(path)
        return row  # type: ignore[no-any-return]

    # -- nodes ------------------------------------------------------------------
    def node_info(self, user: str, path_or_id: str) -> Node:
        conn = self.db.conn()
        if not path_or_id.startswith("/"):
            row = conn.execute("SELECT * FROM nodes WHERE id = ?", (path_or_id,)).fetchone()
            if row is None or row["owner"] != user:
                raise NodeNotFound(path_or_id)
            return _node(row)
        path = self._own(user, path_or_id)
        if path == f"/{user}":
            with self.db.write() as wconn:
                self._ensure_root(wconn, user)
        return _node(self._row(conn, path))

    def node_infos(self, user: str, paths: Sequence[str]) -> list[Node | None]:
        """Many nodes by path in one read (None where absent), in the order asked."""
        wanted = [self._own(user, p) for p in paths]
        if f"/{user}" in wanted:
            with self.db.write() as wconn:
                self._ensure_root(wconn, user)
        conn, found = self.db.conn(), {}
        for start in range(0, len(wanted), 500):  # under SQLite's limit on parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT * FROM nodes WHERE path IN ({marks})", chunk):
                found[row["path"]] = _node(row)
        return [found.get(p) for p in wanted]

    def list_nodes(
        self, user: str, parent: str, type: str | None = None, page: int = 1, size: int = 1000
    ) -> tuple[list[Node], int]:
        parent = self._own(user, parent)
        conn = self.db.conn()
        if parent != f"/{user}":
            self._row(conn, parent)
        where, args = "parent = ?", [parent]
        if type:
            where, args = where + " AND type = ?", [*args, type]
        total = conn.execute(f"SELECT COUNT(*) FROM nodes WHERE {where}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT * FROM nodes WHERE {where} ORDER BY name LIMIT ? OFFSET ?",
            [*args, size, (max(page, 1) - 1) * size],
        ).fetchall()
        return [_node(r) for r in rows], int(total)

    def create_node(
        self,
        user: str,
        parent: str,
        name: str,
        type: str = FOLDER,
        labels: Sequence[str] = (),
        description: str = "",
        extra: str = "{}",
    ) -> str:
        parent = self._own(user, parent)
        path = norm_path(f"{parent}/{check_name(name)}")
        if type not in NODE_TYPES:
            raise InvalidInput(f"unsupported node type {type!r} (use Folder, Artifact or Run)")
        node_id, stamp = str(uuid.uuid4()), now()
        with self.db.write() as conn:
            self._ensure_root(conn, user)
            kind = self._row(conn, parent)["type"]
            if kind != FOLDER:
                raise NotAFolder(
                    f"parent {parent} is a{'n' * (kind == ARTIFACT)} {kind},"
                    " not a Folder: only Folders hold nodes"
                )
            try:
                conn.execute(
                    "INSERT INTO nodes (id, path, parent, name, owner, type, labels,"
                    " description, extra, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        node_id,
                        path,
                        parent,
                        name,
                        user,
                        type,
                        json.dumps(list(labels)),
                        description,
                        extra,
                        stamp,
                        stamp,
                    ),
                )
            except sqlite3.IntegrityError:
                raise NameConflict(f"Invalid conflicting node Name [{path}]") from None
        return node_id

    def update_node(
        self, user: str, path: str, fields: Mapping[str, Any], if_revision: int | None = None
    ) -> Node:
        """Change a node's fields; with ``if_revision``, only if its objects have not
        changed since that revision (the digest compare-and-set)."""
        path = self._own(user, path)
        unknown = set(fields) - set(UPDATABLE)
        if unknown:
            raise InvalidInput(f"cannot update {sorted(unknown)} (updatable: {UPDATABLE})")
        if path == f"/{user}" and fields.get("name", user) != user:
            # a renamed root would become another user's (possibly lazily made) root
            raise PermissionDenied(f"permission denied: {path} is the user's root folder")
        with self.db.write() as conn:
            row = self._row(conn, path)
            if if_revision is not None and row["revision"] != if_revision:
                raise RevisionMismatch(
                    f"node {path} changed: its objects are at revision {row['revision']},"
                    f" not {if_revision}"
                )
            if "name" in fields and fields["name"] != split(path)[1]:
                path = self._rename(conn, path, check_name(str(fields["name"])))
            sets = {k: v for k, v in fields.items() if k != "name"}
            if "labels" in sets:
                sets["labels"] = json.dumps(list(sets["labels"]))
            sets["updated_at"] = now()
            assigns = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(f"UPDATE nodes SET {assigns} WHERE path = ?", [*sets.values(), path])
            return _node(self._row(conn, path))

    def _rename(self, conn: sqlite3.Connection, path: str, name: str) -> str:
        parent, _ = split(path)
        new = f"{parent.rstrip('/')}/{name}"
        if conn.execute("SELECT 1 FROM nodes WHERE path = ?", (new,)).fetchone():
            raise NameConflict(f"Invalid conflicting node Name [{new}]")
        n = len(path)
        conn.execute(
            "UPDATE nodes SET path = ? || substr(path, ?), parent = CASE WHEN path = ? THEN"
            " parent ELSE ? || substr(parent, ?) END, name = CASE WHEN path = ? THEN ? ELSE"
            " name END WHERE path = ? OR substr(path, 1, ?) = ?",
            (new, n + 1, path, new, n + 1, path, name, path, n + 1, path + "/"),
        )
        return new

    def delete_node(self, user: str, path: str) -> None:
        path = self._own(user, path)
        if path == f"/{user}":
            raise PermissionDenied(f"permission denied: {path} is the user's root folder")
        with self.db.write() as conn:
            self._row(conn, path)
            sub = "path = ? OR substr(path, 1, ?) = ?"
            args = (path, len(path) + 1, path + "/")
            ids = [r[0] for r in conn.execute(f"SELECT id FROM nodes WHERE {sub}", args)]
            blobs = self._drop_objects(conn, ids)
            graph.drop(conn, ids)
            conn.execute(f"DELETE FROM nodes WHERE {sub}", args)
        self._collect(blobs)

    # -- lineage ----------------------------------------------------------------
    def _by_ref(self, conn: sqlite3.Connection, user: str, ref: str) -> sqlite3.Row:
        """The row of a node given by path or id; another user's id is not found."""
        if ref.startswith("/"):
            return self._row(conn, self._own(user, ref))
        row = conn.execute("SELECT * FROM nodes WHERE id = ?", (ref,)).fetchone()
        if row is None or row["owner"] != user:
            raise NodeNotFound(ref)
        return row  # type: ignore[no-any-return]

    def add_edges(self, user: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Link (from, to) node ids: all of them or, on any bad pair, none."""
        if len(pairs) > graph.MAX_EDGES:
            raise InvalidInput(f"{len(pairs)} edges in one request (at most {graph.MAX_EDGES})")
        with self.db.write() as conn:
            for src, dst in pairs:
                graph.check_pair(self._linkable(conn, user, src), self._linkable(conn, user, dst))
            graph.add(conn, user, pairs, now())

    def _linkable(self, conn: sqlite3.Connection, user: str, node_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise NodeNotFound(node_id)
        if row["owner"] != user:
            raise PermissionDenied(f"permission denied: node {node_id} is not user '{user}'s")
        return row  # type: ignore[no-any-return]

    def lineage(self, user: str, path_or_id: str) -> Lineage:
        conn = self.db.conn()
        row = self._by_ref(conn, user, path_or_id)
        inbound, outbound = graph.neighbours(conn, row["id"])
        return Lineage(_node(row), tuple(map(_node, inbound)), tuple(map(_node, outbound)))

    # -- objects ----------------------------------------------------------------
    def _artifact(self, conn: sqlite3.Connection, user: str, node_path: str) -> str:
        """The id of the node at ``node_path``, if it is one that holds objects."""
        row = self._row(conn, self._own(user, node_path))
        if row["type"] not in HOLDS_OBJECTS:
            raise InvalidInput(f"node {row['path']} is a {row['type']}, not an Artifact or Run")
        return str(row["id"])

    def list_objects(
        self, user: str, node_path: str, page: int = 1, size: int = 1000
    ) -> tuple[list[ObjectInfo], int]:
        conn = self.db.conn()
        node_id = self._artifact(conn, user, node_path)
        total = conn.execute("SELECT COUNT(*) FROM objects WHERE node_id = ?", (node_id,))
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples: a 100,000-object listing is 2x faster
        rows = cursor.execute(
            "SELECT key, size, md5, mtime, content_type FROM objects WHERE node_id = ?"
            " ORDER BY key LIMIT ? OFFSET ?",
            (node_id, size, (max(page, 1) - 1) * size),
        ).fetchall()
        return list(map(ObjectInfo._make, rows)), int(total.fetchone()[0])

    def object_blob(self, user: str, node_path: str, key: str) -> tuple[ObjectInfo, Path]:
        conn = self.db.conn()
        node_id = self._artifact(conn, user, node_path)
        row = conn.execute(
            "SELECT * FROM objects WHERE node_id = ? AND key = ?", (node_id, key)
        ).fetchone()
        if row is None:
            raise NodeNotFound(f"{node_path}/{key}", f"object not found [{node_path}/{key}]")
        return _object(row), self.blobs.path(row["blob"])

    def writer(self, max_size: int | None = None) -> BlobWriter:
        return self.blobs.writer(max_size)

    def put_object(
        self,
        user: str,
        node_path: str,
        key: str,
        chunks: Iterable[bytes],
        expected_md5: str | None = None,
        max_size: int | None = None,
    ) -> ObjectInfo:
        """Store an object from a stream of bytes (verified when an MD5 is given)."""
        self._check_target(user, node_path, key)
        writer = self.blobs.writer(max_size)
        try:
            writer.write_all(chunks)
        except BaseException:
            writer.discard()
            raise
        return self.commit_object(user, node_path, key, writer, writer.finish(expected_md5))

    def _check_target(self, user: str, node_path: str, key: str) -> None:
        check_key(key, what="object key", allow_reserved=True)
        self._artifact(self.db.conn(), user, node_path)

    def commit_object(
        self, user: str, node_path: str, key: str, writer: BlobWriter, info: BlobInfo
    ) -> ObjectInfo:
        """Publish a finished blob as ``key``: visible only from the commit on."""
        return self._commit_many(user, node_path, [(key, writer, info)])[0]

    def put_batch(
        self, user: str, node_path: str, items: Sequence[tuple[str, Iterable[bytes], str | None]]
    ) -> list[ObjectInfo]:
        """Store many (key, chunks, expected md5) in one transaction.

        Small files are dominated by per-call overhead (path checks, a transaction
        each); a batch pays that once. All or nothing: a failed item stores none.
        """
        for key, _, _ in items:
            check_key(key, what="object key", allow_reserved=True)
        self._artifact(self.db.conn(), user, node_path)
        written: list[tuple[str, BlobWriter, BlobInfo]] = []
        try:
            for key, chunks, md5 in items:
                writer = self.blobs.writer()
                written.append((key, writer, _BLANK))
                writer.write_all(chunks)
                written[-1] = (key, writer, writer.finish(md5))
        except BaseException:
            for _, writer, _ in written:
                writer.discard()
            raise
        return self._commit_many(user, node_path, written)

    def _commit_many(
        self, user: str, node_path: str, written: list[tuple[str, BlobWriter, BlobInfo]]
    ) -> list[ObjectInfo]:
        stamp, old, out = now(), [], []
        with self.db.write() as conn:
            try:
                node_id = self._artifact(conn, user, node_path)
            except BaseException:
                for _, writer, _ in written:
                    writer.discard()
                raise
            _forget_digest(conn, node_id, [key for key, _, _ in written])
            for key, writer, info in written:
                self.blobs.commit(writer, info)
                row = conn.execute(
                    "SELECT blob FROM objects WHERE node_id = ? AND key = ?", (node_id, key)
                ).fetchone()
                if row and row["blob"] != info.blob:
                    old.append(row["blob"])
                ctype = _content_type(key)
                conn.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node_id, key, info.blob, info.size, info.md5, stamp, ctype),
                )
                out.append(ObjectInfo(key, info.size, info.md5, stamp, ctype))
        self._collect(old)
        return out

    def delete_objects(self, user: str, node_path: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.db.write() as conn:
            node_id = self._artifact(conn, user, node_path)
            _forget_digest(conn, node_id, keys)
            blobs = []
            for key in keys:
                row = conn.execute(
                    "DELETE FROM objects WHERE node_id = ? AND key = ? RETURNING blob",
                    (node_id, key),
                ).fetchone()
                if row:
                    blobs.append(row[0])
        self._collect(blobs)

    def _drop_objects(self, conn: sqlite3.Connection, node_ids: list[str]) -> list[str]:
        blobs: list[str] = []
        for node_id in node_ids:
            rows = conn.execute("DELETE FROM objects WHERE node_id = ? RETURNING blob", (node_id,))
            blobs.extend(r[0] for r in rows)
        return blobs

    def _collect(self, blobs: Iterable[str]) -> None:
        """Remove blobs no object refers to any more.

        Checked again under the write lock: a concurrent put of the same content
        renames its blob and inserts its row inside one locked transaction.
        """
        candidates = set(blobs)
        if not candidates:
            return
        with self.db.write() as conn:
            for blob in candidates:
                if not conn.execute("SELECT 1 FROM objects WHERE blob = ?", (blob,)).fetchone():
                    self.blobs.remove(blob)

    def close(self) -> None:
        self.db.close()


_BLANK = BlobInfo("", "", 0)


def _forget_digest(conn: sqlite3.Connection, node_id: str, keys: Sequence[str]) -> None:
    """A node's contentDigest describes its objects: any object change voids it.

    Clients that follow the protocol clear it themselves before changing objects;
    doing it here too keeps the promise when one does not (a T9k SDK upload into
    the same node, say). The revision moves on, so a digest computed from an
    earlier listing can no longer be set. The artifact's own metadata files are
    not content.
    """
    if all(k in RESERVED_ROOT_NAMES for k in keys):
        return
    conn.execute(
        "UPDATE nodes SET revision = revision + 1, extra = CASE WHEN json_valid(extra)"
        " THEN json_remove(extra, '$.contentDigest') ELSE extra END WHERE id = ?",
        (node_id,),
    )


def _node(row: sqlite3.Row) -> Node:
    return Node(
        id=row["id"],
        name=row["name"],
        parent=row["parent"],
        path=row["path"],
        type=row["type"],
        labels=tuple(json.loads(row["labels"])),
        description=row["description"],
        extra=row["extra"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revision=row["revision"],
    )


def _object(row: sqlite3.Row) -> ObjectInfo:
    return ObjectInfo(row["key"], row["size"], row["md5"], row["mtime"], row["content_type"])


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
