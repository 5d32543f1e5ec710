"""A manifest opened for work: its remote, lock file and caches, and planning."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .cache import HashCache, load_staged, save_staged
from .config import resolve_remote_url
from .errors import InvalidInput
from .localdir import write_atomic
from .lockfile import LockEntry, lock_path, read_lock
from .manifest import load_manifest
from .model import ArtifactSpec, Expansion, Manifest
from .plan import Desired, Plan
from .planner import (
    Identity,
    choose_identity,
    desired_state,
    plan_artifacts,
    snapshot,
    stale_snapshot,
)
from .remotes import Remote, open_remote
from .sources import expand_all


@dataclass(frozen=True)
class Workspace:
    manifest: Manifest
    remote: Remote
    user: str
    lock_file: Path

    @property
    def em_dir(self) -> Path:
        return self.manifest.root / ".em"

    @property
    def cache_dir(self) -> Path:
        return self.em_dir / "cache"

    @property
    def artifacts_dir(self) -> Path:
        return self.em_dir / "artifacts"

    def lock(self) -> dict[str, LockEntry]:
        return read_lock(self.lock_file)

    def select(self, targets: tuple[str, ...]) -> tuple[ArtifactSpec, ...]:
        unknown = sorted(set(targets) - {a.name for a in self.manifest.artifacts})
        if unknown:
            names = ", ".join(a.name for a in self.manifest.artifacts)
            raise InvalidInput(f"no artifact named {unknown[0]!r} in the manifest (have: {names})")
        return self.manifest.select(targets)


def open_workspace(
    manifest_file: Path,
    overrides: Mapping[str, str] | None = None,
    remote_url: str | None = None,
    manifest: Manifest | None = None,
) -> Workspace:
    manifest = manifest or load_manifest(manifest_file, overrides or {})
    url = resolve_remote_url(remote_url, manifest.remote_url, manifest.root)
    remote = open_remote(url, manifest.root)
    user = _whoami(remote, manifest.root / ".em" / "cache" / "users.json")
    return Workspace(manifest, remote, user, lock_path(manifest.path))


def _whoami(remote: Remote, cache: Path) -> str:
    """The remote's user, remembered per (server, key) so a no-op plan does not ask."""
    identity = getattr(remote, "identity", None)
    if identity is None:  # the embedded store knows its user without asking
        return remote.whoami()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(identity), str):
        remote.assume_user(known[identity])  # type: ignore[attr-defined]
        return str(known[identity])
    user = remote.whoami()
    with suppress(OSError):  # only a cache
        write_atomic(cache, json.dumps({**known, identity: user}).encode())
    return user


def make_plan(
    ws: Workspace,
    targets: tuple[str, ...] = (),
    identities: Mapping[str, Identity] | None = None,
    expansions: Mapping[str, Expansion] | None = None,
) -> Plan:
    """Plan the selected artifacts; keeps what it hashed in the hash cache."""
    specs = ws.select(targets)
    expansions = expansions or expand_all(ws.manifest, specs)
    lock, hashes = ws.lock(), HashCache(ws.cache_dir / "hashes")
    desired: dict[str, Desired] = {}
    for spec in specs:
        identity = choose_identity(spec, lock.get(spec.name), (identities or {}).get(spec.name))
        staged = load_staged(ws.cache_dir, spec.name)
        desired[spec.name] = desired_state(
            spec, expansions[spec.name], identity, ws.user, staged, hashes, ws.artifacts_dir
        )
        if stale_snapshot(desired[spec.name], staged):
            save_staged(ws.cache_dir, spec.name, snapshot(desired[spec.name]))
    hashes.save()
    warnings = tuple(w for e in expansions.values() for w in e.warnings)
    return Plan(
        ws.manifest.path, ws.remote.url, plan_artifacts(ws.remote, desired, ws.user), warnings
    )
