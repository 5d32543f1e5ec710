"""Artifact.upload and load_artifact against the embedded store (a file: remote).

Folders, the four conflict strategies, updates in place, node extra, history, round
trips with checksums verified, corruption, user isolation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import tracemalloc
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3
import pytest
import yaml
from conftest import corrupt_blob, stored_blob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest_tool import Artifact, create_artifact, load_artifact, login, session
from manifest_tool.errors import (
    ChecksumMismatch,
    ConflictError,
    ManifestToolError,
    PermissionDenied,
    RemoteError,
)
from manifest_tool.remotes.base import ARTIFACT, FOLDER, ObjectInfo, Remote, Upload
from manifest_tool.transfer import fetch_verified

USER = "alice"
HISTORY_KEYS = ["action", "timestamp", "host", "id", "path"]
DOWNLOAD_KEYS = ["action", "timestamp", "host", "path", "id"]  # T9k's order for a download


def remote() -> Remote:
    return session.remote()


def write(path: Path | str, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make(name: str, files: dict[str, bytes], **kwargs: Any) -> Artifact:
    """An artifact holding ``files`` (key -> bytes), sources written under src/<uuid>/."""
    art = create_artifact(name, **kwargs)
    base = Path(uuid.uuid4().hex)
    for key, data in files.items():
        art.add_file(str(write(base / key, data)), key)
    return art


def objects_of(path: str) -> dict[str, tuple[int, str]]:
    return {o.path: (o.size_bytes, o.checksum) for o in remote().list_objects(path)}


def remote_bytes(node_path: str, key: str, tmp: Path) -> bytes:
    dest = tmp / uuid.uuid4().hex
    remote().get_object(node_path, key, dest)
    return dest.read_bytes()


def snapshot(path: str) -> tuple[Any, ...]:
    node = remote().node_info(path)
    assert node is not None, path
    return (node.id, node.extra, node.labels, node.description, node.updated_at, objects_of(path))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- folders -------------------------------------------------------------------------------
def test_relative_folder_is_below_the_user_and_make_folder_makes_the_chain(em: Path) -> None:
    art = make("m", {"a.txt": b"a"})
    art.upload(folder="cv/mnist/runs/", make_folder=True)
    for folder in ("/alice/cv", "/alice/cv/mnist", "/alice/cv/mnist/runs"):
        node = remote().node_info(folder)
        assert node is not None and node.type == FOLDER
    node = remote().node_info("/alice/cv/mnist/runs/m")
    assert node is not None and node.type == ARTIFACT
    assert art.remote[-1]["path"] == "/alice/cv/mnist/runs/m"


def test_absolute_folder(em: Path) -> None:
    make("m", {"a.txt": b"a"}).upload(folder="/alice/abs/x", make_folder=True)
    assert objects_of("/alice/abs/x/m").keys() == {"a.txt", "metadata.yaml"}


def test_missing_folder_without_make_folder_fails_and_makes_nothing(em: Path) -> None:
    art = make("m", {"a.txt": b"a"})
    with pytest.raises(ValueError) as err:
        art.upload(folder="x")
    assert str(err.value) == "Folder does not exist: '/alice/x'"
    assert remote().list_nodes("/alice") == []
    assert art.remote == []


def test_default_folder_is_made_on_first_use(em: Path) -> None:
    art = make("m", {"a.txt": b"a"})
    art.upload()
    default = remote().node_info("/alice/default")
    assert default is not None and default.type == FOLDER
    assert objects_of("/alice/default/m")["a.txt"] == (1, md5(b"a"))
    make("m2", {"b.txt": b"b"}).upload(folder="/alice/default")  # second use: already there
    assert [n.name for n in remote().list_nodes("/alice/default")] == ["m", "m2"]


def test_uploading_into_another_users_tree_is_refused(em: Path) -> None:
    art = make("m", {"a.txt": b"a"})
    with pytest.raises(PermissionDenied, match=r"^permission denied: user .* may not touch /"):
        art.upload(folder="/bob/x", make_folder=True)
    assert art.remote == []


# -- conflict strategies against a foreign artifact of the same name -------------------------
@pytest.fixture
def foreign(em: Path) -> str:
    """Another artifact named 'shared' (a different alternative name) in /alice/f."""
    other = make("shared", {"foreign.txt": b"theirs", "common.txt": b"theirs too"})
    other.upload(folder="f", make_folder=True)
    return "/alice/f/shared"


def ours() -> Artifact:
    return make("shared", {"ours.txt": b"mine", "common.txt": b"mine too"}, labels=["o"])


def test_skip_changes_nothing_and_records_nothing(foreign: str) -> None:
    before = snapshot(foreign)
    art = ours()
    art.upload(folder="f", conflict_strategy="skip")
    assert snapshot(foreign) == before
    assert art.remote == []
    assert yaml.safe_load(Path(art.local, "metadata.yaml").read_text())["remote"] == []
    assert [n.name for n in remote().list_nodes("/alice/f")] == ["shared"]


def test_error_fails_naming_folder_and_artifact(foreign: str) -> None:
    before = snapshot(foreign)
    art = ours()
    with pytest.raises(ConflictError) as err:
        art.upload(folder="f", conflict_strategy="error")
    assert str(err.value) == "Artifact already exists in Folder /alice/f: 'shared'"
    assert snapshot(foreign) == before
    assert art.remote == []
    assert [n.name for n in remote().list_nodes("/alice/f")] == ["shared"]


def test_new_uploads_under_the_alternative_name(foreign: str, tmp_path: Path) -> None:
    before = snapshot(foreign)
    art = ours()
    art.upload(folder="f", conflict_strategy="new")
    assert snapshot(foreign) == before
    alt_path = f"/alice/f/{art.alternative_name}"
    node = remote().node_info(alt_path)
    assert node is not None and node.type == ARTIFACT
    assert node.extra_dict["alternativeName"] == art.alternative_name
    assert objects_of(alt_path).keys() == {"ours.txt", "common.txt", "metadata.yaml"}
    assert remote_bytes(alt_path, "common.txt", tmp_path) == b"mine too"
    assert art.remote[-1]["path"] == alt_path
    # uploading the same artifact again updates F/<alt>, still leaving the other alone
    art.add_file(str(write("extra.txt", b"more")))
    art.upload(folder="f", conflict_strategy="new")
    assert snapshot(foreign) == before
    assert "extra.txt" in objects_of(alt_path)
    assert remote().node_info(alt_path).id == node.id  # type: ignore[union-attr]
    assert sorted(n.name for n in remote().list_nodes("/alice/f")) == sorted(
        ["shared", art.alternative_name]
    )


def test_replace_deletes_the_other_and_uploads_ours(foreign: str, tmp_path: Path) -> None:
    old_id = snapshot(foreign)[0]
    art = ours()
    art.upload(folder="f", conflict_strategy="replace")
    node = remote().node_info(foreign)
    assert node is not None and node.id != old_id
    assert node.extra_dict["alternativeName"] == art.alternative_name
    assert node.labels == ("o",)
    assert objects_of(foreign) == {
        "ours.txt": (4, md5(b"mine")),
        "common.txt": (8, md5(b"mine too")),
        "metadata.yaml": objects_of(foreign)["metadata.yaml"],
    }
    assert remote_bytes(foreign, "common.txt", tmp_path) == b"mine too"
    meta = yaml.safe_load(remote_bytes(foreign, "metadata.yaml", tmp_path))
    assert meta["alternativeName"] == art.alternative_name
    assert [n.name for n in remote().list_nodes("/alice/f")] == ["shared"]


def test_replace_never_deletes_a_folder_of_that_name(em: Path) -> None:
    """Known bug (publish.py _resolve_conflict): 'replace' deletes F/N whatever its type,
    so a Folder named like the artifact goes with everything below it."""
    make("inner", {"i.txt": b"i"}).upload(folder="f/models", make_folder=True)
    art = make("models", {"m.txt": b"m"})
    with pytest.raises(ManifestToolError):
        art.upload(folder="f", conflict_strategy="replace")
    assert objects_of("/alice/f/models/inner")["i.txt"] == (1, md5(b"i"))


def test_new_never_takes_over_a_foreign_node_at_the_alternative_name(foreign: str) -> None:
    """Known bug (publish.py _resolve_conflict, strategy 'new'): a NameConflict on
    F/<alt> is taken to be our own earlier upload without checking the node, so a
    Folder or another artifact there is overwritten (its objects deleted)."""
    art = ours()
    alt_path = f"/alice/f/{art.alternative_name}"
    squatter = make("squat", {"theirs.txt": b"t"})
    remote().create_node(
        "/alice/f",
        art.alternative_name,
        ARTIFACT,
        extra=json.dumps({"alternativeName": squatter.alternative_name}),
    )
    data = b"t"
    remote().put_object(alt_path, Upload("theirs.txt", md5(data), 1, data=data))
    before = snapshot(alt_path)
    with pytest.raises(ManifestToolError):
        art.upload(folder="f", conflict_strategy="new")
    assert snapshot(alt_path) == before


@pytest.mark.parametrize("strategy", ["skip", "error", "new", "replace"])
def test_same_alternative_name_is_an_update_not_a_conflict(em: Path, strategy: str) -> None:
    art = make("same", {"keep.txt": b"keep", "change.txt": b"v1", "drop.txt": b"drop"})
    art.upload(folder="f", make_folder=True)
    node_id = remote().node_info("/alice/f/same").id  # type: ignore[union-attr]
    write("change.txt", b"version two")
    art.add_file("change.txt")
    del art.objects["drop.txt"]
    art.upload(folder="f", conflict_strategy=strategy)
    node = remote().node_info("/alice/f/same")
    assert node is not None and node.id == node_id
    got = objects_of("/alice/f/same")
    assert got.keys() == {"keep.txt", "change.txt", "metadata.yaml"}
    assert got["change.txt"] == (11, md5(b"version two"))
    assert [e["action"] for e in art.remote] == ["upload", "upload"]
    assert [n.name for n in remote().list_nodes("/alice/f")] == ["same"]


def test_an_update_in_place_sends_only_what_changed(em: Path) -> None:
    art = make("same", {"keep.txt": b"keep", "change.txt": b"v1"})
    art.upload()
    mtime_keep = {o.path: o.mtime for o in remote().list_objects("/alice/default/same")}
    write("change.txt", b"v2")
    art.add_file("change.txt")
    art.upload()
    after = {o.path: o.mtime for o in remote().list_objects("/alice/default/same")}
    assert after["keep.txt"] == mtime_keep["keep.txt"]
    assert after["change.txt"] != mtime_keep["change.txt"]


def test_references_are_uploaded_as_references_yaml_and_dropped_when_gone(
    em: Path, tmp_path: Path
) -> None:
    art = make("refs", {"a.txt": b"a"})
    art.add_reference("https://example.org/data.tgz", "raw/")
    art.upload()
    path = "/alice/default/refs"
    refs = yaml.safe_load(remote_bytes(path, "references.yaml", tmp_path))
    assert refs == {"raw/data.tgz": "https://example.org/data.tgz"}
    del art.objects["raw/data.tgz"]
    art.upload()
    assert "references.yaml" not in objects_of(path)


# -- node extra and history -----------------------------------------------------------------
def canonical_digest(objects: dict[str, dict[str, Any]]) -> str:
    """DESIGN.md's content digest, computed here independently of hashing.py."""
    items = sorted(objects.values(), key=lambda o: o["path"])
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_node_extra_holds_alternative_name_and_content_digest(em: Path) -> None:
    art = make("dig", {"b.txt": b"b", "a/x.bin": os.urandom(100)}, description="d")
    art.add_reference("s3://bucket/k")
    art.upload()
    node = remote().node_info("/alice/default/dig")
    assert node is not None
    assert json.loads(node.extra) == {
        "alternativeName": art.alternative_name,
        "contentDigest": canonical_digest(art.objects),
    }
    assert node.description == "d"


def test_history_entries_on_upload_and_download(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = make("hist", {"a.txt": b"a"})
    art.upload(folder="h", make_folder=True)
    node = remote().node_info("/alice/h/hist")
    assert node is not None
    (entry,) = art.remote
    assert list(entry) == HISTORY_KEYS
    assert (entry["action"], entry["id"], entry["path"], entry["host"]) == (
        "upload",
        node.id,
        node.path,
        remote().url,
    )
    assert datetime.fromisoformat(entry["timestamp"]).tzinfo is not None
    on_disk = yaml.safe_load(Path(art.local, "metadata.yaml").read_text())
    on_remote = yaml.safe_load(remote_bytes(node.path, "metadata.yaml", tmp_path))
    assert on_disk["remote"] == on_remote["remote"] == [entry]
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    loaded = load_artifact("h/hist")
    assert loaded.remote[0] == entry
    assert list(loaded.remote[1]) == DOWNLOAD_KEYS
    assert (loaded.remote[1]["action"], loaded.remote[1]["id"]) == ("download", node.id)
    assert yaml.safe_load(Path(loaded.local, "metadata.yaml").read_text())["remote"] == (
        loaded.remote
    )


# -- round trips ---------------------------------------------------------------------------------
def assert_same_artifact(loaded: Artifact, art: Artifact) -> None:
    assert loaded.objects == art.objects
    assert {k: v for k, v in loaded.to_dict().items() if k != "remote"} == {
        k: v for k, v in art.to_dict().items() if k != "remote"
    }
    for key, obj in art.objects.items():
        if "uri" not in obj:
            assert Path(loaded.local, key).read_bytes() == Path(art.local, key).read_bytes()


@pytest.mark.parametrize("path", ["/alice/cv/x", "cv/x", "/alice/cv/x/"])
def test_round_trip_by_absolute_or_relative_path(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    write("d/one.txt", b"one")
    write("d/deep/er/two.bin", os.urandom(3000))
    write("d/empty", b"")
    art = create_artifact("x", labels=["a", "b"], description="round trip")
    art.add_dir("d", "data/")
    art.add_file("d/one.txt", "/top.txt")
    art.add_reference("https://example.org/r.tgz")
    art.upload(folder="cv", make_folder=True)
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    loaded = load_artifact(path)
    assert Path(loaded.local) == tmp_path / "elsewhere" / art.alternative_name
    assert_same_artifact(loaded, art)
    again = load_artifact(loaded.local)  # and the downloaded dir loads locally
    assert again.objects == art.objects


def test_loading_into_the_artifacts_own_dir_keeps_it_intact(em: Path) -> None:
    art = make("own", {"a.txt": b"a", "b/c.txt": b"c"})
    art.upload()
    loaded = load_artifact("default/own")
    assert loaded.local == art.local
    assert_same_artifact(loaded, art)


def test_streamed_upload_and_download_of_a_large_file(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = hashlib.md5()
    with open("big.bin", "wb") as fh:
        for _ in range(20):
            block = os.urandom(1 << 20)
            digest.update(block)
            fh.write(block)
    art = create_artifact("big")
    art.add_file("big.bin")
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    tracemalloc.start()
    try:
        art.upload()
        loaded = load_artifact("default/big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.objects["big.bin"]["checksum"] == digest.hexdigest()
    assert md5(Path(loaded.local, "big.bin").read_bytes()) == digest.hexdigest()
    assert peak < 12 * (1 << 20), f"{peak} bytes held at once for a 20 MiB file"


def test_a_corrupt_blob_fails_the_load_naming_the_object(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = b"good bytes", b"these bytes will rot" * 100
    art = make("rot", {"good.txt": good, "sub/bad.bin": bad})
    art.upload()
    store = tmp_path / "store"
    blob = blake3.blake3(bad).hexdigest()
    assert stored_blob(store, blob) == bad
    corrupt_blob(store, blob, 100, b"XXXX")
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ChecksumMismatch, match=r"'sub/bad\.bin'"):
        load_artifact("/alice/default/rot")
    dest = tmp_path / "elsewhere" / art.alternative_name
    leftovers = [p.name for p in dest.rglob("*") if p.is_file()] if dest.exists() else []
    assert not any("bad.bin" in name for name in leftovers), leftovers
    assert "metadata.yaml" not in leftovers


def test_another_user_cannot_read_the_first_users_artifact(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make("private", {"s.txt": b"secret"}).upload(folder="cv", make_folder=True)
    monkeypatch.setenv("MANIFEST_TOOL_USER", "bob")
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "bob-em"))
    session.reset()
    login(f"file:{tmp_path / 'store'}")
    with pytest.raises(PermissionDenied, match=r"^permission denied: user .* may not touch /"):
        load_artifact("/alice/cv/private")
    with pytest.raises(RemoteError, match="no artifact at /bob/cv/private"):
        load_artifact("cv/private")  # relative: below bob's own root
    assert not (tmp_path / "bob-em").exists()


def test_a_remote_alternative_name_cannot_escape_the_parent_dir(
    em: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose metadata.yaml another client wrote must not steer where we write."""
    r = remote()
    r.create_node("/alice", "evil", ARTIFACT, extra=json.dumps({"alternativeName": "x"}))
    meta = {
        "kind": "Artifact",
        "name": "evil",
        "labels": [],
        "description": "",
        "createdTimestamp": "2024-01-01T00:00:00.000000+00:00",
        "alternativeName": "../../escaped",
        "remote": [],
    }
    data = yaml.safe_dump(meta).encode()
    r.put_object("/alice/evil", Upload("metadata.yaml", md5(data), len(data), data=data))
    r.put_object("/alice/evil", Upload("f.txt", md5(b"x"), 1, data=b"x"))
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "a" / "b"))
    with pytest.raises(ValueError, match="alternativeName"):
        load_artifact("/alice/evil")
    assert not list(tmp_path.rglob("escaped"))


def test_a_remote_key_that_climbs_out_is_refused_before_writing(em: Path, tmp_path: Path) -> None:
    """Keys come from the server; a hostile one must not pick where we write."""
    make("k", {"a.txt": b"a"}).upload()
    dest = tmp_path / "dl" / "inner"
    escape = ObjectInfo("../../outside.txt", 1, md5(b"a"))
    with pytest.raises(ValueError):
        fetch_verified(remote(), "/alice/default/k", escape, dest)
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "dl").exists()


# -- property: any small tree survives the round trip ---------------------------------------------
SEGMENT = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


def _no_prefix_clash(paths: list[tuple[str, ...]]) -> bool:
    keys = set(paths)
    return not any(p[:i] in keys for p in paths for i in range(1, len(p)))


TREES = st.dictionaries(
    st.lists(SEGMENT, min_size=1, max_size=3).map(tuple),
    st.binary(max_size=3000),
    min_size=1,
    max_size=8,
).filter(lambda t: _no_prefix_clash(list(t)))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=TREES, obj_path=st.sampled_from([None, "p/", "/q/r"]))
def test_any_small_tree_round_trips(
    em: Path, tmp_path: Path, tree: dict[tuple[str, ...], bytes], obj_path: str | None
) -> None:
    run = tmp_path / "runs" / uuid.uuid4().hex
    for parts, data in tree.items():
        write(run / "tree" / Path(*parts), data)
    art = create_artifact("prop")
    art.add_dir(str(run / "tree"), obj_path)
    prefix = {None: "tree", "p/": "p/tree", "/q/r": "q/r"}[obj_path]
    assert art.objects == {
        f"{prefix}/{'/'.join(p)}": {
            "path": f"{prefix}/{'/'.join(p)}",
            "size_bytes": len(d),
            "checksum": md5(d),
        }
        for p, d in tree.items()
    }
    art.upload(folder="prop", make_folder=True, conflict_strategy="new")
    os.environ["EM_ARTIFACT_PARENT_DIR"] = str(run / "em")  # restored by the fixture
    loaded = load_artifact(art.remote[-1]["path"])  # /alice/prop/prop, then .../<alt>
    assert loaded.alternative_name == art.alternative_name
    assert_same_artifact(loaded, art)
    assert re.fullmatch(r"prop_\d{6}_\d{6}_[a-z0-9]{6}", loaded.alternative_name)
