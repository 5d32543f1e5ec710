"""Apply: the only writer. Carries a Plan out, exactly, in a crash-safe order.

Per artifact: check that the remote still looks as the plan saw it (else stop with
"changed since the plan"), then make the folders and the node the plan names (or
rename it), clear its digest, upload and delete the objects the plan lists, write
metadata.yaml, and set the digest last with a compare-and-set; then record the
identity in the lock file (atomically). An interruption at any point leaves a node
without a digest, which the next plan diffs and repairs. A new version (``versions:
keep``) is built and sealed the same way at its stage F/<alt>, and only then moved to
F/N, the version there moving aside first (see planversions.py). Apply decides nothing: a
value the plan showed is the value it writes.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from .artifact import metadata_dict
from .errors import (
    ChecksumMismatch,
    ConflictError,
    ManifestToolError,
    NameConflict,
    NodeNotFound,
    RevisionMismatch,
    StalePlan,
)
from .files import FileList
from .listing import Sealed, SealedListings
from .listing import ascending as _ascending
from .localdir import read_yaml, write_yaml_atomic
from .lockfile import LockEntry, write_lock
from .plan import UPLOADING, ArtifactPlan, Desired, Plan
from .planner import declared_columns, reference_pairs, seen_of
from .planversions import seen_version
from .publish import (
    WriteMark,
    fresh_mark,
    history_entry,
    make_folders,
    open_node,
    seal,
    upload_all,
    write_mark,
)
from .remotes.base import ARTIFACT, Node, Remote, Upload
from .transfer import put_metadata, remote_metadata
from .versions import (
    Stats,
    aliases,
    is_version,
    mark_version,
    moved_in_extra,
    number,
    set_aliases,
    version_extra,
)

OnUpload = Callable[[Upload], None]
LOCK_EVERY_S = 1.0  # at most this long between lock writes of finished records
# objects from which an artifact's sealed rows are kept: a smaller one is listed in
# one request, cheaper than a cache file written (and synced) per artifact
REMEMBER_FROM = 1000
History = Callable[[Desired], list[dict[str, Any]]]


@dataclass(frozen=True)
class Applied:
    name: str
    action: str
    path: str
    uploaded: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    record: dict[str, str] | None = None  # the history entry written, if any
    pruned: tuple[str, ...] = ()  # old versions deleted by retention
    version: int = 0  # versions: keep: the number of the version at ``path``
    aliases: dict[str, list[str]] = field(default_factory=dict)  # version path -> its aliases now


def local_history(d: Desired) -> list[dict[str, Any]]:
    """The upload history kept in the artifact's local metadata.yaml."""
    meta_file = d.local_dir / "metadata.yaml"
    try:
        old = read_yaml(meta_file) if meta_file.is_file() else None
    except Exception:  # a damaged local copy only loses history
        return []
    return list(old.get("remote") or []) if isinstance(old, dict) else []


@dataclass
class Applier:
    remote: Remote
    lock_file: Path | None
    lock: dict[str, LockEntry]
    workers: int = 4
    on_upload: OnUpload | None = None
    on_start: Callable[[ArtifactPlan, Uploads], None] | None = None
    on_bytes: Callable[[Upload, int], None] | None = None  # during each upload
    history: History = local_history
    local_copies: bool = True  # keep metadata.yaml/references.yaml in .em/artifacts/<alt>/
    sealed: SealedListings | None = None  # where the rows behind each seal are kept
    results: list[Applied] = field(default_factory=list)
    # state of one apply, not options
    made: set[str] = field(default_factory=set, init=False)  # ids of nodes created here
    pending: bool = field(default=False, init=False)  # a record not in the lock file yet
    written_at: float = field(default=0.0, init=False)  # monotonic time of the last write

    def apply(self, plan: Plan) -> list[Applied]:
        if plan.errors:
            first = plan.errors[0]
            raise ManifestToolError(f"artifact '{first.name}': {first.full_message}")
        try:
            for ap in plan.artifacts:
                self.results.append(self._one(ap))
        finally:
            if self.pending:  # what was done is recorded, even when a later step fails
                self._save_lock()
        return self.results

    def _one(self, ap: ArtifactPlan) -> Applied:
        if ap.action in ("orphan", "delete"):
            # a versioned artifact's unaliased versions go first: F/N, the newest, last
            pruned = self._retain(ap) if ap.retention else ()
            kept = Applied(ap.name, ap.action, ap.path)
            done = self._prune(ap) if ap.action == "delete" else kept
            return replace(done, pruned=pruned)
        d = ap.desired
        assert d is not None, "an artifact's plan carries its desired state"
        result = Applied(ap.name, ap.action, ap.path)
        if ap.stage:
            result = self._version(ap, d)
        elif ap.action in UPLOADING:
            result = self._publish(ap, d)
        elif ap.action == "metadata":
            result = self._metadata(ap, d)
        if ap.retention:
            moved = {path: list(wanted) for path, wanted in ap.alias_moves}
            result = replace(result, pruned=self._retain(ap), aliases=moved)
        result = replace(result, version=ap.version)
        self._record(ap, d, result.record)
        return result

    # -- checking the plan still holds ------------------------------------------------
    def _current(self, ap: ArtifactPlan, path: str) -> Node | None:
        """The node at ``path``, as long as it is what the plan saw; else stop."""
        node = self.remote.node_info(path)
        if seen_of(node) != ap.seen:
            raise StalePlan(
                f"artifact '{ap.name}': {path} changed since the plan; run 'manifest-tool plan'"
                " again"
            )
        return node

    # -- the node ---------------------------------------------------------------------
    def _node(self, ap: ArtifactPlan, d: Desired) -> tuple[Node, WriteMark | None]:
        """The node the plan writes (made, replaced, renamed or as it is), and where its
        objects stood when the plan's diff was made (see ``publish.seal``)."""
        current = self._current(ap, ap.rename_from or ap.path)
        self._claim_identity(d)  # once the plan is known to hold, before the remote sees it
        if ap.rename_from:
            assert current is not None
            renamed = self._update(ap, current.path, name=d.spec.name)
            return renamed, write_mark(self.remote, renamed, current.revision)
        if ap.action == "replace" and current is not None:
            self.remote.delete_node(current.path)
            current = None
        if current is not None:  # as the plan saw it: its diff was made at this revision
            return current, write_mark(self.remote, current)
        make_folders(self.remote, ap.make_folders)
        node = self._create(ap, ap.path, json.dumps({"alternativeName": d.alternative_name}))
        return node, fresh_mark(self.remote, node)

    def _create(self, ap: ArtifactPlan, path: str, extra: str) -> Node:
        """The Artifact node the plan creates at ``path``; someone else's there is stale."""
        parent, _, name = path.rpartition("/")
        try:
            self.remote.create_node(parent, name, ARTIFACT, extra=extra)
        except (NameConflict, NodeNotFound):
            raise StalePlan(
                f"artifact '{ap.name}': {path} changed since the plan; run 'manifest-tool"
                " plan' again"
            ) from None
        node = self._info(path)
        self.made.add(node.id)
        return node

    def _update(self, ap: ArtifactPlan, path: str, **fields: Any) -> Node:
        try:
            return self.remote.update_node(path, **fields)
        except NameConflict:
            raise StalePlan(
                f"artifact '{ap.name}': {ap.path} appeared since the plan; run 'manifest-tool"
                " plan' again"
            ) from None

    def _info(self, path: str) -> Node:
        node = self.remote.node_info(path)
        if node is None:
            raise NodeNotFound(path)
        return node

    # -- the steps --------------------------------------------------------------------
    def _claim_identity(self, d: Desired) -> None:
        """Lock the identity before the remote sees it, so that an apply interrupted
        mid-upload resumes its own node next time instead of meeting it as a stranger."""
        old = self.lock.get(d.spec.name)
        if old is None or old.alternativeName != d.alternative_name:
            self.lock[d.spec.name] = LockEntry(d.alternative_name, d.created_timestamp)
            self._save_lock()

    def _publish(self, ap: ArtifactPlan, d: Desired) -> Applied:
        return self._fill(ap, d, *self._node(ap, d))

    def _fill(
        self, ap: ArtifactPlan, d: Desired, node: Node, mark: WriteMark | None, shown: str = ""
    ) -> Applied:
        """Write the plan's objects into ``node`` and seal it (``mark``: where its
        objects stood for the plan's diff; ``shown``: the path the history records,
        when the node moves there afterwards)."""
        open_node(self.remote, node, d.alternative_name, uploading=bool(ap.upload))
        uploads = _uploads(d, ap.upload, self.on_bytes)
        if self.on_start:
            self.on_start(ap, uploads)
        try:
            upload_all(self.remote, node.path, uploads, self.workers, self.on_upload)
        except ChecksumMismatch as err:
            raise ManifestToolError(
                f"artifact '{ap.name}': a file changed while it was uploaded ({err}); "
                "run apply again once it is written"
            ) from None
        except FileNotFoundError as err:
            raise ManifestToolError(
                f"artifact '{ap.name}': {err.filename or 'a file'} was deleted while apply ran;"
                " run apply again"
            ) from None
        except OSError as err:
            raise ManifestToolError(
                f"artifact '{ap.name}': cannot read {err.filename or 'a file'}:"
                f" {err.strerror or err}"
            ) from None
        record = self._write_metadata(d, node, shown)
        if ap.delete:
            self.remote.delete_objects(node.path, list(ap.delete))
        spec = d.spec
        refs = d.reference_map()
        sealed = seal(self.remote, node.path, d.alternative_name, d.digest, spec.labels,
                      spec.description, refs, mark)  # fmt: skip
        self._remember(d, sealed, str(node.extra_dict.get("contentDigest") or ""))
        return Applied(
            ap.name, ap.action, node.path, uploads.count, uploads.size, len(ap.delete), record
        )

    def _remember(self, d: Desired, node: Node, replaced: str) -> None:
        """Keep the rows just sealed into ``node``, so that the next plan of a change
        diffs against them instead of listing the node (see listing.py)."""
        if self.sealed is None or node.revision is None or len(d.declared) < REMEMBER_FROM:
            return
        keys, sizes, md5s = declared_columns(d)
        refs = reference_pairs(d.references)
        rows = Sealed(d.digest, node.id, node.revision, keys, sizes, md5s, refs)
        self.sealed.put(rows, previous=replaced)

    # -- versions: build and seal beside F/N, then move in (see planversions.py) --------
    def _version(self, ap: ArtifactPlan, d: Desired) -> Applied:
        current, stage = self.remote.node_info(ap.path), self.remote.node_info(ap.stage)
        if seen_version(current, stage) != ap.seen:
            raise StalePlan(
                f"artifact '{ap.name}': {ap.path} changed since the plan; run 'manifest-tool"
                " plan' again"
            )
        if ap.action == "create":
            self._claim_identity(d)  # as for any first publication
        make_folders(self.remote, ap.make_folders)
        made = stage is None
        stage = stage or self._new_stage(ap, d)
        content = Stats(d.digest, sum(h.file.size for h in d.files), len(d.files))
        mark_version(self.remote, stage, d.spec.name, ap.version, content)
        done = stage.extra_dict.get("contentDigest") == d.digest and not (ap.upload or ap.delete)
        if done:  # sealed already: an interrupted apply got this far
            result = Applied(ap.name, ap.action, ap.path)
        else:
            stage = self._info(ap.stage)
            # a stage this apply made is empty; a resumed one is listed at the seal
            mark = fresh_mark(self.remote, stage) if made else None
            result = self._fill(ap, d, stage, mark, shown=ap.path)
        # the upload took a while: F/N must still hold the version the plan replaces
        if seen_of(self.remote.node_info(ap.path)) != seen_of(current):
            raise StalePlan(
                f"artifact '{ap.name}': {ap.path} changed while this version was built (it"
                f" stays sealed at {ap.stage}); run 'manifest-tool plan' again"
            )
        if ap.retire_to and current is not None:
            mark_version(self.remote, current, d.spec.name, number(current))
            self._update(ap, ap.path, name=ap.retire_to.rpartition("/")[2])
        moved = self._move_in(ap, d)
        record = result.record or history_entry("upload", self.remote, moved)
        return replace(result, path=ap.path, record=record)

    def _move_in(self, ap: ArtifactPlan, d: Desired) -> Node:
        """The sealed stage to F/N, a version from then on: its name and its ``extra``
        in one write, while its objects are what it was sealed with."""
        stage = self._info(ap.stage)
        fields: dict[str, Any] = {"name": d.spec.name, "extra": moved_in_extra(stage)}
        if stage.revision is None:
            return self._update(ap, ap.stage, **fields)
        try:
            return self.remote.set_if_unchanged(ap.stage, stage.revision, **fields)
        except NameConflict:
            raise StalePlan(
                f"artifact '{ap.name}': {ap.path} appeared since the plan; run 'manifest-tool"
                " plan' again"
            ) from None
        except RevisionMismatch:
            raise ConflictError(
                f"artifact '{ap.name}': {ap.stage} changed while this apply ran; run apply again"
            ) from None

    def _new_stage(self, ap: ArtifactPlan, d: Desired) -> Node:
        extra = version_extra({}, d.alternative_name, d.spec.name, ap.version,
                              d.created_timestamp)  # fmt: skip
        return self._create(ap, ap.stage, extra)

    def _retain(self, ap: ArtifactPlan) -> tuple[str, ...]:
        """Aliases onto the newest version first, then off the others; then retention,
        which never deletes a version that an alias names by now."""
        declared = ap.desired.spec.aliases if ap.desired else None
        for path, wanted in ap.alias_moves:
            newest = declared if path == ap.path else None
            set_aliases(self.remote, self._info(path), wanted, newest)
        pruned = []
        for path in ap.prune_versions:
            node = self.remote.node_info(path)
            if node is None or aliases(node) or not is_version(node, ap.folder, ap.name):
                continue  # gone, or aliased or taken over since the plan: left alone
            self.remote.delete_node(path)
            pruned.append(path)
        return tuple(pruned)

    def _metadata(self, ap: ArtifactPlan, d: Desired) -> Applied:
        """Labels or description changed: the content and its digest stay as they are."""
        node = self._current(ap, ap.path)
        assert node is not None
        record = self._write_metadata(d, node)
        spec = d.spec
        self.remote.update_node(node.path, labels=list(spec.labels), description=spec.description)
        return Applied(ap.name, ap.action, node.path, record=record)

    def _write_metadata(self, d: Desired, node: Node, shown: str = "") -> dict[str, str]:
        """metadata.yaml (with a new history entry) on the node, and locally; returns
        the history entry."""
        entry = history_entry("upload", self.remote, replace(node, path=shown or node.path))
        metadata = artifact_metadata(d, [*self._history(d, node), entry])
        put_metadata(self.remote, node.path, metadata, d.reference_map())
        if self.local_copies:
            write_local(d, metadata)
        return entry

    def _history(self, d: Desired, node: Node) -> list[dict[str, Any]]:
        """The history to append to: an adopted node's own, else the local copy's."""
        if d.adopt and node.id not in self.made:  # a node made here has no history yet
            held = remote_metadata(self.remote, node).get("remote")
            if isinstance(held, list) and held:
                return held
        return self.history(d)

    def _prune(self, ap: ArtifactPlan) -> Applied:
        if ap.seen != "absent":
            node = self._current(ap, ap.path)
            if node is not None:
                self.remote.delete_node(node.path)
        for key in (ap.path, ap.name):  # only the entry that records this node
            entry = self.lock.get(key)
            if entry is None or entry.alternativeName != ap.alternative_name:
                continue
            if key == ap.path or entry.remote.get("path", "") == ap.path:
                del self.lock[key]
        self._save_lock()
        return Applied(ap.name, "delete", ap.path)

    # -- the lock ---------------------------------------------------------------------
    def _record(self, ap: ArtifactPlan, d: Desired, record: dict[str, str] | None) -> None:
        name = d.spec.name
        old = self.lock.get(name)
        keep = old.remote if old and old.alternativeName == d.alternative_name else {}
        alt, created, digest, version = ap.lock_identity(old)
        remote = _lock_remote(record) if record else keep
        entry = LockEntry(alt, created, digest, remote, version)
        if d.moved_from:
            self.lock.pop(d.moved_from, None)
        if d.retired is not None:  # a folder change: the old node stays an orphan
            self.lock[d.retired.remote["path"]] = d.retired
        self.lock.pop(ap.path, None)  # this node is declared again: no longer an orphan
        self.lock[name] = entry
        self._save_lock(urgent=False)

    def _save_lock(self, urgent: bool = True) -> None:
        """Write the lock. A record of a finished artifact may wait up to a second
        (written at the latest when apply ends, even by an error): its identity is in
        the lock already, and a record lost to a kill is what the next plan repairs
        from the node. Writing the whole lock after each of 1,000 artifacts made their
        first apply grow with the square of their number."""
        if self.lock_file is None:
            return
        if not urgent and time.monotonic() - self.written_at < LOCK_EVERY_S:
            self.pending = True
            return
        write_lock(self.lock_file, self.lock)
        self.pending, self.written_at = False, time.monotonic()


def _lock_remote(entry: dict[str, str]) -> dict[str, str]:
    return {k: entry[k] for k in ("host", "id", "path", "timestamp")}


@dataclass(frozen=True)
class Uploads:
    """The objects an apply sends, each Upload made only when its batch is: one per
    object of a 300,000-file artifact, with its callback, would cost more than all
    the rest of an apply."""

    desired: Desired
    keys: tuple[str, ...]  # the plan's, sorted as the declared files are
    on_bytes: Callable[[Upload, int], None] | None = None

    def __iter__(self) -> Iterator[Upload]:
        on_bytes, md5s = self.on_bytes, self.desired.md5s()
        declared = self.desired.declared
        for at in self._positions():
            f = declared[at]
            up = Upload(f.key, md5s[at], f.size, source=f.source)
            if on_bytes is not None:
                up = Upload(f.key, md5s[at], f.size, f.source, on_bytes=partial(on_bytes, up))
            yield up

    def _positions(self) -> Iterator[int]:
        """Where the declared files the plan uploads sit among the declared files, each
        found by bisection in the sorted keys: one changed file in 300,000 costs a few
        steps, not a pass over all of them (a plan out of order, say edited by hand,
        gets a set)."""
        names = self._names
        if not self._in_order:
            wanted = frozenset(self.keys)
            yield from (i for i, key in enumerate(names) if key in wanted)
            return
        at, end = 0, len(names)
        for key in self.keys:
            at = bisect_left(names, key, at, end)
            if at < end and names[at] == key:
                yield at

    @cached_property
    def _names(self) -> Sequence[str]:
        declared = self.desired.declared
        return declared.keys if isinstance(declared, FileList) else self.desired.declared_keys()

    @cached_property
    def _in_order(self) -> bool:
        return _ascending(self.keys) and _ascending(self._names)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self.keys)

    @cached_property
    def count(self) -> int:
        return sum(1 for _ in self._positions())

    @cached_property
    def size(self) -> int:
        declared = self.desired.declared
        sizes = declared.sizes if isinstance(declared, FileList) else [f.size for f in declared]
        return sum(sizes[at] for at in self._positions())


def _uploads(
    d: Desired, keys: Iterable[str], on_bytes: Callable[[Upload, int], None] | None = None
) -> Uploads:
    return Uploads(d, tuple(keys), on_bytes)


def artifact_metadata(d: Desired, history: list[dict[str, Any]]) -> dict[str, Any]:
    spec = d.spec
    return metadata_dict(spec.name, spec.labels, spec.description, d.created_timestamp,
                         d.alternative_name, history)  # fmt: skip


def write_local(d: Desired, metadata: dict[str, Any]) -> None:
    """``.em/artifacts/<alt>/``: metadata.yaml and references.yaml, and never a link to
    a user's file (writing into this directory must not change a source)."""
    root = d.local_dir
    if root.is_symlink():  # it would lead our writes elsewhere: replace it by a folder
        root.unlink()
    root.mkdir(parents=True, exist_ok=True)
    _drop_links(root)
    write_yaml_atomic(root / "metadata.yaml", metadata)
    refs = d.reference_map()
    if refs:
        write_yaml_atomic(root / "references.yaml", refs)
    else:
        (root / "references.yaml").unlink(missing_ok=True)


def _drop_links(root: Path) -> None:
    """Older versions hard-linked sources here; a link is only a second name of the
    user's file, so removing it loses nothing (a file with one link is kept)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path) or st.st_nlink > 1:
                os.unlink(path)
