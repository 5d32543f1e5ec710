"""Uploading an Artifact to a remote and loading one back, checksums verified."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .download import fetch_all
from .errors import ChecksumMismatch, ConflictError, InvalidInput, NotAnArtifact, NotFound
from .hashing import content_digest, md5_bytes, md5_file
from .localdir import dump_yaml
from .model import ArtifactSpec, LocalFile, Reference
from .paths import RESERVED_ROOT_NAMES
from .plan import ArtifactPlan, Desired
from .publish import history_entry
from .remotes.base import ARTIFACT, Node, ObjectInfo, Remote, Upload, absolute_folder, each_object

if TYPE_CHECKING:
    from .artifact import Artifact

WORKERS = 4
log = logging.getLogger(__name__)


def upload_artifact(
    art: Artifact, remote: Remote, folder: str, make_folder: bool, strategy: str
) -> Node | None:
    """Upload ``art`` through the one publish pipeline (plan, then apply exactly);
    returns the node written, or None when 'skip' left it alone."""
    from .apply import Applier
    from .plan import Plan
    from .planner import plan_one

    user = remote.whoami()
    desired = _desired(art, folder, make_folder, strategy, user)
    log.info("Uploading Artifact %s to Folder %s", art.name, desired.folder)
    ap = plan_one(remote, desired, user)
    _log_decision(art, desired.folder, ap)
    if ap.action == "error":
        raise (InvalidInput if ap.refusal == "folder" else ConflictError)(ap.message)
    if ap.action == "skip":
        return None
    if ap.action == "none":  # the SDK records every upload in the history
        ap = replace(ap, action="metadata")
    applier = Applier(
        remote, None, {}, WORKERS, history=lambda _: list(art.remote), local_copies=False
    )
    [result] = applier.apply(Plan(Path(art.local), remote.url, (ap,)))
    if result.record:
        art.remote.append(result.record)
    art.save()
    log.info("Artifact %s uploaded to %s", art.name, result.path)
    return remote.node_info(result.path)


def _log_decision(art: Artifact, folder: str, ap: ArtifactPlan) -> None:
    """What T9k's SDK logs when the name is taken or the folder is missing."""
    taken = (art.name, folder)
    if ap.action == "error" and ap.refusal == "folder":
        log.error("Folder %s does not exist", folder)
    elif ap.action == "error":
        log.error("Artifact %s already exists in Folder %s, abort", *taken)
    elif ap.action == "skip":
        log.info("Artifact %s already exists in Folder %s, skip this upload", *taken)
    elif ap.action == "replace":
        log.info("Artifact %s already exists in Folder %s, upload to replace it", *taken)
    elif ap.path != f"{folder}/{art.name}":  # 'new' went to the alternative name
        log.info(
            "Artifact %s already exists in Folder %s, upload with alternative name %s",
            *taken, art.alternative_name,
        )  # fmt: skip


def _desired(art: Artifact, folder: str, make_folder: bool, strategy: str, user: str) -> Desired:
    """``art`` as the planner sees an artifact: its identity pinned, files hashed."""
    files = sorted((k, o) for k, o in art.objects.items() if "uri" not in o)
    declared = tuple(
        LocalFile(k, str(Path(art.local, k)), int(o["size_bytes"]), 0, 0) for k, o in files
    )
    md5s = tuple(str(o["checksum"]) for _, o in files)
    refs = tuple(Reference(k, uri) for k, uri in _references(art.objects).items())
    spec = ArtifactSpec(
        name=art.name,
        folder=folder,
        make_folder=make_folder,
        conflict_strategy=strategy,  # type: ignore[arg-type]
        description=art.description,
        labels=tuple(art.labels),
        alternative_name=art.alternative_name,
    )
    return Desired(
        spec=spec,
        folder=absolute_folder(folder, user),
        alternative_name=art.alternative_name,
        created_timestamp=art.created_timestamp,
        declared=declared,
        md5s=lambda: md5s,
        references=refs,
        digest=content_digest(art.objects.values()),
        local_dir=Path(art.local),
    )


def put_metadata(
    remote: Remote, node_path: str, metadata: dict[str, Any], references: dict[str, str]
) -> None:
    """Write ``metadata.yaml`` and, when there are references, ``references.yaml``."""
    data = dump_yaml(metadata)
    remote.put_object(node_path, Upload("metadata.yaml", md5_bytes(data), len(data), data=data))
    if references:
        data = dump_yaml(references)
        upload = Upload("references.yaml", md5_bytes(data), len(data), data=data)
        remote.put_object(node_path, upload)


def _references(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: str(o["uri"]) for k, o in objects.items() if "uri" in o}  # as added: T9k's order


def node_for(remote: Remote, path: str) -> Node:
    """The Artifact node at ``path`` (relative -> below /<user>/), or a clear error.
    ``PATH@REF`` names one version of it (see versions.py)."""
    from .versions import resolve, split_ref

    ref = split_ref(path)
    full = absolute_folder(ref.path, remote.whoami())
    if ref.ref:
        full = resolve(remote, replace(ref, path=full))
    node = remote.node_info(full)
    if node is None:
        raise NotFound(
            f"no artifact at {full} on {remote.url} (list them with 'manifest-tool ls')"
        )
    if node.type != ARTIFACT:
        raise NotAnArtifact(f"Remote path refers to type '{node.type}' rather than 'Artifact'")
    return node


def download_artifact(remote: Remote, path: str, parent: Path) -> Artifact:
    """Fetch an Artifact into ``parent/<alternativeName>``, verifying every object."""
    from .artifact import Artifact

    node = node_for(remote, path)
    present = {o.path: o for o in remote.list_objects(node.path)}
    metadata = _read_yaml_object(remote, node, present, "metadata.yaml") or _metadata_of(node)
    refs = _read_yaml_object(remote, node, present, "references.yaml") or {}
    art = Artifact(metadata)
    art.local = str((parent / art.alternative_name).absolute())
    files = [o for k, o in sorted(present.items()) if k not in RESERVED_ROOT_NAMES]
    log.info("Downloading all objects of Artifact %s to local directory %s", node.path, art.local)
    fetch_all(remote, node.path, files, Path(art.local), force=True)  # as the SDK does
    art.objects = {
        o.path: {"path": o.path, "size_bytes": o.size_bytes, "checksum": o.checksum} for o in files
    }
    art.objects.update({k: {"path": k, "uri": str(u)} for k, u in refs.items()})
    art.remote.append(history_entry("download", remote, node))
    art.save()
    return art


def pull_into(remote: Remote, path: str, dest: Path, force: bool = False) -> PullResult:
    """Download the artifact at ``path`` into ``dest`` (files, metadata, references)."""
    node = node_for(remote, path)
    objects = remote.list_objects(node.path)
    fetched = fetch_all(remote, node.path, objects, dest, force)
    return PullResult(node.path, len(objects), sum(o.size_bytes for o in objects), fetched)


@dataclass(frozen=True)
class PullResult:
    path: str
    objects: int
    bytes: int
    fetched: int


def fetch_verified(remote: Remote, node_path: str, obj: ObjectInfo, dest_dir: Path) -> None:
    """Download one object into ``dest_dir``, verified (overwriting what is there)."""
    fetch_all(remote, node_path, [obj], dest_dir, force=True)


def _read_yaml_object(remote: Remote, node: Node, present: dict[str, ObjectInfo], key: str) -> Any:
    if key not in present:
        return None
    tmp = Path(os.environ.get("TMPDIR", "/tmp"), f"mt-{os.getpid()}-{node.id}-{key}")
    try:
        remote.get_object(node.path, key, tmp)
        if md5_file(tmp) != present[key].checksum:
            raise ChecksumMismatch(f"{key} of {node.path} is corrupt (md5 mismatch)")
        return yaml.safe_load(tmp.read_text(encoding="utf-8"))
    finally:
        tmp.unlink(missing_ok=True)


def remote_metadata(remote: Remote, node: Node) -> dict[str, Any]:
    """The node's ``metadata.yaml``, or what the node itself says when it has none."""
    # only metadata.yaml's entry is kept: an artifact may hold 300,000 objects
    present = {o.path: o for o in each_object(remote, node.path) if o.path == "metadata.yaml"}
    data = _read_yaml_object(remote, node, present, "metadata.yaml")
    return data if isinstance(data, dict) else _metadata_of(node)


def _metadata_of(node: Node) -> dict[str, Any]:
    """Metadata for a node some other client made without ``metadata.yaml``."""
    return {
        "name": node.name,
        "labels": list(node.labels),
        "description": node.description,
        "createdTimestamp": node.created_at,
        "alternativeName": node.extra_dict.get("alternativeName") or node.name,
    }
