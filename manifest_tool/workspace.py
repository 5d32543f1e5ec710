"""A manifest opened for work: its remote, lock file and caches, and planning."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

from .cache import HashCache, StagedIndex, index_path, read_cache_text
from .config import resolve_remote_url
from .files import as_file_list
from .identity import new_identity, valid_alternative_name
from .listing import SealedListings
from .localdir import write_atomic
from .lockfile import LockEntry, lock_path, read_lock
from .manifest import load_manifest
from .model import ArtifactSpec, Expansion, Manifest
from .plan import ArtifactPlan, Desired, Plan
from .planner import (
    Identity,
    Orphan,
    choose_identity,
    desired_state,
    plan_artifacts,
    plan_orphan,
    snapshot,
)
from .remotes import Remote, absolute_folder, open_remote
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

    @property
    def sealed(self) -> SealedListings:
        """The rows behind the digests this checkout sealed (see listing.py)."""
        return SealedListings(self.cache_dir / "sealed")

    def lock(self) -> dict[str, LockEntry]:
        return read_lock(self.lock_file)



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


USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _whoami(remote: Remote, cache: Path) -> str:
    """The remote's user, remembered per (server, key) so a no-op plan does not ask."""
    identity = getattr(remote, "identity", None)
    if identity is None:  # the embedded store knows its user without asking
        return remote.whoami()
    try:
        known = json.loads(read_cache_text(cache))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    cached = known.get(identity)
    if isinstance(cached, str) and USER_RE.fullmatch(cached):  # a damaged cache is ignored
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
    prune: bool = False,
    keep: int | None = None,
) -> Plan:
    """Plan the selected artifacts (and, with no targets, the orphans in the lock).

    Writes only caches: the hash index, and identities minted for artifacts the lock
    does not know yet (or for their next version), so that the apply after this plan
    uses the ones it showed. ``keep``: retention for every versioned artifact.
    """
    specs = ws.manifest.select(targets)
    if keep is not None:
        specs = tuple(replace(s, keep_versions=keep) if s.versioned else s for s in specs)
    expansions = expansions or expand_all(ws.manifest, specs)
    lock, hashes = ws.lock(), HashCache(ws.cache_dir / "hashes")
    index = StagedIndex(index_path(ws.cache_dir, ws.manifest.path))
    # per manifest: two manifests in one directory may declare artifacts of one name
    minted = MintedIdentities(ws.cache_dir / "identities" / f"{ws.manifest.path.name}.json")
    minted.forget_recorded(lock)
    chosen = {**minted.known, **(identities or {})}
    known = _Known(lock, chosen, minted, hashes, index, ws.artifacts_dir)
    desired: dict[str, Desired] = {}
    for spec in specs:
        desired[spec.name] = _desired(ws, spec, expansions[spec.name], known)
    hashes.save()
    index.save({a.name for a in ws.manifest.artifacts})
    plans = [
        _with_lock_change(ap, lock)
        for ap in plan_artifacts(ws.remote, desired, ws.user, minted.mint, ws.sealed)
    ]
    minted.save()
    plans = refuse_nested(plans)
    if not targets:
        used = {p for ap in plans for p in (ap.path, ap.rename_from)}
        left = [o for o in orphans(ws, lock, desired) if o.path not in used]
        plans += [plan_orphan(ws.remote, o, prune) for o in left]
    warnings = tuple(w for e in expansions.values() for w in e.warnings)
    if keep is not None and not any(s.versioned for s in specs):
        warnings += ("--keep applies to artifacts with versions: keep, and none is selected",)
    return Plan(ws.manifest.path, ws.remote.url, tuple(plans), warnings, prune, targets, keep)


def refuse_nested(plans: list[ArtifactPlan]) -> list[ArtifactPlan]:
    """An artifact whose folder is (below) another artifact of the same plan cannot be
    made: the server refuses a node below an Artifact. Say so in the plan."""
    nodes = {ap.path: ap.name for ap in plans if ap.action not in ("error", "skip")}
    out = []
    for ap in plans:
        above = _node_above(ap.folder, nodes)
        if above is not None and ap.action != "error":
            message = f"its folder {ap.folder} is (below) artifact '{nodes[above]}' at {above}"
            ap = replace(ap, action="error", message=message, refusal="folder",
                         hint="choose another folder")  # fmt: skip
        out.append(ap)
    return out


def _node_above(folder: str, nodes: Mapping[str, str]) -> str | None:
    """The first of ``nodes`` that is ``folder`` or one of its parents (a walk up the
    folder's own path: linear in artifacts, not quadratic)."""
    path = folder
    while path.count("/") > 1:
        if path in nodes:
            return path
        path = path.rpartition("/")[0]
    return None


@dataclass(frozen=True)
class _Known:
    """What a plan knows before it looks at any artifact."""

    lock: Mapping[str, LockEntry]
    chosen: Mapping[str, Identity]  # identities minted before, or a saved plan's
    minted: MintedIdentities
    hashes: HashCache
    index: StagedIndex
    artifacts_dir: Path


def _desired(ws: Workspace, spec: ArtifactSpec, expansion: Expansion, known: _Known) -> Desired:
    lock, chosen, hashes, index = known.lock, known.chosen, known.hashes, known.index
    name, folder = spec.name, absolute_folder(spec.folder, ws.user)
    entry, moved_from = lock.get(name), ""
    old_name = ws.manifest.moved.get(name)
    if entry is None and old_name in lock:
        moved_from = str(old_name)
        entry = lock[moved_from]
    retired, previous = None, ""
    if entry is not None and _elsewhere(entry, folder, ws.remote.url):
        retired, entry = entry, None  # a new node, under a new identity
    elif entry is not None and moved_from:
        previous = entry.remote.get("path") or f"{folder}/{moved_from}"
    identity = choose_identity(spec, entry, chosen.get(name), known.minted.mint)
    adopt = entry is None or entry.alternativeName != identity[0]
    pending = chosen.get(name)
    upcoming = pending if spec.versioned and not adopt and pending != identity else None
    d = desired_state(
        spec, expansion, identity, ws.user, index.get(name), hashes, known.artifacts_dir,
        previous_path=previous, moved_from=moved_from, retired=retired, adopt=adopt,
        next_identity=upcoming,
    )  # fmt: skip
    if not d.in_sync:  # keep what was hashed, so the next plan only stats
        index.put(name, snapshot(d, hashes.since_ns()))
        hashes.forget(as_file_list(d.declared).sources())
    return d


def _elsewhere(entry: LockEntry, folder: str, url: str) -> bool:
    """The lock records this artifact's node on this remote, in another folder."""
    path, host = entry.remote.get("path"), entry.remote.get("host")
    return bool(path) and host in (None, "", url) and str(path).rpartition("/")[0] != folder


def _with_lock_change(ap: ArtifactPlan, lock: Mapping[str, LockEntry]) -> ArtifactPlan:
    change = lock_change(ap, lock)
    return ap if change == ap.lock_change else replace(ap, lock_change=change)


def lock_change(ap: ArtifactPlan, lock: Mapping[str, LockEntry]) -> bool:
    """Whether apply rewrites the lock entry of this artifact."""
    d = ap.desired
    if d is None or ap.action == "error":
        return ap.lock_change
    old = lock.get(d.spec.name)
    if old is None or d.moved_from or d.retired is not None:
        return True
    held = (old.alternativeName, old.createdTimestamp, old.contentDigest, old.version)
    return held != ap.lock_identity(old)


def orphans(
    ws: Workspace, lock: Mapping[str, LockEntry], desired: Mapping[str, Desired]
) -> list[Orphan]:
    """Lock entries on this remote that the manifest no longer declares."""
    declared = {a.name for a in ws.manifest.artifacts}
    renamed = {d.moved_from for d in desired.values() if d.moved_from}
    out = [
        Orphan(
            d.spec.name,
            str(d.retired.remote["path"]),
            d.retired,
            d.spec.name,
            f"left at its old folder (now {d.folder})",
        )
        for d in desired.values()
        if d.retired is not None
    ]
    for key, entry in lock.items():
        if key in declared or key in renamed:
            continue
        host = entry.remote.get("host")
        if host not in (None, "", ws.remote.url):
            continue  # recorded on another remote: not this plan's to show or delete
        path = entry.remote.get("path") or (key if key.startswith("/") else "")
        name = key.rpartition("/")[2] if key.startswith("/") else key
        out.append(Orphan(name, path, entry, key))
    return out


class MintedIdentities:
    """Identities a plan minted for artifacts the lock does not hold yet (a cache)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, Identity] = {}
        self.dirty = False
        with suppress(OSError, ValueError, TypeError, AttributeError, KeyError, IndexError):
            data = json.loads(read_cache_text(path))  # only a cache: anything odd is ignored
            self.known = {
                str(k): (str(v[0]), str(v[1]))
                for k, v in data.items()
                if valid_alternative_name(v[0])
            }

    def mint(self, name: str, pinned: str | None = None) -> Identity:
        """A new identity (a pinned name gets only a new timestamp), remembered."""
        created, alt = new_identity(name)
        alt = pinned or alt
        self.known[name] = (alt, created)
        self.dirty = True
        return alt, created

    def forget_recorded(self, lock: Mapping[str, LockEntry]) -> None:
        """An identity the lock holds is no longer pending (and a folder change must
        not reuse it for the new node)."""
        for name, (alt, _) in list(self.known.items()):
            if name in lock and lock[name].alternativeName == alt:
                del self.known[name]
                self.dirty = True

    def save(self) -> None:
        if self.dirty:
            with suppress(OSError):  # only a cache: apply then mints its own
                write_atomic(self.path, json.dumps(self.known).encode())
