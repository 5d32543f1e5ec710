"""The planner: manifest + local files + lock + remote -> Plan. It writes nothing.

It reads the remote (one ``nodes/info`` per unchanged artifact, an object listing
only where content differs) and hashes only files whose (size, mtime_ns, inode)
it has not seen; the caller decides whether to keep the updated hash cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from operator import itemgetter
from pathlib import Path

from .cache import HashCache, Staged, StatRow
from .hashing import content_digest, md5_file
from .identity import new_identity
from .lockfile import LockEntry
from .model import ArtifactSpec, Expansion, Reference
from .plan import ArtifactPlan, Desired, HashedFile, LocalChanges
from .publish import Target, conflict_refusal, object_changes, sibling_refusal
from .remotes.base import Node, Remote, absolute_folder

Identity = tuple[str, str]  # alternativeName, createdTimestamp


def choose_identity(
    spec: ArtifactSpec, lock: LockEntry | None, chosen: Identity | None = None
) -> Identity:
    """Pinned name > the lock's > one chosen earlier (a saved plan) > a new one."""
    if spec.alternative_name:
        same = lock is not None and lock.alternativeName == spec.alternative_name
        created = lock.createdTimestamp if same and lock else new_identity(spec.name)[0]
        return spec.alternative_name, created
    if lock is not None:
        return lock.alternativeName, lock.createdTimestamp
    if chosen:
        return chosen
    created, alt = new_identity(spec.name)
    return alt, created


def desired_state(
    spec: ArtifactSpec,
    expansion: Expansion,
    identity: Identity,
    user: str,
    staged: Staged | None,
    hashes: HashCache,
    parent: Path,
) -> Desired:
    alt, created = identity
    local_dir = parent / alt
    rows = expansion.files  # a LocalFile is its own stat row
    refs = reference_pairs(expansion.references)
    usable = staged if staged and staged.alternative_name == alt and local_dir.is_dir() else None
    base = Desired(
        spec=spec,
        folder=absolute_folder(spec.folder, user),
        alternative_name=alt,
        created_timestamp=created,
        declared=rows,
        md5s=tuple,
        references=expansion.references,
        local_dir=local_dir,
    )
    if usable is not None and _unchanged(usable, rows, refs):
        return replace(base, md5s=lambda: usable.md5s, digest=usable.digest, in_sync=True)
    files = _hash_files(expansion, usable, hashes)
    md5s = tuple(h.md5 for h in files)
    return replace(
        base,
        md5s=lambda: md5s,
        digest=content_digest(_objects(files, expansion)),
        local=_local_changes(files, usable),
    )


def reference_pairs(references: Sequence[Reference]) -> tuple[tuple[str, str], ...]:
    """References as the staged index keeps them."""
    return tuple((r.key, r.uri) for r in references)


def _unchanged(staged: Staged, rows: Sequence[StatRow], refs: tuple[tuple[str, str], ...]) -> bool:
    """The fast path: the staged index holds exactly these rows, none racily clean."""
    newest = max(map(itemgetter(3), rows), default=0)
    return staged.references == refs and newest < staged.written_ns and staged.matches(rows)


def _hash_files(
    expansion: Expansion, staged: Staged | None, hashes: HashCache
) -> tuple[HashedFile, ...]:
    known = {}
    if staged is not None:
        pairs = zip(staged.stats, staged.md5s, strict=True)
        known = {row: md5 for row, md5 in pairs if staged.trusted(row)}
    buf = bytearray(1024 * 1024)
    out = []
    for f in expansion.files:
        stat = (f.size, f.mtime_ns, f.inode)
        md5 = known.get(f) or hashes.get(f.source, stat)
        if md5 is None:
            md5 = md5_file(f.source, buf)
            hashes.put(f.source, stat, md5)
        out.append(HashedFile(f, md5))
    return tuple(out)


def _objects(files: tuple[HashedFile, ...], expansion: Expansion) -> list[dict[str, object]]:
    objs: list[dict[str, object]] = [
        {"path": h.file.key, "size_bytes": h.file.size, "checksum": h.md5} for h in files
    ]
    return objs + [{"path": r.key, "uri": r.uri} for r in expansion.references]


def _local_changes(files: tuple[HashedFile, ...], staged: Staged | None) -> LocalChanges:
    """By content: a touched file, or the same bytes saved anew, is no local change."""
    if staged is None:
        return LocalChanges(add=tuple(h.file.key for h in files))
    old = {row[0]: (row[1], md5) for row, md5 in zip(staged.stats, staged.md5s, strict=True)}
    new_keys = {h.file.key for h in files}
    return LocalChanges(
        add=tuple(h.file.key for h in files if h.file.key not in old),
        update=tuple(
            h.file.key
            for h in files
            if h.file.key in old and old[h.file.key] != (h.file.source, h.md5)
        ),
        remove=tuple(sorted(k for k in old if k not in new_keys)),
    )


def snapshot(desired: Desired) -> Staged:
    """The staged index that describes ``desired``'s local directory once in sync."""
    return Staged.build(
        desired.alternative_name,
        desired.digest,
        desired.declared,
        desired.md5s(),
        reference_pairs(desired.references),
    )


def stale_snapshot(desired: Desired, staged: Staged | None) -> bool:
    """In sync by content, but the index's stats are old (a touch): worth rewriting,
    or every later plan would re-read the hash cache and recompute the digest."""
    return (
        staged is not None
        and not desired.in_sync
        and not desired.local
        and staged.alternative_name == desired.alternative_name
        # changed references are a local change (references.yaml): apply restages
        and staged.references == reference_pairs(desired.references)
        and (
            not staged.matches(desired.declared)
            or staged.digest != desired.digest
            or not all(staged.trusted(row) for row in staged.stats)
        )
    )


def decide(remote: Remote, desired: Desired, user: str) -> ArtifactPlan:
    """The remote half of the plan for one artifact (PROTOCOL + DESIGN rules)."""
    spec, folder = desired.spec, desired.folder
    path = f"{folder}/{spec.name}"
    node = remote.node_info(path)
    if node is None:
        return _create(remote, desired, user, path)
    extra = node.extra_dict
    pin = spec.alternative_name
    adoptable = not pin or extra.get("alternativeName") == pin  # a pin is never overridden
    if extra.get("contentDigest") == desired.digest and adoptable:
        return _same_content(remote, desired, node)
    if extra.get("alternativeName") == desired.alternative_name:
        return _update(remote, desired, node, "update")
    return _conflict(remote, desired, node, str(extra.get("alternativeName") or "?"))


def _plan(desired: Desired, path: str, action: str, **kw: object) -> ArtifactPlan:
    return ArtifactPlan(
        name=desired.spec.name,
        folder=desired.folder,
        path=path,
        action=action,
        desired=desired,
        **kw,  # type: ignore[arg-type]
    )


def _seen(node: Node | None) -> str:
    if node is None:
        return "absent"
    return f"{node.id}@{node.updated_at}:{node.extra_dict.get('contentDigest', '')}"


def _all_keys(desired: Desired) -> tuple[str, ...]:
    return tuple(h.file.key for h in desired.files)


def _create(remote: Remote, desired: Desired, user: str, path: str) -> ArtifactPlan:
    folder = desired.folder
    may_make = desired.spec.make_folder or folder == f"/{user}/default"
    if not may_make and remote.node_info(folder) is None:
        return _plan(
            desired,
            path,
            "error",
            message=(f"Folder does not exist: '{folder}' (create it, or set make_folder: true)"),
        )
    return _plan(desired, path, "create", upload=_all_keys(desired))


def _same_content(remote: Remote, desired: Desired, node: Node) -> ArtifactPlan:
    other = node.extra_dict.get("alternativeName")
    if other and other != desired.alternative_name:
        desired = _adopt(remote, desired, node, str(other))
    spec = desired.spec
    same_meta = list(node.labels) == list(spec.labels) and node.description == spec.description
    return _plan(desired, node.path, "none" if same_meta else "metadata", seen=_seen(node))


def _adopt(remote: Remote, desired: Desired, node: Node, alt: str) -> Desired:
    """The node already holds exactly our content under another identity: take it."""
    from .transfer import remote_metadata

    created = str(remote_metadata(remote, node).get("createdTimestamp") or node.created_at)
    return replace(
        desired,
        alternative_name=alt,
        created_timestamp=created,
        local_dir=desired.local_dir.with_name(alt),
        local=LocalChanges(add=_all_keys(desired)),
    )


def _update(remote: Remote, desired: Desired, node: Node, action: str) -> ArtifactPlan:
    wanted = {h.file.key: (h.file.size, h.md5) for h in desired.files}
    upload, delete = object_changes(wanted, remote.list_objects(node.path))
    return _plan(
        desired, node.path, action, upload=tuple(upload), delete=tuple(delete), seen=_seen(node)
    )


def _conflict(remote: Remote, desired: Desired, node: Node, other: str) -> ArtifactPlan:
    target = target_of(desired)
    refusal = conflict_refusal(target, node)
    if refusal and target.conflict_strategy == "error":
        refusal += (
            f" (held by {other}; choose conflict_strategy new, replace or skip,"
            " or pin its alternative_name)"
        )
    if refusal:
        return _plan(desired, node.path, "error", seen=_seen(node), message=refusal)
    if target.conflict_strategy == "skip":
        message = f"{node.path} holds another artifact ({other}); conflict_strategy: skip"
        return _plan(desired, node.path, "skip", seen=_seen(node), message=message)
    if target.conflict_strategy == "replace":
        return _plan(desired, node.path, "replace", upload=_all_keys(desired), seen=_seen(node))
    alt_path = f"{target.folder}/{target.alternative_name}"
    alt_node = remote.node_info(alt_path)
    if alt_node is None:
        return _plan(desired, alt_path, "new", upload=_all_keys(desired), seen=_seen(node))
    refusal = sibling_refusal(target, alt_node)
    if refusal:
        return _plan(desired, alt_path, "error", seen=_seen(alt_node), message=refusal)
    if alt_node.extra_dict.get("contentDigest") == desired.digest:
        return _same_content(remote, desired, alt_node)
    return _update(remote, desired, alt_node, "new")


def target_of(desired: Desired) -> Target:
    """Where and how ``desired`` goes: what apply hands to ``claim_node``."""
    spec = desired.spec
    return Target(
        desired.folder,
        spec.name,
        desired.alternative_name,
        spec.conflict_strategy,
        spec.make_folder,
    )


def plan_artifacts(
    remote: Remote, desired: Mapping[str, Desired], user: str
) -> tuple[ArtifactPlan, ...]:
    return tuple(decide(remote, d, user) for d in desired.values())
