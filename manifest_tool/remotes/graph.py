"""Lineage in the store: the edges of T9k's graphs API.

An edge runs from one node to another: an input Artifact to the Run that used it,
a Run to the Artifact it produced. Edges join nodes by id, so a renamed or moved
node keeps its lineage; a deleted node takes its edges with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidInput
from .base import FOLDER, RUN
from .db import Conn

MAX_EDGES = 1000  # per request: a Run's inputs and outputs, with room to spare


def check_pair(src: Any, dst: Any) -> None:
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


def add(conn: Conn, owner: str, pairs: Sequence[tuple[str, str]], stamp: str) -> None:
    """Record each (from id, to id); an edge already there stays as it was."""
    conn.executemany(
        "INSERT INTO edges (src, dst, owner, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(src, dst, owner, stamp) for src, dst in pairs],
    )


def neighbours(conn: Conn, node_id: str) -> tuple[list[Any], list[Any]]:
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


def drop(conn: Conn, node_ids: Iterable[str]) -> None:
    """Forget every edge that touches one of ``node_ids`` (nodes being deleted)."""
    for node_id in node_ids:
        conn.execute("DELETE FROM edges WHERE src = ? OR dst = ?", (node_id, node_id))
