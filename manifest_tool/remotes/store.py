"""The embedded store: per-user trees of nodes, objects kept as blobs.

This is the server's logic: the ``file:`` remote calls it in-process and
``manifest-tool serve`` exposes it over HTTP. Every call names the acting user, who
may touch only paths below ``/<user>/``.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from .. import failpoints
from ..errors import (
    InvalidInput,
    NameConflict,
    NodeNotFound,
    NotAFolder,
    PermissionDenied,
    RevisionMismatch,
)
from ..paths import check_key, touches_content
from . import blobrows, graph
from .base import ARTIFACT, FOLDER, HOLDS_OBJECTS, RUN, Lineage, Node, ObjectInfo
from .blobs import BlobInfo, BlobReader, BlobStore, BlobWriter, BytesReader
from .db import Conn, Database, SqliteDatabase, UniqueViolation

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
    """The store over a metadata database and a blob backend.

    ``Store(root)`` is the embedded default: SQLite and blob files under ``root``.
    A shared store passes ``db`` (PostgreSQL) and ``blobs`` (S3) instead; it keeps
    nothing on the local disk, so any number of processes can serve it.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        db: Database | None = None,
        blobs: Any = None,
    ) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "uploads").mkdir(exist_ok=True)
        if db is None:
            assert self.root is not None, "a store needs a root or a database"
            db = SqliteDatabase(self.root / "store.sqlite")
        if blobs is None:
            assert self.root is not None, "a store needs a root or a blob backend"
            blobs = BlobStore(self.root / "blobs")
        self.db: Database = db
        self.blobs = blobs
        if hasattr(blobs, "intents"):
            blobs.intents = blobrows.Intents(db)

    def describe(self) -> str:
        """The store for people and logs (never a password)."""
        if self.root is not None and self.db.dialect == "sqlite" and self.blobs.kind == "files":
            return str(self.root)
        return f"{self.db.url_for_humans} + {self.blobs.describe()}"

    # -- access -----------------------------------------------------------------
    def _own(self, user: str, path: str) -> str:
        """Canonical path, if ``user`` may touch it (their root and below)."""
        path = norm_path(path)
        if path.split("/")[1] != user:
            raise PermissionDenied(
                f"permission denied: user '{user}' may not touch {path} (only paths below /{user}/)"
            )
        return path

    def _ensure_root(self, conn: Conn, user: str) -> None:
        check_name(user)
        stamp = now()
        conn.execute(
            "INSERT INTO nodes (id, path, parent, name, owner, type, created_at,"
            " updated_at) VALUES (?, ?, '/', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (str(uuid.uuid4()), f"/{user}", user, user, FOLDER, stamp, stamp),
        )

    def _has_root(self, user: str) -> bool:
        with self.db.read() as conn:
            row = conn.execute("SELECT 1 FROM nodes WHERE path = ?", (f"/{user}",)).fetchone()
        return row is not None

    def _make_root(self, user: str) -> None:
        """The user's root folder, made on first use (a read: write only when absent)."""
        if not self._has_root(user):
            with self.db.write() as wconn:
                self._ensure_root(wconn, user)

    def _row(self, conn: Conn, path: str, lock: str = "") -> Any:
        row = conn.execute("SELECT * FROM nodes WHERE path = ?" + lock, (path,)).fetchone()
        if row is None:
            raise NodeNotFound(path)
        return row

    # -- nodes ------------------------------------------------------------------
    def node_info(self, user: str, path_or_id: str) -> Node:
        if not path_or_id.startswith("/"):
            with self.db.read() as conn:
                row = conn.execute("SELECT * FROM nodes WHERE id = ?", (path_or_id,)).fetchone()
            if row is None or row["owner"] != user:
                raise NodeNotFound(path_or_id)
            return _node(row)
        path = self._own(user, path_or_id)
        if path == f"/{user}":
            self._make_root(user)
        with self.db.read() as conn:
            return _node(self._row(conn, path))

    def node_infos(self, user: str, paths: Sequence[str]) -> list[Node | None]:
        """Many nodes by path in one read (None where absent), in the order asked."""
        wanted = [self._own(user, p) for p in paths]
        if f"/{user}" in wanted:
            self._make_root(user)
        found = {}
        with self.db.read() as conn:
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
        with self.db.read() as conn:
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
        if parent == f"/{user}":
            self._make_root(user)
        with self.db.write() as conn:
            # the parent held FOR SHARE: a racing delete or rename waits for this insert
            kind = self._row(conn, parent, self.db.lock_share)["type"]
            if kind != FOLDER:
                raise NotAFolder(
                    f"parent {parent} is a{'n' * (kind == ARTIFACT)} {kind},"
                    " not a Folder: only Folders hold nodes"
                )
            try:
                conn.execute(
                    "INSERT INTO nodes (id, path, parent, name, owner, type, labels,"
                    " description, extra, created_at, updated_at, revision)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        # unique across nodes (below 2**53, exact in JSON): a
                        # compare-and-set on (path, revision) can never hit a node that
                        # replaced the one read at that path
                        secrets.randbits(52),
                    ),
                )
            except UniqueViolation:  # the racing create that lost: one winner per path
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
            if if_revision is not None:
                self._compare_and_set(conn, path, if_revision)
            self._row(conn, path, self.db.lock_update)
            if "name" in fields and fields["name"] != split(path)[1]:
                path = self._rename(conn, path, check_name(str(fields["name"])))
            sets = {k: v for k, v in fields.items() if k != "name"}
            if "labels" in sets:
                sets["labels"] = json.dumps(list(sets["labels"]))
            sets["updated_at"] = now()
            assigns = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(f"UPDATE nodes SET {assigns} WHERE path = ?", [*sets.values(), path])
            return _node(self._row(conn, path))

    def _compare_and_set(self, conn: Conn, path: str, revision: int) -> None:
        """The digest compare-and-set: one conditional UPDATE, so two writers cannot
        both pass the check (it also holds the row for the rest of the update)."""
        hit = conn.execute(
            "UPDATE nodes SET updated_at = ? WHERE path = ? AND revision = ? RETURNING id",
            (now(), path, revision),
        ).fetchone()
        if hit is None:
            row = self._row(conn, path)
            raise RevisionMismatch(
                f"node {path} changed: its objects are at revision {row['revision']},"
                f" not {revision}"
            )

    def _rename(self, conn: Conn, path: str, name: str) -> str:
        parent, _ = split(path)
        new = f"{parent.rstrip('/')}/{name}"
        if conn.execute("SELECT 1 FROM nodes WHERE path = ?", (new,)).fetchone():
            raise NameConflict(f"Invalid conflicting node Name [{new}]")
        n = len(path)
        try:
            conn.execute(
                "UPDATE nodes SET path = ? || substr(path, ?), parent = CASE WHEN path = ? THEN"
                " parent ELSE ? || substr(parent, ?) END, name = CASE WHEN path = ? THEN ? ELSE"
                " name END WHERE path = ? OR substr(path, 1, ?) = ?",
                (new, n + 1, path, new, n + 1, path, name, path, n + 1, path + "/"),
            )
        except UniqueViolation:  # a node of that name was created meanwhile
            raise NameConflict(f"Invalid conflicting node Name [{new}]") from None
        return new

    def delete_node(self, user: str, path: str) -> None:
        path = self._own(user, path)
        if path == f"/{user}":
            raise PermissionDenied(f"permission denied: {path} is the user's root folder")
        with self.db.write() as conn:
            self._row(conn, path, self.db.lock_update)
            sub = "path = ? OR substr(path, 1, ?) = ?"
            args = (path, len(path) + 1, path + "/")
            # the subtree locked: a commit into one of its nodes finishes first, or waits
            # and then finds its node gone
            lock = self.db.lock_update
            ids = [r[0] for r in conn.execute(f"SELECT id FROM nodes WHERE {sub}{lock}", args)]
            blobs = self._drop_objects(conn, ids)
            graph.drop(conn, ids)
            conn.execute(f"DELETE FROM nodes WHERE {sub}", args)
        self._collect(blobs)

    # -- lineage ----------------------------------------------------------------
    def _by_ref(self, conn: Conn, user: str, ref: str) -> Any:
        """The row of a node given by path or id; another user's id is not found."""
        if ref.startswith("/"):
            return self._row(conn, self._own(user, ref))
        row = conn.execute("SELECT * FROM nodes WHERE id = ?", (ref,)).fetchone()
        if row is None or row["owner"] != user:
            raise NodeNotFound(ref)
        return row

    def add_edges(self, user: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Link (from, to) node ids: all of them or, on any bad pair, none."""
        if len(pairs) > graph.MAX_EDGES:
            raise InvalidInput(f"{len(pairs)} edges in one request (at most {graph.MAX_EDGES})")
        with self.db.write() as conn:
            for src, dst in pairs:
                graph.check_pair(self._linkable(conn, user, src), self._linkable(conn, user, dst))
            graph.add(conn, user, pairs, now())

    def _linkable(self, conn: Conn, user: str, node_id: str) -> Any:
        lock = self.db.lock_share  # an edge never outlives a node deleted meanwhile
        row = conn.execute("SELECT * FROM nodes WHERE id = ?" + lock, (node_id,)).fetchone()
        if row is None:
            raise NodeNotFound(node_id)
        if row["owner"] != user:
            raise PermissionDenied(f"permission denied: node {node_id} is not user '{user}'s")
        return row

    def lineage(self, user: str, path_or_id: str) -> Lineage:
        with self.db.read() as conn:
            row = self._by_ref(conn, user, path_or_id)
            inbound, outbound = graph.neighbours(conn, row["id"])
        return Lineage(_node(row), tuple(map(_node, inbound)), tuple(map(_node, outbound)))

    # -- objects ----------------------------------------------------------------
    def _artifact(self, conn: Conn, user: str, node_path: str, lock: str = "") -> str:
        """The id of the node at ``node_path``, if it is one that holds objects."""
        row = self._row(conn, self._own(user, node_path), lock)
        if row["type"] not in HOLDS_OBJECTS:
            raise InvalidInput(f"node {row['path']} is a {row['type']}, not an Artifact or Run")
        return str(row["id"])

    def list_objects(
        self, user: str, node_path: str, page: int = 1, size: int = 1000, after: str | None = None
    ) -> tuple[list[ObjectInfo], int]:
        """One page of a node's objects by key, and their total. ``after`` (a key) pages
        by keyset, which stays as fast at the 100th page as at the first."""
        with self.db.read() as conn:
            node_id = self._artifact(conn, user, node_path)
            total = conn.execute("SELECT COUNT(*) FROM objects WHERE node_id = ?", (node_id,))
            count = int(total.fetchone()[0])
            cols = "SELECT key, size, md5, mtime, content_type FROM objects WHERE node_id = ?"
            if after is not None:
                cursor = conn.execute(
                    cols + " AND key > ? ORDER BY key LIMIT ?", (node_id, after, size)
                )
            else:
                cursor = conn.execute(
                    cols + " ORDER BY key LIMIT ? OFFSET ?",
                    (node_id, size, (max(page, 1) - 1) * size),
                )
            rows = cursor.fetchall()
        return [ObjectInfo(*tuple(r)) for r in rows], count

    def object_blob(self, user: str, node_path: str, key: str) -> tuple[ObjectInfo, BlobReader]:
        """An object's description and its opened bytes (close the reader when done)."""
        with self.db.read() as conn:
            node_id = self._artifact(conn, user, node_path)
            row = conn.execute(
                "SELECT o.key, o.size, o.md5, o.mtime, o.content_type, o.blob, b.data,"
                " b.location FROM objects o LEFT JOIN blobs b ON b.hash = o.blob"
                " WHERE o.node_id = ? AND o.key = ?",
                (node_id, key),
            ).fetchone()
        if row is None:
            raise NodeNotFound(f"{node_path}/{key}", f"object not found [{node_path}/{key}]")
        info = ObjectInfo(row[0], row[1], row[2], row[3], row[4])
        if row[6] is not None:
            return info, BytesReader(bytes(row[6]))
        return info, self.blobs.open(row[5], row[7])

    def writer(self, max_size: int | None = None) -> BlobWriter:
        return self.blobs.writer(max_size)  # type: ignore[no-any-return]

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
        with self.db.read() as conn:
            self._artifact(conn, user, node_path)

    def commit_object(
        self,
        user: str,
        node_path: str,
        key: str,
        writer: BlobWriter,
        info: BlobInfo,
        claim: Callable[[Conn], None] | None = None,
    ) -> ObjectInfo:
        """Publish a finished blob as ``key``: visible only from the commit on.
        ``claim`` runs first in the same transaction (a multipart finish takes its
        upload there); what it raises publishes nothing."""
        return self._commit_many(user, node_path, [(key, writer, info)], claim)[0]

    def put_batch(
        self, user: str, node_path: str, items: Sequence[tuple[str, Iterable[bytes], str | None]]
    ) -> list[ObjectInfo]:
        """Store many (key, chunks, expected md5) in one transaction.

        Small files are dominated by per-call overhead (path checks, a transaction
        each); a batch pays that once. All or nothing: a failed item stores none.
        """
        for key, _, _ in items:
            check_key(key, what="object key", allow_reserved=True)
        with self.db.read() as conn:
            self._artifact(conn, user, node_path)
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
        self,
        user: str,
        node_path: str,
        written: list[tuple[str, BlobWriter, BlobInfo]],
        claim: Callable[[Conn], None] | None = None,
    ) -> list[ObjectInfo]:
        if any(writer.sink is not None for _, writer, _ in written):
            failpoints.hit("store.blob-written")  # bytes stored, nothing committed yet
        stamp, old, out = now(), [], []
        later: list[Callable[[], None]] = []
        try:
            with self.db.write() as conn:
                if claim is not None:
                    claim(conn)
                # FOR UPDATE, not SHARE: the revision update below would otherwise be a
                # lock upgrade, which deadlocks two commits into one node
                node_id = self._artifact(conn, user, node_path, self.db.lock_update)
                _forget_digest(conn, node_id, [key for key, _, _ in written])
                later = self._place_blobs(conn, written)
                current = _current_blobs(conn, node_id, [key for key, _, _ in written])
                rows = []
                for key, _, info in written:
                    if current.get(key, info.blob) != info.blob:
                        old.append(current[key])
                    ctype = _content_type(key)
                    rows.append((node_id, key, info.blob, info.size, info.md5, stamp, ctype))
                    out.append(ObjectInfo(key, info.size, info.md5, stamp, ctype))
                conn.executemany(
                    "INSERT INTO objects (node_id, key, blob, size, md5, mtime, content_type)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id, key) DO UPDATE SET"
                    " blob = excluded.blob, size = excluded.size, md5 = excluded.md5,"
                    " mtime = excluded.mtime, content_type = excluded.content_type",
                    rows,
                )
        except BaseException:
            for _, writer, _ in written:
                writer.discard()  # a blob already placed is kept: its temp is gone
            raise
        for cleanup in later:
            cleanup()
        self._collect(old)
        return out

    def _place_blobs(
        self, conn: Conn, written: list[tuple[str, BlobWriter, BlobInfo]]
    ) -> list[Callable[[], None]]:
        """Each distinct blob placed once, in hash order (two commits sharing blobs
        never deadlock); what to drop after the commit (copies that lost to a blob
        already there, or to another item of this batch)."""
        later: list[Callable[[], None]] = []
        placed: dict[str, tuple[BlobWriter, BlobInfo]] = {}
        for _, writer, info in sorted(written, key=lambda item: item[2].blob):
            if info.blob in placed:
                later.append(partial(self.blobs.drop_unused, writer))
                continue
            placed[info.blob] = (writer, info)
        return later + blobrows.commit_blobs(conn, self.db, self.blobs, list(placed.values()))

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

    def _drop_objects(self, conn: Conn, node_ids: list[str]) -> list[str]:
        blobs: list[str] = []
        for node_id in node_ids:
            rows = conn.execute("DELETE FROM objects WHERE node_id = ? RETURNING blob", (node_id,))
            blobs.extend(r[0] for r in rows)
        return blobs

    def _collect(self, blobs: Iterable[str]) -> None:
        """Blobs no object refers to any more: see ``blobrows.collect``."""
        blobrows.collect(self.db, self.blobs, blobs)

    def close(self) -> None:
        self.db.close()


_BLANK = BlobInfo("", "", 0)


def _current_blobs(conn: Conn, node_id: str, keys: Sequence[str]) -> dict[str, str]:
    """The blob each of ``keys`` refers to now (absent keys left out)."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):  # under SQLite's limit on parameters
        chunk = list(keys[start : start + 500])
        marks = ",".join("?" * len(chunk))
        cursor = conn.execute(
            f"SELECT key, blob FROM objects WHERE node_id = ? AND key IN ({marks})",
            [node_id, *chunk],
        )
        found.update((row[0], row[1]) for row in cursor)
    return found


def _forget_digest(conn: Conn, node_id: str, keys: Sequence[str]) -> None:
    """A node's contentDigest describes its objects: any object change voids it.

    Clients that follow the protocol clear it themselves before changing objects;
    doing it here too keeps the promise when one does not (a T9k SDK upload into
    the same node, say). The revision moves on, so a digest computed from an
    earlier listing can no longer be set. The artifact's own metadata files are
    not content.
    """
    if not touches_content(keys):
        return
    row = conn.execute(
        "UPDATE nodes SET revision = revision + 1 WHERE id = ? RETURNING extra", (node_id,)
    ).fetchone()
    try:
        extra = json.loads(row[0]) if row is not None else None
    except ValueError:
        return
    if isinstance(extra, dict) and "contentDigest" in extra:
        del extra["contentDigest"]
        compact = json.dumps(extra, separators=(",", ":"), ensure_ascii=False)
        conn.execute("UPDATE nodes SET extra = ? WHERE id = ?", (compact, node_id))


def _node(row: Any) -> Node:
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


def _content_type(key: str) -> str:
    """The type the key's name suggests. It turns only on the name's suffixes, so it is
    looked up once per suffix chain, not once per object of a 100,000-object batch."""
    name = key.rpartition("/")[2]
    dot = name.find(".")
    return _type_of_suffixes(name[dot:] if dot >= 0 else "")


@lru_cache(maxsize=1024)
def _type_of_suffixes(suffixes: str) -> str:
    return mimetypes.guess_type("x" + suffixes)[0] or "application/octet-stream"
