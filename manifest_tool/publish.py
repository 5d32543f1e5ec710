"""Putting an artifact on a remote: the protocol's node steps and object sync.

Shared by ``Artifact.upload`` and ``apply``. The order is what keeps a remote node
honest: its ``contentDigest`` is cleared before any object changes and set only
after every object, ``metadata.yaml`` included, is in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ConflictError, InvalidInput, NameConflict, NodeNotFound
from .hashing import content_digest
from .model import CONFLICT_STRATEGIES
from .remotes.base import ARTIFACT, FOLDER, Node, ObjectInfo, Remote, Upload

RESERVED = ("metadata.yaml", "references.yaml")
Progress = Callable[[Upload], None]


@dataclass(frozen=True)
class Target:
    """Where and how an artifact is to be uploaded."""

    folder: str  # absolute: /<user>/...
    name: str
    alternative_name: str
    conflict_strategy: str = "new"
    make_folder: bool = False


def check_strategy(strategy: str) -> None:
    if strategy not in CONFLICT_STRATEGIES:
        raise InvalidInput(
            f"unknown conflict strategy {strategy!r}: use one of {', '.join(CONFLICT_STRATEGIES)}"
        )


def make_folders(remote: Remote, folder: str) -> None:
    """Create the missing folders of ``folder`` top-down, below /<user>/."""
    parts = folder.strip("/").split("/")
    for depth in range(2, len(parts) + 1):
        parent = "/" + "/".join(parts[: depth - 1])
        if remote.node_info(f"{parent}/{parts[depth - 1]}") is None:
            with suppress(NameConflict):  # made by someone else meanwhile: fine
                remote.create_node(parent, parts[depth - 1], FOLDER)


def claim_node(remote: Remote, target: Target, user: str) -> Node | None:
    """PROTOCOL's upload steps 1-3: the node to upload into, or None to skip."""
    extra = json.dumps({"alternativeName": target.alternative_name})
    path = f"{target.folder}/{target.name}"
    try:
        _create(remote, target, user, target.name, extra)
    except NameConflict:
        existing = remote.node_info(path)
        if existing is None:  # deleted in between: try once more
            _create(remote, target, user, target.name, extra)
        elif existing.extra_dict.get("alternativeName") != target.alternative_name:
            return _resolve_conflict(remote, target, user, existing, extra)
    return _info(remote, path)


def _create(remote: Remote, target: Target, user: str, name: str, extra: str) -> None:
    try:
        remote.create_node(target.folder, name, ARTIFACT, extra=extra)
    except NodeNotFound:
        if not (target.make_folder or target.folder == f"/{user}/default"):
            raise InvalidInput(f"Folder does not exist: '{target.folder}'") from None
        make_folders(remote, target.folder)
        remote.create_node(target.folder, name, ARTIFACT, extra=extra)


def conflict_refusal(target: Target, existing: Node) -> str | None:
    """Why a conflict with ``existing`` at F/N must stop, or None if the strategy goes on.

    The one rule for both the planner (which reports it) and apply (which raises it),
    so a plan never promises what apply then refuses.
    """
    if target.conflict_strategy == "error":
        return f"Artifact already exists in Folder {target.folder}: '{target.name}'"
    if target.conflict_strategy != "skip" and existing.type != ARTIFACT:
        return (
            f"{existing.path} is a {existing.type}, not an Artifact: "
            f"choose another name or folder for artifact '{target.name}'"
        )
    return None


def sibling_refusal(target: Target, sibling: Node) -> str | None:
    """Under 'new', F/<alt> may only be this artifact's own earlier upload."""
    ours = sibling.extra_dict.get("alternativeName") == target.alternative_name
    if sibling.type == ARTIFACT and ours:
        return None
    return (
        f"{sibling.path} exists and is not artifact '{target.name}' "
        f"({target.alternative_name}): remove it or pin another alternative_name"
    )


def _resolve_conflict(
    remote: Remote, target: Target, user: str, existing: Node, extra: str
) -> Node | None:
    refusal = conflict_refusal(target, existing)
    if refusal:
        raise ConflictError(refusal)
    if target.conflict_strategy == "skip":
        return None
    if target.conflict_strategy == "replace":
        with suppress(NodeNotFound):  # gone already (a retried delete, another client)
            remote.delete_node(existing.path)
        _create(remote, target, user, target.name, extra)
        return _info(remote, existing.path)
    alt_path = f"{target.folder}/{target.alternative_name}"
    try:
        _create(remote, target, user, target.alternative_name, extra)
    except NameConflict:
        node = _info(remote, alt_path)  # ours (an earlier upload) is updated; nothing else
        refusal = sibling_refusal(target, node)
        if refusal:
            raise ConflictError(refusal) from None
        return node
    return _info(remote, alt_path)


def _info(remote: Remote, path: str) -> Node:
    node = remote.node_info(path)
    if node is None:
        raise NodeNotFound(path)
    return node


def open_node(remote: Remote, node: Node, alternative_name: str) -> None:
    """Mark ``node`` as being changed: from here until ``seal``, it claims no digest."""
    extra = node.extra_dict
    if "contentDigest" in extra or extra.get("alternativeName") != alternative_name:
        extra.pop("contentDigest", None)
        extra["alternativeName"] = alternative_name
        remote.update_node(node.path, extra=json.dumps(extra))


def seal(
    remote: Remote,
    node: Node,
    alternative_name: str,
    digest: str,
    labels: Sequence[str],
    description: str,
    references: Mapping[str, str],
) -> Node:
    """Set the node's digest, once its objects are checked to be exactly ``digest``.

    Another apply of the same artifact (a second machine, a CI job) may have written
    objects in between; claiming our digest over its objects would be a lie the next
    plan believes. One listing per changed artifact is the price.
    """
    listed: list[dict[str, object]] = [
        {"path": o.path, "size_bytes": o.size_bytes, "checksum": o.checksum}
        for o in remote.list_objects(node.path)
        if o.path not in RESERVED
    ]
    refs: list[dict[str, object]] = [{"path": k, "uri": v} for k, v in references.items()]
    if content_digest([*listed, *refs]) != digest:
        raise ConflictError(
            f"{node.path} changed while this upload ran (another apply of the same "
            "artifact?); run apply again to converge"
        )
    extra = {"alternativeName": alternative_name, "contentDigest": digest}
    return remote.update_node(
        node.path, extra=json.dumps(extra), labels=list(labels), description=description
    )


def object_changes(
    wanted: dict[str, tuple[int, str]], present: Iterable[ObjectInfo]
) -> tuple[list[str], list[str]]:
    """Keys to upload (missing or different) and to delete (no longer declared)."""
    have = {o.path: (o.size_bytes, o.checksum) for o in present}
    upload = sorted(k for k, v in wanted.items() if have.get(k) != v)
    delete = sorted(k for k in have if k not in wanted and k not in RESERVED)
    return upload, delete


BATCH_BYTES = 8 * 1024 * 1024
BATCH_COUNT = 512


def upload_all(
    remote: Remote,
    node_path: str,
    uploads: Sequence[Upload],
    workers: int = 4,
    progress: Progress | None = None,
) -> None:
    """Send ``uploads`` with a bounded pool; the first failure stops the rest.

    A remote that can store a batch in one call (the embedded store) gets small
    objects grouped, each group one task.
    """
    if not uploads:
        return
    tasks = _batches(remote, uploads)
    if workers <= 1 or len(tasks) == 1:
        for task in tasks:
            _send(remote, node_path, task, progress)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_send, remote, node_path, t, progress) for t in tasks]
        try:
            for fut in as_completed(futures):
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _batches(remote: Remote, uploads: Sequence[Upload]) -> list[list[Upload]]:
    if not hasattr(remote, "put_objects"):
        return [[u] for u in uploads]
    tasks: list[list[Upload]] = [[]]
    size = 0
    for up in uploads:
        if tasks[-1] and (size + up.size > BATCH_BYTES or len(tasks[-1]) >= BATCH_COUNT):
            tasks.append([])
            size = 0
        tasks[-1].append(up)
        size += up.size
    return tasks


def _send(remote: Remote, node_path: str, task: list[Upload], progress: Progress | None) -> None:
    if len(task) == 1:
        remote.put_object(node_path, task[0])
    else:
        remote.put_objects(node_path, task)  # type: ignore[attr-defined]
    if progress:
        for up in task:
            progress(up)


def history_entry(action: str, remote: Remote, node: Node) -> dict[str, Any]:
    return {
        "action": action,
        "timestamp": datetime.now().astimezone().isoformat(timespec="microseconds"),
        "host": remote.url,
        "id": node.id,
        "path": node.path,
    }
