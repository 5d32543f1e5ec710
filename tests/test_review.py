"""Review findings: each test pins one correctness bug (real CLI, real store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import Cli, Project, store_node, store_objects


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def plan_json(cli: Cli, *args: str) -> dict:
    return json.loads(ok(cli("plan", "--json", *args)))


def lock(project: Project) -> dict:
    return yaml.safe_load((project.root / "artifacts.lock").read_text())["artifacts"]


def pinned(alt: str) -> str:
    return f"""\
version: 1
artifacts:
  - name: ds
    alternative_name: {alt}
    objects:
      - file: data/a.txt
"""


def test_renamed_pin_with_same_content_is_idempotent(project: Project, cli: Cli) -> None:
    """Re-pinning alternative_name while the content stays the same must settle: after
    one apply, a second apply does nothing (it used to re-stage on every run)."""
    project.write("data/a.txt", "alpha\n")
    project.manifest(pinned("ds_240101_000000_aaaaaa"))
    ok(cli("apply", "-q"))
    project.manifest(pinned("ds_240102_000000_bbbbbb"))
    ok(cli("apply", "-q"))
    again = plan_json(cli)
    assert again["changes"] is False, again


def with_reference(uri: str) -> str:
    return f"""\
version: 1
artifacts:
  - name: ds
    objects:
      - file: data/a.txt
      - reference: {uri}
        obj_path: raw/
"""


def test_reference_change_updates_local_references_yaml(project: Project, cli: Cli) -> None:
    """Changing only a reference's URI must update the local directory's
    references.yaml too, not just the remote's."""
    project.write("data/a.txt", "alpha\n")
    project.manifest(with_reference("https://example.org/v1.tar.gz"))
    ok(cli("apply", "-q"))
    project.manifest(with_reference("https://example.org/v2.tar.gz"))
    ok(cli("plan", "-q"))  # a plan first must not make the stale copy look in sync
    ok(cli("apply", "-q"))
    alt = lock(project)["ds"]["alternativeName"]
    local = yaml.safe_load((project.root / ".em/artifacts" / alt / "references.yaml").read_text())
    remote = store_node(project.store, "/alice/default/ds")
    assert remote is not None
    assert local == {"raw/v2.tar.gz": "https://example.org/v2.tar.gz"}
    assert plan_json(cli)["changes"] is False


def file_at(obj_path: str) -> str:
    return f"""\
version: 1
artifacts:
  - name: ds
    objects:
      - file: data/a.txt
        obj_path: "{obj_path}"
"""


def test_object_path_becomes_a_folder(project: Project, cli: Cli) -> None:
    """An object path that was a file and is now a folder ('x' -> 'x/a.txt')."""
    project.write("data/a.txt", "alpha\n")
    project.manifest(file_at("x"))
    ok(cli("apply", "-q"))
    project.manifest(file_at("x/"))
    ok(cli("apply", "-q"))
    objects = store_objects(project.store, "/alice/default/ds")
    assert sorted(objects) == ["metadata.yaml", "x/a.txt"]
    assert plan_json(cli)["changes"] is False


def test_object_folder_becomes_a_file(project: Project, cli: Cli) -> None:
    project.write("data/a.txt", "alpha\n")
    project.manifest(file_at("x/"))
    ok(cli("apply", "-q"))
    project.manifest(file_at("x"))
    ok(cli("apply", "-q"))
    objects = store_objects(project.store, "/alice/default/ds")
    assert sorted(objects) == ["metadata.yaml", "x"]
    assert plan_json(cli)["changes"] is False


def test_saved_plan_for_a_removed_artifact_is_stale(project: Project, cli: Cli) -> None:
    """apply FILE after an artifact left the manifest: a stale-plan error, not
    'no artifact named ... in the manifest'."""
    project.write("data/a.txt", "alpha\n")
    project.manifest(
        "version: 1\nartifacts:\n"
        "  - name: ds\n    objects: [{file: data/a.txt}]\n"
        "  - name: other\n    objects: [{file: data/a.txt}]\n"
    )
    ok(cli("plan", "-q", "--out", "p.json"))
    project.manifest("version: 1\nartifacts:\n  - name: ds\n    objects: [{file: data/a.txt}]\n")
    code, out, err = cli("apply", "p.json")
    assert code == 1, (out, err)
    assert "stale" in err, err


def test_plan_and_apply_agree_when_a_folder_holds_the_name(project: Project, cli: Cli) -> None:
    """A Folder named like the artifact, strategy new: apply must do what plan said
    (create F/<alternativeName>), or plan must report the error itself."""
    from manifest_tool.remotes.local import LocalRemote

    remote = LocalRemote(project.store, "alice")
    remote.create_node("/alice", "default", "Folder")
    remote.create_node("/alice/default", "ds", "Folder")
    remote.close()
    project.write("data/a.txt", "alpha\n")
    project.manifest("version: 1\nartifacts:\n  - name: ds\n    objects: [{file: data/a.txt}]\n")
    code, out, err = cli("plan", "--json")
    planned = json.loads(out)["artifacts"][0]["action"] if code == 0 else "error"
    code, out, err = cli("apply")
    assert (planned == "error") == (code != 0), (planned, code, out, err)


def test_seal_refuses_objects_another_writer_changed(tmp_path: Path) -> None:
    """Two applies of one artifact: the one sealing last must not claim its digest
    over objects the other wrote meanwhile."""
    from manifest_tool.errors import ConflictError
    from manifest_tool.hashing import content_digest, md5_bytes
    from manifest_tool.publish import seal
    from manifest_tool.remotes.base import ARTIFACT, Upload
    from manifest_tool.remotes.local import LocalRemote

    remote = LocalRemote(tmp_path / "store", "alice")
    remote.create_node("/alice", "a", ARTIFACT, extra='{"alternativeName": "a_1"}')
    node = remote.node_info("/alice/a")
    assert node is not None
    ours = b"ours"
    remote.put_object(node.path, Upload("x.bin", md5_bytes(ours), len(ours), data=ours))
    digest = content_digest([{"path": "x.bin", "size_bytes": 4, "checksum": md5_bytes(ours)}])
    theirs = b"theirs"  # the other apply lands its version before we seal
    remote.put_object(node.path, Upload("x.bin", md5_bytes(theirs), len(theirs), data=theirs))
    with pytest.raises(ConflictError, match="changed while this apply ran"):
        seal(remote, node.path, "a_1", digest, [], "", {})
    after = remote.node_info("/alice/a")
    assert after is not None and "contentDigest" not in after.extra_dict
    remote.put_object(node.path, Upload("x.bin", md5_bytes(ours), len(ours), data=ours))
    sealed = seal(remote, node.path, "a_1", digest, [], "", {})
    assert sealed.extra_dict["contentDigest"] == digest


def test_saved_plan_with_target_is_refused(project: Project, cli: Cli) -> None:
    project.write("data/a.txt", "alpha\n")
    project.manifest("version: 1\nartifacts:\n  - name: ds\n    objects: [{file: data/a.txt}]\n")
    ok(cli("plan", "-q", "--out", "p.json"))
    code, out, err = cli("apply", "p.json", "--target", "ds")
    assert code == 1, (out, err)
    assert (
        err == "error: --target does not go with a saved plan: p.json already names its artifacts\n"
    )
    assert not (project.root / "artifacts.lock").exists()


def test_plan_reports_a_foreign_node_at_the_alternative_name(project: Project, cli: Cli) -> None:
    """Strategy new with F/<alt> held by someone else: plan says so, as apply would."""
    from manifest_tool.remotes.local import LocalRemote

    alt = "ds_261126_120000_abcdef"
    project.write("data/a.txt", "alpha\n")
    project.manifest(pinned(alt))
    remote = LocalRemote(project.store, "alice")
    remote.create_node("/alice", "default", "Folder")
    for name in ("ds", alt):
        remote.create_node("/alice/default", name, "Artifact", extra='{"alternativeName": "x"}')
    code, out, err = cli("plan")
    assert code == 1, (out, err)
    assert f"/alice/default/{alt} exists and is not artifact 'ds'" in err
    assert cli("apply")[0] == 1
    assert store_node(project.store, f"/alice/default/{alt}")["extra"] == {"alternativeName": "x"}
