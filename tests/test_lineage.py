"""Lineage through the Remote interface and the CLI, on both remotes.

``manifest-tool lineage PATH`` reads T9k's graphs: Artifact -> Run for an input,
Run -> Artifact for an output. ``ls`` shows Run nodes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import USER, Cli, Remote

from manifest_tool.errors import InvalidInput, NodeNotFound, NotAFolder
from manifest_tool.remotes.base import ARTIFACT, FOLDER, RUN
from manifest_tool.remotes.local import LocalRemote
from manifest_tool.remotes.store import Store


@pytest.fixture
def folder(remote: Remote, tmp_path: Path) -> str:
    """A fresh folder per test (the HTTP server is shared by the module)."""
    api = remote.api()
    api.create_node(f"/{USER}", tmp_path.name, FOLDER)
    return f"/{USER}/{tmp_path.name}"


def made(remote: Remote, folder: str) -> dict[str, str]:
    """A Run ``train`` that used ``data`` and produced ``model``; name -> id."""
    api = remote.api()
    ids = {
        "train": api.create_node(folder, "train", RUN),
        "data": api.create_node(folder, "data", ARTIFACT),
        "model": api.create_node(folder, "model", ARTIFACT),
    }
    api.add_edges([(ids["data"], ids["train"]), (ids["train"], ids["model"])])
    return ids


def test_lineage_through_the_remote_interface(remote: Remote, folder: str) -> None:
    ids = made(remote, folder)
    api = remote.api()
    run = api.lineage(f"{folder}/train")
    assert run.node.type == RUN
    assert [n.id for n in run.inbound] == [ids["data"]]
    assert [n.path for n in run.outbound] == [f"{folder}/model"]
    data = api.lineage(ids["data"])
    assert (data.inbound, [n.type for n in data.outbound]) == ((), [RUN])
    api.delete_node(f"{folder}/train")
    assert api.lineage(ids["data"]).outbound == ()


def test_runs_hold_objects_but_no_nodes(remote: Remote, folder: str) -> None:
    from manifest_tool.remotes import Upload

    api = remote.api()
    api.create_node(folder, "r", RUN)
    api.put_object(f"{folder}/r", Upload("metrics/train.yaml", _md5(b"x: 1\n"), 5, data=b"x: 1\n"))
    assert [o.path for o in api.list_objects(f"{folder}/r")] == ["metrics/train.yaml"]
    with pytest.raises(NotAFolder, match="is a Run, not a Folder"):
        api.create_node(f"{folder}/r", "child", FOLDER)
    with pytest.raises(NodeNotFound):
        api.lineage(f"{folder}/absent")


def test_edges_need_a_run(remote: Remote, folder: str) -> None:
    api = remote.api()
    a, b = api.create_node(folder, "a", ARTIFACT), api.create_node(folder, "b", ARTIFACT)
    with pytest.raises(InvalidInput, match="needs a Run"):
        api.add_edges([(a, b)])


def test_lineage_command(cli: Cli, remote: Remote, folder: str) -> None:
    made(remote, folder)
    args = ("--remote", remote.url)
    out = cli("lineage", f"{folder}/data", *args, env=remote.env)
    assert out.code == 0, out.err
    assert out.out.splitlines() == [
        f"artifact {folder}/data",
        "  produced by:",
        "    (none)",
        "  used by:",
        f"    run  {folder}/train",
    ]
    run = cli("lineage", f"{folder}/train", "--json", *args, env=remote.env)
    body = json.loads(run.out)
    assert (body["type"], body["path"]) == (RUN, f"{folder}/train")
    assert [n["path"] for n in body["inputs"]] == [f"{folder}/data"]
    assert [n["path"] for n in body["outputs"]] == [f"{folder}/model"]
    relative = cli("lineage", f"{folder.split('/', 2)[2]}/model", "--json", *args, env=remote.env)
    assert [n["type"] for n in json.loads(relative.out)["producedBy"]] == [RUN]


def test_lineage_command_errors(cli: Cli, remote: Remote, folder: str) -> None:
    args = ("--remote", remote.url)
    missing = cli("lineage", f"{folder}/nope", *args, env=remote.env)
    assert missing.code == 1
    assert f"nothing at {folder}/nope" in missing.err
    of_folder = cli("lineage", folder, *args, env=remote.env)
    assert of_folder.code == 1
    assert "is a Folder" in of_folder.err


def test_ls_shows_runs(cli: Cli, remote: Remote, folder: str) -> None:
    made(remote, folder)
    out = cli("ls", folder, "--remote", remote.url, env=remote.env)
    assert out.code == 0, out.err
    kinds = {line.split()[1]: line.split()[0] for line in out.out.splitlines()}
    assert kinds == {f"{folder}/data": "art", f"{folder}/model": "art", f"{folder}/train": "run"}


def test_a_store_from_before_lineage_gains_the_edges_table(tmp_path: Path) -> None:
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "store.sqlite")
    conn.execute("DROP TABLE edges")
    conn.commit()
    conn.close()
    remote = LocalRemote(tmp_path, USER)
    run = remote.create_node(f"/{USER}", "r", RUN)
    art = remote.create_node(f"/{USER}", "a", ARTIFACT)
    remote.add_edges([(art, run)])
    assert [n.id for n in remote.lineage(run).inbound] == [art]
    remote.close()
    again = LocalRemote(tmp_path, USER)  # opening it again changes nothing
    assert [n.id for n in again.lineage(run).inbound] == [art]
    again.close()


def test_another_users_nodes_cannot_be_linked(tmp_path: Path) -> None:
    from manifest_tool.errors import PermissionDenied

    alice, bob = LocalRemote(tmp_path, "alice"), LocalRemote(tmp_path, "bob")
    run = alice.create_node("/alice", "r", RUN)
    bobs = bob.create_node("/bob", "a", ARTIFACT)
    with pytest.raises(PermissionDenied):
        alice.add_edges([(bobs, run)])
    with pytest.raises(NodeNotFound):
        bob.lineage(run)
    alice.close()
    bob.close()


def _md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()
