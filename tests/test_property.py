"""Hypothesis: random trees and edits; after apply, plan shows no changes, and apply
uploads exactly the files whose content changed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest_tool.apply import Applier
from manifest_tool.workspace import Workspace, make_plan, open_workspace

MANIFEST = "version: 1\nartifacts:\n  - name: prop\n    objects:\n      - dir: data\n"
segment = st.text("abcxyz019_-", min_size=1, max_size=4).filter(lambda s: s[0].isalnum())
rel_path = st.lists(segment, min_size=1, max_size=3).map("/".join)
content = st.binary(max_size=64)


def consistent(files: dict[str, bytes]) -> bool:
    """No path is also a directory of another path."""
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    return not dirs & set(files)


trees = st.dictionaries(rel_path, content, min_size=1, max_size=8).filter(consistent)
edit = st.one_of(
    st.tuples(st.just("add"), rel_path, content),
    st.tuples(st.just("modify"), st.integers(0, 7), content),
    st.tuples(st.just("delete"), st.integers(0, 7), st.just(b"")),
    st.tuples(st.just("touch"), st.integers(0, 7), st.just(b"")),
)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def edit_files(root: Path, files: dict[str, bytes], edits: list[tuple[str, object, bytes]]) -> None:
    """Apply ``edits`` to the files on disk and to ``files``."""
    for op, where, data in edits:
        names = sorted(files)
        if op == "add":
            rel = str(where)
            if rel in files or not consistent({**files, rel: data}):
                continue
        else:
            rel = names[int(str(where)) % len(names)]
        path = root / "data" / rel
        if op == "delete":
            if len(files) == 1:
                continue
            path.unlink()
            del files[rel]
        elif op == "touch":
            st_ = path.stat()
            os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
            continue
        else:
            if files.get(rel) == data:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[rel] = data


def apply(ws: Workspace) -> None:
    plan = make_plan(ws)
    Applier(ws.remote, ws.lock_file, ws.lock()).apply(plan)


def remote_files(ws: Workspace) -> dict[str, tuple[int, str]]:
    objs = ws.remote.list_objects("/alice/default/prop")
    return {o.path: (o.size_bytes, o.checksum) for o in objs if o.path != "metadata.yaml"}


def declared(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {f"data/{k}": (len(v), hashlib.md5(v).hexdigest()) for k, v in files.items()}


@pytest.mark.usefixtures("api_env")
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=trees, edits=st.lists(edit, max_size=6))
def test_apply_then_plan_shows_no_changes(
    files: dict[str, bytes], edits: list[tuple[str, object, bytes]]
) -> None:
    files = dict(files)  # edited below; hypothesis reports the original
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "artifacts.yaml").write_text(MANIFEST)
        write_tree(root, files)
        ws = open_workspace(root / "artifacts.yaml")
        try:
            apply(ws)
            assert not make_plan(ws).changes
            assert remote_files(ws) == declared(files)
            before = dict(files)
            edit_files(root, files, edits)
            (art,) = make_plan(ws).artifacts
            assert set(art.upload) == {f"data/{k}" for k in files if before.get(k) != files[k]}
            assert set(art.delete) == {f"data/{k}" for k in before if k not in files}
            apply(ws)
            after = make_plan(ws)
            assert not after.changes, after.to_json()
            assert remote_files(ws) == declared(files)
            apply(ws)  # a second apply is a no-op
            assert remote_files(ws) == declared(files)
        finally:
            ws.remote.close()


_TEXT = st.text(min_size=0, max_size=120)


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=60),
        st.tuples(_TEXT, _TEXT, _TEXT, st.dictionaries(st.text(max_size=20), _TEXT, max_size=4)),
        max_size=5,
    )
)
def test_the_lock_built_from_pieces_reads_back_as_written(raw: dict[str, Any]) -> None:
    import yaml

    from manifest_tool.lockfile import LockEntry, entry_fields, lock_text

    entries = {name: LockEntry(a, c, d, r, len(a) % 3) for name, (a, c, d, r) in raw.items()}
    data = yaml.safe_load(lock_text(entries))
    assert data["version"] == 1
    assert data["artifacts"] == {n: entry_fields(e) for n, e in entries.items()}
