"""A store from the command line's choice of engines: ``--data``, ``--db``, ``--blobs``.

``--data DIR`` alone is the embedded store (SQLite and blob files under DIR).
``--db postgresql://USER:PASS@HOST:PORT/DB`` and ``--blobs s3://BUCKET/PREFIX``
make a shared store that several processes can serve; ``sqlite:///PATH`` and
``file:///DIR`` name the embedded engines explicitly. The S3 endpoint comes from
``--s3-endpoint`` or ``AWS_ENDPOINT_URL``, the keys from the standard ``AWS_*``
variables.

Several replicas need S3 blobs: with blob files, multipart uploads are assembled in
the process that receives them (one write, no re-read), so one process must serve
a file store, whatever its database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InvalidInput, RemoteError
from .db import Database, PostgresDatabase, SqliteDatabase, redact_url
from .store import Store

STORE_FILE = "store.sqlite"


@dataclass(frozen=True)
class Engines:
    data: Path | None = None
    db: str | None = None
    blobs: str | None = None
    s3_endpoint: str | None = None

    @property
    def embedded(self) -> bool:
        return self.db is None and self.blobs is None


def check(engines: Engines) -> None:
    """Refuse a combination that names no store, before anything is opened."""
    if engines.data is None and (engines.db is None or engines.blobs is None):
        raise InvalidInput("name the store: --data DIR, or both --db URL and --blobs URL")
    for url, schemes in ((engines.db, DB_SCHEMES), (engines.blobs, BLOB_SCHEMES)):
        if url is not None and urlsplit(url).scheme not in schemes:
            raise InvalidInput(f"unsupported URL {redact_url(url)!r}: {SCHEME_HELP[schemes]}")
    endpoint = engines.s3_endpoint
    if endpoint and engines.blobs is not None and urlsplit(engines.blobs).scheme == "s3":
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(
                f"invalid S3 endpoint {redact_url(endpoint)!r}: use http(s)://HOST[:PORT]"
            )


DB_SCHEMES = ("postgresql", "postgres", "sqlite")
BLOB_SCHEMES = ("s3", "file")
SCHEME_HELP = {
    DB_SCHEMES: "use postgresql://USER:PASS@HOST:PORT/DB or sqlite:///PATH",
    BLOB_SCHEMES: "use s3://BUCKET/PREFIX or file:///DIR",
}


def _local_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        # sqlite:relative.db would quietly become a store in whatever directory this runs in
        raise InvalidInput(
            f"invalid URL {redact_url(url)!r}: use {parts.scheme}:///ABSOLUTE/PATH"
        )
    return Path(parts.path)


def open_database(url: str) -> Database:
    if urlsplit(url).scheme == "sqlite":
        path = _local_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return SqliteDatabase(path)
        except (OSError, sqlite3.Error) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise RemoteError(f"cannot open the database {path}: {reason}") from None
    return PostgresDatabase(url)


def open_store(engines: Engines) -> Store:
    """The store the flags name (its schema created or migrated on the way)."""
    check(engines)
    root = engines.data
    blobs = None
    if engines.blobs is not None and urlsplit(engines.blobs).scheme == "s3":
        from .s3blobs import S3Blobs

        blobs = S3Blobs(engines.blobs, engines.s3_endpoint)
    elif engines.blobs is not None:
        root = _local_path(engines.blobs)  # blobs/ and uploads/ below it
    db = open_database(engines.db) if engines.db is not None else None
    return Store(root, db=db, blobs=blobs)


def is_store(data: Path) -> bool:
    return (data / STORE_FILE).is_file()
