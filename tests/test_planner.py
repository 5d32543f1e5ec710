"""The planner as a pure function: remote states built as values, whole plans asserted.

``decide`` gets what was read of the remote as a mapping (kind, path) -> answer and
returns either the plan or the one read it still needs; no remote is involved here.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from manifest_tool.cache import HashCache, Staged, StagedIndex
from manifest_tool.errors import MissingSource
from manifest_tool.hashing import content_digest, md5_bytes
from manifest_tool.lockfile import LockEntry
from manifest_tool.model import ArtifactSpec, Expansion, LocalFile, Reference
from manifest_tool.plan import ArtifactPlan, Desired
from manifest_tool.planner import (
    BIG_FILE,
    Need,
    Orphan,
    choose_identity,
    decide,
    decide_orphan,
    desired_state,
    seen_of,
    snapshot,
)
from manifest_tool.remotes.base import ARTIFACT, FOLDER, Node, ObjectInfo

USER = "alice"
ALT = "ds_240101_000000_abcdef"
CREATED = "2024-01-01T00:00:00.000000+00:00"
FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo\n"}
F = "/alice/default"
NODE = f"{F}/ds"


def expansion(root: Path, files: dict[str, bytes], refs: dict[str, str] | None = None) -> Expansion:
    out = []
    for key, data in sorted(files.items()):
        path = root / "src" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        st = path.stat()
        out.append(LocalFile(key, str(path), st.st_size, st.st_ctime_ns, st.st_ino))
    references = tuple(Reference(k, u) for k, u in sorted((refs or {}).items()))
    return Expansion(tuple(out), references)


def desired(
    root: Path,
    files: dict[str, bytes] = FILES,
    spec: ArtifactSpec | None = None,
    refs: dict[str, str] | None = None,
    hashes: HashCache | None = None,
) -> Desired:
    spec = spec or ArtifactSpec(name="ds", labels=("a",), description="d")
    return desired_state(
        spec,
        expansion(root, files, refs),
        (spec.alternative_name or ALT, CREATED),
        USER,
        StagedIndex(root / "cache" / "index").get(spec.name),
        hashes or HashCache(root / "cache" / "hashes"),
        root / "artifacts",
    )


def digest_of(files: dict[str, bytes]) -> str:
    return content_digest(
        {"path": k, "size_bytes": len(v), "checksum": md5_bytes(v)} for k, v in files.items()
    )


def node(
    path: str,
    alt: str | None = ALT,
    digest: str | None = None,
    type: str = ARTIFACT,
    labels: tuple[str, ...] = ("a",),
    description: str = "d",
    revision: int = 3,
) -> Node:
    extra: dict[str, str] = {}
    if alt:
        extra["alternativeName"] = alt
    if digest:
        extra["contentDigest"] = digest
    parent, _, name = path.rpartition("/")
    return Node(
        id=f"id-{name}", name=name, parent=parent, path=path, type=type, labels=labels,
        description=description, extra=json.dumps(extra), created_at="2023-05-05T00:00:00Z",
        revision=revision,
    )  # fmt: skip


def listing(files: dict[str, bytes]) -> tuple[ObjectInfo, ...]:
    return tuple(ObjectInfo(k, len(v), md5_bytes(v)) for k, v in sorted(files.items()))


def run(d: Desired, reads: dict[tuple[str, str], Any]) -> tuple[ArtifactPlan, list[Any]]:
    """Decide, handing over each read from ``reads`` only when decide asks for it;
    returns the plan and the reads asked for, in order."""
    given: dict[tuple[str, str], Any] = {}
    out = decide(d, given, USER)
    while isinstance(out, Need):
        if out.read not in reads:
            raise AssertionError(f"decide needs {out.read}, which the test did not give")
        given[out.read] = reads[out.read]
        out = decide(d, given, USER)
    return out, list(given)


def expected(d: Desired, **kw: Any) -> ArtifactPlan:
    base: dict[str, Any] = {"name": "ds", "folder": F, "path": NODE, "desired": d}
    return ArtifactPlan(**{**base, **kw})


# -- the local half -------------------------------------------------------------------


def test_first_desired_state_hashes_everything(tmp_path: Path) -> None:
    hashes = HashCache(tmp_path / "cache" / "hashes")
    d = desired(tmp_path, hashes=hashes)
    assert not d.in_sync
    assert d.digest == digest_of(FILES)
    assert [h.md5 for h in d.files] == [md5_bytes(v) for _, v in sorted(FILES.items())]


def test_big_files_hashed_side_by_side_give_the_same_md5s_and_errors(tmp_path: Path) -> None:
    big = BIG_FILE + 1
    files = {
        **FILES,
        "big/one.bin": b"1" * big,
        "big/two.bin": bytes(range(256)) * (big // 256 + 1),
        "big/three.bin": b"3" * (2 * big),
    }
    d = desired(tmp_path, files)
    assert [h.md5 for h in d.files] == [md5_bytes(v) for _, v in sorted(files.items())]
    assert d.digest == digest_of(files)
    gone = expansion(tmp_path, files)
    (tmp_path / "src" / "big" / "two.bin").unlink()
    with pytest.raises(MissingSource, match=r"two\.bin"):
        desired_state(ArtifactSpec(name="x"), gone, (ALT, CREATED), USER, None,
                      HashCache(tmp_path / "none"), tmp_path)  # fmt: skip


def test_an_indexed_unchanged_tree_hashes_nothing(tmp_path: Path) -> None:
    hashes = HashCache(tmp_path / "cache" / "hashes")
    first = desired(tmp_path, hashes=hashes)
    index = StagedIndex(tmp_path / "cache" / "index")
    index.put("ds", snapshot(first, hashes.since_ns() + 1))  # as if read a tick later
    index.save({"ds"})
    again = desired(tmp_path, hashes=HashCache(tmp_path / "nowhere"))
    assert again.in_sync and again.digest == first.digest


def _indexed_with_marked_md5s(tmp_path: Path, files: dict[str, bytes]) -> Staged:
    """An index entry of ``files`` whose MD5s are marks (b"\x01" * 16, ...) rather than
    the real ones: an MD5 the plan takes from the index shows as its mark."""
    first = desired(tmp_path, files)
    time.sleep(0.05)  # later than the files' ctime: their rows are trusted
    staged = snapshot(first, HashCache(tmp_path / "cache" / "clock-only").since_ns())
    return replace(staged, md5_bytes=b"".join(bytes([i + 1]) * 16 for i in range(len(files))))


def _mark(i: int) -> str:
    return (bytes([i + 1]) * 16).hex()


def _state(root: Path, exp: Expansion, staged: Staged) -> list[str]:
    d = desired_state(ArtifactSpec(name="ds"), exp, (ALT, CREATED), USER, staged,
                      HashCache(root / "nowhere"), root)  # fmt: skip
    return list(d.md5s())


@pytest.mark.parametrize("change", ["one edited", "edited, removed and added"])
def test_the_index_vouches_for_unchanged_rows_only(tmp_path: Path, change: str) -> None:
    files = {"a.txt": b"alpha\n", "b.txt": b"bravo\n", "c.txt": b"charlie\n"}
    staged = _indexed_with_marked_md5s(tmp_path, files)
    now = {**files, "b.txt": b"BRAVO!\n"}
    if change != "one edited":
        del now["c.txt"]
        (tmp_path / "src" / "c.txt").unlink()
        now["d.txt"] = b"delta\n"
    got = _state(tmp_path, expansion(tmp_path, now), staged)
    expected = [_mark(0), md5_bytes(b"BRAVO!\n")]
    expected += [_mark(2)] if change == "one edited" else [md5_bytes(b"delta\n")]
    assert got == expected


def test_the_index_does_not_vouch_for_a_moved_source_or_a_racy_row(tmp_path: Path) -> None:
    """A renamed directory keeps its files' size, ctime and inode, not their paths;
    a row as new as the entry's clock might have changed again unseen."""
    staged = _indexed_with_marked_md5s(tmp_path, FILES)
    exp = expansion(tmp_path, FILES)
    assert _state(tmp_path, exp, staged) == [_mark(0), _mark(1)]
    (tmp_path / "src").rename(tmp_path / "moved")
    moved = tuple(f._replace(source=f.source.replace("/src/", "/moved/")) for f in exp.files)
    real = [md5_bytes(v) for _, v in sorted(FILES.items())]
    assert _state(tmp_path, Expansion(moved, ()), staged) == real
    newest = max(f.changed_ns for f in exp.files)
    racy = replace(staged, since_ns=newest)
    assert _state(tmp_path, Expansion(moved, ()), racy) == real
    back = tuple(f._replace(source=f.source.replace("/moved/", "/src/")) for f in moved)
    (tmp_path / "moved").rename(tmp_path / "src")
    trusted = [_mark(i) if f.changed_ns < newest else real[i] for i, f in enumerate(back)]
    assert real[-1] in trusted  # the newest at least is read again
    assert _state(tmp_path, Expansion(back, ()), racy) == trusted


def test_references_count_in_the_digest(tmp_path: Path) -> None:
    plain = desired(tmp_path)
    with_ref = desired(tmp_path, refs={"raw/m.tar.gz": "https://e.org/m.tar.gz"})
    assert plain.digest != with_ref.digest
    assert with_ref.reference_map() == {"raw/m.tar.gz": "https://e.org/m.tar.gz"}


def test_choose_identity_order() -> None:
    minted: list[str] = []

    def mint(name: str, pinned: str | None) -> tuple[str, str]:
        minted.append(name)
        return pinned or f"{name}_new", "now"

    spec = ArtifactSpec(name="ds")
    lock = LockEntry("ds_lock", "then")
    assert choose_identity(spec, lock, ("ds_saved", "s"), mint) == ("ds_lock", "then")
    assert choose_identity(spec, None, ("ds_saved", "s"), mint) == ("ds_saved", "s")
    assert choose_identity(spec, None, None, mint) == ("ds_new", "now")
    pinned = replace(spec, alternative_name="ds_pin")
    assert choose_identity(pinned, lock, None, mint) == ("ds_pin", "now")
    assert choose_identity(pinned, LockEntry("ds_pin", "kept"), None, mint) == ("ds_pin", "kept")
    assert choose_identity(pinned, None, ("ds_pin", "saved"), mint) == ("ds_pin", "saved")
    assert minted == ["ds", "ds"]


# -- the remote half: whole plans -----------------------------------------------------


def test_absent_node_in_an_existing_folder_is_created(tmp_path: Path) -> None:
    d = desired(tmp_path)
    plan, asked = run(d, {("node", NODE): None, ("node", F): node(F, None, type=FOLDER)})
    assert plan == expected(d, action="create", upload=("a.txt", "sub/b.txt"))
    assert asked == [("node", NODE), ("node", F)]


def test_missing_folders_are_listed_top_down_when_allowed(tmp_path: Path) -> None:
    spec = ArtifactSpec(name="ds", folder="a/b", make_folder=True, labels=("a",), description="d")
    d = desired(tmp_path, spec=spec)
    reads = {
        ("node", "/alice/a/b/ds"): None,
        ("node", "/alice/a/b"): None,
        ("node", "/alice/a"): None,
    }
    plan, _ = run(d, reads)
    assert plan == ArtifactPlan(
        name="ds", folder="/alice/a/b", path="/alice/a/b/ds", action="create", desired=d,
        upload=("a.txt", "sub/b.txt"), make_folders=("/alice/a", "/alice/a/b"),
    )  # fmt: skip


def test_missing_folder_without_make_folder_is_an_error(tmp_path: Path) -> None:
    spec = ArtifactSpec(name="ds", folder="x", labels=("a",), description="d")
    d = desired(tmp_path, spec=spec)
    plan, _ = run(d, {("node", "/alice/x/ds"): None, ("node", "/alice/x"): None})
    assert plan == ArtifactPlan(
        name="ds", folder="/alice/x", path="/alice/x/ds", action="error", desired=d,
        message="Folder does not exist: '/alice/x'", hint="create it, or set make_folder: true",
        refusal="folder",
    )  # fmt: skip


def test_the_same_digest_is_none_and_other_labels_are_metadata(tmp_path: Path) -> None:
    d = desired(tmp_path)
    same = node(NODE, digest=d.digest)
    plan, asked = run(d, {("node", NODE): same})
    assert asked == [("node", NODE)]  # one nodes/info and nothing else
    assert plan == expected(
        d, action="none", seen=seen_of(same), old_labels=("a",), old_description="d"
    )
    relabelled = node(NODE, digest=d.digest, labels=("old",), description="was")
    plan, _ = run(d, {("node", NODE): relabelled})
    assert plan == expected(
        d, action="metadata", seen=seen_of(relabelled), old_labels=("old",), old_description="was"
    )


def test_own_node_is_updated_from_its_listing(tmp_path: Path) -> None:
    d = desired(tmp_path)
    ours = node(NODE)  # no digest: an interrupted apply, or changed content
    remote_files = {"a.txt": b"old\n", "gone.txt": b"x", "metadata.yaml": b"m"}
    plan, asked = run(d, {("node", NODE): ours, ("listing", NODE): listing(remote_files)})
    assert asked == [("node", NODE), ("listing", NODE)]
    assert plan == expected(
        d, action="update", upload=("a.txt", "sub/b.txt"), delete=("gone.txt",),
        modified=("a.txt",), seen=seen_of(ours), old_labels=("a",), old_description="d",
    )  # fmt: skip


def test_a_stale_references_yaml_is_deleted(tmp_path: Path) -> None:
    d = desired(tmp_path)
    ours = node(NODE)
    remote_files = {**FILES, "references.yaml": b"r: u\n"}
    plan, _ = run(d, {("node", NODE): ours, ("listing", NODE): listing(remote_files)})
    assert (plan.action, plan.upload, plan.delete) == ("update", (), ("references.yaml",))


@pytest.mark.parametrize(
    ("strategy", "action", "path", "upload"),
    [
        ("skip", "skip", NODE, ()),
        ("replace", "replace", NODE, ("a.txt", "sub/b.txt")),
        ("new", "new", f"{F}/{ALT}", ("a.txt", "sub/b.txt")),
    ],
)
def test_a_foreign_node_follows_the_strategy(
    tmp_path: Path, strategy: str, action: str, path: str, upload: tuple[str, ...]
) -> None:
    spec = ArtifactSpec(name="ds", labels=("a",), description="d")
    spec = replace(spec, conflict_strategy=strategy)
    d = desired(tmp_path, spec=spec)
    foreign = node(NODE, alt="someone_else", digest="sha256:other")
    plan, _ = run(d, {("node", NODE): foreign, ("node", f"{F}/{ALT}"): None})
    assert (plan.action, plan.path, plan.upload) == (action, path, upload)
    assert plan.seen == ("absent" if action == "new" else seen_of(foreign))


def test_error_strategy_names_folder_and_holder(tmp_path: Path) -> None:
    spec = ArtifactSpec(name="ds", conflict_strategy="error", labels=("a",), description="d")
    d = desired(tmp_path, spec=spec)
    foreign = node(NODE, alt="someone_else")
    plan, _ = run(d, {("node", NODE): foreign})
    assert plan == expected(
        d, action="error", seen=seen_of(foreign), refusal="conflict",
        message=f"Artifact already exists in Folder {F}: 'ds'",
        hint="held by someone_else; choose conflict_strategy new, replace or skip, "
        "or pin its alternative_name",
    )  # fmt: skip


def test_new_finds_its_earlier_upload_at_the_alternative_name(tmp_path: Path) -> None:
    d = desired(tmp_path)
    foreign = node(NODE, alt="someone_else")
    sibling = node(f"{F}/{ALT}", digest=d.digest)
    plan, _ = run(d, {("node", NODE): foreign, ("node", f"{F}/{ALT}"): sibling})
    assert (plan.action, plan.path, plan.seen) == ("none", f"{F}/{ALT}", seen_of(sibling))


def test_new_never_takes_over_a_foreign_node_at_the_alternative_name(tmp_path: Path) -> None:
    d = desired(tmp_path)
    squatter = node(f"{F}/{ALT}", alt="squat")
    plan, _ = run(d, {("node", NODE): node(NODE, alt="other"), ("node", f"{F}/{ALT}"): squatter})
    assert (plan.action, plan.refusal) == ("error", "conflict")
    assert f"{F}/{ALT} exists and is not artifact 'ds'" in plan.message


def test_same_content_under_another_identity_is_adopted_with_its_timestamp(
    tmp_path: Path,
) -> None:
    d = desired(tmp_path)
    theirs = node(NODE, alt="ds_230505_000000_zzzzzz", digest=d.digest)
    reads = {("node", NODE): theirs, ("created", NODE): "2023-05-05T08:00:00+08:00"}
    plan, asked = run(d, reads)
    assert asked == [("node", NODE), ("created", NODE)]
    assert plan.action == "none"
    assert plan.desired is not None
    assert (plan.desired.alternative_name, plan.desired.created_timestamp) == (
        "ds_230505_000000_zzzzzz",
        "2023-05-05T08:00:00+08:00",
    )


def test_a_pinned_name_is_never_adopted_away(tmp_path: Path) -> None:
    spec = ArtifactSpec(name="ds", alternative_name="ds_pin", labels=("a",), description="d")
    d = desired(tmp_path, spec=spec)
    theirs = node(NODE, alt="ds_other", digest=d.digest)
    plan, _ = run(d, {("node", NODE): theirs, ("node", f"{F}/ds_pin"): None})
    assert (plan.action, plan.path) == ("new", f"{F}/ds_pin")


def test_moved_renames_the_old_node_in_place(tmp_path: Path) -> None:
    d = replace(desired(tmp_path), previous_path=f"{F}/old", moved_from="old")
    old = node(f"{F}/old", digest=d.digest)
    reads = {
        ("node", NODE): None,
        ("node", f"{F}/old"): old,
        ("listing", f"{F}/old"): listing(FILES),
    }
    plan, _ = run(d, reads)
    assert plan == expected(
        d, action="rename", rename_from=f"{F}/old", seen=seen_of(old),
        old_labels=("a",), old_description="d",
    )  # fmt: skip


def test_moved_to_a_node_no_longer_ours_is_a_create(tmp_path: Path) -> None:
    d = replace(desired(tmp_path), previous_path=f"{F}/old", moved_from="old")
    reads = {
        ("node", NODE): None,
        ("node", f"{F}/old"): node(f"{F}/old", alt="another"),
        ("node", F): node(F, None, type=FOLDER),
    }
    plan, _ = run(d, reads)
    assert (plan.action, plan.rename_from) == ("create", "")


def test_orphans_are_shown_and_deleted_only_with_prune() -> None:
    entry = LockEntry("gone_1", "t", "sha256:x", {"path": f"{F}/gone"})
    orphan = Orphan("gone", f"{F}/gone", entry, "gone")
    shown = decide_orphan(orphan, {}, prune=False)
    assert isinstance(shown, ArtifactPlan)
    assert (shown.action, shown.path, shown.changes) == ("orphan", f"{F}/gone", False)
    assert decide_orphan(orphan, {}, prune=True) == Need(("node", f"{F}/gone"))
    ours = node(f"{F}/gone", alt="gone_1")
    pruned = decide_orphan(orphan, {("node", f"{F}/gone"): ours}, prune=True)
    assert isinstance(pruned, ArtifactPlan)
    assert (pruned.action, pruned.seen, pruned.changes) == ("delete", seen_of(ours), True)
    other = decide_orphan(orphan, {("node", f"{F}/gone"): node(f"{F}/gone", alt="x")}, True)
    assert isinstance(other, ArtifactPlan) and other.action == "orphan"  # not ours: kept


def test_seen_names_the_objects_revision() -> None:
    assert seen_of(None) == "absent"
    assert seen_of(node(NODE, digest="sha256:d", revision=7)) == "id-ds@7:sha256:d"
