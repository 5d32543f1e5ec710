"""The planner: manifest + local files + lock + remote -> Plan. It writes no remote.

Two halves. ``desired_state`` hashes what the manifest declares (only files whose
(size, ctime, inode) it has not seen). ``decide`` is pure: given what was read
from the remote, as a mapping from (kind, path) to the answer, it returns the
artifact's plan, or the one read it still needs. ``plan_one`` makes those reads,
so the remote is read lazily (one ``nodes/info`` for an unchanged artifact, an
object listing only where content differs) and the rules live in one place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from .cache import HashCache, Md5s, Staged
from .files import FileList, as_file_list
from .hashing import CHUNK, md5_raw, sorted_rows_digest
from .identity import valid_alternative_name
from .listing import Listing, SealedListings, edited_in_place
from .listing import ascending as _ascending
from .lockfile import LockEntry
from .model import ArtifactSpec, Expansion, Reference
from .paths import RESERVED_ROOT_NAMES
from .plan import ArtifactPlan, Desired
from .progress import announce_hashing
from .publish import check_conflict, sibling_refusal
from .remotes.base import ARTIFACT, FOLDER, Node, Remote, absolute_folder, each_object

Identity = tuple[str, str]  # alternativeName, createdTimestamp
# (kind, path): kind is "node", "listing", "created", "children" (a folder's nodes) or
# "identity" (a new version's identity, minted on demand: path is the artifact's name)
Read = tuple[str, str]
Reads = Mapping[Read, Any]


class Need(NamedTuple):
    """The remote read ``decide`` needs before it can decide."""

    read: Read


class _Missing(Exception):
    def __init__(self, read: Read) -> None:
        self.read = read


def _get(reads: Reads, kind: str, path: str) -> Any:
    try:
        return reads[(kind, path)]
    except KeyError:
        raise _Missing((kind, path)) from None


# -- identity ---------------------------------------------------------------------------


def choose_identity(
    spec: ArtifactSpec,
    lock: LockEntry | None,
    chosen: Identity | None,
    mint: Callable[[str, str | None], Identity],
) -> Identity:
    """Pinned name > the lock's > one chosen earlier (a saved or earlier plan) > mint.

    ``mint`` makes a new identity and remembers it, so that the next plan, and the
    apply after it, keep the one this plan showed.
    """
    if spec.alternative_name:
        if lock is not None and lock.alternativeName == spec.alternative_name:
            return spec.alternative_name, lock.createdTimestamp
        if chosen and chosen[0] == spec.alternative_name:
            return chosen
        return mint(spec.name, spec.alternative_name)
    if lock is not None:
        return lock.alternativeName, lock.createdTimestamp
    return chosen or mint(spec.name, None)


# -- the local half ---------------------------------------------------------------------


def desired_state(
    spec: ArtifactSpec,
    expansion: Expansion,
    identity: Identity,
    user: str,
    staged: Staged | None,
    hashes: HashCache,
    parent: Path,
    **lineage: Any,
) -> Desired:
    """The artifact as its files declare it, hashed where the index cannot vouch for
    them; ``lineage``: Desired's fields about its history (moves, adoption, versions),
    set here so that the value is built once (1,000 artifacts, 1,000 values)."""
    alt, created = identity
    rows = as_file_list(expansion.files)
    refs = reference_pairs(expansion.references)
    in_sync = staged is not None and _unchanged(staged, rows, refs)
    if staged is not None and in_sync:
        md5s, digest = staged.md5s, staged.digest  # only the MD5s: the rest may go
    else:
        md5s = _hash_files(rows, staged, hashes)
        digest = sorted_rows_digest(zip(rows.keys, rows.sizes, md5s, strict=True), refs)
    return Desired(
        spec=spec,
        folder=absolute_folder(spec.folder, user),
        alternative_name=alt,
        created_timestamp=created,
        declared=rows,
        md5s=lambda: md5s,
        references=expansion.references,
        digest=digest,
        local_dir=parent / alt,
        in_sync=in_sync,
        **lineage,
    )


def reference_pairs(references: Sequence[Reference]) -> tuple[tuple[str, str], ...]:
    """References as the hash index keeps them."""
    return tuple((r.key, r.uri) for r in references)


def _unchanged(staged: Staged, rows: FileList, refs: tuple[tuple[str, str], ...]) -> bool:
    """The fast path: the index holds exactly these rows, none racily clean."""
    newest = max(rows.ctimes, default=0)
    return staged.references == refs and newest < staged.since_ns and staged.matches(rows)


def _hash_files(files: FileList, staged: Staged | None, hashes: HashCache) -> Md5s:
    """Each file's MD5: the index's where its row is unchanged and trusted, the hash
    cache's, or read. Held as 16 raw bytes a file, not a string per file."""
    hashes.since_ns()  # the clock, before any file is read
    if staged is None:
        raw, unknown = bytearray(16 * len(files)), list(range(len(files)))
    else:
        raw, unknown = staged.vouched(files)
    todo = _from_hash_cache(raw, files, unknown, hashes) if hashes.entries else unknown
    if todo:
        announce_hashing(len(todo), sum(files.sizes[i] for i in todo))
    big = [i for i in todo if files.sizes[i] >= BIG_FILE]
    if len(big) < 2:
        _hash_into(raw, files, iter(todo))
    else:
        small = [i for i in todo if files.sizes[i] < BIG_FILE]
        _hash_big_into(raw, files, big, lambda: _hash_into(raw, files, iter(small)))
    return Md5s(bytes(raw))


def _from_hash_cache(
    raw: bytearray, files: FileList, unknown: list[int], hashes: HashCache
) -> list[int]:
    """Fill in the MD5s the hash cache holds for files at ``unknown``; the rest."""
    todo: list[int] = []
    sizes, ctimes, inodes = files.sizes, files.ctimes, files.inodes
    for i in unknown:
        md5 = hashes.get(files.source(i), (sizes[i], ctimes[i], inodes[i]))
        if md5 is None:
            todo.append(i)
        else:
            raw[16 * i : 16 * i + 16] = bytes.fromhex(md5)
    return todo


BIG_FILE = 4 * 1024 * 1024  # from here on a file is hashed beside another one
HASH_THREADS = 2  # hashlib drops the GIL on big blocks: two cores, twice the speed


def _hash_into(raw: bytearray, files: FileList, todo: Iterator[int]) -> None:
    """Hash the files at ``todo`` into ``raw``, one after another with one buffer
    (faster than any pool for small files)."""
    buf = bytearray(CHUNK)
    for i in todo:
        raw[16 * i : 16 * i + 16] = md5_raw(files.source(i), buf)


def _hash_big_into(
    raw: bytearray, files: FileList, big: list[int], meanwhile: Callable[[], None]
) -> None:
    """Hash the big files on ``HASH_THREADS`` threads, each taking the next file
    when done with one; ``meanwhile`` (the small files) runs here. The first
    unreadable file's error is raised once all have stopped."""
    from concurrent.futures import ThreadPoolExecutor

    shared = iter(big)
    lock = threading.Lock()

    def take() -> Iterator[int]:
        while True:
            with lock:
                i = next(shared, None)
            if i is None:
                return
            yield i

    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        running = [pool.submit(_hash_into, raw, files, take()) for _ in range(HASH_THREADS)]
        try:
            meanwhile()
        finally:
            errors = [fut.exception() for fut in running]
    for err in errors:
        if err is not None:
            raise err


def snapshot(desired: Desired, since_ns: int) -> Staged:
    """The hash index entry that describes ``desired``'s files, read after the file
    system's clock said ``since_ns``."""
    return Staged.build(
        desired.alternative_name,
        desired.digest,
        desired.declared,
        desired.md5s(),
        reference_pairs(desired.references),
        since_ns,
    )


# -- the remote half: one decider -------------------------------------------------------


def seen_of(node: Node | None) -> str:
    """What a plan saw of a node: enough to tell, at apply, whether it changed."""
    if node is None:
        return "absent"
    mark = node.revision if node.revision is not None else node.updated_at
    return f"{node.id}@{mark}:{node.extra_dict.get('contentDigest', '')}"


def decide(desired: Desired, reads: Reads, user: str) -> ArtifactPlan | Need:
    """The plan for one artifact from what was read of the remote (DESIGN's rules)."""
    try:
        return _decide(desired, reads, user)
    except _Missing as missing:
        return Need(missing.read)


def _decide(desired: Desired, reads: Reads, user: str) -> ArtifactPlan:
    spec, folder = desired.spec, desired.folder
    path = f"{folder}/{spec.name}"
    node: Node | None = _get(reads, "node", path)
    if spec.versioned:
        from .planversions import decide_versioned

        return decide_versioned(desired, reads, user, node)
    if node is None:
        renamed = _rename(desired, reads)
        return renamed or _create(desired, reads, user, path)
    extra = node.extra_dict
    pin = spec.alternative_name
    other = extra.get("alternativeName")
    adoptable = (
        node.type == ARTIFACT
        and valid_alternative_name(other)  # it becomes our local directory's name
        and (not pin or other == pin)
    )
    ours = node.type == ARTIFACT and other == desired.alternative_name
    if ours:
        desired = _adopted(desired, reads, node)
    if extra.get("contentDigest") == desired.digest and adoptable:
        return _same_content(desired, reads, node)
    if ours:
        return _update(desired, reads, node, "update")
    blocked = _blocked_rename(desired, reads, node)
    if blocked:
        return blocked
    return _conflict(desired, reads, node, str(extra.get("alternativeName") or "?"))


def _plan(desired: Desired, path: str, action: str, **kw: Any) -> ArtifactPlan:
    return ArtifactPlan(
        name=desired.spec.name, folder=desired.folder, path=path, action=action,
        desired=desired, **kw,
    )  # fmt: skip


def _all_keys(desired: Desired) -> tuple[str, ...]:
    return desired.declared_keys()


def _previous_ours(desired: Desired, reads: Reads) -> Node | None:
    """``moved``: the node under the old name, if it is still this artifact."""
    if not desired.previous_path:
        return None
    prev: Node | None = _get(reads, "node", desired.previous_path)
    if prev is None or prev.type != ARTIFACT:
        return None
    return prev if prev.extra_dict.get("alternativeName") == desired.alternative_name else None


def _rename(desired: Desired, reads: Reads) -> ArtifactPlan | None:
    """``moved``: the node at the old name, still ours and in the same folder, is
    renamed in place, keeping its identity and objects."""
    old = desired.previous_path
    if not old or old.rpartition("/")[0] != desired.folder:
        return None
    prev = _previous_ours(desired, reads)
    if prev is None:
        return None
    plan = _update(desired, reads, prev, "rename")
    return replace(plan, path=f"{desired.folder}/{desired.spec.name}", rename_from=old)


def _blocked_rename(desired: Desired, reads: Reads, node: Node) -> ArtifactPlan | None:
    """``moved`` onto a name someone else holds: the old node would be lost track of."""
    if _previous_ours(desired, reads) is None:
        return None
    old = desired.previous_path
    return _plan(
        desired, node.path, "error", seen=seen_of(node), refusal="conflict",
        message=f"cannot rename {old} to {node.path}: {node.path} holds another node",
        hint="remove that node, or move to another name",
    )  # fmt: skip


def _create(desired: Desired, reads: Reads, user: str, path: str) -> ArtifactPlan:
    missing = _missing_folders(desired.folder, reads)
    if isinstance(missing, str):
        return _plan(
            desired, path, "error", message=f"{missing} is not a Folder", refusal="folder",
            hint=f"artifact '{desired.spec.name}' needs a folder there; choose another",
        )  # fmt: skip
    may_make = desired.spec.make_folder or desired.folder == f"/{user}/default"
    if missing and not may_make:
        return _plan(
            desired, path, "error", message=f"Folder does not exist: '{desired.folder}'",
            hint="create it, or set make_folder: true", refusal="folder",
        )  # fmt: skip
    return _plan(desired, path, "create", upload=_all_keys(desired), make_folders=missing)


def _missing_folders(folder: str, reads: Reads) -> tuple[str, ...] | str:
    """The folders of ``folder`` below /<user>/ that do not exist, top-down; or the
    path of a node in the way that is not a Folder."""
    missing: list[str] = []
    path = folder
    while path.count("/") > 1:
        node: Node | None = _get(reads, "node", path)
        if node is not None:
            if node.type != FOLDER:
                return path
            break
        missing.append(path)
        path = path.rpartition("/")[0]
    return tuple(reversed(missing))


def _adopted(desired: Desired, reads: Reads, node: Node) -> Desired:
    """A node that already holds our identity before the lock does (say the SDK
    uploaded it under the pinned alternative_name): its createdTimestamp stands."""
    if not desired.adopt:
        return desired  # the lock's timestamp is the node's: no read needed
    return replace(desired, created_timestamp=_created(reads, node))


def _created(reads: Reads, node: Node) -> str:
    """The createdTimestamp an existing node's metadata.yaml records."""
    return str(_get(reads, "created", node.path) or node.created_at)


def _same_content(desired: Desired, reads: Reads, node: Node) -> ArtifactPlan:
    other = node.extra_dict.get("alternativeName")
    if other and other != desired.alternative_name:
        # the node already holds exactly our content under another identity: take it
        desired = replace(
            desired,
            alternative_name=str(other),
            created_timestamp=_created(reads, node),
            local_dir=desired.local_dir.with_name(str(other)),
            adopt=True,
        )
    spec = desired.spec
    same_meta = list(node.labels) == list(spec.labels) and node.description == spec.description
    return _plan(
        desired, node.path, "none" if same_meta else "metadata", seen=seen_of(node),
        old_labels=node.labels, old_description=node.description,
    )  # fmt: skip


def _update(desired: Desired, reads: Reads, node: Node, action: str) -> ArtifactPlan:
    listing = Listing.of(_get(reads, "listing", node.path))
    upload, delete, modified = object_changes(desired, listing)
    if not desired.references and listing.holds("references.yaml"):
        delete.append("references.yaml")  # left from when it had references
    return _plan(
        desired, node.path, action, upload=tuple(upload), delete=tuple(delete),
        modified=tuple(modified), seen=seen_of(node),
        old_labels=node.labels, old_description=node.description,
    )  # fmt: skip


def _conflict(desired: Desired, reads: Reads, node: Node, other: str) -> ArtifactPlan:
    spec = desired.spec
    refusal = check_conflict(spec.conflict_strategy, desired.folder, spec.name, node)
    if refusal:
        hint = ""
        if spec.conflict_strategy == "error":
            hint = (
                f"held by {other}; choose conflict_strategy new, replace or skip,"
                " or pin its alternative_name"
            )
        return _plan(
            desired, node.path, "error", seen=seen_of(node), message=refusal, hint=hint,
            refusal="conflict",
        )  # fmt: skip
    if spec.conflict_strategy == "skip":
        message = f"{node.path} holds another artifact ({other}); conflict_strategy: skip"
        return _plan(desired, node.path, "skip", seen=seen_of(node), message=message)
    if spec.conflict_strategy == "replace":
        return _plan(desired, node.path, "replace", upload=_all_keys(desired), seen=seen_of(node))
    alt_path = f"{desired.folder}/{desired.alternative_name}"
    alt_node: Node | None = _get(reads, "node", alt_path)
    if alt_node is None:
        return _plan(desired, alt_path, "new", upload=_all_keys(desired))
    refusal = sibling_refusal(spec.name, desired.alternative_name, alt_node)
    if refusal:
        return _plan(
            desired, alt_path, "error", seen=seen_of(alt_node), message=refusal,
            refusal="conflict",
        )  # fmt: skip
    desired = _adopted(desired, reads, alt_node)  # sibling_refusal: it holds our identity
    if alt_node.extra_dict.get("contentDigest") == desired.digest:
        return _same_content(desired, reads, alt_node)
    return _update(desired, reads, alt_node, "new")


def object_changes(desired: Desired, present: Listing) -> tuple[list[str], list[str], list[str]]:
    """Keys to upload (missing or different), to delete (no longer declared), and the
    uploads that replace an object: one merge of two sorted key lists."""
    keys, sizes, md5s = declared_columns(desired)
    edited = edited_in_place(keys, sizes, md5s, present)
    if edited is not None:
        return edited, [], list(edited)
    paths, have_sizes, sums = present.paths, present.sizes, present.checksums
    upload: list[str] = []
    delete: list[str] = []
    modified: list[str] = []
    i = j = 0
    n, m = len(keys), len(paths)
    while i < n or j < m:
        if j >= m or (i < n and keys[i] < paths[j]):
            upload.append(keys[i])
            i += 1
        elif i >= n or paths[j] < keys[i]:
            if paths[j] not in RESERVED_ROOT_NAMES:
                delete.append(paths[j])
            j += 1
        else:
            if sizes[i] != have_sizes[j] or md5s[i] != sums[j]:
                upload.append(keys[i])
                modified.append(keys[i])
            i, j = i + 1, j + 1
    return upload, delete, modified


def declared_columns(desired: Desired) -> tuple[Sequence[str], Sequence[int], Sequence[str]]:
    """The declared keys, sizes and MD5s, sorted by key."""
    declared, md5s = desired.declared, desired.md5s()
    if isinstance(declared, FileList) and _ascending(declared.keys):
        return declared.keys, declared.sizes, md5s
    rows = sorted(zip(desired.declared_keys(), (f.size for f in declared), md5s, strict=True))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


# -- reading what decide needs ----------------------------------------------------------


Mint = Callable[[str], Identity]


def read(
    remote: Remote,
    what: Read,
    mint: Mint | None = None,
    reads: Reads | None = None,
    sealed: SealedListings | None = None,
) -> Any:
    """One read ``decide`` asked for (``reads``: those made already; ``sealed``: the
    rows this checkout sealed into nodes, used instead of a listing when the node read
    is still at the revision of that seal)."""
    kind, path = what
    if kind == "node":
        return remote.node_info(path)
    if kind == "listing":
        node = (reads or {}).get(("node", path))
        known = sealed.get(node) if sealed is not None and isinstance(node, Node) else None
        return known or Listing.of(each_object(remote, path))  # a page at a time
    if kind == "children":
        return tuple(remote.list_nodes(path))
    if kind == "identity":
        return mint(path) if mint else _fresh_identity(path)
    node = remote.node_info(path)  # "created": the createdTimestamp of an adopted node
    return None if node is None else _created_of(remote, node)


def _created_of(remote: Remote, node: Node) -> str:
    from .transfer import remote_metadata

    return str(remote_metadata(remote, node).get("createdTimestamp") or node.created_at)


def _fresh_identity(name: str) -> Identity:
    from .identity import new_identity

    created, alt = new_identity(name)
    return alt, created


def resolve(
    remote: Remote,
    decider: Callable[[Reads], ArtifactPlan | Need],
    known: Reads | None = None,
    mint: Mint | None = None,
    sealed: SealedListings | None = None,
) -> ArtifactPlan:
    """Run a decider, reading from the remote exactly what its decision turns on
    (``known``: reads made already, for many artifacts at once; ``mint``: makes and
    remembers a new version's identity; ``sealed``: see ``read``)."""
    reads: dict[Read, Any] = dict(known or {})
    while True:
        out = decider(reads)
        if isinstance(out, ArtifactPlan):
            return out
        reads[out.read] = read(remote, out.read, mint, reads, sealed)


def plan_one(
    remote: Remote,
    desired: Desired,
    user: str,
    known: Reads | None = None,
    mint: Mint | None = None,
    sealed: SealedListings | None = None,
) -> ArtifactPlan:
    return resolve(remote, lambda reads: decide(desired, reads, user), known, mint, sealed)


def plan_artifacts(
    remote: Remote,
    desired: Mapping[str, Desired],
    user: str,
    mint: Mint | None = None,
    sealed: SealedListings | None = None,
) -> tuple[ArtifactPlan, ...]:
    """Every artifact's plan; the node each one decides on first (F/N) is read for all
    of them in one batch, so a no-op plan of many artifacts costs one request."""
    paths = [f"{d.folder}/{d.spec.name}" for d in desired.values()]
    known = dict(zip((("node", p) for p in paths), remote.node_infos(paths), strict=True))
    return tuple(plan_one(remote, d, user, known, mint, sealed) for d in desired.values())


# -- orphans: in the lock, not in the manifest ------------------------------------------


class Orphan(NamedTuple):
    """A node the lock records that the manifest no longer declares."""

    name: str  # the artifact's name when it was declared
    path: str  # its node on the remote ("" when it never reached one)
    entry: LockEntry
    lock_key: str  # where the lock holds it
    why: str = "no longer in the manifest"


def decide_orphan(orphan: Orphan, reads: Reads, prune: bool) -> ArtifactPlan | Need:
    """Shown as 'orphan'; with ``prune``, 'delete' if the node there is still ours."""
    base = ArtifactPlan(
        name=orphan.name,
        folder=orphan.path.rpartition("/")[0],
        path=orphan.path,
        action="orphan",
        alternative_name=orphan.entry.alternativeName,
        message=f"{orphan.why}; 'apply --prune' deletes it",
    )
    if not prune:
        return base
    if not orphan.path:
        message = "never published; apply --prune forgets it"
        return replace(base, action="delete", message=message, lock_change=True)
    try:
        node: Node | None = _get(reads, "node", orphan.path)
    except _Missing as missing:
        return Need(missing.read)
    if node is None:
        message = "already gone from the remote; apply --prune forgets it"
        return replace(base, action="delete", message=message, lock_change=True)
    if node.extra_dict.get("alternativeName") != orphan.entry.alternativeName:
        message = f"{orphan.path} now holds another artifact: left alone"
        return replace(base, message=message, seen=seen_of(node))
    deleted = replace(base, action="delete", message="", seen=seen_of(node), lock_change=True)
    if not orphan.entry.version:
        return deleted
    try:
        return _prune_versions(deleted, node, reads)
    except _Missing as missing:
        return Need(missing.read)


def _prune_versions(plan: ArtifactPlan, node: Node, reads: Reads) -> ArtifactPlan:
    """A versioned artifact's versions go with it, except those an alias names: they
    stay (the newest stays at F/N, an orphan still), and so their numbers stay taken."""
    from .versions import aliases, label, version_nodes

    name = plan.path.rpartition("/")[2]
    children: tuple[Node, ...] = _get(reads, "children", plan.folder)
    versions = version_nodes(children, plan.folder, name)
    prune = tuple(n.path for n in versions if not aliases(n) and n.path != node.path)
    kept = [label(n, name) for n in versions if aliases(n)]
    note = f"keeps {', '.join(kept)}: an alias names it (see manifest-tool tag --delete)"
    if aliases(node):
        return replace(plan, action="orphan", lock_change=False, prune_versions=prune,
                       message=f"{plan.message}; {note}")  # fmt: skip
    return replace(plan, prune_versions=prune, message=note if kept else "")


def plan_orphan(remote: Remote, orphan: Orphan, prune: bool) -> ArtifactPlan:
    return resolve(remote, lambda reads: decide_orphan(orphan, reads, prune))
