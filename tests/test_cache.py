"""The hash index: one file per manifest, read once per plan, written only when an
artifact's entry changed; a damaged one is ignored and rebuilt (real CLI and files,
the embedded store). ``in_sync`` is the planner's fast path: nothing hashed."""

from __future__ import annotations

import ast
import marshal
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import USER, Cli, Project

from manifest_tool.cache import FORMAT, StagedIndex, index_path
from manifest_tool.hashing import md5_bytes
from manifest_tool.plan import Desired
from manifest_tool.workspace import make_plan, open_workspace

ONE = """\
version: 1
artifacts:
  - name: ds
    objects:
      - dir: {src}
"""


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


@pytest.fixture(autouse=True)
def user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANIFEST_TOOL_USER", USER)


def settled() -> None:
    """Files written just now share the clock's tick with the plan that reads them, and
    such rows are not trusted (they might change again unseen within the tick)."""
    time.sleep(0.05)


def desired(
    project: Project, manifest: str = "artifacts.yaml", *targets: str
) -> dict[str, Desired]:
    ws = open_workspace(project.root / manifest)
    plan = make_plan(ws, targets)
    return {ap.name: ap.desired for ap in plan.artifacts if ap.desired is not None}


def index_file(project: Project, manifest: str = "artifacts.yaml") -> Path:
    return index_path(project.root / ".em" / "cache", project.root / manifest)


def two_manifests(project: Project) -> None:
    """a.yaml and b.yaml in one directory, each with an artifact named ds."""
    for name in ("a", "b"):
        for i in range(3):
            project.write(f"{name}/f{i}.txt", f"{name}{i}")
        project.manifest(ONE.format(src=name), f"{name}.yaml")
    settled()


def test_two_manifests_with_one_artifact_name_keep_their_fast_paths(project: Project) -> None:
    two_manifests(project)
    first = {m: desired(project, m)["ds"] for m in ("a.yaml", "b.yaml")}
    assert not first["a.yaml"].in_sync and not first["b.yaml"].in_sync
    assert first["a.yaml"].digest != first["b.yaml"].digest
    for _ in range(2):
        for m in ("a.yaml", "b.yaml"):
            again = desired(project, m)["ds"]
            assert again.in_sync, m
            assert again.digest == first[m].digest
    assert index_file(project, "a.yaml") != index_file(project, "b.yaml")


def test_a_no_op_plan_leaves_the_index_file_alone(project: Project, cli: Cli) -> None:
    two_manifests(project)
    ok(cli("apply", "-q", "-f", "a.yaml"))
    path = index_file(project, "a.yaml")
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    assert '"action": "none"' in ok(cli("plan", "--json", "-f", "a.yaml"))
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"\x00garbage\xff" * 10,
        marshal.dumps([1, 2, 3]),
        marshal.dumps({"format": FORMAT, "artifacts": "x"}),
        marshal.dumps({"format": FORMAT, "artifacts": {"ds": (1, 2)}}),
        "truncated",
        "directory ids out of range",
        "md5s cut short",
    ],
)
def test_a_damaged_index_is_ignored_and_rebuilt(project: Project, damage: bytes | str) -> None:
    two_manifests(project)
    good = desired(project, "a.yaml")["ds"]
    path = index_file(project, "a.yaml")
    path.write_bytes(_damaged(path, damage))
    redone = desired(project, "a.yaml")["ds"]
    assert not redone.in_sync
    assert redone.digest == good.digest
    assert list(redone.md5s()) == [md5_bytes(f"a{i}".encode()) for i in range(3)]
    assert desired(project, "a.yaml")["ds"].in_sync  # rebuilt


def _damaged(path: Path, damage: bytes | str) -> bytes:
    if isinstance(damage, bytes):
        return damage
    data = path.read_bytes()
    if damage == "truncated":
        return data[: len(data) // 2]
    index = marshal.loads(data)
    alt, digest, since, md5s, refs, columns = index["artifacts"]["ds"]
    if damage == "md5s cut short":
        md5s = md5s[:-1]
    else:
        columns = (columns[0], (), *columns[2:])  # rows name directories it lacks
    index["artifacts"]["ds"] = (alt, digest, since, md5s, refs, columns)
    return marshal.dumps(index)


def test_an_edit_that_keeps_size_and_mtime_is_seen(project: Project) -> None:
    two_manifests(project)
    first = desired(project, "a.yaml")["ds"]
    assert desired(project, "a.yaml")["ds"].in_sync
    target = project.root / "a" / "f1.txt"
    st = target.stat()
    target.write_text("A1")  # the same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or tar would
    settled()
    edited = desired(project, "a.yaml")["ds"]
    assert not edited.in_sync and edited.digest != first.digest
    assert list(edited.md5s())[1] == md5_bytes(b"A1")


def test_rows_as_new_as_the_clock_the_entry_was_read_by_are_not_trusted(
    project: Project,
) -> None:
    """A file changed within the tick in which it was read might have changed again
    after the read without its stat showing it: its row is hashed again."""
    two_manifests(project)
    desired(project, "a.yaml")
    path = index_file(project, "a.yaml")
    index = StagedIndex(path)
    staged = index.get("ds")
    assert staged is not None
    newest = max(row[3] for row in staged.stats)
    index.put("ds", replace(staged, since_ns=newest))
    index.save({"ds"})
    assert not desired(project, "a.yaml")["ds"].in_sync
    assert desired(project, "a.yaml")["ds"].in_sync


def test_the_index_keeps_other_targets_and_drops_undeclared_artifacts(project: Project) -> None:
    for name in ("x", "y"):
        project.write(f"{name}/f.txt", name)
    project.manifest(
        "version: 1\nartifacts:\n"
        "  - name: x\n    objects: [{dir: x}]\n  - name: y\n    objects: [{dir: y}]\n"
    )
    settled()
    desired(project)
    path = index_file(project)
    assert set(marshal.loads(path.read_bytes())["artifacts"]) == {"x", "y"}
    (project.root / "x" / "f.txt").write_text("changed")
    settled()
    assert not desired(project, "artifacts.yaml", "x")["x"].in_sync
    assert set(marshal.loads(path.read_bytes())["artifacts"]) == {"x", "y"}
    assert desired(project)["y"].in_sync
    project.manifest("version: 1\nartifacts:\n  - name: y\n    objects: [{dir: y}]\n")
    desired(project)
    assert set(marshal.loads(path.read_bytes())["artifacts"]) == {"y"}


def test_a_manifest_and_its_lock_are_parsed_once_per_text(project: Project, cli: Cli) -> None:
    two_manifests(project)
    ok(cli("apply", "-q", "-f", "a.yaml"))  # makes .em/cache: the next run keeps its parses
    ok(cli("plan", "-q", "-f", "a.yaml"))
    parsed = project.root / ".em" / "cache" / "parsed"
    assert sorted(p.name for p in parsed.iterdir()) == ["a.lock", "a.yaml"]
    text = (project.root / "a.yaml").read_text()
    (project.root / "a.yaml").write_text(text.replace("name: ds", "name: dz"))  # same size
    assert '"name": "dz"' in ok(cli("plan", "--json", "-f", "a.yaml"))
    for damaged in (b"", b"\x00junk", marshal.dumps({"format": FORMAT, "key": 1, "value": 2})):
        for name in ("a.lock", "a.yaml"):
            (parsed / name).write_bytes(damaged)
        out = ok(cli("plan", "--json", "-f", "a.yaml"))
        assert '"name": "dz"' in out and '"name": "ds"' in out  # dz new, ds an orphan


def test_a_no_op_plan_imports_no_yaml_jinja_or_schema_library(project: Project, cli: Cli) -> None:
    """Start-up is a good part of a no-op plan: the libraries only a changed manifest,
    a template or a write needs stay unloaded when their results are cached (per
    manifest: another one in the same directory does not undo it)."""
    two_manifests(project)
    ok(cli("apply", "-q", "-f", "a.yaml"))
    ok(cli("plan", "-q", "-f", "a.yaml"))
    ok(cli("plan", "-q", "-f", "b.yaml"))  # its own parse and schema check: a's stay
    probe = (
        "import sys\n"
        "from manifest_tool.cli import main\n"
        "try:\n"
        "    main(['plan', '-q', '-f', 'a.yaml'], standalone_mode=False)\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = set(ast.literal_eval(done.stdout.strip()))
    assert "manifest_tool" in loaded
    assert not loaded & {"yaml", "jinja2", "jsonschema", "requests", "rich", "pathspec"}
