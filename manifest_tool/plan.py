"""The plan: a value saying what apply will do, printable, comparable and savable."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ManifestToolError, StalePlan
from .model import ArtifactSpec, LocalFile, Reference

UPLOADING = ("create", "update", "replace", "new")
PLAN_FORMAT = 1


class HashedFile(NamedTuple):
    file: LocalFile
    md5: str


@dataclass(frozen=True)
class LocalChanges:
    """Files to add, update and remove in the artifact's local directory."""

    add: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.update or self.remove)

    def to_json(self) -> dict[str, list[str]]:
        return {"add": list(self.add), "update": list(self.update), "remove": list(self.remove)}


@dataclass(frozen=True)
class Desired:
    """One artifact as the manifest and the local files declare it, hashed.

    The MD5s come from ``md5s`` on first use of ``files``: when the staged index
    proves nothing changed (``in_sync``), a plan needs only the digest, and building
    100,000 hashed-file values would cost more than the rest of the plan.
    """

    spec: ArtifactSpec
    folder: str  # absolute: /<user>/...
    alternative_name: str
    created_timestamp: str
    declared: tuple[LocalFile, ...]
    md5s: Callable[[], Sequence[str]] = field(repr=False, compare=False)
    references: tuple[Reference, ...] = ()
    digest: str = ""
    local: LocalChanges = LocalChanges()
    local_dir: Path = Path()
    in_sync: bool = False

    @cached_property
    def files(self) -> tuple[HashedFile, ...]:
        return tuple(map(HashedFile, self.declared, self.md5s()))

    def reference_map(self) -> dict[str, str]:
        """obj_path -> uri, as ``references.yaml`` holds them."""
        return {r.key: r.uri for r in self.references}


@dataclass(frozen=True)
class ArtifactPlan:
    name: str
    folder: str
    path: str  # the node apply writes (F/N, or F/<alt> under 'new')
    action: str
    desired: Desired = field(repr=False, compare=False)
    upload: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    seen: str = "absent"  # the remote state planned against, for staleness checks
    message: str = ""

    @property
    def local(self) -> LocalChanges:
        return self.desired.local

    @property
    def changes(self) -> bool:
        return self.action not in ("none", "skip") or bool(self.local)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.folder,
            "path": self.path,
            "action": self.action,
            "upload": list(self.upload),
            "delete": list(self.delete),
            "local": self.local.to_json(),
            "alternativeName": self.desired.alternative_name,
            "createdTimestamp": self.desired.created_timestamp,
            "contentDigest": self.desired.digest,
            "seen": self.seen,
            "message": self.message,
        }


@dataclass(frozen=True)
class Plan:
    manifest: Path
    remote_url: str
    artifacts: tuple[ArtifactPlan, ...]
    warnings: tuple[str, ...] = ()

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
        }


def save_plan(plan: Plan, path: Path) -> None:
    from .localdir import write_atomic

    write_atomic(path, json.dumps(plan.to_json(), indent=1).encode())


def read_saved(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestToolError(f"{path}: cannot read the saved plan ({err})") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise ManifestToolError(f"{path}: not a plan saved by 'manifest-tool plan --out'")
    return data


def saved_identities(saved: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The identities a saved plan chose, so a re-plan picks the same ones."""
    return {a["name"]: (a["alternativeName"], a["createdTimestamp"]) for a in saved["artifacts"]}


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
        for key in ("action", "path", "upload", "delete", "local", "contentDigest", "seen"):
            if old[name].get(key) != new[name][key]:
                raise StalePlan(
                    f"{plan_file} is stale: artifact '{name}' changed since it was planned "
                    f"({key} differs); run 'manifest-tool plan' again"
                )
