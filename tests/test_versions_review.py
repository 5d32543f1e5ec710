"""versions: keep under hostile use: races, other projects, hand edits, odd references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, Project, Remote
from test_versions import honest, listed, publish, pulled, run, second_checkout, setup

from manifest_tool.errors import ConflictError
from manifest_tool.versions import move_alias, version_nodes


def test_a_tag_read_before_an_apply_never_writes_over_the_new_version(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    api = remote.api()
    seen = version_nodes(api.list_nodes(folder), folder, "ds")  # tag's read
    publish(cli, remote, project, "3")  # an apply lands in between
    with pytest.raises(ConflictError, match="changed while this command ran"):
        move_alias(api, seen, seen[0], "x")  # tag's write
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert len({v["alternativeName"] for v in versions}) == 3
    for v in versions:
        honest(api, str(v["path"]))
        assert "x" not in v["aliases"]
    assert pulled(cli, remote, project, "ds")["data/changing.txt"] == b"3"
    publish(cli, remote, project, "4")  # later applies still work
    assert [v["version"] for v in listed(cli, remote)] == [4, 3, 2, 1]
    assert json.loads(run(cli, remote, "tag", "ds@v3", "x", "--quiet") or "null") is None
    assert pulled(cli, remote, project, "ds@x")["data/changing.txt"] == b"3"


def other_project(project: Project, name: str, manifest: str) -> tuple[Project, Cli]:
    root = project.root.parent / name
    root.mkdir()
    other = Project(root)
    other.manifest(manifest)
    return other, Cli(root)


def test_another_project_of_the_same_name_meets_the_conflict_strategy(
    project: Project, cli: Cli, remote: Remote
) -> None:
    setup(project, extra="    keep_versions: 1\n")
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    manifest = (project.root / "artifacts.yaml").read_text()
    strict = manifest.replace("versions: keep", "versions: keep\n    conflict_strategy: error")
    other, other_cli = other_project(project, "p2", strict)
    other.write("data/x.txt", "another project\n")
    code, out, err = other_cli("apply", "--remote", remote.url, env=remote.env)
    assert code == 1 and "already exists" in out + err, (out, err)
    skip = manifest.replace("versions: keep", "versions: keep\n    conflict_strategy: skip")
    other.manifest(skip)
    ap = json.loads(run(other_cli, remote, "plan", "--json"))["artifacts"][0]
    assert ap["action"] == "skip"
    run(other_cli, remote, "apply", "--quiet")
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [2]  # its own retention only
    assert pulled(cli, remote, project, "ds")["data/changing.txt"] == b"2"
    assert cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env).code == 0


def test_prune_of_a_removed_versioned_artifact_keeps_aliased_versions_and_their_numbers(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project, extra="    aliases: [prod]\n")
    manifest = (project.root / "artifacts.yaml").read_text()
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    run(cli, remote, "tag", "ds@v1", "old", "--quiet")
    project.manifest(manifest.replace("name: ds", "name: other"))
    out = run(cli, remote, "plan", "--prune")
    assert "(apply --prune)" in out and "v3 (latest, prod)" in out and "v1 (old)" in out, out
    rows = json.loads(run(cli, remote, "plan", "--prune", "--json"))["artifacts"]
    ap = next(a for a in rows if a["name"] == "ds")
    assert ap["action"] == "orphan" and len(ap["pruneVersions"]) == 1
    run(cli, remote, "apply", "--prune", "--quiet")
    project.manifest(manifest)
    assert pulled(cli, remote, project, "ds@prod")["data/changing.txt"] == b"3"
    assert pulled(cli, remote, project, "ds@old")["data/changing.txt"] == b"1"
    assert [v["version"] for v in listed(cli, remote)] == [3, 1]
    publish(cli, remote, project, "4")
    assert [v["version"] for v in listed(cli, remote)] == [4, 3, 1]
    assert pulled(cli, remote, project, f"{folder}/ds@v4")["data/changing.txt"] == b"4"


def test_an_apply_that_loses_a_race_leaves_no_second_version_of_a_number(
    project: Project, cli: Cli, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    from manifest_tool.apply import Applier
    from manifest_tool.errors import StalePlan
    from manifest_tool.workspace import make_plan, open_workspace

    setup(project)
    publish(cli, remote, project, "1")
    other = second_checkout(project)
    other.write("data/changing.txt", "the winner")
    project.write("data/changing.txt", "the loser")
    for key, value in remote.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project.root)
    ws = open_workspace(project.root / "artifacts.yaml", remote_url=remote.url)
    plan = make_plan(ws)
    assert plan.artifacts[0].version == 2

    def the_other_applies_meanwhile(*_: object) -> None:
        run(Cli(other.root), remote, "apply", "--quiet")

    applier = Applier(ws.remote, ws.lock_file, ws.lock(), on_start=the_other_applies_meanwhile)
    with pytest.raises(StalePlan, match="changed while this version was built"):
        applier.apply(plan)
    numbers = [v["version"] for v in listed(cli, remote)]
    assert numbers == [2, 1]  # the loser's sealed stage holds no number yet
    assert pulled(cli, remote, project, "ds@v2")["data/changing.txt"] == b"the winner"
    run(cli, remote, "apply", "--quiet")  # the loser's stage moves in, numbered after
    assert [v["version"] for v in listed(cli, remote)] == [3, 2, 1]
    assert pulled(cli, remote, project, "ds@v3")["data/changing.txt"] == b"the loser"
    assert len(remote.api().list_nodes(str(plan.artifacts[0].folder))) == 3  # no stage left


def test_alternative_names_win_over_aliases_and_latest_is_what_sits_at_f_n(
    project: Project, cli: Cli, remote: Remote
) -> None:
    from manifest_tool.remotes.base import ARTIFACT
    from manifest_tool.versions import set_aliases

    folder = setup(project)
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    v3, _, v1 = listed(cli, remote)
    alt1 = str(v1["alternativeName"])
    code, _, err = cli("tag", "ds@v3", alt1, "--remote", remote.url, env=remote.env)
    assert code == 1 and "alternative name of v1" in err and err.count("\n") == 1, err
    api = remote.api()
    newest = api.node_info(f"{folder}/ds")
    assert newest is not None
    set_aliases(api, newest, [alt1])  # as an older client could have written it
    assert pulled(cli, remote, project, f"ds@{alt1}")["data/changing.txt"] == b"1"
    # a sibling claiming a higher number is not the latest: F/N is
    hostile = {"alternativeName": "ds_hostile", "versionOf": "ds", "version": 99,
               "contentDigest": "md5:0"}  # fmt: skip
    api.create_node(folder, "ds_hostile", ARTIFACT, extra=json.dumps(hostile))
    assert run(cli, remote, "tag", "ds@latest", "here") == f"here -> v3 ({v3['path']})\n"
    assert pulled(cli, remote, project, "ds@here")["data/changing.txt"] == b"3"
    api.update_node(f"{folder}/ds", name=str(v3["alternativeName"]))  # F/N empty
    code, _, err = cli("tag", "ds@latest", "x", "--remote", remote.url, env=remote.env)
    assert code == 1 and "no version 'latest'" in err, err


def test_a_version_renamed_by_hand_moves_back_as_the_plan_says(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    before = listed(cli, remote)
    api = remote.api()
    api.update_node(f"{folder}/ds", name="mine")
    out = run(cli, remote, "plan")
    assert f"v3 moves back to {folder}/ds" in out and "0 to upload" in out, out
    out = run(cli, remote, "apply")
    assert "0 object(s) uploaded" in out, out
    after = listed(cli, remote)
    assert [v["version"] for v in after] == [3, 2, 1]
    assert after[0]["alternativeName"] == before[0]["alternativeName"]
    assert sorted(n.name for n in api.list_nodes(folder)).count("mine") == 0
    assert len(api.list_nodes(folder)) == 3


def test_hostile_extra_values_are_not_versions_and_never_a_traceback(
    project: Project, cli: Cli, remote: Remote
) -> None:
    from manifest_tool.remotes.base import ARTIFACT

    folder = setup(project)
    for body in ("1", "2"):
        publish(cli, remote, project, body)
    api = remote.api()
    for i, extra in enumerate([
        {"alternativeName": "a/b", "versionOf": "ds", "version": 7, "contentDigest": "md5:1"},
        {"alternativeName": "", "versionOf": "ds", "version": 8, "contentDigest": "md5:1"},
        {"alternativeName": "..", "versionOf": "ds", "version": 9, "contentDigest": "md5:1"},
        {"alternativeName": "ds_five", "versionOf": "ds", "version": 6, "contentDigest": 5},
    ]):  # fmt: skip
        api.create_node(folder, f"hostile{i}", ARTIFACT, extra=json.dumps(extra))
    v2 = listed(cli, remote)[0]
    api.update_node(f"{folder}/ds", name=str(v2["alternativeName"]))  # F/N empty
    code, out, err = cli("plan", "--remote", remote.url, env=remote.env)
    assert code == 0 and "v2 moves back" in out, (out, err)
    run(cli, remote, "apply", "--quiet")
    odd = {"alternativeName": "ds_x", "versionOf": "ds", "version": 5, "contentDigest": "md5:1",
           "createdTimestamp": {"a": 1}, "aliases": [1, "ok"]}  # fmt: skip
    api.create_node(folder, "ds_x", ARTIFACT, extra=json.dumps(odd))
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [5, 2, 1]  # only ds_x looks like a version
    assert versions[0]["createdTimestamp"] and isinstance(versions[0]["createdTimestamp"], str)
    assert cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env).code == 0
    out = run(cli, remote, "versions", "ds")
    assert out.count("\n") == 3, out


@pytest.mark.parametrize("args", [("versions", "ds"), ("ls", "{folder}")])
def test_a_closed_stdout_pipe_ends_a_command_quietly(
    project: Project, cli: Cli, remote: Remote, args: tuple[str, ...]
) -> None:
    import subprocess
    import sys

    folder = setup(project)
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    argv = [a.format(folder=folder) for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "manifest_tool", *argv, "--remote", remote.url],
        cwd=project.root, env=remote.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before a line is written
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and err == b"", err


def test_a_node_named_with_an_at_sign_is_still_found(
    project: Project, cli: Cli, remote: Remote
) -> None:
    from manifest_tool.remotes.base import ARTIFACT
    from manifest_tool.transfer import node_for

    folder = setup(project)
    publish(cli, remote, project, "1")
    api = remote.api()
    api.create_node(folder, "m@1", ARTIFACT, extra=json.dumps({"alternativeName": "m_1"}))
    api.create_node(folder, "ds@v9", ARTIFACT, extra=json.dumps({"alternativeName": "ds_9"}))
    assert node_for(api, f"{folder}/m@1").name == "m@1"
    assert node_for(api, f"{folder}/ds@v9").name == "ds@v9"  # no version 9: the node
    assert node_for(api, f"{folder}/ds@v1").name == "ds"  # a version wins
    found = json.loads(run(cli, remote, "lineage", f"{folder}/m@1", "--json"))
    assert found["path"] == f"{folder}/m@1"
    code, _, err = cli("pull", f"{folder}/m@2", "--remote", remote.url, env=remote.env)
    assert code == 1 and "no version '2'" in err


def test_an_alias_the_manifest_drops_goes_and_tag_delete_removes_one(
    project: Project, cli: Cli, remote: Remote
) -> None:
    setup(project, extra="    aliases: [prod, stable]\n")
    manifest = (project.root / "artifacts.yaml").read_text()
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    assert listed(cli, remote)[0]["aliases"] == ["prod", "stable"]
    project.manifest(manifest.replace("aliases: [prod, stable]", "aliases: [prod]"))
    out = run(cli, remote, "plan")
    assert "~ aliases of" in out and ": prod\n" in out, out
    run(cli, remote, "apply", "--quiet")
    assert [v["aliases"] for v in listed(cli, remote)] == [["prod"], []]
    assert cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env).code == 0
    project.manifest(manifest.replace("    aliases: [prod, stable]\n", ""))
    run(cli, remote, "apply", "--quiet")
    assert [v["aliases"] for v in listed(cli, remote)] == [[], []]
    assert cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env).code == 0
    # a tag the command line set goes with tag --delete
    body = json.loads(run(cli, remote, "tag", "ds@v1", "old", "--json"))
    assert body["alias"] == "old" and body["version"] == 1
    assert pulled(cli, remote, project, "ds@old")["data/changing.txt"] == b"1"
    assert run(cli, remote, "tag", "ds", "old", "--delete") == "old removed from v1\n"
    assert [v["aliases"] for v in listed(cli, remote)] == [[], []]
    code, _, err = cli("tag", "ds", "old", "--delete", "--remote", remote.url, env=remote.env)
    assert code == 1 and "has the alias 'old'" in err


def test_a_stage_a_killed_apply_left_unsealed_is_shown_then_resumed(
    project: Project, cli: Cli, remote: Remote
) -> None:
    import sqlite3

    from manifest_tool.remotes.base import ARTIFACT
    from manifest_tool.versions import version_extra

    folder = setup(project)
    publish(cli, remote, project, "1")
    api = remote.api()
    # what an apply killed while building v2 leaves, its checkout's cache lost since
    extra = version_extra({}, "ds_killed", "ds", 2, "2026-01-01T00:00:00Z")
    api.create_node(folder, "ds_killed", ARTIFACT, extra=extra)
    project.write("data/changing.txt", "2")
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert "being built by another apply" in ap["message"] and "ds_killed" in ap["message"]
    assert ap["stage"] != f"{folder}/ds_killed"  # young: maybe another apply's at work
    if not remote.url.startswith("file:"):
        return  # only the embedded store's clock can be turned back from here
    store = Path(remote.url.removeprefix("file:"))
    with sqlite3.connect(store / "store.sqlite") as conn:
        conn.execute("UPDATE nodes SET created_at = ?, updated_at = ? WHERE path = ?",
                     ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", f"{folder}/ds_killed"))
    conn.close()
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert ap["stage"] == f"{folder}/ds_killed" and "resumes" in ap["message"], ap
    assert "resumes" in run(cli, remote, "plan")
    run(cli, remote, "apply", "--quiet")
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["alternativeName"] == "ds_killed"
    assert len(api.list_nodes(folder)) == 2  # nothing left behind
    honest(api, f"{folder}/ds")


def test_plan_and_apply_say_what_retention_and_alias_moves_do(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project, extra="    aliases: [prod]\n")
    manifest = (project.root / "artifacts.yaml").read_text()
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    project.manifest(manifest.replace("    aliases", "    keep_versions: 2\n    aliases"))
    out = run(cli, remote, "plan")
    assert "1 none" not in out and "1 old version(s) to delete" in out, out
    out = run(cli, remote, "apply")
    assert "deleted old version" in out and "(keep_versions)" in out, out
    run(cli, remote, "tag", "ds@v2", "prod", "--quiet")
    out = run(cli, remote, "plan")
    assert "1 none" not in out and "2 version(s) whose aliases change" in out, out
    assert f"~ aliases of {folder}/ds: prod" in out, out
    applied = json.loads(run(cli, remote, "apply", "--json"))["applied"][0]
    assert applied["aliases"][f"{folder}/ds"] == ["prod"]
    assert [v["aliases"] for v in listed(cli, remote)] == [["prod"], []]


def test_versions_output_is_aligned_and_plain(project: Project, cli: Cli, remote: Remote) -> None:
    from manifest_tool.remotes.base import FOLDER

    folder = setup(project)
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    run(cli, remote, "tag", "ds@v1", "a-rather-long-alias-name.for-baseline1")
    lines = run(cli, remote, "versions", "ds").splitlines()
    assert len({line.index("/alice/") for line in lines}) == 1, lines  # columns line up
    for v in listed(cli, remote):
        assert str(v["createdTimestamp"]).endswith("Z") and "+00:00" not in v["createdTimestamp"]
    code, _, err = cli("versions", "nowhere/ds", "--remote", remote.url, env=remote.env)
    assert code == 1 and "/alice/nowhere/ds" in err, err
    # a Folder where the artifact's newest version belongs
    other = f"{folder}-f"
    api = remote.api()
    api.create_node(folder.rpartition("/")[0], other.rpartition("/")[2], FOLDER)
    api.create_node(other, "ds", FOLDER)
    text = (project.root / "artifacts.yaml").read_text()
    project.manifest(text.replace(f"folder: {folder.rpartition('/')[2]}",
                                  f"folder: {other.rpartition('/')[2]}"))  # fmt: skip
    code, out, err = cli("plan", "--remote", remote.url, env=remote.env)
    assert code == 1 and f"{other}/ds is a Folder, not an artifact" in out + err, (out, err)


def test_keep_without_a_versioned_artifact_warns(project: Project, cli: Cli) -> None:
    project.manifest("version: 1\nartifacts:\n  - name: plain\n    objects:\n      - dir: data\n")
    project.write("data/a.txt", "a")
    assert cli("apply", "--quiet").code == 0
    code, out, err = cli("apply", "--keep", "1")
    assert code == 0 and "No changes." in out and "--keep applies to artifacts with" in err


def test_listing_versions_costs_requests_independent_of_their_number(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    from conftest import USER, cli_env
    from serverutil import running_server
    from test_versions import requests

    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        setup(project)
        for body in ("1", "2", "3", "4"):
            publish(cli, remote, project, body)
        before = requests(server.logs())
        versions = listed(cli, remote)
        made = requests(server.logs())[len(before) :]
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert [(v["size"], v["objects"]) for v in versions] == [(11, 2)] * 4
    assert not [line for line in made if "objects" in line], made
    assert len(made) <= 2, made


def test_versions_of_another_project_beside_an_empty_f_n_are_not_built_on(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project, extra="    keep_versions: 1\n")
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    v2 = listed(cli, remote)[0]
    api = remote.api()
    api.update_node(f"{folder}/ds", name=str(v2["alternativeName"]))  # stopped between moves
    manifest = (project.root / "artifacts.yaml").read_text()
    other, other_cli = other_project(project, "p2", manifest)
    other.write("data/x.txt", "another project\n")
    code, out, err = other_cli("apply", "--remote", remote.url, env=remote.env)
    assert code == 1 and "versions of another artifact named 'ds'" in out + err, (out, err)
    assert [n.name for n in api.list_nodes(folder)] == [v2["alternativeName"]]
    run(cli, remote, "apply", "--quiet")  # its own checkout moves it back
    assert listed(cli, remote)[0]["path"] == f"{folder}/ds"


def test_a_write_that_landed_on_a_new_version_is_repaired_and_resealed(
    project: Project, cli: Cli, remote: Remote
) -> None:
    """The last resort of the identity check: should a write meant for v2 land on v3
    (moved in between the check and the write), v3 gets its own identity back,
    unsealed, and the next apply checks its objects and seals it again."""
    from manifest_tool.versions import _repair

    folder = setup(project)
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    api = remote.api()
    old = api.node_info(f"{folder}/ds")
    assert old is not None
    publish(cli, remote, project, "3")
    new = api.node_info(f"{folder}/ds")
    assert new is not None
    landed = api.update_node(new.path, extra=json.dumps({**old.extra_dict, "aliases": ["x"]}))
    _repair(api, landed, old.extra_dict)
    repaired = api.node_info(f"{folder}/ds")
    assert repaired is not None
    assert repaired.extra_dict["alternativeName"] == new.extra_dict["alternativeName"]
    assert "contentDigest" not in repaired.extra_dict and repaired.extra_dict["version"] == 3
    run(cli, remote, "apply", "--quiet")
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert len({v["alternativeName"] for v in versions}) == 3
    for v in versions:
        honest(api, str(v["path"]))
    assert pulled(cli, remote, project, "ds")["data/changing.txt"] == b"3"
