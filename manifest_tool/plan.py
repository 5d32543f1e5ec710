"""The plan: a value saying exactly what apply will do, printable, comparable, savable.

Every decision lives here once the planner has made it: the node path, the identity
(alternative name and created timestamp), the metadata, the objects to upload and
delete, the folders to make, a rename or a prune, and what the remote looked like
(``seen``). Apply carries it out and decides nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ManifestToolError, StalePlan
from .files import FileList
from .identity import valid_alternative_name
from .lockfile import LockEntry
from .model import ArtifactSpec, LocalFile, Reference

PLAN_FORMAT = 2
# Actions that write objects into a node (and so clear and re-seal its digest).
UPLOADING = ("create", "update", "replace", "new", "rename", "version")
# Actions that leave the remote as it is.
QUIET = ("none", "skip", "orphan")


class HashedFile(NamedTuple):
    file: LocalFile
    md5: str


@dataclass(frozen=True)
class HashedFiles:
    """Declared files zipped with their MD5s, read as HashedFiles."""

    declared: Sequence[LocalFile]
    md5s: Sequence[str]

    def __len__(self) -> int:
        return len(self.declared)

    def __iter__(self) -> Iterator[HashedFile]:
        return map(HashedFile, self.declared, self.md5s)


@dataclass(frozen=True)
class Desired:
    """One artifact as the manifest and the local files declare it, hashed.

    The MD5s come from ``md5s`` on first use of ``files``: when the hash index
    proves nothing changed (``in_sync``), a plan needs only the digest, and building
    100,000 hashed-file values would cost more than the rest of the plan.
    """

    spec: ArtifactSpec
    folder: str  # absolute: /<user>/...
    alternative_name: str
    created_timestamp: str
    declared: Sequence[LocalFile]  # sorted by key
    md5s: Callable[[], Sequence[str]] = field(repr=False, compare=False)
    references: tuple[Reference, ...] = ()
    digest: str = ""
    local_dir: Path = Path()
    in_sync: bool = False
    # ``moved``: the node this artifact was published to under its old name, and the
    # lock key its identity comes from
    previous_path: str = ""
    moved_from: str = ""
    # a folder change: the old node's lock entry, kept as an orphan once this is applied
    retired: LockEntry | None = None
    # the identity is not yet in the lock: a node already holding it (an SDK upload of
    # a pinned alternative_name) is adopted, keeping its createdTimestamp and history
    adopt: bool = False
    # versions: keep: the identity the next version gets, when one was chosen already
    # (minted by an earlier plan, or a saved plan's); the planner asks for one otherwise
    next_identity: tuple[str, str] | None = None

    @property
    def files(self) -> HashedFiles:
        """The declared files with their MD5s, each built only when read: 300,000
        of them held at once would cost more than the rest of an apply."""
        return HashedFiles(self.declared, self.md5s())

    def declared_keys(self) -> tuple[str, ...]:
        declared = self.declared
        return tuple(declared.keys if isinstance(declared, FileList) else (f.key for f in declared))

    def reference_map(self) -> dict[str, str]:
        """obj_path -> uri, as ``references.yaml`` holds them."""
        return {r.key: r.uri for r in self.references}


@dataclass(frozen=True)
class ArtifactPlan:
    """What apply does for one artifact (or one orphaned lock entry)."""

    name: str
    folder: str
    path: str  # the node apply writes (F/N, or F/<alt> under 'new')
    action: str
    desired: Desired | None = field(default=None, repr=False, compare=False)
    upload: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()  # the uploads that replace an object the node has
    seen: str = "absent"  # the node planned against (id, objects revision, digest)
    message: str = ""
    hint: str = ""  # what to do about ``message``
    refusal: str = ""  # errors: "folder" (it does not exist) or "conflict"
    make_folders: tuple[str, ...] = ()  # created top-down before the node
    rename_from: str = ""  # 'rename': the node's path before
    old_labels: tuple[str, ...] = ()
    old_description: str = ""
    lock_change: bool = False  # apply rewrites this artifact's lock entry
    alternative_name: str = ""  # orphans and deletes: the identity the lock holds
    # versions: keep (see versions.py): the number of the version at ``path`` once
    # applied; the node a new version is built and sealed at before it moves to
    # ``path``; where the version it replaces at ``path`` moves to; the older versions
    # retention deletes; and the aliases each version node ends with (paths as after
    # the moves)
    version: int = 0
    stage: str = ""
    retire_to: str = ""
    prune_versions: tuple[str, ...] = ()
    alias_moves: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def changes(self) -> bool:
        """Whether apply would change the remote or the lock for this artifact."""
        return self.action not in QUIET or self.lock_change or self.retention

    @property
    def retention(self) -> bool:
        """Versions to delete or aliases to move (with or without new content)."""
        return bool(self.prune_versions or self.alias_moves)

    def lock_identity(self, old: LockEntry | None) -> tuple[str, str, str, int]:
        """(alternativeName, createdTimestamp, contentDigest, version) apply records for
        this artifact: the one rule for apply's write and plan's ``lockChange``. A
        skipped artifact published nothing, so the digest stays what the lock had."""
        d = self.desired
        assert d is not None, "orphans have no lock identity of their own"
        if self.action == "skip":
            return d.alternative_name, d.created_timestamp, *_digest_version(old)
        return d.alternative_name, d.created_timestamp, d.digest, self.version

    def version_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "stage": self.stage,
            "retireTo": self.retire_to,
            "pruneVersions": list(self.prune_versions),
            "aliasMoves": [{"path": p, "aliases": list(a)} for p, a in self.alias_moves],
        }

    @property
    def full_message(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def labels(self) -> tuple[str, ...]:
        return self.desired.spec.labels if self.desired else ()

    @property
    def description(self) -> str:
        return self.desired.spec.description if self.desired else ""

    def to_json(self) -> dict[str, Any]:
        d = self.desired
        out: dict[str, Any] = {
            "name": self.name,
            "folder": self.folder,
            "path": self.path,
            "action": self.action,
            "upload": list(self.upload),
            "delete": list(self.delete),
            "modified": list(self.modified),
            "alternativeName": d.alternative_name if d else self.alternative_name,
            "createdTimestamp": d.created_timestamp if d else "",
            "contentDigest": d.digest if d else "",
            "labels": list(self.labels),
            "description": self.description,
            "seen": self.seen,
            "message": self.full_message,
            "makeFolders": list(self.make_folders),
            "lockChange": self.lock_change,
        }
        if self.rename_from:
            out["renameFrom"] = self.rename_from
        if self.version or self.retention:
            out.update(self.version_json())
        if self.action == "metadata":
            out["old"] = {"labels": list(self.old_labels), "description": self.old_description}
        return out


def _digest_version(old: LockEntry | None) -> tuple[str, int]:
    return (old.contentDigest, old.version) if old else ("", 0)


@dataclass(frozen=True)
class Plan:
    manifest: Path
    remote_url: str
    artifacts: tuple[ArtifactPlan, ...]
    warnings: tuple[str, ...] = ()
    prune: bool = False
    targets: tuple[str, ...] = ()  # as given: none means every artifact, and the orphans
    keep: int | None = None  # --keep: retention for every versioned artifact

    @property
    def changes(self) -> bool:
        return any(a.changes for a in self.artifacts)

    @property
    def errors(self) -> list[ArtifactPlan]:
        return [a for a in self.artifacts if a.action == "error"]

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "artifacts": [a.to_json() for a in self.artifacts],
            "format": PLAN_FORMAT,
            "manifest": str(self.manifest),
            "remote": self.remote_url,
            "prune": self.prune,
            "keep": self.keep,
            "targets": list(self.targets),
        }


def save_plan(plan: Plan, path: Path) -> None:
    from .localdir import write_atomic

    if not path.parent.is_dir():
        raise ManifestToolError(f"cannot save the plan to {path}: no folder {path.parent}")
    try:
        write_atomic(path, json.dumps(plan.to_json(), indent=1).encode())
    except OSError as err:
        raise ManifestToolError(
            f"cannot save the plan to {path}: {err.strerror or err}; choose another --out"
        ) from None


def read_saved(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestToolError(f"{path}: cannot read the saved plan ({err})") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ManifestToolError(f"{path}: not a plan saved by this 'manifest-tool plan --out'")
    problem = _shape_problem(data)
    if problem:
        raise ManifestToolError(
            f"{path}: a damaged plan ({problem}); run 'manifest-tool plan' again"
        )
    return data


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What a saved plan lacks for apply to trust its fields, or None."""
    if not isinstance(data.get("remote"), str) or not isinstance(data.get("prune", False), bool):
        return "remote or prune"
    keep = data.get("keep")
    if keep is not None and (type(keep) is not int or keep < 1):
        return "keep"
    targets = data.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        return "targets"
    artifacts = data.get("artifacts")
    if not isinstance(artifacts, list):
        return "artifacts"
    for a in artifacts:
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            return "an artifact without a name"
        alt, created = a.get("alternativeName"), a.get("createdTimestamp")
        if not isinstance(created, str) or (created and not valid_alternative_name(alt)):
            return f"artifact {a['name']!r}: identity"
    return None


def saved_identities(saved: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The identities a saved plan chose, so a re-plan picks the same ones."""
    return {
        a["name"]: (a["alternativeName"], a["createdTimestamp"])
        for a in saved["artifacts"]
        if a.get("createdTimestamp")
    }


# Everything apply writes or relies on: if any differs, the saved plan is stale.
COMPARED = (
    "action",
    "path",
    "upload",
    "delete",
    "alternativeName",
    "createdTimestamp",
    "contentDigest",
    "labels",
    "description",
    "seen",
    "makeFolders",
    "renameFrom",
    "lockChange",
    "version",
    "stage",
    "retireTo",
    "pruneVersions",
    "aliasMoves",
)


def check_fresh(saved: dict[str, Any], fresh: Plan, plan_file: Path) -> None:
    """Refuse a saved plan that no longer describes what apply would do now."""
    if saved.get("remote") != fresh.remote_url:
        raise StalePlan(
            f"{plan_file} was made for remote {saved.get('remote')}, not {fresh.remote_url}"
        )
    old = {a["name"]: a for a in saved["artifacts"]}
    new = {a.name: a.to_json() for a in fresh.artifacts}
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            raise StalePlan(
                f"{plan_file} is stale: artifact '{name}' was added or removed since; "
                "run 'manifest-tool plan' again"
            )
        for key in COMPARED:
            if old[name].get(key) != new[name].get(key):
                raise StalePlan(
                    f"{plan_file} is stale: artifact '{name}' changed since it was planned "
                    f"({key} differs); run 'manifest-tool plan' again"
                )
