"""``manifest-tool apply`` end to end: real CLI, real files, the real embedded store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import Cli, Project, corrupt_blob, store_node, store_objects, tree

from manifest_tool import create_artifact, login, session
from manifest_tool.hashing import content_digest

NODE = "/alice/default/ds"
META = ("metadata.yaml", "references.yaml")


def manifest(strategy: str = "new", labels: str = "[a]", extra: str = "") -> str:
    return f"""\
version: 1
vars: {{run: local}}
artifacts:
  - name: ds
    description: "build {{{{ vars.run }}}}"
    labels: {labels}
    conflict_strategy: {strategy}
{extra}    objects:
      - dir: data
"""


@pytest.fixture
def ds(project: Project) -> Project:
    project.write("data/a.txt", "alpha\n")
    project.write("data/sub/b.txt", "bravo\n")
    project.write("data/sub/deep/c.bin", bytes(range(256)) * 10)
    project.manifest(manifest())
    return project


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def plan_json(cli: Cli, *args: str) -> dict:
    return json.loads(ok(cli("plan", "--json", *args)))


def apply_json(cli: Cli, *args: str) -> dict:
    return json.loads(ok(cli("apply", "--json", *args)))


def lock(project: Project) -> dict:
    return yaml.safe_load((project.root / "artifacts.lock").read_text())["artifacts"]


def pulled(cli: Cli, project: Project, what: str = "ds", *args: str) -> dict[str, bytes]:
    dest = project.root.parent / f"pulled-{len(list(project.root.parent.iterdir()))}"
    ok(cli("pull", what, "--dest", str(dest), *args))
    return tree(dest, skip=META)


def sources(project: Project) -> dict[str, bytes]:
    return {f"data/{k}": v for k, v in tree(project.root / "data").items()}


def local_dir(project: Project) -> Path:
    return project.root / ".em" / "artifacts" / lock(project)["ds"]["alternativeName"]


def test_apply_twice_is_a_no_op(cli: Cli, ds: Project) -> None:
    assert cli("plan", "--detailed-exitcode").code == 2
    out = ok(cli("apply"))
    assert "uploaded 3 object(s)" in out
    assert ok(cli("apply")) == "No changes.\n"
    assert cli("plan", "--detailed-exitcode") == (0, "No changes.\n", "")
    assert pulled(cli, ds) == sources(ds)
    assert sorted(p.name for p in local_dir(ds).iterdir()) == ["metadata.yaml"]


def test_one_changed_file_uploads_exactly_it(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    before = lock(ds)["ds"]["contentDigest"]
    ds.write("data/sub/b.txt", "bravo, changed\n")
    plan = plan_json(cli)
    assert [(a["action"], a["upload"], a["delete"]) for a in plan["artifacts"]] == [
        ("update", ["data/sub/b.txt"], [])
    ]
    applied = apply_json(cli)["applied"]
    assert (applied[0]["uploaded"], applied[0]["deleted"]) == (1, 0)
    assert lock(ds)["ds"]["contentDigest"] != before
    assert store_node(ds.store, NODE)["extra"]["contentDigest"] == lock(ds)["ds"]["contentDigest"]
    assert pulled(cli, ds) == sources(ds)
    assert ok(cli("apply")) == "No changes.\n"


def test_touching_a_file_is_no_change(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    target = ds.root / "data" / "a.txt"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))
    assert cli("plan", "--detailed-exitcode") == (0, "No changes.\n", "")


def test_rewriting_same_bytes_uploads_nothing(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    data = (ds.root / "data" / "a.txt").read_bytes()
    (ds.root / "data" / "a.txt").unlink()
    ds.write("data/a.txt", data)  # a new inode and mtime, the same content
    plan = plan_json(cli)
    assert [(a["action"], a["upload"]) for a in plan["artifacts"]] == [("none", [])]
    assert plan["changes"] is False  # same bytes: nothing to stage or upload
    assert apply_json(cli)["applied"] == []


def test_deleted_source_is_removed_remotely(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    (ds.root / "data" / "sub" / "b.txt").unlink()
    plan = plan_json(cli)["artifacts"][0]
    assert (plan["action"], plan["upload"], plan["delete"]) == ("update", [], ["data/sub/b.txt"])
    assert apply_json(cli)["applied"][0]["deleted"] == 1
    assert "data/sub/b.txt" not in store_objects(ds.store, NODE)
    assert pulled(cli, ds) == sources(ds)
    assert ok(cli("apply")) == "No changes.\n"


def test_label_and_description_change_is_metadata_only(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    digest = store_node(ds.store, NODE)["extra"]["contentDigest"]
    blobs = store_objects(ds.store, NODE)
    ds.manifest(manifest(labels="[a, b]"))
    assert [a["action"] for a in plan_json(cli, "--var", "run=9")["artifacts"]] == ["metadata"]
    applied = apply_json(cli, "--var", "run=9")["applied"]
    assert (applied[0]["action"], applied[0]["uploaded"]) == ("metadata", 0)
    node = store_node(ds.store, NODE)
    assert (node["labels"], node["description"]) == (["a", "b"], "build 9")
    assert node["extra"]["contentDigest"] == digest
    after = store_objects(ds.store, NODE)
    assert {k: v for k, v in after.items() if k not in META} == {
        k: v for k, v in blobs.items() if k not in META
    }
    meta = yaml.safe_load((local_dir(ds) / "metadata.yaml").read_text())
    assert (meta["labels"], meta["description"]) == (["a", "b"], "build 9")
    assert ok(cli("apply", "--var", "run=9")) == "No changes.\n"


def test_var_override_reaches_the_description(cli: Cli, ds: Project) -> None:
    ok(cli("apply", "--var", "run=7"))
    assert store_node(ds.store, NODE)["description"] == "build 7"
    assert [a["action"] for a in plan_json(cli)["artifacts"]] == ["metadata"]


# -- conflicts with a node someone else uploaded ----------------------------------------------


def foreign(project: Project, name: str = "ds") -> dict[str, tuple[int, str, str]]:
    """Upload a different artifact called ``name`` to /alice/default with the Python API."""
    src = project.root.parent / "foreign.txt"
    src.write_text("someone else's content\n")
    session.reset()
    login(f"file:{project.store}")
    art = create_artifact(name, labels=["theirs"])
    art.add_file(str(src))
    art.upload(folder="default")
    session.reset()
    return store_objects(project.store, f"/alice/default/{name}")


@pytest.mark.usefixtures("api_env")
def test_conflict_skip(cli: Cli, ds: Project) -> None:
    ds.manifest(manifest("skip"))
    theirs = foreign(ds)
    extra = store_node(ds.store, NODE)["extra"]
    assert [a["action"] for a in plan_json(cli)["artifacts"]] == ["skip"]
    code, out, _ = cli("apply")
    assert code == 0 and "skipped" in out
    assert store_objects(ds.store, NODE) == theirs
    assert store_node(ds.store, NODE)["extra"] == extra


@pytest.mark.usefixtures("api_env")
def test_conflict_error(cli: Cli, ds: Project) -> None:
    ds.manifest(manifest("error"))
    theirs = foreign(ds)
    code, _, err = cli("plan")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "'ds'" in err and "/alice/default" in err
    code, _, err = cli("apply")
    assert code == 1 and err.startswith("error: ") and "/alice/default" in err
    assert "Traceback" not in err
    assert store_objects(ds.store, NODE) == theirs


@pytest.mark.usefixtures("api_env")
def test_conflict_replace(cli: Cli, ds: Project) -> None:
    ds.manifest(manifest("replace"))
    foreign(ds)
    assert [a["action"] for a in plan_json(cli)["artifacts"]] == ["replace"]
    ok(cli("apply"))
    assert set(store_objects(ds.store, NODE)) - set(META) == set(sources(ds))
    assert pulled(cli, ds) == sources(ds)
    assert store_node(ds.store, NODE)["labels"] == ["a"]
    assert ok(cli("apply")) == "No changes.\n"


@pytest.mark.usefixtures("api_env")
def test_conflict_new(cli: Cli, ds: Project, tmp_path: Path) -> None:
    theirs = foreign(ds)
    their_extra = store_node(ds.store, NODE)["extra"]
    plan = plan_json(cli)["artifacts"][0]
    assert (plan["action"], plan["path"]) == ("new", f"/alice/default/{plan['alternativeName']}")
    ok(cli("apply"))
    alt = lock(ds)["ds"]["alternativeName"]
    assert store_objects(ds.store, NODE) == theirs
    assert store_node(ds.store, NODE)["extra"] == their_extra
    assert store_node(ds.store, f"/alice/default/{alt}")["extra"]["alternativeName"] == alt
    assert pulled(cli, ds, f"/alice/default/{alt}") == sources(ds)
    assert ok(cli("apply")) == "No changes.\n"
    # F/<alt> already holding our content is found without the local caches, too
    shutil.rmtree(ds.root / ".em" / "artifacts")
    shutil.rmtree(ds.root / ".em" / "cache")
    plan = plan_json(cli)["artifacts"][0]
    assert (plan["action"], plan["path"], plan["upload"]) == ("none", f"/alice/default/{alt}", [])


# -- identity -----------------------------------------------------------------------------


def test_fresh_clone_with_the_lock_uploads_nothing(cli: Cli, ds: Project, tmp_path: Path) -> None:
    ok(cli("apply"))
    clone = tmp_path / "clone"
    shutil.copytree(ds.root / "data", clone / "data")
    for name in ("artifacts.yaml", "artifacts.lock"):
        shutil.copy2(ds.root / name, clone / name)
    remote = f"file:{ds.store}"
    code, out, err = cli("plan", "--json", "--remote", remote, cwd=clone)
    assert code == 0, err
    plan = json.loads(out)
    assert [(a["action"], a["upload"], a["delete"]) for a in plan["artifacts"]] == [
        ("none", [], [])
    ]
    code, out, err = cli("apply", "--json", "--remote", remote, cwd=clone)
    assert code == 0, err
    assert sum(a["uploaded"] for a in json.loads(out)["applied"]) == 0
    assert cli("plan", "--detailed-exitcode", "--remote", remote, cwd=clone).code == 0
    assert (clone / "artifacts.lock").read_text() == (ds.root / "artifacts.lock").read_text()


def test_pinned_alternative_name_is_used(cli: Cli, ds: Project) -> None:
    ds.manifest(manifest(extra="    alternative_name: ds_240101_120000_pin001\n"))
    ok(cli("apply"))
    assert lock(ds)["ds"]["alternativeName"] == "ds_240101_120000_pin001"
    assert store_node(ds.store, NODE)["extra"]["alternativeName"] == "ds_240101_120000_pin001"
    assert (ds.root / ".em" / "artifacts" / "ds_240101_120000_pin001" / "metadata.yaml").is_file()
    assert ok(cli("apply")) == "No changes.\n"


# -- saved plans --------------------------------------------------------------------------


def test_saved_plan_applies(cli: Cli, ds: Project) -> None:
    ok(cli("plan", "--out", "p.json"))
    alt = json.loads((ds.root / "p.json").read_text())["artifacts"][0]["alternativeName"]
    out = ok(cli("apply", "p.json"))
    assert "uploaded 3 object(s)" in out
    assert lock(ds)["ds"]["alternativeName"] == alt
    assert ok(cli("apply")) == "No changes.\n"


def test_stale_saved_plan_is_refused(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    ds.write("data/a.txt", "alpha 2\n")
    ok(cli("plan", "--out", "p.json"))
    ds.write("data/a.txt", "alpha 3\n")
    before = store_objects(ds.store, NODE)
    code, _out, err = cli("apply", "p.json")
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "stale" in err and "'ds'" in err
    assert store_objects(ds.store, NODE) == before


# -- ls and pull --------------------------------------------------------------------------


def test_ls_lists_the_artifact(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    assert NODE in ok(cli("ls", "default"))
    assert "/alice/default" in ok(cli("ls"))
    nodes = json.loads(ok(cli("ls", "default", "--json")))
    assert [n["path"] for n in nodes] == [NODE]


def test_pull_by_name_and_path_verifies_checksums(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    assert pulled(cli, ds, "ds") == sources(ds)
    assert pulled(cli, ds, NODE) == sources(ds)
    blob = store_objects(ds.store, NODE)["data/sub/b.txt"][2]
    corrupt_blob(ds.store, blob, 0, b"BRAVO\n")  # same size, other bytes
    code, _, err = cli("pull", "ds", "--dest", str(ds.root.parent / "corrupt"))
    assert code == 1 and err.startswith("error: ") and "corrupt" in err
    assert "Traceback" not in err


def test_content_digest_matches_the_objects(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    objs = [
        {"path": k, "size_bytes": size, "checksum": md5}
        for k, (size, md5, _) in store_objects(ds.store, NODE).items()
        if k not in META
    ]
    assert store_node(ds.store, NODE)["extra"]["contentDigest"] == content_digest(objs)


def test_em_dir_is_kept_out_of_git(cli: Cli, ds: Project) -> None:
    ok(cli("apply"))
    ignore = (ds.root / ".em" / ".gitignore").read_text().splitlines()
    assert "*" in ignore
