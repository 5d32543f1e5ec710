"""Users of the store and their API keys (stored only as hashes).

Keys are random UUIDs (122 bits), so one SHA-256 is enough to make a leaked
database useless for logging in; a slow password hash would buy nothing.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from ..errors import InvalidInput
from .db import Database, UniqueViolation
from .store import now

# One spelling per user: 'Alice', ' alice' and 'alice' would be three roots.
USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _hash(key: str) -> str:
    return hashlib.sha256(key.strip().lower().encode()).hexdigest()


def add_user(db: Database, name: str) -> str:
    """Create ``name`` with a new key and return the key (shown once, never stored)."""
    if not USER_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid user name {name!r}: use 1-64 lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    key = str(uuid.uuid4())
    try:
        with db.write() as conn:
            conn.execute(
                "INSERT INTO users (name, key_hash, created_at) VALUES (?, ?, ?)",
                (name, _hash(key), now()),
            )
    except UniqueViolation:
        raise InvalidInput(
            f"user {name!r} already exists (revoke it first to issue a new key)"
        ) from None
    return key


def list_users(db: Database) -> list[tuple[str, str]]:
    with db.read() as conn:
        rows = conn.execute("SELECT name, created_at FROM users ORDER BY name").fetchall()
    return [(r[0], r[1]) for r in rows]


def revoke_user(db: Database, name: str) -> None:
    with db.write() as conn:
        gone = conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
    if not gone:
        raise InvalidInput(f"no user {name!r} (see 'manifest-tool user list')")


def user_for_key(db: Database, key: str) -> str | None:
    with db.read() as conn:
        row = conn.execute("SELECT name FROM users WHERE key_hash = ?", (_hash(key),)).fetchone()
    return None if row is None else str(row[0])
