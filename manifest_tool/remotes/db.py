"""The embedded store's SQLite database: schema, connections, transactions.

One connection per thread (the server runs handlers in a thread pool); WAL mode so
readers never wait for a writer; ``BEGIN IMMEDIATE`` for writes so that two processes
racing on one name are serialised and exactly one wins.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import graph

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    parent TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    type TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes (parent);
CREATE TABLE IF NOT EXISTS objects (
    node_id TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    mtime TEXT NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (node_id, key)
);
CREATE INDEX IF NOT EXISTS objects_blob ON objects (blob);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    node_path TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; processes opening a new store at once briefly lock each other
    out of this pragma, which (unlike other statements) does not wait on its own."""
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == 99:
                raise
            time.sleep(0.005 * (attempt + 1))


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store made by an older version up to this schema."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}
    if "revision" not in columns:  # the objects revision of the digest compare-and-set
        try:
            conn.execute("ALTER TABLE nodes ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        except sqlite3.OperationalError as err:  # another process migrated it meanwhile
            if "duplicate column" not in str(err):
                raise


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        conn = self.conn()
        conn.executescript(SCHEMA)
        _migrate(conn)
        # A store made before lineage gains the edges table here; IF NOT EXISTS makes
        # this idempotent, also against another process opening the store at once.
        conn.executescript(graph.SCHEMA)

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            _set_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its first statement."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): a second
            # ROLLBACK would raise and hide the real error
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
