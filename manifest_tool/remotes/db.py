"""The store's metadata database: SQLite (embedded) or PostgreSQL (shared), one SQL text.

The store's statements are written once, with ``?`` placeholders and SQL that both
engines speak (``ON CONFLICT``, ``RETURNING``); a thin adapter per engine turns the
placeholders into its own, maps a unique violation to :class:`UniqueViolation` and
adds row locks where PostgreSQL needs them (``lock_share``/``lock_update`` are empty
on SQLite, whose ``BEGIN IMMEDIATE`` already serialises every writer).

SQLite: one connection per thread, WAL so readers never wait for a writer.
PostgreSQL: a small pool of autocommit connections, explicit ``BEGIN``/``COMMIT``.
The schema is versioned (``schema_version``) and migrated at open inside one
transaction; on PostgreSQL under ``pg_advisory_xact_lock`` so replicas starting
together migrate once.
"""

from __future__ import annotations

import functools
import queue
import re
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_plus

from ..errors import RemoteError

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
    extra TEXT NOT NULL DEFAULT '{{}}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes (parent, name);
CREATE TABLE IF NOT EXISTS objects (
    node_id TEXT NOT NULL{node_fk},
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
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
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL{node_fk_src},
    dst TEXT NOT NULL{node_fk_dst},
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (src, dst)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst);
"""

# Version 2: blobs known to the database (inline bytes, or where they live), the
# intents that make an S3 write findable before it is referenced, and multipart
# state shared by every replica.
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    data {bytes},
    location TEXT,
    created_at TEXT NOT NULL,
    released_at TEXT
);
CREATE INDEX IF NOT EXISTS blobs_location ON blobs (location);
CREATE TABLE IF NOT EXISTS intents (
    location TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    doomed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id TEXT NOT NULL{upload_fk},
    number INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    size BIGINT NOT NULL,
    data {bytes},
    location TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
"""
VERSION = 2
ADVISORY_MIGRATE = 0x6D74_0001  # pg_advisory_xact_lock key: one migrator at a time
ADVISORY_GC = 0x6D74_0002  # pg_advisory_lock key: one garbage collector at a time


class UniqueViolation(Exception):
    """A row with the same unique key exists (the loser of a racing create)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What the store uses of a connection: ``?`` SQL in, rows (index or name) out."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Protocol):
    dialect: str
    lock_share: str  # " FOR SHARE" where row locks exist, else ""
    lock_update: str
    url_for_humans: str  # names the database without its password

    def read(self) -> AbstractContextManager[Conn]: ...

    def write(self) -> AbstractContextManager[Conn]: ...

    def close(self) -> None: ...


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


class _SqliteConn:
    """sqlite3's connection with unique violations mapped."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.IntegrityError as err:
            if "UNIQUE" in str(err) or "PRIMARY KEY" in str(err):
                raise UniqueViolation(str(err)) from None
            raise

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.IntegrityError as err:
            raise UniqueViolation(str(err)) from None


class SqliteDatabase:
    dialect = "sqlite"
    lock_share = ""
    lock_update = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url_for_humans = str(path)
        self._local = threading.local()
        with self.write() as conn:
            _migrate(conn, self, _sqlite_legacy)

    def conn(self) -> sqlite3.Connection:
        """This thread's raw connection (for callers that read without a context)."""
        return self._wrapped().raw

    def _wrapped(self) -> _SqliteConn:
        conn: _SqliteConn | None = getattr(self._local, "conn", None)
        if conn is None:
            raw = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            raw.row_factory = sqlite3.Row
            _set_wal(raw)
            raw.execute("PRAGMA synchronous=NORMAL")
            conn = self._local.conn = _SqliteConn(raw)
        return conn

    @contextmanager
    def read(self) -> Iterator[Conn]:
        yield self._wrapped()

    @contextmanager
    def write(self) -> Iterator[Conn]:
        """A write transaction holding SQLite's write lock from its first statement."""
        conn = self._wrapped()
        conn.raw.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.raw.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): a second
            # ROLLBACK would raise and hide the real error
            if conn.raw.in_transaction:
                conn.raw.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.raw.close()
            self._local.conn = None


def _sqlite_legacy(conn: Conn) -> None:
    """A store made before the revision column gains it (version 1)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(nodes)")}
    if "revision" not in columns:
        conn.execute("ALTER TABLE nodes ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")


# -- PostgreSQL ----------------------------------------------------------------------------
_QMARK = re.compile(r"\?")


def _pg_sql(sql: str) -> str:
    return _QMARK.sub("%s", sql.replace("%", "%%"))


class _Row(tuple[Any, ...]):
    """A row readable by position or by column name, like ``sqlite3.Row``."""

    names: dict[str, int]

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str):
            return tuple.__getitem__(self, self.names[item])
        return tuple.__getitem__(self, item)

    def keys(self) -> list[str]:
        return list(self.names)


@functools.lru_cache(maxsize=256)
def _row_class(columns: tuple[str, ...]) -> type[_Row]:
    """One row class per result shape (made once, not per query)."""
    return type("Row", (_Row,), {"names": {name: i for i, name in enumerate(columns)}})


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    cls = _row_class(tuple(d.name for d in cursor.description or []))

    def make(values: Sequence[Any]) -> _Row:
        return cls(values)

    return make


class _PgConn:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._sql: dict[str, str] = {}

    def _text(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = _pg_sql(sql)
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg.errors

        try:
            return self.raw.execute(self._text(sql), params or None)
        except psycopg.errors.UniqueViolation as err:
            raise UniqueViolation(str(err).splitlines()[0]) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg.errors

        try:
            with self.raw.cursor() as cur:
                cur.executemany(self._text(sql), rows)
        except psycopg.errors.UniqueViolation as err:
            raise UniqueViolation(str(err).splitlines()[0]) from None


def _gone(raw: Any) -> bool:
    """Whether an idle pooled connection is dead: closed, or its socket readable, which
    for an idle connection means the server ended it (a restart, a terminated backend)
    and would fail the next request. A poll, no round trip."""
    if raw.closed or raw.broken:
        return True
    poller = select.poll()  # not select(): a busy server's descriptors pass 1024
    try:
        poller.register(raw.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class PostgresDatabase:
    dialect = "postgresql"
    lock_share = " FOR SHARE"
    lock_update = " FOR UPDATE"

    def __init__(self, url: str, pool_size: int = 12) -> None:
        self._url = url
        self.url_for_humans = redact_url(url)
        self._pool: queue.LifoQueue[_PgConn] = queue.LifoQueue()
        self._made = 0
        self._size = pool_size
        self._lock = threading.Lock()
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_MIGRATE,))
            _migrate(conn, self, None)

    def connect(self) -> Any:
        """A new autocommit connection (also for holding a session advisory lock)."""
        import psycopg

        try:
            raw = psycopg.connect(
                self._url, autocommit=True, row_factory=_row_factory, connect_timeout=10
            )
        except psycopg.Error as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            reason = " ".join(lines) or type(err).__name__
            reason = redact_text(reason, self._url)
            raise RemoteError(
                f"cannot connect to the database {self.url_for_humans}: {reason}"
            ) from None
        return raw

    def _checkout(self) -> _PgConn:
        """A pooled connection; a new one while fewer than ``pool_size`` exist."""
        while True:
            try:
                pooled = self._pool.get(timeout=0 if self._made < self._size else 0.5)
            except queue.Empty:
                pass
            else:
                if not _gone(pooled.raw):
                    return pooled
                self._discard(pooled)
                continue
            with self._lock:
                make = self._made < self._size
                self._made += make
            if make:
                try:
                    return _PgConn(self.connect())
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise

    def _checkin(self, conn: _PgConn) -> None:
        if conn.raw.broken or conn.raw.closed or conn.raw.info.transaction_status != 0:
            self._discard(conn)
            return
        self._pool.put_nowait(conn)

    def _discard(self, conn: _PgConn) -> None:
        with suppress(Exception):
            conn.raw.close()
        with self._lock:
            self._made -= 1

    @contextmanager
    def read(self) -> Iterator[Conn]:
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @contextmanager
    def write(self) -> Iterator[Conn]:
        conn = self._checkout()
        try:
            conn.raw.execute("BEGIN")
            try:
                yield conn
                conn.raw.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a lost connection: the error to report is above
                    conn.raw.execute("ROLLBACK")
                raise
        finally:
            self._checkin(conn)

    def close(self) -> None:
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            conn.raw.close()


SECRET_URL_PARAMS = frozenset({"password", "sslpassword"})  # libpq's query-string forms


def url_secrets(url: str) -> frozenset[str]:
    """Every password ``url`` holds: the user's ``:pass@`` and ``?password=`` values,
    as written and decoded (an error message may echo either)."""
    found: set[str] = set()
    userinfo = url.partition("//")[2].partition("/")[0].rpartition("@")[0]
    if ":" in userinfo:
        found.add(userinfo.partition(":")[2])
    query = url.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_URL_PARAMS:
            found.update((value, unquote_plus(value)))
    return frozenset(s for s in found if s)


def redact_url(url: str) -> str:
    """``url`` without its passwords (``postgresql://user:***@host/db?password=***``)."""
    masked = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)
    base, mark, query = masked.partition("?")
    if not mark:
        return masked
    pairs = []
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        if unquote_plus(name).strip().lower() in SECRET_URL_PARAMS:
            pair = f"{name}=***"
        pairs.append(pair)
    return base + "?" + "&".join(pairs)


def redact_text(text: str, url: str) -> str:
    """``text`` (an engine's message) with every password of ``url`` masked."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _migrate(conn: Conn, db: Any, legacy: Callable[[Conn], None] | None) -> None:
    """Bring the schema to VERSION inside the caller's (locked) transaction."""
    pg = db.dialect == "postgresql"
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] or 0
    if pg and version >= VERSION:
        return
    if not pg:  # cheap on SQLite: also mends a table dropped by hand or by an old tool
        version = 0
    fks = {
        "node_fk": " REFERENCES nodes (id) ON DELETE CASCADE" if pg else "",
        "node_fk_src": " REFERENCES nodes (id) ON DELETE CASCADE" if pg else "",
        "node_fk_dst": " REFERENCES nodes (id) ON DELETE CASCADE" if pg else "",
        "upload_fk": " REFERENCES uploads (id) ON DELETE CASCADE" if pg else "",
        "bytes": "BYTEA" if pg else "BLOB",
    }
    if version < 1:
        _script(conn, SCHEMA.format(**fks))
        if legacy is not None:
            legacy(conn)
    if version < 2:
        _script(conn, SCHEMA_2.format(**fks))
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (VERSION,))


def _script(conn: Conn, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
