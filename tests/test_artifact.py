"""The seed's Artifact API on real files: object paths, shapes, T9k's on-disk layout."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from manifest_tool import Artifact, create_artifact, load_artifact, session
from manifest_tool.hashing import md5_file

USER = "alice"
METADATA_KEYS = [
    "kind",
    "name",
    "labels",
    "description",
    "createdTimestamp",
    "alternativeName",
    "remote",
]


def write(path: Path | str, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry below ``root``: files with their bytes, directories as None."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def file_obj(key: str, data: bytes) -> dict[str, object]:
    return {"path": key, "size_bytes": len(data), "checksum": hashlib.md5(data).hexdigest()}


# -- obj_path examples of the seed, on disk ---------------------------------------------
@pytest.mark.parametrize(
    ("obj_path", "key"),
    [
        (None, "1.png"),
        ("1.png", "1.png"),
        ("a/", "a/1.png"),
        ("a/1.png", "a/1.png"),
        ("/a/1.png", "a/1.png"),
        ("/b/", "b/1.png"),
    ],
)
def test_add_file_lands_at_the_seed_object_path(em: Path, obj_path: str | None, key: str) -> None:
    write("1.png", b"\x89PNG-1")
    art = create_artifact("imgs")
    art.add_file("1.png", obj_path)
    assert art.objects == {key: file_obj(key, b"\x89PNG-1")}
    assert Path(art.local, key).read_bytes() == b"\x89PNG-1"


@pytest.mark.parametrize(
    ("obj_path", "prefix"), [(None, "a"), ("a", "a"), ("b/", "b/a"), ("b/a", "b/a"), ("/b/", "b/a")]
)
def test_add_dir_copies_the_tree_under_the_seed_object_path(
    em: Path, obj_path: str | None, prefix: str
) -> None:
    write("a/1.png", b"one")
    write("a/sub/2.png", b"two")
    art = create_artifact("imgs")
    art.add_dir("a/", obj_path)
    assert art.objects == {
        f"{prefix}/1.png": file_obj(f"{prefix}/1.png", b"one"),
        f"{prefix}/sub/2.png": file_obj(f"{prefix}/sub/2.png", b"two"),
    }
    assert Path(art.local, prefix, "sub", "2.png").read_bytes() == b"two"


def test_object_shapes_file_and_reference(em: Path) -> None:
    data = os.urandom(12345)
    write("w.bin", data)
    art = create_artifact("shapes")
    art.add_file("w.bin")
    art.add_reference("https://example.org/d/mnist.tar.gz", "raw/")
    assert art.objects["w.bin"] == {
        "path": "w.bin",
        "size_bytes": 12345,
        "checksum": hashlib.md5(data).hexdigest(),
    }
    assert art.objects["raw/mnist.tar.gz"] == {
        "path": "raw/mnist.tar.gz",
        "uri": "https://example.org/d/mnist.tar.gz",
    }
    assert not Path(art.local, "raw").exists()  # a reference is not fetched


def test_re_adding_a_file_at_its_key_replaces_it(em: Path) -> None:
    src = write("m.txt", b"v1")
    art = create_artifact("redo")
    art.add_file(str(src))
    write(src, b"version 2")
    art.add_file(str(src))
    assert art.objects == {"m.txt": file_obj("m.txt", b"version 2")}
    assert Path(art.local, "m.txt").read_bytes() == b"version 2"


# -- a path is a file or a reference, never both ----------------------------------------
def test_file_then_reference_on_one_key_is_refused(em: Path) -> None:
    write("x.csv", b"1,2")
    art = create_artifact("both")
    art.add_file("x.csv", "d/x.csv")
    before, objects = tree(em), dict(art.objects)
    with pytest.raises(ValueError, match="already a file"):
        art.add_reference("https://example.org/x.csv", "d/")
    assert tree(em) == before
    assert art.objects == objects


def test_reference_then_file_on_one_key_is_refused(em: Path) -> None:
    write("x.csv", b"1,2")
    art = create_artifact("both")
    art.add_reference("https://example.org/x.csv", "d/")
    before, objects = tree(em), dict(art.objects)
    with pytest.raises(ValueError, match="already a reference"):
        art.add_file("x.csv", "d/x.csv")
    assert tree(em) == before
    assert art.objects == objects


def test_add_dir_colliding_with_a_reference_writes_nothing(em: Path) -> None:
    write("d/a.txt", b"a")
    write("d/z.txt", b"z")
    art = create_artifact("both")
    art.add_reference("https://example.org/z.txt", "d/z.txt")
    before = tree(em)
    with pytest.raises(ValueError):
        art.add_dir("d")
    assert tree(em) == before  # not even d/a.txt, which sorts before the clash
    assert list(art.objects) == ["d/z.txt"]


# -- bad object paths: ValueError and nothing written -----------------------------------
BAD_OBJ_PATHS = [
    "../x",
    "a/../../x",
    "a//b",
    "a/./b",
    "metadata.yaml",
    "references.yaml",
    "/metadata.yaml",
    "..",
    "a/..",
]


@pytest.mark.parametrize("obj_path", BAD_OBJ_PATHS)
def test_bad_obj_path_for_a_file_writes_nothing(em: Path, obj_path: str) -> None:
    write("f.txt", b"data")
    art = create_artifact("bad")
    before = tree(em.parent)
    with pytest.raises(ValueError):
        art.add_file("f.txt", obj_path)
    assert tree(em.parent) == before
    assert art.objects == {}


@pytest.mark.parametrize("obj_path", BAD_OBJ_PATHS)
def test_bad_obj_path_for_a_dir_writes_nothing(em: Path, obj_path: str) -> None:
    write("d/f.txt", b"data")
    art = create_artifact("bad")
    before = tree(em.parent)
    with pytest.raises(ValueError):
        art.add_dir("d", obj_path)
    assert tree(em.parent) == before
    assert art.objects == {}


@pytest.mark.parametrize("obj_path", BAD_OBJ_PATHS)
def test_bad_obj_path_for_a_reference_writes_nothing(em: Path, obj_path: str) -> None:
    art = create_artifact("bad")
    before = tree(em.parent)
    with pytest.raises(ValueError):
        art.add_reference("https://example.org/f.txt", obj_path)
    assert tree(em.parent) == before
    assert art.objects == {}


@pytest.mark.parametrize(("first", "second"), [("a", "a/b"), ("a/b", "a"), ("x/a", "x/a/b/c")])
def test_a_file_where_a_folder_is_or_below_a_file_is_refused(
    em: Path, first: str, second: str
) -> None:
    write("f1", b"1")
    write("f2", b"2")
    art = create_artifact("clash")
    art.add_file("f1", first)
    before, objects = tree(em), dict(art.objects)
    with pytest.raises(ValueError, match="already a f"):
        art.add_file("f2", second)
    if second.startswith(f"{first}/"):  # a dir there would also sit below the file
        write("d/f2", b"2")
        with pytest.raises(ValueError):
            art.add_dir("d", second)
    assert tree(em) == before
    assert art.objects == objects


def test_a_source_file_named_metadata_yaml_at_the_root_is_refused(em: Path) -> None:
    write("cfg/metadata.yaml", b"mine: 1\n")
    art = create_artifact("meta")
    with pytest.raises(ValueError, match="reserved"):
        art.add_file("cfg/metadata.yaml")
    assert yaml.safe_load(Path(art.local, "metadata.yaml").read_text())["name"] == "meta"
    art.add_file("cfg/metadata.yaml", "cfg/")
    assert Path(art.local, "cfg", "metadata.yaml").read_bytes() == b"mine: 1\n"


# -- missing sources, bad names -----------------------------------------------------------
def test_missing_file_or_dir_is_a_runtime_error(em: Path) -> None:
    write("d/f.txt", b"x")
    art = create_artifact("missing")
    before = tree(em)
    with pytest.raises(RuntimeError, match=r"nope\.txt"):
        art.add_file("nope.txt")
    with pytest.raises(RuntimeError, match="nodir"):
        art.add_dir("nodir")
    with pytest.raises(RuntimeError):
        art.add_file("d")  # a directory is not a file
    with pytest.raises(RuntimeError):
        art.add_dir("d/f.txt")  # nor a file a directory
    assert tree(em) == before


@pytest.mark.parametrize(
    "name", ["a" * 41, "-a", "a-", "a_", "_a", "", "a b", "a/b", "a.b", "abc\n", "\nabc", "é"]
)
def test_invalid_names_are_refused_and_nothing_is_made(em: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid Artifact name"):
        create_artifact(name)
    assert not em.exists()


@pytest.mark.parametrize("name", ["a", "A9", "a" * 40, "m-n_o", "0"])
def test_valid_names(em: Path, name: str) -> None:
    assert create_artifact(name).name == name


def test_unknown_conflict_strategy_fails_before_anything_is_sent(em: Path) -> None:
    write("f.txt", b"x")
    art = create_artifact("strat")
    art.add_file("f.txt")
    with pytest.raises(ValueError, match="unknown conflict strategy 'overwrite'"):
        art.upload(conflict_strategy="overwrite")
    remote = session.remote()
    assert remote.list_nodes(f"/{USER}") == []
    assert art.remote == []
    assert "remote: []" in Path(art.local, "metadata.yaml").read_text()


# -- on-disk compatibility with T9k -------------------------------------------------------
@pytest.fixture
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone with a non-zero offset (+08:00), restored afterwards."""
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_local_dir_and_identity(em: Path, shanghai_time: None) -> None:
    art = create_artifact("mnist", labels=["dataset"], description="digits")
    assert Path(art.local) == (em / art.alternative_name).absolute()
    assert Path(art.local).is_dir()
    match = re.fullmatch(r"mnist_(\d{6})_(\d{6})_[a-z0-9]{6}", art.alternative_name)
    assert match, art.alternative_name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+08:00", art.created_timestamp), (
        art.created_timestamp
    )
    created = datetime.fromisoformat(art.created_timestamp)
    assert match.group(1) == created.strftime("%y%m%d")
    assert match.group(2) == created.strftime("%H%M%S")
    assert abs(created.timestamp() - time.time()) < 60


def test_alternative_names_differ_between_artifacts(em: Path) -> None:
    names = {create_artifact("same").alternative_name for _ in range(20)}
    assert len(names) == 20


def test_a_seeded_random_module_does_not_repeat_alternative_names(em: Path) -> None:
    """ML scripts call random.seed(); two artifacts made in one second must still differ."""
    random.seed(7)
    first = create_artifact("seeded")
    random.seed(7)
    second = create_artifact("seeded")
    assert first.alternative_name[-6:] != second.alternative_name[-6:]
    assert first.local != second.local


def test_metadata_yaml_is_to_dict_in_t9k_key_order(em: Path) -> None:
    art = create_artifact("mnist", labels=["a", "b"], description="d")
    text = Path(art.local, "metadata.yaml").read_text()
    data = yaml.safe_load(text)
    assert list(data) == METADATA_KEYS
    assert data == art.to_dict()
    assert data["kind"] == "Artifact"
    assert data["labels"] == ["a", "b"]
    assert data["remote"] == []
    lines = text.splitlines()
    top_level = [line.split(":")[0] for line in lines if not line.startswith((" ", "-"))]
    assert top_level == METADATA_KEYS


def test_references_yaml_maps_obj_path_to_uri(em: Path) -> None:
    art = create_artifact("refs")
    assert not Path(art.local, "references.yaml").exists()
    art.add_reference("https://example.org/b.tgz")
    art.add_reference("s3://bucket/key/a.bin", "raw/")
    data = yaml.safe_load(Path(art.local, "references.yaml").read_text())
    assert data == {"b.tgz": "https://example.org/b.tgz", "raw/a.bin": "s3://bucket/key/a.bin"}


def test_to_dict_parse_from_dict_round_trip(em: Path) -> None:
    art = create_artifact("round", labels=["x"], description="desc")
    art.remote.append({"action": "upload", "timestamp": "t", "host": "h", "id": "i", "path": "p"})
    copy = Artifact(art.to_dict(), art.objects)
    assert copy.to_dict() == art.to_dict()
    assert copy.objects == art.objects
    assert copy.local == art.local
    other = create_artifact("other")
    other.parse_from_dict(art.to_dict())
    assert other.to_dict() == art.to_dict()
    assert (other.name, other.alternative_name) == ("round", art.alternative_name)


def test_parse_from_dict_refuses_an_alternative_name_that_leaves_the_parent_dir(em: Path) -> None:
    meta = create_artifact("safe").to_dict()
    for alt in ("../evil", "a/b", "..", ""):
        with pytest.raises(ValueError):
            Artifact({**meta, "alternativeName": alt})


def test_load_artifact_from_local_dir_gives_the_same_objects(em: Path) -> None:
    write("d/a.txt", b"a")
    write("d/sub/metadata.yaml", b"not ours: 1\n")
    write("d/weights.part", b"a user's file that happens to end in .part")
    write("top.bin", os.urandom(1000))
    art = create_artifact("local", labels=["l"], description="desc")
    art.add_dir("d", "data/")
    art.add_file("top.bin")
    art.add_reference("https://example.org/x.tgz", "refs/")
    loaded = load_artifact(art.local)
    assert loaded.objects == art.objects
    assert loaded.to_dict() == art.to_dict()
    assert loaded.local == art.local


# -- hashing in a stream ------------------------------------------------------------------
def test_a_large_file_hashes_correctly_in_bounded_memory(em: Path) -> None:
    digest, size = hashlib.md5(), 0
    with open("big.bin", "wb") as fh:
        for i in range(20):
            block = os.urandom(1 << 20) if i % 2 else bytes([i]) * (1 << 20)
            digest.update(block)
            fh.write(block)
            size += len(block)
    fh_tail = b"tail-not-block-aligned"
    with open("big.bin", "ab") as fh:
        fh.write(fh_tail)
    digest.update(fh_tail)
    size += len(fh_tail)
    art = create_artifact("big")
    tracemalloc.start()
    try:
        art.add_file("big.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert art.objects["big.bin"] == {
        "path": "big.bin",
        "size_bytes": size,
        "checksum": digest.hexdigest(),
    }
    assert peak < 4 * (1 << 20), f"add_file held {peak} bytes at once: not streamed"


def test_md5_file_with_a_small_reused_buffer(em: Path) -> None:
    data = os.urandom(100_003)
    write("odd.bin", data)
    buf = bytearray(4096)
    assert md5_file("odd.bin", buf) == hashlib.md5(data).hexdigest()
    assert md5_file(Path("odd.bin"), buf) == hashlib.md5(data).hexdigest()
    write("empty.bin", b"")
    assert md5_file("empty.bin") == hashlib.md5(b"").hexdigest()
