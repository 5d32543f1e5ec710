"""Putting an artifact on a remote: the protocol's node steps and object sync.

Shared by ``Artifact.upload`` and ``apply``. The order is what keeps a remote node
honest: its ``contentDigest`` is cleared before any object changes and set only
after every object, ``metadata.yaml`` included, is in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ConflictError, InvalidInput, NameConflict, RevisionMismatch
from .hashing import listed_rows_digest, rows_digest
from .model import CONFLICT_STRATEGIES
from .paths import RESERVED_ROOT_NAMES, touches_content
from .remotes.base import ARTIFACT, FOLDER, Node, Remote, Upload, content_writes, each_object

Progress = Callable[[Upload], None]


def check_strategy(strategy: str) -> None:
    if strategy not in CONFLICT_STRATEGIES:
        raise InvalidInput(
            f"unknown conflict strategy {strategy!r}: use one of {', '.join(CONFLICT_STRATEGIES)}"
        )


def make_folders(remote: Remote, folders: Sequence[str]) -> None:
    """Create ``folders`` (absolute paths, parents first), as the plan listed them."""
    for folder in folders:
        parent, _, name = folder.rpartition("/")
        with suppress(NameConflict):  # made by someone else meanwhile: fine
            remote.create_node(parent, name, FOLDER)


def check_conflict(strategy: str, folder: str, name: str, existing: Node) -> str | None:
    """Why a conflict with ``existing`` at F/N must stop, or None if the strategy goes on."""
    if strategy == "error":
        return f"Artifact already exists in Folder {folder}: '{name}'"
    if strategy != "skip" and existing.type != ARTIFACT:
        return (
            f"{existing.path} is a {existing.type}, not an Artifact: "
            f"choose another name or folder for artifact '{name}'"
        )
    return None


def sibling_refusal(name: str, alternative_name: str, sibling: Node) -> str | None:
    """Under 'new', F/<alt> may only be this artifact's own earlier upload."""
    ours = sibling.extra_dict.get("alternativeName") == alternative_name
    if sibling.type == ARTIFACT and ours:
        return None
    return (
        f"{sibling.path} exists and is not artifact '{name}' "
        f"({alternative_name}): remove it or pin another alternative_name"
    )


@dataclass(frozen=True)
class WriteMark:
    """Where a node stood before this apply wrote into it: its objects revision (read
    when the plan's view of its objects was confirmed) and this client's count of
    content writes to it at that moment (``remotes.base.ContentWrites``)."""

    revision: int
    writes: int

    def untouched_since(self, remote: Remote, node: Node) -> bool:
        """Whether only this client changed the node's objects since the mark: each of
        its writes moved the revision by one, and nothing else moved it."""
        now = content_writes(remote, node.path)
        return now is not None and node.revision == self.revision + now - self.writes


def write_mark(remote: Remote, node: Node, revision: int | None = None) -> WriteMark | None:
    """A mark for ``node`` (``revision``: the one the plan saw, if the node has been
    renamed since); None when the server keeps no objects revision."""
    revision = node.revision if revision is None else revision
    writes = content_writes(remote, node.path)
    if revision is None or writes is None:
        return None
    return WriteMark(revision, writes)


def fresh_mark(remote: Remote, node: Node) -> WriteMark | None:
    """A mark for a node this apply has just made. Anyone may write into it from its
    creation on, so its objects are known only once a listing made after reading its
    revision shows none: a write before the listing shows in it, one after moves the
    revision past the mark."""
    mark = write_mark(remote, node)
    if mark is None:
        return None
    if touches_content(o.path for o in each_object(remote, node.path)):
        return None  # someone's objects are in it already
    return mark


def open_node(
    remote: Remote, node: Node, alternative_name: str, uploading: bool = False
) -> None:
    """Mark ``node`` as being changed: from here until ``seal``, it claims no digest.

    A server with objects revisions drops the digest itself, in the same commit as the
    first object that changes (docs/protocol.md), so when objects are about to be
    uploaded there is nothing to clear by hand.
    """
    extra = node.extra_dict
    ours = extra.get("alternativeName") == alternative_name
    if ours and uploading and node.revision is not None:
        return
    if "contentDigest" in extra or not ours:
        extra.pop("contentDigest", None)
        extra["alternativeName"] = alternative_name
        remote.update_node(node.path, extra=json.dumps(extra))


def seal(
    remote: Remote,
    node_path: str,
    alternative_name: str,
    digest: str,
    labels: Sequence[str],
    description: str,
    references: Mapping[str, str],
    mark: WriteMark | None = None,
) -> Node:
    """Set the node's digest, only while its objects are exactly ``digest``.

    Another writer (a second machine's apply, a T9k client) may change objects at any
    moment; claiming our digest over its objects would be a lie the next plan
    believes. The node's objects revision is read before the listing, and the digest
    is set only if no object changed since (a compare-and-set on the server). A
    server without that extension gets a re-check after the write instead.

    ``mark``: the node before this apply's writes, when the plan's diff was made
    against its objects at that revision. If only this apply's writes moved the
    revision since, the objects are that diff carried out, exactly ``digest``, and
    no listing is needed to know it.
    """
    before = remote.node_info(node_path)
    if before is None:
        raise ConflictError(f"{node_path} was deleted while this apply ran; run apply again")
    if mark is None or not mark.untouched_since(remote, before):
        _check_objects(remote, node_path, digest, references)
    extra = {**before.extra_dict, "alternativeName": alternative_name, "contentDigest": digest}
    fields: dict[str, Any] = {
        "extra": json.dumps(extra), "labels": list(labels), "description": description,
    }  # fmt: skip
    if before.revision is not None:
        try:
            return remote.set_if_unchanged(node_path, before.revision, **fields)
        except RevisionMismatch:
            raise ConflictError(_changed(node_path)) from None
    sealed = remote.update_node(node_path, **fields)
    try:
        _check_objects(remote, node_path, digest, references)
    except ConflictError:
        extra.pop("contentDigest")
        remote.update_node(node_path, extra=json.dumps(extra))
        raise
    return sealed


def _changed(node_path: str) -> str:
    return (
        f"{node_path} changed while this apply ran (another apply of the same artifact?); "
        "run apply again to converge"
    )


def _check_objects(
    remote: Remote, node_path: str, digest: str, references: Mapping[str, str]
) -> None:
    found = listed_rows_digest(_listed(remote, node_path), references.items())
    if found is None:  # listed out of order: list again, and sort it all
        found = rows_digest(_listed(remote, node_path), references.items())
    if found != digest:
        raise ConflictError(_changed(node_path))


def _listed(remote: Remote, node_path: str) -> Iterator[tuple[str, int, str]]:
    """The node's objects as digest rows, a page at a time."""
    return (
        (o.path, o.size_bytes, o.checksum)
        for o in each_object(remote, node_path)
        if o.path not in RESERVED_ROOT_NAMES
    )


BATCH_BYTES = 8 * 1024 * 1024  # bytes of one batch: at most a few are read at once
BATCH_COUNT = 512  # objects of one batch, unless the remote says how many it takes


def upload_all(
    remote: Remote,
    node_path: str,
    uploads: Iterable[Upload],
    workers: int = 4,
    progress: Progress | None = None,
) -> None:
    """Send ``uploads`` with a bounded pool; the first failure stops the rest.

    A remote that can store a batch in one call gets small objects grouped, each group
    one task. Tasks are made as the pool takes them, at most two per worker ahead and
    at most ``2 * workers * BATCH_COUNT`` objects in all, so only those batches'
    Uploads exist at once, never one per object of the artifact, whatever the size of
    the remote's batches.
    """
    tasks = _batches(remote, uploads)
    if workers <= 1:
        for task in tasks:
            _send(remote, node_path, task, progress)
        return
    budget = 2 * workers * BATCH_COUNT
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: dict[Future[None], int] = {}
        try:
            for task in tasks:
                while running and (
                    len(running) >= 2 * workers or sum(running.values()) + len(task) > budget
                ):
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        del running[fut]
                        fut.result()
                running[pool.submit(_send, remote, node_path, task, progress)] = len(task)
            for fut in as_completed(running):
                fut.result()
        except BaseException:
            for fut in running:
                fut.cancel()
            raise


def _batches(remote: Remote, uploads: Iterable[Upload]) -> Iterator[list[Upload]]:
    if not hasattr(remote, "put_objects"):
        yield from ([u] for u in uploads)
        return
    count = getattr(remote, "batch_count", BATCH_COUNT)
    task: list[Upload] = []
    size = 0
    for up in uploads:
        if task and (size + up.size > BATCH_BYTES or len(task) >= count):
            yield task
            task, size = [], 0
        task.append(up)
        size += up.size
    if task:
        yield task


def _send(remote: Remote, node_path: str, task: list[Upload], progress: Progress | None) -> None:
    if len(task) == 1:
        remote.put_object(node_path, task[0])
    else:
        remote.put_objects(node_path, task)  # type: ignore[attr-defined]
    if progress:
        for up in task:
            progress(up)


def history_entry(action: str, remote: Remote, node: Node) -> dict[str, Any]:
    """A ``remote`` entry of metadata.yaml, its keys in T9k's order: the SDK writes
    ``id`` before ``path`` for an upload and after it for a download."""
    entry = {
        "action": action,
        "timestamp": datetime.now().astimezone().isoformat(timespec="microseconds"),
        "host": remote.url,
    }
    if action == "download":
        return {**entry, "path": node.path, "id": node.id}
    return {**entry, "id": node.id, "path": node.path}
