"""An apply killed with SIGKILL at any point: the node never claims a digest its objects
do not match, and the next apply converges."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli, Project, cli_env, store_node, store_objects, store_rows, tree

from manifest_tool.hashing import content_digest

NODE = "/alice/default/big"
FILES = 300
SIZE = 64 * 1024
META = ("metadata.yaml", "references.yaml")
MANIFEST = """\
version: 1
artifacts:
  - name: big
    objects:
      - dir: data
"""


@pytest.fixture
def big(project: Project) -> Project:
    for i in range(FILES):
        project.write(f"data/d{i % 10}/f{i:03d}.bin", os.urandom(SIZE))
    project.manifest(MANIFEST)
    return project


def count_objects(store: Path) -> int:
    sql = "SELECT count(*) FROM objects o JOIN nodes n ON o.node_id = n.id WHERE n.path = ?"
    return int(store_rows(store, sql, NODE)[0][0])


def digest_of(rows: list[tuple[str, int, str]]) -> str:
    return content_digest(
        {"path": k, "size_bytes": size, "checksum": md5} for k, size, md5 in rows if k not in META
    )


def snapshot(conn: sqlite3.Connection) -> tuple[str | None, list[tuple[str, int, str]]]:
    """The node's digest and its objects, read in one transaction (a consistent view)."""
    conn.execute("BEGIN")
    try:
        node = conn.execute("SELECT id, extra FROM nodes WHERE path = ?", (NODE,)).fetchone()
        if node is None:
            return None, []
        sql = "SELECT key, size, md5 FROM objects WHERE node_id = ?"
        return json.loads(node[1]).get("contentDigest"), conn.execute(sql, (node[0],)).fetchall()
    finally:
        conn.execute("COMMIT")


def kill_apply_when(project: Project, reached: int, md5s: set[str] | None = None) -> None:
    """Start apply; SIGKILL it once ``reached`` objects (with those md5s) are stored.

    Until then, every snapshot of the node must satisfy the invariant, too.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "manifest_tool", "apply", "--workers", "1", "--quiet"],
        cwd=project.root,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    db, conn = project.store / "store.sqlite", None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"apply ended (exit {proc.returncode}) before the kill point")
            try:
                conn = conn or sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
                digest, rows = snapshot(conn)
            except sqlite3.Error:  # not created yet
                digest, rows = None, []
            assert digest is None or digest == digest_of(rows), "a digest its objects do not match"
            if sum(1 for _, _, md5 in rows if md5s is None or md5 in md5s) >= reached:
                break
            time.sleep(0.005)
        else:
            pytest.fail("apply never reached the kill point")
        proc.kill()
    finally:
        proc.wait(timeout=30)
        if conn is not None:
            conn.close()
    assert proc.returncode == -9


def assert_honest(store: Path) -> dict[str, object]:
    """The invariant: no digest, or the digest of exactly the objects present."""
    node = store_node(store, NODE)
    assert node is not None
    digest = node["extra"].get("contentDigest")  # type: ignore[union-attr]
    if digest is not None:
        objs = store_objects(store, NODE).items()
        assert digest == digest_of([(k, size, md5) for k, (size, md5, _) in objs])
    return node


def assert_converges(cli: Cli, project: Project) -> None:
    code, _, err = cli("apply", "--quiet")
    assert code == 0, err
    assert cli("plan") == (0, "No changes.\n", "")
    dest = project.root.parent / "pulled"
    assert cli("pull", "big", "--dest", str(dest)).code == 0
    assert set(tree(dest)) - set(META) == {f"data/{k}" for k in tree(project.root / "data")}
    assert tree(dest / "data") == tree(project.root / "data")
    # resumed in place: no sibling F/<alt> next to a half-uploaded F/big
    assert assert_honest(project.store)["extra"]["contentDigest"]  # type: ignore[index]
    assert [
        r[0]
        for r in store_rows(
            project.store, "SELECT path FROM nodes WHERE parent = ?", "/alice/default"
        )
    ] == [NODE]


@pytest.mark.parametrize("reached", [5, FILES * 2 // 3])
def test_killed_first_apply_converges(cli: Cli, big: Project, reached: int) -> None:
    kill_apply_when(big, reached)
    assert reached <= count_objects(big.store) < FILES + len(META)
    assert_honest(big.store)
    assert_converges(cli, big)


def test_killed_update_never_claims_the_old_digest(cli: Cli, big: Project) -> None:
    assert cli("apply", "--quiet").code == 0
    old = store_node(big.store, NODE)["extra"]["contentDigest"]  # type: ignore[index]
    originals = tree(big.root / "data")
    changed = sorted(originals)[::2]  # 150 files
    new_md5s = set()
    for rel in changed:
        data = os.urandom(SIZE)
        big.write(f"data/{rel}", data)
        new_md5s.add(hashlib.md5(data).hexdigest())
    kill_apply_when(big, 20, new_md5s)
    node = assert_honest(big.store)
    assert "contentDigest" not in node["extra"]  # type: ignore[operator]
    # revert to the old content: the node must be repaired, not trusted
    for rel, data in originals.items():
        if rel in changed:
            big.write(f"data/{rel}", data)
    assert_converges(cli, big)
    assert store_node(big.store, NODE)["extra"]["contentDigest"] == old  # type: ignore[index]
