"""The planner in memory: Desired values and remote decisions against a real LocalRemote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from manifest_tool.apply import Applier, stage_local
from manifest_tool.cache import HashCache, load_staged
from manifest_tool.hashing import content_digest, md5_bytes
from manifest_tool.lockfile import LockEntry
from manifest_tool.model import ArtifactSpec, Expansion, LocalFile, Reference
from manifest_tool.plan import Desired, LocalChanges, Plan
from manifest_tool.planner import choose_identity, decide, desired_state
from manifest_tool.remotes.base import ARTIFACT, FOLDER, Upload
from manifest_tool.remotes.local import LocalRemote

USER = "alice"
ALT = "ds_240101_000000_abcdef"
CREATED = "2024-01-01T00:00:00.000000+00:00"
FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo\n"}


@pytest.fixture
def remote(tmp_path: Path) -> LocalRemote:
    return LocalRemote(tmp_path / "store", USER)


def expansion(root: Path, files: dict[str, bytes], refs: dict[str, str] | None = None) -> Expansion:
    out = []
    for key, data in sorted(files.items()):
        path = root / "src" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        st = path.stat()
        out.append(LocalFile(key, str(path), st.st_size, st.st_mtime_ns, st.st_ino))
    references = tuple(Reference(k, u) for k, u in sorted((refs or {}).items()))
    return Expansion(tuple(out), references)


def desired(
    root: Path,
    files: dict[str, bytes] = FILES,
    spec: ArtifactSpec | None = None,
    alt: str = ALT,
    refs: dict[str, str] | None = None,
) -> Desired:
    spec = spec or ArtifactSpec(name="ds", labels=("a",), description="d")
    staged = load_staged(root / "cache", spec.name)
    return desired_state(
        spec,
        expansion(root, files, refs),
        (alt, CREATED),
        USER,
        staged,
        HashCache(root / "cache" / "hashes"),
        root / "artifacts",
    )


def digest_of(files: dict[str, bytes]) -> str:
    return content_digest(
        {"path": k, "size_bytes": len(v), "checksum": md5_bytes(v)} for k, v in files.items()
    )


def apply(root: Path, remote: LocalRemote, d: Desired) -> None:
    applier = Applier(remote, root / "cache", root / "artifacts.lock", {})
    applier.apply(Plan(root / "artifacts.yaml", remote.url, (decide(remote, d, USER),)))


def foreign_node(remote: LocalRemote, path: str, files: dict[str, bytes], extra: dict) -> None:
    parent, _, name = path.rpartition("/")
    if remote.node_info(parent) is None:
        remote.create_node(parent.rpartition("/")[0], parent.rpartition("/")[2], FOLDER)
    remote.create_node(parent, name, ARTIFACT)
    for key, data in files.items():
        remote.put_object(path, Upload(key, md5_bytes(data), len(data), data=data))
    remote.update_node(path, extra=json.dumps(extra))  # last: an object change voids it


# -- desired_state: local changes and the digest ------------------------------------------


def test_first_desired_state_adds_everything(tmp_path: Path) -> None:
    d = desired(tmp_path, refs={"raw/x.tgz": "https://example.org/x.tgz"})
    assert d.local == LocalChanges(add=("a.txt", "sub/b.txt"))
    assert d.folder == "/alice/default"
    assert d.local_dir == tmp_path / "artifacts" / ALT
    assert d.digest == content_digest(
        [
            *(
                {"path": k, "size_bytes": len(v), "checksum": md5_bytes(v)}
                for k, v in FILES.items()
            ),
            {"path": "raw/x.tgz", "uri": "https://example.org/x.tgz"},
        ]
    )
    assert [h.md5 for h in d.files] == [md5_bytes(v) for v in FILES.values()]


def test_staged_and_unchanged_hashes_nothing(tmp_path: Path) -> None:
    stage_local(desired(tmp_path), tmp_path / "cache")
    (tmp_path / "cache" / "hashes").unlink(missing_ok=True)
    hashes = HashCache(tmp_path / "cache" / "hashes")
    spec = ArtifactSpec(name="ds")
    d = desired_state(
        spec,
        expansion(tmp_path, FILES),
        (ALT, CREATED),
        USER,
        load_staged(tmp_path / "cache", "ds"),
        hashes,
        tmp_path / "artifacts",
    )
    assert d.local == LocalChanges()
    assert d.digest == digest_of(FILES)
    assert hashes._entries is None  # the cache was not even loaded


def test_local_changes_after_edits(tmp_path: Path) -> None:
    stage_local(desired(tmp_path), tmp_path / "cache")
    new = {"a.txt": b"alpha 2\n", "c.txt": b"charlie\n"}
    d = desired(tmp_path, new)
    assert d.local == LocalChanges(add=("c.txt",), update=("a.txt",), remove=("sub/b.txt",))
    assert d.digest == digest_of(new)


def test_other_identity_restages_everything(tmp_path: Path) -> None:
    stage_local(desired(tmp_path), tmp_path / "cache")
    d = desired(tmp_path, alt="ds_other")
    assert d.local == LocalChanges(add=("a.txt", "sub/b.txt"))



def test_touched_file_is_not_a_local_change(tmp_path: Path) -> None:
    stage_local(desired(tmp_path), tmp_path / "cache")
    src = tmp_path / "src" / "a.txt"
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not desired(tmp_path).local


# -- identity -----------------------------------------------------------------------------


def test_choose_identity_order() -> None:
    lock = LockEntry("ds_locked", "2023-01-01T00:00:00+00:00")
    pinned = ArtifactSpec(name="ds", alternative_name="ds_pinned")
    plain = ArtifactSpec(name="ds")
    assert choose_identity(pinned, lock)[0] == "ds_pinned"
    assert choose_identity(pinned, LockEntry("ds_pinned", "T0")) == ("ds_pinned", "T0")
    assert choose_identity(plain, lock, ("ds_chosen", "T1")) == (
        "ds_locked",
        "2023-01-01T00:00:00+00:00",
    )
    assert choose_identity(plain, None, ("ds_chosen", "T1")) == ("ds_chosen", "T1")
    alt, _ = choose_identity(plain, None)
    assert alt.startswith("ds_") and alt != choose_identity(plain, None)[0]


# -- decide: the remote half ------------------------------------------------------------


def test_absent_node_is_created(tmp_path: Path, remote: LocalRemote) -> None:
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.path, ap.upload, ap.delete) == (
        "create",
        "/alice/default/ds",
        ("a.txt", "sub/b.txt"),
        (),
    )
    assert ap.changes


def test_missing_folder_without_make_folder_is_an_error(
    tmp_path: Path, remote: LocalRemote
) -> None:
    spec = ArtifactSpec(name="ds", folder="cv/models")
    ap = decide(remote, desired(tmp_path, spec=spec), USER)
    assert ap.action == "error" and "/alice/cv/models" in ap.message
    spec = ArtifactSpec(name="ds", folder="cv/models", make_folder=True)
    assert decide(remote, desired(tmp_path, spec=spec), USER).action == "create"


def test_same_digest_is_none_and_labels_are_metadata(tmp_path: Path, remote: LocalRemote) -> None:
    apply(tmp_path, remote, desired(tmp_path))
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.upload, ap.delete, ap.changes) == ("none", (), (), False)
    spec = ArtifactSpec(name="ds", labels=("a", "b"), description="d")
    ap = decide(remote, desired(tmp_path, spec=spec), USER)
    assert (ap.action, ap.upload) == ("metadata", ())


def test_own_node_is_updated_in_place(tmp_path: Path, remote: LocalRemote) -> None:
    apply(tmp_path, remote, desired(tmp_path))
    ap = decide(remote, desired(tmp_path, {"a.txt": b"alpha 2\n", "c.txt": b"c\n"}), USER)
    assert (ap.action, ap.path, ap.upload, ap.delete) == (
        "update",
        "/alice/default/ds",
        ("a.txt", "c.txt"),
        ("sub/b.txt",),
    )


def test_own_node_without_digest_is_diffed_object_by_object(
    tmp_path: Path, remote: LocalRemote
) -> None:
    foreign_node(
        remote,
        "/alice/default/ds",
        {"a.txt": FILES["a.txt"], "junk": b"x"},
        {"alternativeName": ALT},
    )  # an interrupted apply of ours
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.upload, ap.delete) == ("update", ("sub/b.txt",), ("junk",))


@pytest.mark.parametrize(
    ("strategy", "action", "path", "upload"),
    [
        ("skip", "skip", "/alice/default/ds", ()),
        ("error", "error", "/alice/default/ds", ()),
        ("replace", "replace", "/alice/default/ds", ("a.txt", "sub/b.txt")),
        ("new", "new", f"/alice/default/{ALT}", ("a.txt", "sub/b.txt")),
    ],
)
def test_foreign_node_follows_the_conflict_strategy(
    tmp_path: Path,
    remote: LocalRemote,
    strategy: str,
    action: str,
    path: str,
    upload: tuple[str, ...],
) -> None:
    foreign_node(remote, "/alice/default/ds", {"x": b"theirs"}, {"alternativeName": "ds_theirs"})
    spec = ArtifactSpec(name="ds", conflict_strategy=strategy)  # type: ignore[arg-type]
    ap = decide(remote, desired(tmp_path, spec=spec), USER)
    assert (ap.action, ap.path, ap.upload, ap.delete) == (action, path, upload, ())
    if strategy == "error":
        assert "'ds'" in ap.message and "/alice/default" in ap.message


def test_new_finds_its_content_already_at_alt(tmp_path: Path, remote: LocalRemote) -> None:
    foreign_node(remote, "/alice/default/ds", {"x": b"theirs"}, {"alternativeName": "ds_theirs"})
    foreign_node(
        remote,
        f"/alice/default/{ALT}",
        FILES,
        {"alternativeName": ALT, "contentDigest": digest_of(FILES)},
    )
    remote.update_node(f"/alice/default/{ALT}", labels=["a"], description="d")
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.path, ap.upload) == ("none", f"/alice/default/{ALT}", ())


def test_new_resumes_a_partial_upload_at_alt(tmp_path: Path, remote: LocalRemote) -> None:
    foreign_node(remote, "/alice/default/ds", {"x": b"theirs"}, {"alternativeName": "ds_theirs"})
    foreign_node(
        remote, f"/alice/default/{ALT}", {"a.txt": FILES["a.txt"]}, {"alternativeName": ALT}
    )
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.path, ap.upload) == ("new", f"/alice/default/{ALT}", ("sub/b.txt",))


def test_same_content_under_another_name_is_adopted(tmp_path: Path, remote: LocalRemote) -> None:
    foreign_node(
        remote,
        "/alice/default/ds",
        FILES,
        {"alternativeName": "ds_theirs", "contentDigest": digest_of(FILES)},
    )
    remote.update_node("/alice/default/ds", labels=["a"], description="d")
    ap = decide(remote, desired(tmp_path), USER)
    assert (ap.action, ap.upload) == ("none", ())
    assert ap.desired.alternative_name == "ds_theirs"
    assert ap.desired.local_dir.name == "ds_theirs"


def test_plan_json_has_the_stable_keys(tmp_path: Path, remote: LocalRemote) -> None:
    plan = Plan(tmp_path / "m.yaml", remote.url, (decide(remote, desired(tmp_path), USER),))
    data = plan.to_json()
    assert data["changes"] is True
    art = data["artifacts"][0]
    assert {"name", "folder", "path", "action", "upload", "delete", "local"} <= set(art)
    assert set(art["local"]) == {"add", "update", "remove"}
