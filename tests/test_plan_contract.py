"""The plan is the contract: apply does exactly what plan showed, on every remote.

Every test runs against ``file:`` (the embedded store), against the real server on a
loopback port, and against two server replicas on PostgreSQL + S3 behind a
round-robin proxy, through the real CLI (in-process).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import USER, Project, Remote, Result, cli_env, remote_of, run_in_process, tree

from manifest_tool.applylock import exclusive_apply
from manifest_tool.errors import ConflictError, RevisionMismatch, StalePlan
from manifest_tool.hashing import md5_bytes
from manifest_tool.remotes import Remote as RemoteApi
from manifest_tool.remotes.base import Upload


def entries(folder: str, *names: str, description: str = "d") -> str:
    """Artifacts whose objects are the tree data/<name> (keys without the name)."""
    return "".join(
        f"  - name: {n}\n    folder: {folder}\n    make_folder: true\n"
        f"    description: {description}\n"
        f"    objects: [{{glob: 'data/{src}/**', base: data/{src}}}]\n"
        for n, src in ((n, n.removeprefix("re")) for n in names)
    )


def manifest(folder: str, *names: str, description: str = "d", extra: str = "") -> str:
    return f"version: 1\n{extra}artifacts:\n{entries(folder, *names, description=description)}"


@pytest.fixture
def folder(project: Project) -> str:
    return f"t/{project.root.parent.name}"  # one folder per test on the shared server


@pytest.fixture
def ds(project: Project, folder: str) -> Project:
    project.manifest(manifest(folder, "ds", "other"))
    project.write("data/ds/a.txt", "alpha")
    project.write("data/ds/sub/b.bin", bytes(range(256)) * 8)
    project.write("data/other/o.txt", "other")
    return project


def run(project: Project, remote: Remote, *args: str, cwd: Path | None = None) -> Result:
    return run_in_process(*args, "--remote", remote.url, cwd=cwd or project.root, env=remote.env)


def ok(result: Result) -> str:
    assert result.code == 0, (result.out, result.err)
    return result.out


def plan_json(project: Project, remote: Remote, *args: str) -> dict[str, Any]:
    return json.loads(ok(run(project, remote, "plan", "--json", *args)))


def actions(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["name"], a["action"], a["path"]) for a in plan["artifacts"]]


def lock(project: Project) -> dict[str, Any]:
    return yaml.safe_load((project.root / "artifacts.lock").read_text())["artifacts"]  # type: ignore[no-any-return]


def user_path(folder: str, name: str) -> str:
    return f"/{USER}/{folder}/{name}"


@pytest.fixture(params=["file", "http", "replicas"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """Every test here also runs on two replicas behind a round-robin proxy."""
    return remote_of(request.param, request, tmp_path)


# -- honest exit codes --------------------------------------------------------------------


def test_a_fresh_clone_with_the_lock_plans_no_changes(
    ds: Project, remote: Remote, tmp_path: Path
) -> None:
    ok(run(ds, remote, "apply"))
    clone = tmp_path / "clone"
    shutil.copytree(ds.root, clone, ignore=shutil.ignore_patterns(".em"))
    result = run(ds, remote, "plan", "--detailed-exitcode", cwd=clone)
    assert result == (0, "No changes.\n", "")
    assert json.loads(ok(run(ds, remote, "plan", "--json", cwd=clone)))["changes"] is False
    assert ok(run(ds, remote, "apply", cwd=clone)) == "No changes.\n"
    assert (clone / "artifacts.lock").read_text() == (ds.root / "artifacts.lock").read_text()


def test_usage_errors_exit_1_and_changes_exit_2(ds: Project, remote: Remote) -> None:
    assert run(ds, remote, "plan", "--no-such-flag").code == 1
    assert run(ds, remote, "apply", "--workers", "many").code == 1
    assert run(ds, remote, "plan", "--detailed-exitcode").code == 2


# -- one identity, minted once --------------------------------------------------------------


def test_the_alternative_name_plan_shows_is_the_one_apply_writes(
    ds: Project, remote: Remote, folder: str
) -> None:
    api = remote.api()
    parent = f"/{USER}/{folder}"
    api.create_node(f"/{USER}", folder.split("/")[0], "Folder") if api.node_info(
        f"/{USER}/t"
    ) is None else None
    api.create_node(f"/{USER}/t", folder.split("/")[1], "Folder")
    api.create_node(parent, "ds", "Artifact", extra='{"alternativeName": "someone_else"}')
    planned = {a["name"]: a for a in plan_json(ds, remote)["artifacts"]}
    alt = planned["ds"]["alternativeName"]
    assert planned["ds"]["action"] == "new"
    assert planned["ds"]["path"] == f"{parent}/{alt}"
    assert plan_json(ds, remote)["artifacts"][0]["alternativeName"] == alt  # stable
    applied = json.loads(ok(run(ds, remote, "apply", "--json")))["applied"]
    assert applied[0]["path"] == f"{parent}/{alt}"
    assert lock(ds)["ds"]["alternativeName"] == alt
    assert lock(ds)["ds"]["createdTimestamp"] == planned["ds"]["createdTimestamp"]


# -- saved plans ----------------------------------------------------------------------------


def test_an_edited_description_makes_a_saved_plan_stale(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    ds.manifest(manifest(folder, "ds", "other", description="reviewed"))
    ok(run(ds, remote, "plan", "--out", "p.json"))
    ds.manifest(manifest(folder, "ds", "other", description="not reviewed"))
    result = run(ds, remote, "apply", "p.json")
    assert result.code == 1
    assert "stale" in result.err and "description differs" in result.err
    node = remote.api().node_info(user_path(folder, "ds"))
    assert node is not None and node.description == "d"
    ds.manifest(manifest(folder, "ds", "other", description="reviewed"))
    ok(run(ds, remote, "apply", "p.json"))
    node = remote.api().node_info(user_path(folder, "ds"))
    assert node is not None and node.description == "reviewed"


def test_apply_stops_when_the_remote_changed_since_the_plan(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    ds.write("data/ds/a.txt", "alpha 2")
    ok(run(ds, remote, "plan", "--out", "p.json"))
    api, data = remote.api(), b"someone else's"
    api.put_object(user_path(folder, "ds"), Upload("x.txt", md5_bytes(data), len(data), data=data))
    result = run(ds, remote, "apply", "p.json")
    assert result.code == 1 and "stale" in result.err, result
    assert "x.txt" in {o.path for o in api.list_objects(user_path(folder, "ds"))}


def test_apply_refuses_a_node_changed_between_its_plan_and_its_write(
    ds: Project, remote: Remote, folder: str
) -> None:
    """In-process: the plan saw the node; another writer moves it on; apply stops."""
    from manifest_tool.apply import Applier
    from manifest_tool.workspace import make_plan, open_workspace

    ok(run(ds, remote, "apply"))
    ds.write("data/ds/a.txt", "alpha 3")
    os.environ.update(remote.env)
    ws = open_workspace(ds.root / "artifacts.yaml", remote_url=remote.url)
    plan = make_plan(ws, ("ds",))
    data = b"late"
    remote.api().put_object(
        user_path(folder, "ds"), Upload("late.txt", md5_bytes(data), 4, data=data)
    )
    with pytest.raises(StalePlan, match="changed since the plan"):
        Applier(ws.remote, ws.lock_file, ws.lock()).apply(plan)


# -- the manifest is the whole truth --------------------------------------------------------


def test_a_removed_artifact_is_an_orphan_until_pruned(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    ds.manifest(manifest(folder, "ds"))
    plan = plan_json(ds, remote)
    assert actions(plan) == [
        ("ds", "none", user_path(folder, "ds")),
        ("other", "orphan", user_path(folder, "other")),
    ]
    assert plan["changes"] is False
    assert run(ds, remote, "plan", "--detailed-exitcode").code == 0
    assert "? other: orphan at" in ok(run(ds, remote, "plan"))
    ok(run(ds, remote, "apply"))
    assert remote.api().node_info(user_path(folder, "other")) is not None  # kept

    pruning = plan_json(ds, remote, "--prune")
    assert pruning["changes"] is True
    assert actions(pruning)[1] == ("other", "delete", user_path(folder, "other"))
    assert run(ds, remote, "plan", "--prune", "--detailed-exitcode").code == 2
    ok(run(ds, remote, "apply", "--prune"))
    assert remote.api().node_info(user_path(folder, "other")) is None
    assert set(lock(ds)) == {"ds"}
    assert run(ds, remote, "plan", "--prune", "--detailed-exitcode") == (0, "No changes.\n", "")


def test_moved_renames_in_place_keeping_identity_and_objects(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    before = remote.api().node_info(user_path(folder, "ds"))
    alt = lock(ds)["ds"]["alternativeName"]
    ds.manifest(manifest(folder, "reds", "other", extra="moved: [{from: ds, to: reds}]\n"))
    plan = plan_json(ds, remote)
    assert actions(plan)[0] == ("reds", "rename", user_path(folder, "reds"))
    assert plan["artifacts"][0]["renameFrom"] == user_path(folder, "ds")
    assert (plan["artifacts"][0]["upload"], plan["artifacts"][0]["delete"]) == ([], [])
    assert "~ reds: rename" in ok(run(ds, remote, "plan"))
    ok(run(ds, remote, "apply"))
    api = remote.api()
    after = api.node_info(user_path(folder, "reds"))
    assert before is not None and after is not None
    assert api.node_info(user_path(folder, "ds")) is None
    assert (after.id, after.extra_dict["alternativeName"]) == (before.id, alt)
    assert after.extra_dict["contentDigest"] == before.extra_dict["contentDigest"]
    assert set(lock(ds)) == {"reds", "other"}
    assert lock(ds)["reds"]["alternativeName"] == alt
    assert ok(run(ds, remote, "apply")) == "No changes.\n"


def test_a_folder_change_is_a_new_node_and_an_orphan(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    old_alt = lock(ds)["ds"]["alternativeName"]
    ds.manifest(manifest(folder, "other") + entries(f"{folder}/moved", "ds"))
    plan = plan_json(ds, remote)
    assert sorted(actions(plan)) == [
        ("ds", "create", user_path(f"{folder}/moved", "ds")),
        ("ds", "orphan", user_path(folder, "ds")),
        ("other", "none", user_path(folder, "other")),
    ]
    ok(run(ds, remote, "apply"))
    api = remote.api()
    new = api.node_info(user_path(f"{folder}/moved", "ds"))
    assert new is not None and new.extra_dict["alternativeName"] != old_alt  # no shared alt
    assert api.node_info(user_path(folder, "ds")) is not None
    assert lock(ds)[user_path(folder, "ds")]["alternativeName"] == old_alt
    assert ("ds", "orphan", user_path(folder, "ds")) in actions(plan_json(ds, remote))
    ok(run(ds, remote, "apply", "--prune"))
    assert api.node_info(user_path(folder, "ds")) is None
    assert set(lock(ds)) == {"ds", "other"}
    assert run(ds, remote, "plan", "--prune", "--detailed-exitcode").code == 0


# -- .em/ never reaches a user's bytes --------------------------------------------------------


def test_writing_into_every_file_under_em_leaves_sources_unchanged(
    ds: Project, remote: Remote
) -> None:
    ok(run(ds, remote, "apply"))
    alt = lock(ds)["ds"]["alternativeName"]
    legacy = ds.root / ".em" / "artifacts" / alt / "a.txt"  # as older versions linked it
    os.link(ds.root / "data/ds/a.txt", legacy)
    ds.write("data/ds/new.txt", "new")
    ok(run(ds, remote, "apply"))
    assert not legacy.exists()
    sources = tree(ds.root / "data")
    em_files = [p for p in (ds.root / ".em").rglob("*") if p.is_file() and not p.is_symlink()]
    assert em_files
    for path in em_files:
        assert path.stat().st_nlink == 1, path
        with open(path, "wb") as fh:
            fh.write(b"clobbered")
    assert tree(ds.root / "data") == sources


# -- concurrency ----------------------------------------------------------------------------


def test_a_second_apply_of_one_directory_fails_naming_the_first(
    ds: Project, remote: Remote
) -> None:
    with exclusive_apply(ds.root / ".em"):
        result = run(ds, remote, "apply")
    assert result.code == 1
    assert "another apply is running" in result.err and f"pid {os.getpid()}" in result.err
    assert not (ds.root / "artifacts.lock").exists()
    ok(run(ds, remote, "apply"))


def test_the_digest_compare_and_set(remote: Remote, tmp_path: Path) -> None:
    """Setting the digest fails once any object changed since the revision was read."""
    api = remote.api()
    folder = f"cas-{tmp_path.name}"
    api.create_node(f"/{USER}", folder, "Folder")
    path = f"/{USER}/{folder}/a"
    api.create_node(f"/{USER}/{folder}", "a", "Artifact", extra='{"alternativeName": "a_1"}')
    before = api.node_info(path)
    assert before is not None and before.revision is not None
    api.put_object(path, Upload("x", md5_bytes(b"x"), 1, data=b"x"))
    with pytest.raises(RevisionMismatch):
        api.set_if_unchanged(path, before.revision, extra='{"contentDigest": "sha256:0"}')
    now = api.node_info(path)
    assert now is not None and now.revision == before.revision + 1
    assert "contentDigest" not in now.extra_dict
    api.set_if_unchanged(path, now.revision, description="sealed")


class _LateWriter:
    """Our remote, and another client that writes an object right after our listing."""

    def __init__(self, inner: RemoteApi, other: RemoteApi) -> None:
        self._inner, self._other, self.armed = inner, other, True

    def list_objects(self, node_path: str) -> Any:
        listing = self._inner.list_objects(node_path)
        if self.armed:
            self.armed = False
            data = b"sneaked in"
            self._other.put_object(node_path, Upload("late.bin", md5_bytes(data), 10, data=data))
        return listing

    def iter_objects(self, node_path: str) -> Any:  # the paged listing seal reads
        return iter(self.list_objects(node_path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_put_between_listing_and_seal_fails_the_seal_and_the_next_apply_repairs(
    ds: Project, remote: Remote, folder: str
) -> None:
    from manifest_tool.apply import Applier
    from manifest_tool.workspace import make_plan, open_workspace

    os.environ.update(remote.env)
    ws = open_workspace(ds.root / "artifacts.yaml", remote_url=remote.url)
    plan = make_plan(ws, ("ds",))
    late = _LateWriter(ws.remote, remote.api())
    with pytest.raises(ConflictError, match="changed while this apply ran"):
        Applier(late, ws.lock_file, ws.lock()).apply(plan)  # type: ignore[arg-type]
    node = remote.api().node_info(user_path(folder, "ds"))
    assert node is not None and "contentDigest" not in node.extra_dict
    repair = plan_json(ds, remote, "--target", "ds")["artifacts"][0]
    assert (repair["action"], repair["delete"]) == ("update", ["late.bin"])
    ok(run(ds, remote, "apply"))
    node = remote.api().node_info(user_path(folder, "ds"))
    assert node is not None and node.extra_dict["contentDigest"] == lock(ds)["ds"]["contentDigest"]
    assert run(ds, remote, "plan", "--detailed-exitcode").code == 0


# -- pull keeps data ------------------------------------------------------------------------


def test_pull_gets_objects_named_like_temp_files_and_keeps_local_edits(
    project: Project, remote: Remote, folder: str, tmp_path: Path
) -> None:
    project.write("data/ds/w", "w")
    project.write("data/ds/.w.part", "not a temp file")
    project.manifest(manifest(folder, "ds"))
    ok(run(project, remote, "apply"))
    dest = tmp_path / "pulled"
    got = json.loads(ok(run(project, remote, "pull", "ds", "--dest", str(dest), "--json")))
    assert (got["objects"], got["fetched"]) == (3, 3)
    assert tree(dest, skip=("metadata.yaml",)) == {"w": b"w", ".w.part": b"not a temp file"}
    (dest / "w").write_text("my edit")
    result = run(project, remote, "pull", "ds", "--dest", str(dest))
    assert result.code == 1 and str(dest / "w") in result.err and "--force" in result.err
    assert (dest / "w").read_text() == "my edit"
    ok(run(project, remote, "pull", "ds", "--dest", str(dest), "--force"))
    assert (dest / "w").read_text() == "w"
    assert not [p for p in dest.iterdir() if p.name.startswith(".manifest-tool-download-")]


def test_validate_json(project: Project, remote: Remote, folder: str) -> None:
    project.write("data/ds/a", "a")
    project.manifest(manifest(folder, "ds"))
    got = json.loads(ok(run(project, remote, "validate", "--json")))
    assert got["valid"] is True and got["artifacts"] == [
        {"name": "ds", "files": 1, "references": 0}
    ]
    project.manifest("version: 1\nartifacts: []\n")
    result = run(project, remote, "validate", "--json")
    assert result.code == 1
    assert json.loads(result.out)["valid"] is False


# -- the text plan says what changes ---------------------------------------------------------


def test_text_plan_marks_modified_objects_and_old_to_new_metadata(
    ds: Project, remote: Remote, folder: str
) -> None:
    ok(run(ds, remote, "apply"))
    ds.write("data/ds/a.txt", "alpha, edited")
    ds.write("data/ds/c.txt", "new")
    out = ok(run(ds, remote, "plan"))
    assert "    ~ a.txt" in out and "    + c.txt" in out
    ok(run(ds, remote, "apply"))
    ds.manifest(manifest(folder, "ds", "other", description="better"))
    out = ok(run(ds, remote, "plan"))
    assert "~ description: 'd' -> 'better'" in out


# -- many artifacts: one read ---------------------------------------------------------------


def test_nodes_are_read_in_one_batch_on_both_remotes(remote: Remote, tmp_path: Path) -> None:
    api = remote.api()
    folder = f"batch-{tmp_path.name}"
    api.create_node(f"/{USER}", folder, "Folder")
    api.create_node(f"/{USER}/{folder}", "a", "Artifact", extra='{"alternativeName": "a_1"}')
    got = api.node_infos([f"/{USER}/{folder}/a", f"/{USER}/{folder}/none", f"/{USER}/{folder}"])
    assert [n.name if n else None for n in got] == ["a", None, folder]
    assert api.node_infos([]) == []


def test_a_no_op_plan_of_many_artifacts_reads_their_nodes_in_one_request(
    project: Project, tmp_path: Path
) -> None:
    from serverutil import running_server

    names = [f"a{i}" for i in range(30)]
    for name in names:
        project.write(f"data/{name}/f.txt", name)
    project.manifest(manifest("many", *names))
    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        ok(run(project, remote, "apply"))
        before = server.logs().count("/apis/v1/nodes")
        assert run(project, remote, "plan", "--detailed-exitcode") == (0, "No changes.\n", "")
        node_calls = [
            line for line in server.logs().splitlines()[-200:] if "/apis/v1/nodes" in line
        ]
        assert server.logs().count("/apis/v1/nodes") - before == 1, node_calls[-5:]
        assert "/apis/v1/nodes/infos" in node_calls[-1]


def test_a_call_the_server_lacks_is_told_apart_from_a_missing_node(tmp_path: Path) -> None:
    from serverutil import running_server

    from manifest_tool.remotes.http import HttpRemote, RouteMissing

    with running_server(tmp_path / "srv", users=[USER]) as server:
        api = HttpRemote(server.url, server.keys[USER])
        with pytest.raises(RouteMissing):
            api._json("POST", "/apis/v1/no-such-call", "calling nothing", json={})
        assert api.node_info(f"/{USER}/nothing-here") is None
