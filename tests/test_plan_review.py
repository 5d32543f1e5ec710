"""A hostile pass over the plan contract: each test pins one finding (real CLI, real
files, the embedded store)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from conftest import Cli, Project, corrupt_blob, store_node, store_objects, tree

from manifest_tool.hashing import md5_bytes
from manifest_tool.remotes.base import Upload
from manifest_tool.remotes.local import LocalRemote


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def fails(result: tuple[int, str, str], *words: str) -> str:
    code, out, err = result
    assert code == 1, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def plan_json(cli: Cli, *args: str) -> dict[str, Any]:
    return json.loads(ok(cli("plan", "--json", *args)))


def lock(project: Project, name: str = "artifacts.lock") -> dict[str, Any]:
    return yaml.safe_load((project.root / name).read_text())["artifacts"]  # type: ignore[no-any-return]


def two(folder: str = "proj", extra: str = "", m1: str = "") -> str:
    return (
        f"version: 1\n{extra}defaults: {{folder: {folder}, make_folder: true}}\nartifacts:\n"
        f"  - name: m1\n    description: first\n{m1}    objects: [{{file: data/a.txt}}]\n"
        "  - name: m2\n    objects: [{file: data/b.txt}]\n"
    )


def setup(project: Project, text: str | None = None) -> None:
    project.write("data/a.txt", "alpha")
    project.write("data/b.txt", "bravo")
    project.manifest(text or two())


def test_a_hostile_alternative_name_in_a_saved_plan_is_refused(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    setup(project)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "metadata.yaml").write_text("mine: 1\n")
    ok(cli("plan", "-q", "--out", "p.json"))
    saved = json.loads((project.root / "p.json").read_text())
    saved["artifacts"][0]["alternativeName"] = "../../../victim"
    (project.root / "p.json").write_text(json.dumps(saved))
    fails(cli("apply", "p.json"), "damaged plan")
    assert (victim / "metadata.yaml").read_text() == "mine: 1\n"
    assert not (project.root / "artifacts.lock").exists()


def test_a_hostile_alternative_name_in_the_lock_or_the_cache_is_refused(
    project: Project, cli: Cli
) -> None:
    setup(project)
    ok(cli("apply", "-q"))
    text = (project.root / "artifacts.lock").read_text()
    alt = lock(project)["m1"]["alternativeName"]
    (project.root / "artifacts.lock").write_text(text.replace(alt, "../../x"))
    fails(cli("plan"), "lock file is unreadable")
    (project.root / "artifacts.lock").unlink()
    cache = project.root / ".em/cache/identities/artifacts.yaml.json"
    cache.write_text(json.dumps({"m1": ["../../../x", "t"], "m2": 7}))
    planned = plan_json(cli)["artifacts"]
    assert all("/" not in a["alternativeName"] for a in planned)


def test_a_remote_alternative_name_that_is_a_path_is_never_adopted(
    project: Project, cli: Cli
) -> None:
    setup(project, two().replace("m2", "m3", 1).split("  - name: m3")[0])
    ok(cli("apply", "-q"))
    remote = LocalRemote(project.store, "alice")
    node = remote.node_info("/alice/proj/m1")
    assert node is not None
    extra = {**node.extra_dict, "alternativeName": ".."}
    remote.update_node("/alice/proj/m1", extra=json.dumps(extra))
    (project.root / "artifacts.lock").unlink()
    action = plan_json(cli)["artifacts"][0]
    assert action["action"] == "new" and ".." not in action["alternativeName"]


def test_reverting_a_folder_change_then_pruning_keeps_the_declared_artifact(
    project: Project, cli: Cli
) -> None:
    setup(project)
    ok(cli("apply", "-q"))
    project.manifest(two(m1="    folder: other\n"))
    ok(cli("apply", "-q"))
    project.manifest(two())
    pruning = plan_json(cli, "--prune")
    assert ("m1", "delete", "/alice/proj/m1") not in [
        (a["name"], a["action"], a["path"]) for a in pruning["artifacts"]
    ]
    ok(cli("apply", "--prune", "-q"))
    assert store_node(project.store, "/alice/proj/m1") is not None
    assert store_node(project.store, "/alice/other/m1") is None
    assert cli("plan", "--prune", "--detailed-exitcode")[0] == 0


def test_two_manifests_in_one_directory_keep_their_own_identities(
    project: Project, cli: Cli
) -> None:
    project.write("a.txt", "A")
    project.write("b.txt", "B")
    for s in "ab":
        project.manifest(
            "version: 1\ndefaults: {folder: shared, make_folder: true, conflict_strategy: error}\n"
            f"artifacts:\n  - name: model\n    objects: [{{file: {s}.txt, obj_path: w.bin}}]\n",
            name=f"{s}.yaml",
        )
    ok(cli("-f", "a.yaml", "apply", "-q"))
    fails(cli("-f", "b.yaml", "apply"), "Artifact already exists in Folder /alice/shared")
    assert tree_of(project, "/alice/shared/model") == {"w.bin"}
    assert store_objects(project.store, "/alice/shared/model")["w.bin"][1] == md5_bytes(b"A")


def tree_of(project: Project, path: str) -> set[str]:
    return set(store_objects(project.store, path)) - {"metadata.yaml"}


def test_a_symlinked_local_directory_never_leads_writes_into_sources(
    project: Project, cli: Cli
) -> None:
    setup(project)
    project.write("data/metadata.yaml", "my: precious\n")
    ok(cli("apply", "-q"))
    alt = lock(project)["m1"]["alternativeName"]
    local = project.root / ".em/artifacts" / alt
    for child in local.iterdir():
        child.unlink()
    local.rmdir()
    local.symlink_to(project.root / "data")
    before = tree(project.root / "data")
    project.write("data/a.txt", "alpha 2")
    ok(cli("apply", "-q"))
    assert (project.root / "data/metadata.yaml").read_text() == "my: precious\n"
    assert set(tree(project.root / "data")) == set(before)
    assert not local.is_symlink() and (local / "metadata.yaml").is_file()


def test_moving_onto_a_name_someone_else_holds_is_a_plan_error(
    project: Project, cli: Cli
) -> None:
    setup(project, two().replace("m1", "m0"))
    ok(cli("apply", "-q"))
    remote = LocalRemote(project.store, "alice")
    remote.create_node("/alice/proj", "m1", "Artifact", extra='{"alternativeName": "x_1"}')
    project.manifest(two(extra="moved: [{from: m0, to: m1}]\n"))
    fails(cli("plan"), "cannot rename /alice/proj/m0 to /alice/proj/m1")
    assert "m0" in lock(project)


def test_a_pinned_name_keeps_the_timestamp_plan_showed(project: Project, cli: Cli) -> None:
    setup(project, two(m1="    alternative_name: m1_200101_000000_abcdef\n"))
    first = plan_json(cli, "-t", "m1")["artifacts"][0]["createdTimestamp"]
    assert plan_json(cli, "-t", "m1")["artifacts"][0]["createdTimestamp"] == first
    ok(cli("apply", "-q", "-t", "m1"))
    assert lock(project)["m1"]["createdTimestamp"] == first


def test_a_pinned_name_moved_to_another_folder_and_pruned_keeps_its_lock_entry(
    project: Project, cli: Cli
) -> None:
    pin = "    alternative_name: m1_200101_000000_abcdef\n"
    setup(project, two(m1=pin))
    ok(cli("apply", "-q"))
    project.manifest(two(m1=pin + "    folder: other\n"))
    ok(cli("apply", "-q"))
    ok(cli("apply", "--prune", "-q"))
    assert lock(project)["m1"]["remote"]["path"] == "/alice/other/m1"
    assert store_node(project.store, "/alice/proj/m1") is None
    assert cli("plan", "--prune", "--detailed-exitcode")[0] == 0


def test_nested_object_paths_are_refused_by_plan_and_by_pull(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    project.write("data/a.txt", "a")
    project.manifest(
        "version: 1\nartifacts:\n  - name: m\n    objects:\n"
        "      - {file: data/a.txt, obj_path: x}\n      - {file: data/a.txt, obj_path: x/y}\n"
    )
    fails(cli("plan"), "'x/y' is below 'x'")
    remote = LocalRemote(project.store, "alice")
    remote.create_node("/alice", "f", "Folder")
    remote.create_node("/alice/f", "n", "Artifact", extra='{"alternativeName": "n_1"}')
    for key in ("x", "x/y"):
        remote.put_object("/alice/f/n", Upload(key, md5_bytes(b"d"), 1, data=b"d"))
    fails(cli("pull", "/alice/f/n", "--dest", str(tmp_path / "out")), "holds both 'x' and 'x/y'")
    assert not (tmp_path / "out").exists()


def test_a_corrupt_object_leaves_every_local_file_as_it_was(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    setup(project)
    ok(cli("apply", "-q"))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").write_text("my old copy")
    blob = store_objects(project.store, "/alice/proj/m1")["metadata.yaml"][2]
    corrupt_blob(project.store, blob, 0, b"corrupted")
    fails(cli("pull", "m1", "--dest", str(dest), "--force"), "corrupt")
    assert (dest / "a.txt").read_text() == "my old copy"


def test_a_folder_that_is_another_artifact_of_the_plan_is_a_plan_error(
    project: Project, cli: Cli
) -> None:
    setup(project, two() + "  - name: m3\n    folder: proj/m2\n    objects: [{file: data/a.txt}]\n")
    fails(cli("plan"), "its folder /alice/proj/m2 is (below) artifact 'm2'")
    assert not (project.root / "artifacts.lock").exists()
    assert store_node(project.store, "/alice/proj/m1") is None


def test_an_edit_that_keeps_size_and_mtime_is_uploaded(project: Project, cli: Cli) -> None:
    setup(project)
    ok(cli("apply", "-q"))
    target = project.root / "data/a.txt"
    st = target.stat()
    target.write_text("ALPHA")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or tar would
    planned = plan_json(cli)["artifacts"][0]
    assert (planned["action"], planned["upload"]) == ("update", ["a.txt"])


def test_a_refused_apply_writes_no_lock(project: Project, cli: Cli) -> None:
    setup(project)
    ok(cli("plan", "-q", "--out", "p.json"))
    remote = LocalRemote(project.store, "alice")
    remote.create_node("/alice", "proj", "Folder")
    remote.create_node("/alice/proj", "m1", "Artifact", extra='{"alternativeName": "late_1"}')
    fails(cli("apply", "p.json"), "stale")
    assert not (project.root / "artifacts.lock").exists()


def test_damaged_inputs_are_one_line_errors(project: Project, cli: Cli) -> None:
    setup(project)
    for body in ('{"format": 2}', '{"format": 2, "remote": "x", "artifacts": [1]}', "[]"):
        (project.root / "p.json").write_text(body)
        fails(cli("apply", "p.json"), "p.json")
    fails(cli("plan", "--out", "."), "cannot save the plan")
    fails(cli("plan", "--out", "no/such/dir/p.json"), "cannot save the plan")
    (project.root / "artifacts.lock").write_bytes(b"\xff\xfe")
    fails(cli("plan"), "lock file is unreadable")
    (project.root / "artifacts.lock").unlink()
    cache = project.root / ".em/cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "valid").mkdir(exist_ok=True)
    (cache / "valid" / "artifacts.yaml").write_bytes(b"\xff\xfe")
    (cache / "hashes").unlink(missing_ok=True)
    (cache / "hashes").mkdir()
    (cache / "users.json").write_text('{"x": "alice/x"}')
    ok(cli("apply", "-q"))
    assert store_node(project.store, "/alice/proj/m1") is not None


def test_a_file_deleted_between_plan_and_upload_is_one_line(
    project: Project, cli: Cli, remote: Any
) -> None:
    from conftest import run_in_process

    from manifest_tool.apply import Applier
    from manifest_tool.errors import ManifestToolError
    from manifest_tool.workspace import make_plan, open_workspace

    setup(project)
    os.environ.update(remote.env)
    ws = open_workspace(project.root / "artifacts.yaml", remote_url=remote.url)
    plan = make_plan(ws)
    (project.root / "data/b.txt").unlink()
    try:
        Applier(ws.remote, ws.lock_file, ws.lock()).apply(plan)
    except ManifestToolError as err:
        assert "data/b.txt" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("apply went on without the file")
    project.write("data/b.txt", "back")
    result = run_in_process("apply", "--remote", remote.url, cwd=project.root, env=remote.env)
    assert result.code == 0, result
