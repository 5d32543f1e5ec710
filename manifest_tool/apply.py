"""Apply: the only writer. Carries a Plan out in a crash-safe order.

Per artifact: stage the local directory, then on the remote claim the node, clear
its digest, upload and delete objects, write metadata.yaml, and set the digest
last; then record the identity in the lock file (atomically). An interruption at
any point leaves a node without a digest, which the next plan diffs and repairs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import HashCache, save_staged
from .errors import ChecksumMismatch, ManifestToolError
from .localdir import read_yaml, write_yaml_atomic
from .lockfile import LockEntry, write_lock
from .plan import UPLOADING, ArtifactPlan, Desired, Plan
from .planner import snapshot, target_of
from .publish import (
    claim_node,
    history_entry,
    object_changes,
    open_node,
    seal,
    upload_all,
)
from .remotes.base import Node, ObjectInfo, Remote, Upload
from .transfer import put_metadata

OnUpload = Callable[[Upload], None]


@dataclass(frozen=True)
class Applied:
    name: str
    action: str
    path: str
    uploaded: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    staged: int = 0


@dataclass
class Applier:
    remote: Remote
    cache_dir: Path
    lock_file: Path
    lock: dict[str, LockEntry]
    workers: int = 4
    on_upload: OnUpload | None = None
    on_start: Callable[[ArtifactPlan, list[Upload]], None] | None = None
    results: list[Applied] = field(default_factory=list)

    def apply(self, plan: Plan) -> list[Applied]:
        if plan.errors:
            first = plan.errors[0]
            raise ManifestToolError(f"artifact '{first.name}': {first.message}")
        _keep_out_of_git(self.cache_dir.parent)
        for ap in plan.artifacts:
            self.results.append(self._one(ap))
        return self.results

    def _one(self, ap: ArtifactPlan) -> Applied:
        d = ap.desired
        # not in_sync: the files may match but references.yaml may not
        restage = d.local or not d.in_sync or not d.local_dir.is_dir()
        staged = stage_local(d, self.cache_dir) if restage else 0
        result = Applied(ap.name, ap.action, ap.path, staged=staged)
        remote_record: dict[str, str] | None = None
        if ap.action in UPLOADING:
            self._claim_identity(d)
            result, remote_record = self._publish(ap, result)
        elif ap.action == "metadata":
            remote_record = self._metadata(ap)
        self._record(d, remote_record, ap)
        return result

    def _claim_identity(self, d: Desired) -> None:
        """Lock the identity before the remote sees it, so that an apply interrupted
        mid-upload resumes its own node next time instead of meeting it as a stranger."""
        old = self.lock.get(d.spec.name)
        if old is None or old.alternativeName != d.alternative_name:
            self.lock[d.spec.name] = LockEntry(d.alternative_name, d.created_timestamp)
            write_lock(self.lock_file, self.lock)

    def _publish(self, ap: ArtifactPlan, result: Applied) -> tuple[Applied, dict[str, str] | None]:
        d = ap.desired
        node = claim_node(self.remote, target_of(d), self.remote.whoami())
        if node is None:  # became a foreign node since planning, and the strategy is skip
            return Applied(ap.name, "skip", ap.path, staged=result.staged), None
        open_node(self.remote, node, d.alternative_name)
        present = self.remote.list_objects(node.path)
        wanted = {h.file.key: (h.file.size, h.md5) for h in d.files}
        upload, delete = object_changes(wanted, present)
        uploads = _uploads(d, set(upload))
        if self.on_start:
            self.on_start(ap, uploads)
        try:
            upload_all(self.remote, node.path, uploads, self.workers, self.on_upload)
        except ChecksumMismatch as err:
            raise ManifestToolError(
                f"artifact '{ap.name}': a file changed while it was uploaded ({err}); "
                "run apply again once it is written"
            ) from None
        record = self._finish(d, node, present, delete)
        sent = sum(u.size for u in uploads)
        return Applied(
            ap.name, ap.action, node.path, len(uploads), sent, len(delete), result.staged
        ), record

    def _finish(
        self, d: Desired, node: Node, present: list[ObjectInfo], delete: list[str]
    ) -> dict[str, str]:
        entry = self._write_metadata(d, node, lambda: present)
        if delete:
            self.remote.delete_objects(node.path, delete)
        spec = d.spec
        seal(
            self.remote,
            node,
            d.alternative_name,
            d.digest,
            spec.labels,
            spec.description,
            d.reference_map(),
        )
        return entry

    def _metadata(self, ap: ArtifactPlan) -> dict[str, str] | None:
        """Labels or description changed: the content and its digest stay as they are."""
        d, spec = ap.desired, ap.desired.spec
        node = self.remote.node_info(ap.path)
        if node is None:
            raise ManifestToolError(f"artifact '{ap.name}': {ap.path} vanished; run apply again")
        entry = self._write_metadata(d, node, lambda: self.remote.list_objects(node.path))
        self.remote.update_node(node.path, labels=list(spec.labels), description=spec.description)
        return entry

    def _write_metadata(
        self, d: Desired, node: Node, present: Callable[[], Iterable[ObjectInfo]]
    ) -> dict[str, str]:
        """metadata.yaml (with a new history entry) locally and on the node, and
        references.yaml on the node; returns the history entry."""
        entry = history_entry("upload", self.remote, node)
        metadata = _metadata(d, entry)
        write_yaml_atomic(d.local_dir / "metadata.yaml", metadata)
        put_metadata(self.remote, node.path, metadata, d.reference_map(), present)
        return entry

    def _record(self, d: Desired, remote: dict[str, str] | None, ap: ArtifactPlan) -> None:
        old = self.lock.get(d.spec.name)
        keep = old.remote if old and old.alternativeName == d.alternative_name else {}
        entry = LockEntry(
            alternativeName=d.alternative_name,
            createdTimestamp=d.created_timestamp,
            contentDigest=d.digest if ap.action != "skip" else (old.contentDigest if old else ""),
            remote=_lock_remote(remote) if remote else keep,
        )
        if old != entry:
            self.lock[d.spec.name] = entry
            write_lock(self.lock_file, self.lock)


def _keep_out_of_git(em_dir: Path) -> None:
    """``.em/`` holds local state and maybe the embedded store: never commit it."""
    marker = em_dir / ".gitignore"
    if not marker.exists():
        em_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("# Local state of manifest-tool; commit the lock file instead.\n*\n")


def _lock_remote(entry: dict[str, str]) -> dict[str, str]:
    return {k: entry[k] for k in ("host", "id", "path", "timestamp")}


def _uploads(d: Desired, keys: set[str]) -> list[Upload]:
    return [
        Upload(h.file.key, h.md5, h.file.size, source=h.file.source)
        for h in d.files
        if h.file.key in keys
    ]


def _metadata(d: Desired, entry: dict[str, str] | None) -> dict[str, Any]:
    history: list[Any] = []
    meta_file = d.local_dir / "metadata.yaml"
    if meta_file.is_file():
        try:
            old = read_yaml(meta_file)
            history = list(old.get("remote") or []) if isinstance(old, dict) else []
        except Exception:  # a damaged local copy only loses history
            history = []
    return {
        "kind": "Artifact",
        "name": d.spec.name,
        "labels": list(d.spec.labels),
        "description": d.spec.description,
        "createdTimestamp": d.created_timestamp,
        "alternativeName": d.alternative_name,
        "remote": [*history, entry] if entry else history,
    }


def stage_local(d: Desired, cache_dir: Path) -> int:
    """Make the local directory mirror the declared files (hard links where possible)."""
    root = d.local_dir
    root.mkdir(parents=True, exist_ok=True)
    by_key = {h.file.key: h.file for h in d.files}
    todo = d.local.add + d.local.update
    for key in d.local.remove:  # first: a removed file 'x' may be the new folder 'x/'
        _remove(root, key)
    place_all(str(root), [(by_key[key].source, key) for key in todo])
    if not (root / "metadata.yaml").exists():
        write_yaml_atomic(root / "metadata.yaml", _metadata(d, None))
    refs = d.reference_map()
    if refs:
        write_yaml_atomic(root / "references.yaml", refs)
    else:
        (root / "references.yaml").unlink(missing_ok=True)
    save_staged(cache_dir, d.spec.name, snapshot(d))
    hashes = HashCache(cache_dir / "hashes")
    hashes.forget(h.file.source for h in d.files)
    hashes.save()
    return len(todo) + len(d.local.remove)


def place_all(root: str, pairs: list[tuple[str, str]]) -> None:
    """Link (or copy) each source to root/key; plain string paths, as this runs per file."""
    made: set[str] = set()
    for source, key in pairs:
        dest = f"{root}/{key}"
        parent = dest.rpartition("/")[0]
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        _place(source, dest)


def _place(source: str, dest: str) -> None:
    try:
        os.link(source, dest, follow_symlinks=True)
        return
    except FileExistsError:
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        else:
            os.unlink(dest)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(source, dest)
        return
    try:
        os.link(source, dest, follow_symlinks=True)
    except OSError:
        shutil.copy2(source, dest)


def _remove(root: Path, key: str) -> None:
    path = root / key
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != root:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
