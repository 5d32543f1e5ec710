"""versions: keep — every published state stays reachable, by number, alias or
alternative name, on both remotes; the newest at F/N as a T9k client expects."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

import pytest
from conftest import Cli, Project, Remote, store_rows, tree

from manifest_tool.hashing import content_digest
from manifest_tool.paths import RESERVED_ROOT_NAMES
from manifest_tool.remotes.base import Remote as RemoteApi

MANIFEST = """\
version: 1
artifacts:
  - name: ds
    folder: {folder}
    make_folder: true
    versions: keep
    description: {description}
{extra}    objects:
      - dir: data
"""


def setup(project: Project, extra: str = "", description: str = "first") -> str:
    """A versioned artifact in a folder of its own (the HTTP server is shared)."""
    folder = f"v-{uuid.uuid4().hex[:8]}"
    project.manifest(MANIFEST.format(folder=folder, extra=extra, description=description))
    project.write("data/keep.txt", "unchanged\n")
    return f"/alice/{folder}"


def run(cli: Cli, remote: Remote, *args: str) -> str:
    code, out, err = cli(*args, "--remote", remote.url, env=remote.env)
    assert code == 0, (args, out, err)
    return out


def publish(cli: Cli, remote: Remote, project: Project, body: str) -> None:
    project.write("data/changing.txt", body)
    run(cli, remote, "apply", "--quiet")


def listed(cli: Cli, remote: Remote) -> list[dict[str, object]]:
    return list(json.loads(run(cli, remote, "versions", "ds", "--json"))["versions"])


def pulled(cli: Cli, remote: Remote, project: Project, ref: str) -> dict[str, bytes]:
    dest = project.root.parent / f"pulled-{uuid.uuid4().hex[:6]}"
    run(cli, remote, "pull", ref, "--dest", str(dest))
    return tree(dest, skip=RESERVED_ROOT_NAMES)


def honest(api: RemoteApi, path: str) -> str:
    """The node's digest, checked against the objects it holds."""
    node = api.node_info(path)
    assert node is not None, path
    digest = node.extra_dict.get("contentDigest")
    objects = [o for o in api.list_objects(path) if o.path not in RESERVED_ROOT_NAMES]
    rows = [{"path": o.path, "size_bytes": o.size_bytes, "checksum": o.checksum} for o in objects]
    assert digest == content_digest(rows), f"{path} claims a digest its objects do not match"
    return str(digest)


def test_three_content_changes_give_v1_to_v3_all_pullable(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    bodies = [f"content {i}\n".encode() for i in (1, 2, 3)]
    for body in bodies:
        publish(cli, remote, project, body.decode())
    assert cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env).code == 0
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[0]["latest"] and not versions[0]["aliases"]
    assert versions[0]["path"] == f"{folder}/ds"
    assert [v["objects"] for v in versions] == [2, 2, 2]
    assert len({v["contentDigest"] for v in versions}) == 3
    for v, body in zip(versions, reversed(bodies), strict=True):
        want = {"data/keep.txt": b"unchanged\n", "data/changing.txt": body}
        assert pulled(cli, remote, project, f"ds@v{v['version']}") == want
        assert pulled(cli, remote, project, f"ds@{v['alternativeName']}") == want
        assert v["size"] == sum(map(len, want.values()))
    assert pulled(cli, remote, project, "ds@latest")["data/changing.txt"] == bodies[-1]
    assert pulled(cli, remote, project, "ds")["data/changing.txt"] == bodies[-1]
    assert pulled(cli, remote, project, f"{folder}/ds@v1")["data/changing.txt"] == bodies[0]
    found = json.loads(run(cli, remote, "lineage", "ds@v2", "--json"))
    assert found["path"] == versions[1]["path"] and found["usedBy"] == []
    lock = (project.root / "artifacts.lock").read_text()
    assert "version: 3" in lock and str(versions[0]["alternativeName"]) in lock
    code, _, err = cli("pull", "ds@v9", "--remote", remote.url, env=remote.env)
    assert code == 1 and "no version 'v9'" in err and "v3 (latest)" in err


def test_the_t9k_view_newest_at_f_n_older_ones_at_their_alternative_names(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    for body in ("one", "two", "three"):
        publish(cli, remote, project, body)
    api = remote.api()
    nodes = {n.name: n for n in api.list_nodes(folder)}
    versions = listed(cli, remote)
    assert set(nodes) == {"ds", *(str(v["alternativeName"]) for v in versions[1:])}
    for v in versions:
        node = nodes["ds" if v["version"] == 3 else str(v["alternativeName"])]
        assert node.extra_dict["alternativeName"] == v["alternativeName"]
        assert honest(api, node.path) == v["contentDigest"]  # each its own, unchanged
    # what a T9k client loading F/N gets: the newest content, with its own metadata
    meta = pulled(cli, remote, project, f"{folder}/ds")
    assert meta["data/changing.txt"] == b"three"
    dest = project.root.parent / "t9k"
    run(cli, remote, "pull", f"{folder}/ds", "--dest", str(dest))
    import yaml

    metadata = yaml.safe_load((dest / "metadata.yaml").read_text())
    assert metadata["alternativeName"] == versions[0]["alternativeName"]
    assert metadata["remote"][-1]["path"] == f"{folder}/ds"


def test_labels_or_description_alone_make_no_version(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    publish(cli, remote, project, "x")
    project.manifest(
        (project.root / "artifacts.yaml").read_text().replace("first", "second")
    )
    plan = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert plan["action"] == "metadata" and plan["version"] == 1
    run(cli, remote, "apply", "--quiet")
    assert [v["version"] for v in listed(cli, remote)] == [1]
    assert remote.api().node_info(f"{folder}/ds").description == "second"  # type: ignore[union-attr]


def test_plan_shows_the_version_it_will_publish_and_counts_it_as_a_change(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    project.write("data/changing.txt", "1")
    first = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (first["action"], first["version"], first["path"]) == ("create", 1, f"{folder}/ds")
    assert first["stage"] == f"{folder}/{first['alternativeName']}"
    run(cli, remote, "apply", "--quiet")
    project.write("data/changing.txt", "2")
    code, _, _ = cli("plan", "--detailed-exitcode", "--remote", remote.url, env=remote.env)
    assert code == 2
    plan = json.loads(run(cli, remote, "plan", "--json"))
    ap = plan["artifacts"][0]
    assert plan["changes"] is True
    assert (ap["action"], ap["version"], ap["path"]) == ("version", 2, f"{folder}/ds")
    assert ap["retireTo"] == f"{folder}/{first['alternativeName']}"
    assert ap["alternativeName"] != first["alternativeName"]
    text = run(cli, remote, "plan")
    assert f"+ ds: version v2 at {folder}/ds" in text
    assert f"now stays at {folder}/{first['alternativeName']}" in text
    # the plan's identity is the one apply publishes
    run(cli, remote, "apply", "--quiet")
    assert listed(cli, remote)[0]["alternativeName"] == ap["alternativeName"]


def test_a_saved_plan_is_stale_once_another_version_appeared(
    project: Project, cli: Cli, remote: Remote
) -> None:
    setup(project)
    publish(cli, remote, project, "1")
    project.write("data/changing.txt", "2")
    run(cli, remote, "plan", "--out", "p.json")
    publish(cli, remote, project, "3")  # another apply publishes v2 meanwhile
    project.write("data/changing.txt", "2")
    code, _, err = cli("apply", "p.json", "--remote", remote.url, env=remote.env)
    assert code == 1 and "stale" in err
    assert [v["version"] for v in listed(cli, remote)] == [2, 1]


def test_aliases_follow_the_manifest_and_tag(project: Project, cli: Cli, remote: Remote) -> None:
    setup(project, extra="    aliases: [prod]\n")
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    assert [v["aliases"] for v in listed(cli, remote)] == [["prod"], []]
    assert pulled(cli, remote, project, "ds@prod")["data/changing.txt"] == b"2"
    assert run(cli, remote, "tag", "ds@v1", "stable").startswith("stable -> v1")
    run(cli, remote, "tag", "ds@v1", "prod")
    assert [v["aliases"] for v in listed(cli, remote)] == [[], ["stable", "prod"]]
    assert pulled(cli, remote, project, "ds@prod")["data/changing.txt"] == b"1"
    # the manifest declares prod on the newest: the next apply moves it back
    plan = json.loads(run(cli, remote, "plan", "--json"))
    assert plan["changes"] and plan["artifacts"][0]["action"] == "none"
    run(cli, remote, "apply", "--quiet")
    assert [v["aliases"] for v in listed(cli, remote)] == [["prod"], ["stable"]]
    assert json.loads(run(cli, remote, "plan", "--json"))["changes"] is False
    for bad in ("latest", "v2", "a b"):
        code, _, err = cli("tag", "ds@v1", bad, "--remote", remote.url, env=remote.env)
        assert code == 1 and "invalid alias" in err


def test_retention_keeps_the_newest_n_and_every_aliased_version(
    project: Project, cli: Cli, remote: Remote
) -> None:
    setup(project, extra="    keep_versions: 2\n")
    for body in ("1", "2"):
        publish(cli, remote, project, body)
    run(cli, remote, "tag", "ds@v1", "golden")
    publish(cli, remote, project, "3")
    project.write("data/changing.txt", "4")
    plan = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    v2 = next(v for v in listed(cli, remote) if v["version"] == 2)
    assert plan["action"] == "version" and plan["pruneVersions"] == [v2["path"]]
    assert "(keep_versions)" in run(cli, remote, "plan")
    run(cli, remote, "apply", "--quiet")
    assert [(v["version"], v["aliases"]) for v in listed(cli, remote)] == [
        (4, []), (3, []), (1, ["golden"])
    ]
    assert pulled(cli, remote, project, "ds@golden")["data/changing.txt"] == b"1"
    # apply --keep 1 prunes without new content, still never the aliased one
    out = run(cli, remote, "apply", "--keep", "1")
    assert "deleted old version" in out
    assert [v["version"] for v in listed(cli, remote)] == [4, 1]
    assert json.loads(run(cli, remote, "plan", "--json", "--keep", "1"))["changes"] is False


def test_load_artifact_takes_references(
    project: Project, cli: Cli, remote: Remote, api_env: None, tmp_path: Path
) -> None:
    from manifest_tool import load_artifact, login

    folder = setup(project, extra="    aliases: [prod]\n")
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    versions = listed(cli, remote)
    login(remote.url, remote.env.get("MANIFEST_TOOL_API_KEY"))
    rel = folder.removeprefix("/alice/")
    for ref, body in (("v1", b"1"), ("v2", b"2"), ("latest", b"3"), ("prod", b"3"),
                      (str(versions[2]["alternativeName"]), b"1")):  # fmt: skip
        art = load_artifact(f"{rel}/ds@{ref}")
        assert Path(art.local, "data/changing.txt").read_bytes() == body, ref
        want = hashlib.md5(body).hexdigest()
        assert art.objects["data/changing.txt"]["checksum"] == want
    assert load_artifact(f"{folder}/ds@v2").alternative_name == versions[1]["alternativeName"]
    with pytest.raises(OSError, match="no version 'v7'"):
        load_artifact(f"{rel}/ds@v7")


def test_manifest_rules_for_versions(project: Project, cli: Cli) -> None:
    project.write("data/a", "a")
    project.manifest(
        "version: 1\nartifacts:\n  - name: a\n    aliases: [prod]\n    keep_versions: 2\n"
        "    objects: [{dir: data}]\n"
        "  - name: b\n    versions: keep\n    aliases: [latest]\n"
        "    alternative_name: b_240101_000000_abcdef\n    objects: [{dir: data}]\n"
    )
    code, _, err = cli("validate")
    assert code == 1
    assert "aliases needs versions: keep" in err and "keep_versions needs versions: keep" in err
    assert "invalid alias 'latest'" in err and "a pinned alternative_name names one node" in err
    project.manifest(
        "version: 1\ndefaults: {versions: keep}\nmoved: [{from: old, to: a}]\nartifacts:\n"
        "  - name: a\n    objects: [{dir: data}]\n"
    )
    code, _, err = cli("validate")
    assert code == 1 and "a rename would leave its older versions behind" in err


def test_versions_in_defaults_and_storage_is_shared(project: Project, cli: Cli) -> None:
    """Ten versions of 100 files, one file changed each time, cost about one version
    plus the ten changed files: the store keeps each blob once."""
    size = 64 * 1024
    project.manifest(
        "version: 1\ndefaults: {versions: keep}\nartifacts:\n  - name: big\n"
        "    objects: [{dir: data}]\n"
    )
    for i in range(100):
        project.write(f"data/f{i:03d}.bin", os.urandom(size))
    assert cli("apply", "--quiet").code == 0
    one = blob_bytes(project.store)
    for i in range(1, 10):
        project.write(f"data/f{i:03d}.bin", os.urandom(size))
        assert cli("apply", "--quiet").code == 0
    total = blob_bytes(project.store)
    nodes = store_rows(project.store, "SELECT count(*) FROM nodes WHERE type = 'Artifact'")
    assert nodes[0][0] == 10
    assert one >= 100 * size and total - one < 9 * (size + 4096), (one, total)


def second_checkout(project: Project) -> Project:
    """Another clone of the same repository: the manifest and lock, no ``.em``."""
    import shutil

    clone = project.root.parent / "other"
    shutil.copytree(project.root, clone, ignore=shutil.ignore_patterns(".em"))
    return Project(clone)


def blob_bytes(store: Path) -> int:
    """The bytes the store keeps: blob files plus blobs held inline in the database."""
    files = sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file())
    inline = store_rows(store, "SELECT coalesce(sum(length(data)), 0) FROM blobs")[0][0]
    return files + int(inline)


def test_interrupted_states_are_repaired_from_what_the_remote_shows(
    project: Project, cli: Cli, remote: Remote
) -> None:
    """The states an apply stopped between its steps leaves, made by hand: the plan
    finishes the publication without uploading again, lock and caches lost or not."""
    folder = setup(project)
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")
    lock_v2 = (project.root / "artifacts.lock").read_text()
    publish(cli, remote, project, "3")
    v3, v2 = listed(cli, remote)[:2]
    api = remote.api()
    # sealed beside F/N, the old version not yet moved aside; the lock never heard of it
    newest = api.node_info(f"{folder}/ds")
    assert newest is not None
    staged = json.dumps({**newest.extra_dict, "stage": True})  # as it was before moving in
    api.update_node(f"{folder}/ds", name=v3["alternativeName"], extra=staged)
    api.update_node(str(v2["path"]), name="ds")
    (project.root / "artifacts.lock").write_text(lock_v2)
    for cache in (project.root / ".em" / "cache" / "identities").glob("*"):
        cache.unlink()
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"], ap["upload"]) == ("version", 3, [])
    assert ap["alternativeName"] == v3["alternativeName"]
    assert ap["retireTo"] == v2["path"]
    run(cli, remote, "apply", "--quiet")
    assert listed(cli, remote)[:2] == [v3, v2]
    # between the two moves: F/N empty, the newest moves back
    api.update_node(f"{folder}/ds", name=v3["alternativeName"])
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"], ap["upload"], ap["retireTo"]) == ("version", 3, [], "")
    assert "moves back" in run(cli, remote, "plan")
    run(cli, remote, "apply", "--quiet")
    assert listed(cli, remote)[0] == v3
    # the same, with new content meanwhile: v4 on top of v3, which stays where it is
    api.update_node(f"{folder}/ds", name=v3["alternativeName"])
    project.write("data/changing.txt", "4")
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"], ap["retireTo"]) == ("version", 4, "")
    run(cli, remote, "apply", "--quiet")
    assert [v["version"] for v in listed(cli, remote)] == [4, 3, 2, 1]
    assert pulled(cli, remote, project, "ds@v3")["data/changing.txt"] == b"3"
    assert json.loads(run(cli, remote, "plan", "--json"))["changes"] is False


def test_an_artifact_published_in_place_keeps_versions_from_then_on(
    project: Project, cli: Cli, remote: Remote
) -> None:
    folder = setup(project)
    text = (project.root / "artifacts.yaml").read_text()
    project.manifest(text.replace("    versions: keep\n", ""))
    publish(cli, remote, project, "1")
    publish(cli, remote, project, "2")  # in place: one node
    alt = remote.api().node_info(f"{folder}/ds").extra_dict["alternativeName"]  # type: ignore[union-attr]
    project.manifest(text)
    project.write("data/changing.txt", "3")
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"], ap["retireTo"]) == ("version", 2, f"{folder}/{alt}")
    run(cli, remote, "apply", "--quiet")
    assert [(v["version"], v["alternativeName"] == alt) for v in listed(cli, remote)] == [
        (2, False), (1, True)
    ]
    assert pulled(cli, remote, project, "ds@v1")["data/changing.txt"] == b"2"


def test_a_no_op_plan_of_versioned_artifacts_is_one_request(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    """Aliases in place and fewer versions than keep_versions: the batch node read
    decides it all, as for any artifact."""
    from conftest import USER, cli_env
    from serverutil import running_server

    with running_server(tmp_path / "srv", users=[USER]) as server:
        remote = Remote(server.url, cli_env(MANIFEST_TOOL_API_KEY=server.keys[USER]))
        setup(project, extra="    aliases: [prod]\n    keep_versions: 3\n")
        publish(cli, remote, project, "1")
        publish(cli, remote, project, "2")
        before = requests(server.logs())
        assert run(cli, remote, "plan") == "No changes.\n"
        made = requests(server.logs())[len(before) :]
    assert len(made) == 1 and '"POST /apis/v1/nodes/infos' in made[0], made


def requests(log: str) -> list[str]:
    """The server's access-log lines, one per request, in order."""
    return [line for line in log.splitlines() if re.search(r'" \d{3} \d+ [\d.]+s$', line)]


def test_a_saved_plan_carries_its_keep(project: Project, cli: Cli, remote: Remote) -> None:
    setup(project)
    for body in ("1", "2", "3"):
        publish(cli, remote, project, body)
    run(cli, remote, "plan", "--keep", "2", "--out", "p.json")
    assert json.loads((project.root / "p.json").read_text())["keep"] == 2
    code, _, err = cli("apply", "p.json", "--keep", "1", "--remote", remote.url, env=remote.env)
    assert code == 1 and "planned with --keep 2" in err
    out = run(cli, remote, "apply", "p.json")
    assert out.count("deleted old version") == 1
    assert [v["version"] for v in listed(cli, remote)] == [3, 2]


def test_two_checkouts_number_their_versions_on_top_of_each_other(
    project: Project, cli: Cli, remote: Remote
) -> None:
    setup(project)
    publish(cli, remote, project, "1")
    other = second_checkout(project)
    other.write("data/changing.txt", "from the other checkout")
    run(Cli(other.root), remote, "apply", "--quiet")  # v2, unknown to this lock
    project.write("data/changing.txt", "3")
    ap = json.loads(run(cli, remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"]) == ("version", 3)
    run(cli, remote, "apply", "--quiet")
    versions = listed(cli, remote)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert pulled(cli, remote, project, "ds@v2")["data/changing.txt"] == b"from the other checkout"
    # the other checkout, behind now, adopts v3 when its content is the same
    other.write("data/changing.txt", "3")
    ap = json.loads(run(Cli(other.root), remote, "plan", "--json"))["artifacts"][0]
    assert (ap["action"], ap["version"], ap["lockChange"]) == ("none", 3, True)
    assert ap["alternativeName"] == versions[0]["alternativeName"]
