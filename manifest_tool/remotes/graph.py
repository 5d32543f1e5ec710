"""Lineage in the embedded store: the edges of T9k's graphs API.

An edge runs from one node to another: an input Artifact to the Run that used it,
a Run to the Artifact it produced. Edges join nodes by id, so a renamed or moved
node keeps its lineage; a deleted node takes its edges with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from ..errors import InvalidInput
from .base import FOLDER, RUN

SCHEMA = """
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (src, dst)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst);
"""
MAX_EDGES = 1000  # per request: a Run's inputs and outputs, with room to spare


def check_pair(src: sqlite3.Row, dst: sqlite3.Row) -> None:
    """An edge joins a Run and an Artifact or another Run, never a Folder or itself."""
    if src["id"] == dst["id"]:
        raise InvalidInput(f"a node cannot be linked to itself ({src['path']})")
    for row in (src, dst):
        if row["type"] == FOLDER:
            raise InvalidInput(f"{row['path']} is a Folder: only Runs and Artifacts have lineage")
    if RUN not in (src["type"], dst["type"]):
        raise InvalidInput(
            f"an edge needs a Run at one end: {src['path']} -> {dst['path']} joins two Artifacts"
        )


def add(conn: sqlite3.Connection, owner: str, pairs: Sequence[tuple[str, str]], stamp: str) -> None:
    """Record each (from id, to id); an edge already there stays as it was."""
    conn.executemany(
        "INSERT OR IGNORE INTO edges (src, dst, owner, created_at) VALUES (?, ?, ?, ?)",
        [(src, dst, owner, stamp) for src, dst in pairs],
    )


def neighbours(
    conn: sqlite3.Connection, node_id: str
) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
    """The node rows with an edge into ``node_id``, and those it has an edge to."""
    inbound = conn.execute(
        "SELECT n.* FROM edges e JOIN nodes n ON n.id = e.src WHERE e.dst = ?"
        " ORDER BY e.created_at, n.path",
        (node_id,),
    ).fetchall()
    outbound = conn.execute(
        "SELECT n.* FROM edges e JOIN nodes n ON n.id = e.dst WHERE e.src = ?"
        " ORDER BY e.created_at, n.path",
        (node_id,),
    ).fetchall()
    return inbound, outbound


def drop(conn: sqlite3.Connection, node_ids: Iterable[str]) -> None:
    """Forget every edge that touches one of ``node_ids`` (nodes being deleted)."""
    for node_id in node_ids:
        conn.execute("DELETE FROM edges WHERE src = ? OR dst = ?", (node_id, node_id))
