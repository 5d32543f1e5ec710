"""One contract, three remotes: the embedded store (file:), the server (http:) on its
embedded store, and two server replicas on PostgreSQL + S3 behind a round-robin
proxy, so consecutive calls (and the parts of one upload) land on different replicas.

Every test runs against all three; each must behave exactly like the in-process one,
errors included.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import Replicas, Server, running_replicas, running_server

from manifest_tool import Artifact, create_artifact, load_artifact, login, session
from manifest_tool.errors import (
    ChecksumMismatch,
    ConflictError,
    InvalidInput,
    NameConflict,
    NodeNotFound,
    PermissionDenied,
)
from manifest_tool.publish import upload_all
from manifest_tool.remotes.base import ARTIFACT, FOLDER, Remote, Upload
from manifest_tool.remotes.http import HttpRemote
from manifest_tool.remotes.local import LocalRemote

A = "alice"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("contract")) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory.mktemp("contract-replicas")) as pair:
        yield pair


@pytest.fixture(params=["file", "http", "replicas"])
def url_key(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str | None]:
    monkeypatch.setenv("MANIFEST_TOOL_USER", A)
    monkeypatch.delenv("MANIFEST_TOOL_REMOTE", raising=False)
    monkeypatch.delenv("MANIFEST_TOOL_API_KEY", raising=False)
    if request.param == "file":
        return f"file:{tmp_path / 'store'}", None
    srv: Server | Replicas = request.getfixturevalue(
        "srv" if request.param == "http" else "replicas"
    )
    return srv.url, srv.keys[A]


@pytest.fixture
def remote(url_key: tuple[str, str | None], tmp_path: Path) -> Iterator[Remote]:
    url, key = url_key
    rem: Remote = (
        LocalRemote(tmp_path / "store", A) if url.startswith("file:") else HttpRemote(url, key)
    )
    yield rem
    rem.close()


@pytest.fixture
def folder(remote: Remote) -> str:
    """A fresh folder per test: the HTTP server is shared by the module."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    remote.create_node(f"/{A}", name, FOLDER)
    return f"/{A}/{name}"


def up(key: str, data: bytes) -> Upload:
    return Upload(key, hashlib.md5(data).hexdigest(), len(data), data=data)


def test_whoami(remote: Remote) -> None:
    assert remote.whoami() == A


def test_node_lifecycle(remote: Remote, folder: str) -> None:
    node_id = remote.create_node(
        folder, "art", ARTIFACT, ["l1"], "desc", '{"alternativeName": "x"}'
    )
    node = remote.node_info(f"{folder}/art")
    assert node is not None
    assert (node.id, node.type, node.labels, node.description) == (
        node_id,
        ARTIFACT,
        ("l1",),
        "desc",
    )
    assert node.extra_dict == {"alternativeName": "x"} and node.parent == folder
    assert remote.node_info(node_id) == node
    remote.create_node(folder, "sub", FOLDER)
    assert [n.name for n in remote.list_nodes(folder)] == ["art", "sub"]
    updated = remote.update_node(f"{folder}/art", labels=["a", "b"], description="d2")
    assert (updated.labels, updated.description) == (("a", "b"), "d2")
    renamed = remote.update_node(f"{folder}/art", name="art2")
    assert renamed.path == f"{folder}/art2" and remote.node_info(f"{folder}/art") is None
    remote.delete_node(folder)
    assert remote.node_info(folder) is None
    assert remote.node_info(f"{folder}/art2") is None


def test_node_errors(remote: Remote, folder: str) -> None:
    with pytest.raises(NodeNotFound) as missing:
        remote.create_node(f"{folder}/no/such", "x", FOLDER)
    assert missing.value.missing == f"{folder}/no/such"
    remote.create_node(folder, "dup", FOLDER)
    with pytest.raises(NameConflict):
        remote.create_node(folder, "dup", ARTIFACT)
    with pytest.raises(PermissionDenied):
        remote.create_node("/bob", "x", FOLDER)
    with pytest.raises(PermissionDenied):
        remote.node_info("/bob/x")
    with pytest.raises(InvalidInput):
        remote.create_node(folder, "..", FOLDER)
    with pytest.raises(NodeNotFound):
        remote.list_nodes(f"{folder}/nope")
    with pytest.raises(NodeNotFound):
        remote.delete_node(f"{folder}/nope")


def test_objects(remote: Remote, folder: str, tmp_path: Path) -> None:
    remote.create_node(folder, "art", ARTIFACT)
    art = f"{folder}/art"
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    info = remote.put_object(
        art, Upload("d/src.bin", hashlib.md5(src.read_bytes()).hexdigest(), 300_000, source=src)
    )
    assert (info.path, info.size_bytes) == ("d/src.bin", 300_000)
    remote.put_object(art, up("a.txt", b"hello"))
    remote.put_object(art, up("a.txt", b"hello again"))
    listed = {o.path: o for o in remote.list_objects(art)}
    assert sorted(listed) == ["a.txt", "d/src.bin"]
    assert listed["a.txt"].checksum == hashlib.md5(b"hello again").hexdigest()
    remote.get_object(art, "d/src.bin", tmp_path / "out" / "got.bin")
    assert (tmp_path / "out" / "got.bin").read_bytes() == src.read_bytes()
    with pytest.raises(NodeNotFound) as missing:
        remote.get_object(art, "nope", tmp_path / "nope")
    assert missing.value.missing == f"{art}/nope"
    assert not (tmp_path / "nope").exists()
    remote.delete_objects(art, ["a.txt", "never-there"])
    assert [o.path for o in remote.list_objects(art)] == ["d/src.bin"]


def test_object_errors(remote: Remote, folder: str) -> None:
    remote.create_node(folder, "art", ARTIFACT)
    art = f"{folder}/art"
    with pytest.raises(ChecksumMismatch):
        remote.put_object(art, Upload("bad", "0" * 32, 2, data=b"hi"))
    with pytest.raises(InvalidInput):
        remote.put_object(art, up("../escape", b"x"))
    with pytest.raises(NodeNotFound) as missing:
        remote.put_object(f"{folder}/none", up("k", b"x"))
    assert missing.value.missing == f"{folder}/none"
    with pytest.raises(InvalidInput):
        remote.put_object(folder, up("k", b"x"))  # a Folder holds no objects
    assert remote.list_objects(art) == []


def test_large_object_and_paging(remote: Remote, folder: str, tmp_path: Path) -> None:
    remote.create_node(folder, "big", ARTIFACT)
    art = f"{folder}/big"
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with open(big, "wb") as fh:
        for i in range(101):
            fh.write(block[i:] + block[:i])
    md5 = hashlib.md5(big.read_bytes()).hexdigest()
    info = remote.put_object(art, Upload("big.bin", md5, big.stat().st_size, source=big))
    assert info.checksum == md5
    remote.get_object(art, "big.bin", tmp_path / "back.bin")
    assert hashlib.md5((tmp_path / "back.bin").read_bytes()).hexdigest() == md5
    upload_all(remote, art, [up(f"k/{i:04d}", b"%d" % i) for i in range(1001)], workers=8)
    assert len(remote.list_objects(art)) == 1002


def test_deleting_more_keys_than_a_server_takes_at_once(remote: Remote, folder: str) -> None:
    remote.create_node(folder, "many", ARTIFACT)
    art = f"{folder}/many"
    upload_all(remote, art, [up("a", b"a"), up("z", b"z"), up("keep", b"k")], workers=2)
    keys = ["a", *(f"absent/{i}" for i in range(10_500)), "z"]  # the server caps at 10,000
    remote.delete_objects(art, keys)
    assert [o.path for o in remote.list_objects(art)] == ["keep"]


def test_list_nodes_pages(remote: Remote, folder: str) -> None:
    for i in range(1001):
        remote.create_node(folder, f"n{i:04d}", FOLDER)
    assert [n.name for n in remote.list_nodes(folder)] == [f"n{i:04d}" for i in range(1001)]


# -- the Python API -------------------------------------------------------------------------
@pytest.fixture
def api(
    url_key: tuple[str, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """login() to the remote; sources in tmp_path/src; artifacts in tmp_path/em."""
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "em"))
    monkeypatch.chdir(tmp_path)
    session.reset()
    login(*url_key)
    src = tmp_path / "src"
    (src / "tree" / "deep").mkdir(parents=True)
    (src / "one.csv").write_text("a,b\n1,2\n")
    (src / "tree" / "x.bin").write_bytes(os.urandom(2048))
    (src / "tree" / "deep" / "y.txt").write_text("y")
    yield src
    session.reset()


def build(src: Path, name: str = "model") -> Artifact:
    art = create_artifact(name, labels=["l"], description="d")
    art.add_file(str(src / "one.csv"), "data/")
    art.add_dir(str(src / "tree"), "tree/")
    art.add_reference("https://example.org/w.tar.gz", "raw/")
    return art


def folder_name() -> str:
    return f"api-{uuid.uuid4().hex[:8]}/sub"


def test_api_round_trip(api: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = build(api)
    folder = folder_name()
    art.upload(folder=folder, make_folder=True)
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    back = load_artifact(f"{folder}/model")
    assert back.objects == art.objects
    assert back.alternative_name == art.alternative_name
    for key, obj in art.objects.items():
        if "uri" not in obj:
            assert Path(back.local, key).read_bytes() == Path(art.local, key).read_bytes()
    assert [r["action"] for r in back.remote] == ["upload", "download"]


def test_api_missing_folder(api: Path) -> None:
    with pytest.raises(InvalidInput, match="Folder does not exist"):
        build(api).upload(folder=folder_name())


@pytest.mark.parametrize("strategy", ["skip", "error", "new", "replace"])
def test_api_conflict_strategies(api: Path, strategy: str) -> None:
    folder = folder_name()
    first = build(api)
    first.upload(folder=folder, make_folder=True)
    (api / "one.csv").write_text("changed\n")
    second = build(api)
    rem = session.remote()
    base = f"/{A}/{folder}"
    if strategy == "error":
        with pytest.raises(ConflictError, match="Artifact already exists"):
            second.upload(folder=folder, conflict_strategy=strategy)
        return
    second.upload(folder=folder, conflict_strategy=strategy)
    node = rem.node_info(f"{base}/model")
    assert node is not None
    alt = node.extra_dict["alternativeName"]
    if strategy == "skip":
        assert alt == first.alternative_name and second.remote == []
    elif strategy == "new":
        assert alt == first.alternative_name
        other = rem.node_info(f"{base}/{second.alternative_name}")
        assert other is not None and load_artifact(other.path).objects == second.objects
    else:
        assert alt == second.alternative_name
        assert load_artifact(f"{folder}/model").objects == second.objects


def test_api_reupload_is_an_update(api: Path) -> None:
    folder = folder_name()
    art = build(api)
    art.upload(folder=folder, make_folder=True)
    art.upload(folder=folder, conflict_strategy="error")
    node = session.remote().node_info(f"/{A}/{folder}/model")
    assert node is not None
    assert json.loads(node.extra)["alternativeName"] == art.alternative_name
