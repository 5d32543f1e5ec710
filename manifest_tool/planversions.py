"""Deciding an artifact under ``versions: keep`` (part of the planner's one decider).

A new version is never written where a reader could see it half-done. It is built
and sealed at F/<its alternativeName> (the stage); then the version at F/N moves to
F/<its own alternativeName>, and the stage moves to F/N. Every step leaves each
sealed version intact, so an interrupted apply is repaired from what the remote
shows, by the same rules:

- F/N holds a sealed version with the declared content: nothing to publish.
- F/N holds a sealed version with other content: build the next version (resuming
  a stage that is there already), move the old one aside, move the new one in.
- F/N is empty but versions exist beside it (an apply stopped between the two
  moves): the newest sealed one is the current version; if it holds the declared
  content it moves back to F/N, else the next version is built on top of it.
- Nothing at all: the first version, built the same way.

Then aliases move to the newest version, and retention deletes what is beyond the
newest ``keep_versions`` (never an aliased version). The plan lists all of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .identity import valid_alternative_name
from .plan import ArtifactPlan, Desired
from .planner import (
    Reads,
    _all_keys,
    _conflict,
    _create,
    _created,
    _get,
    _missing_folders,
    _plan,
    _same_content,
    _update,
    seen_of,
)
from .publish import sibling_refusal
from .remotes.base import ARTIFACT, Node
from .versions import (
    aliases,
    declared_aliases,
    is_version,
    number,
    sealed,
    stages,
    version_nodes,
)


def seen_version(node: Node | None, stage: Node | None) -> str:
    """What a versioned plan saw: the node at F/N and the stage it builds at."""
    return f"{seen_of(node)} {seen_of(stage)}"


def decide_versioned(desired: Desired, reads: Reads, user: str, node: Node | None) -> ArtifactPlan:
    spec = desired.spec
    path = f"{desired.folder}/{spec.name}"
    outside = node is not None and not _in_lineage(node, desired, reads)
    if node is not None and outside and not _same_content_elsewhere(node, desired):
        return _taken(desired, reads, node)
    versions = None if node is not None else _versions_beside(desired, reads)
    if isinstance(versions, ArtifactPlan):
        return versions  # the folder is in the way
    cur = node if node is not None else (versions[0] if versions else None)
    beside = node is None and cur is not None and not _in_lineage(cur, desired, reads)
    if beside and cur is not None and not _same_content_elsewhere(cur, desired):
        return _beside_taken(desired, cur)
    if cur is None:
        plan = _first(desired, reads, user, path)
    elif sealed(cur) and cur.extra_dict.get("contentDigest") == desired.digest:
        plan = _current(desired, reads, cur, path)
    elif not sealed(cur):
        plan = _unsealed(desired, reads, cur)
    else:
        if versions is None:
            children: tuple[Node, ...] = _get(reads, "children", desired.folder)
            versions = version_nodes(children, desired.folder, spec.name)
        plan = _next(desired, reads, cur, path, versions)
    if plan.action in ("error", "skip"):
        return plan
    return _retention(plan, reads, cur, versions)


def _in_lineage(node: Node, desired: Desired, reads: Reads) -> bool:
    """Whether the version at F/N descends from this checkout's: it is the lock's, or
    the lock's version stands beside it, moved aside by another checkout of the same
    project publishing on top. A node that merely says it is a version of this name
    may be another project's artifact of the same name."""
    alt = node.extra_dict.get("alternativeName")
    if node.type != ARTIFACT or not valid_alternative_name(alt):
        return False
    if alt == desired.alternative_name:
        return True
    if desired.adopt:  # the lock records no identity: nothing here is ours yet
        return False
    mine: Node | None = _get(reads, "node", f"{desired.folder}/{desired.alternative_name}")
    return (
        mine is not None
        and mine.type == ARTIFACT
        and mine.extra_dict.get("alternativeName") == desired.alternative_name
        and mine.extra_dict.get("versionOf") == desired.spec.name
    )


def _same_content_elsewhere(node: Node, desired: Desired) -> bool:
    """Exactly the declared content, sealed: taken as it is (as ``versions: update``
    adopts it), which changes nothing of it."""
    extra = node.extra_dict
    return (
        node.type == ARTIFACT
        and valid_alternative_name(extra.get("alternativeName"))
        and bool(desired.digest)
        and extra.get("contentDigest") == desired.digest
    )


def _taken(desired: Desired, reads: Reads, node: Node) -> ArtifactPlan:
    """F/N holds an artifact outside this lineage: the conflict strategy decides, as
    for ``versions: update``."""
    if node.type != ARTIFACT:
        return _plan(
            desired, node.path, "error", seen=seen_of(node), refusal="conflict",
            message=f"{node.path} is a {node.type}, not an artifact",
            hint="versions: keep needs the name: remove that node, or choose another name"
            " or folder",
        )  # fmt: skip
    other = str(node.extra_dict.get("alternativeName") or "no alternativeName")
    return _conflict(desired, reads, node, other)


def _beside_taken(desired: Desired, newest: Node) -> ArtifactPlan:
    """F/N is empty, and the versions beside it are not this checkout's (the lock
    knows none of them): building on them would number after another artifact's, and
    its retention could delete them."""
    path = f"{desired.folder}/{desired.spec.name}"
    message = (
        f"{path} is empty, and versions of another artifact named"
        f" '{desired.spec.name}' stand beside it ({newest.path})"
    )
    if desired.spec.conflict_strategy == "skip":
        return _plan(desired, path, "skip", seen="absent",
                     message=f"{message}; conflict_strategy: skip")  # fmt: skip
    return _plan(
        desired, path, "error", refusal="conflict", message=message,
        hint="move that node back to the name, or choose another name or folder",
    )  # fmt: skip


def _versions_beside(desired: Desired, reads: Reads) -> list[Node] | ArtifactPlan | None:
    """F/N is empty: the sealed versions in the folder, newest first (None when the
    folder does not exist yet)."""
    missing = _missing_folders(desired.folder, reads)
    if isinstance(missing, str) or missing:
        return None
    children: tuple[Node, ...] = _get(reads, "children", desired.folder)
    return version_nodes(children, desired.folder, desired.spec.name)


def _stage(
    desired: Desired, reads: Reads, path: str, action: str, at: str = "", **kw: Any
) -> ArtifactPlan:
    """Build at F/<alt>: all objects into a new node, or what a stage left by an
    interrupted apply still lacks (``at``: a version or stage found elsewhere, say
    renamed by hand, which moves to F/N from where it is)."""
    stage_path = at or f"{desired.folder}/{desired.alternative_name}"
    stage: Node | None = _get(reads, "node", stage_path)
    node: Node | None = _get(reads, "node", path)
    if stage is None:
        plan = _plan(desired, path, action, upload=_all_keys(desired))
    elif (refusal := sibling_refusal(desired.spec.name, desired.alternative_name, stage)):
        return _plan(desired, stage_path, "error", seen=seen_of(stage), message=refusal,
                     refusal="conflict")  # fmt: skip
    elif stage.extra_dict.get("contentDigest") == desired.digest:
        plan = _plan(desired, path, action)
    else:
        plan = replace(_update(desired, reads, stage, action), path=path)
    return replace(plan, stage=stage_path, seen=seen_version(node, stage), **kw)


def _first(desired: Desired, reads: Reads, user: str, path: str) -> ArtifactPlan:
    made = _create(desired, reads, user, path)
    if made.action == "error":
        return made
    at, note = "", ""
    if not made.make_folders:  # the folder exists: a first apply may have been killed there
        children: tuple[Node, ...] = _get(reads, "children", desired.folder)
        desired, at, note = _resume_abandoned(desired, reads, children)
    return _stage(desired, reads, path, "create", at=at, version=1, message=note,
                  make_folders=made.make_folders)  # fmt: skip


def _resume_abandoned(
    desired: Desired, reads: Reads, children: tuple[Node, ...]
) -> tuple[Desired, str, str]:
    """A stage an apply left unsealed (killed, its checkout's cache lost) would be
    nobody's forever: unless this checkout has a stage of its own, the newest one
    untouched for ``ABANDONED`` is resumed, identity and objects, by this version
    (what it lacks is uploaded, what it has extra deleted). A younger one may be
    another apply's at work: it is left alone, and the plan says so.
    Returns (desired, the stage's path or '', a note for the plan)."""
    folder, name = desired.folder, desired.spec.name
    unsealed = [
        n for n in children
        if is_version(n, folder, name) and n.name != name and not sealed(n)
    ]  # fmt: skip
    if any(n.name == desired.alternative_name for n in unsealed):
        return desired, "", ""  # this checkout's own: resumed as it is
    now = datetime.now(UTC)
    old = [n for n in unsealed if now - _when(n) >= ABANDONED]
    young = [n.path for n in unsealed if now - _when(n) < ABANDONED]
    note = f"left alone, being built by another apply: {', '.join(young)}" if young else ""
    if not old:
        return desired, "", note
    stage = max(old, key=_when)
    resumed = f"resumes {stage.path}, left unsealed by an interrupted apply"
    return _adopt(desired, reads, stage), stage.path, "; ".join(filter(None, [resumed, note]))


ABANDONED = timedelta(minutes=30)


def _when(node: Node) -> datetime:
    """When the node last changed (its creation, for a stage): long ago if unknown."""
    for stamp in (node.updated_at, node.created_at):
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except (AttributeError, ValueError):
            continue
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _current(desired: Desired, reads: Reads, cur: Node, path: str) -> ArtifactPlan:
    """The newest version holds the declared content."""
    if cur.path == path:
        return replace(_same_content(desired, reads, cur), version=number(cur))
    # left beside F/N by an interrupted apply: it moves back
    return _stage(_adopt(desired, reads, cur), reads, path, "version", at=cur.path,
                  version=number(cur), message=f"v{number(cur)} moves back to {path}")  # fmt: skip


def _adopt(desired: Desired, reads: Reads, node: Node) -> Desired:
    """Take the identity of a version already sealed with the declared content."""
    alt = str(node.extra_dict["alternativeName"])
    return replace(desired, alternative_name=alt, created_timestamp=_created(reads, node),
                   local_dir=desired.local_dir.with_name(alt), adopt=True)  # fmt: skip


def _unsealed(desired: Desired, reads: Reads, cur: Node) -> ArtifactPlan:
    """F/N without a digest: written in place before versions were kept, and
    interrupted. Only our own identity is repaired in place."""
    if cur.extra_dict.get("alternativeName") != desired.alternative_name:
        return _plan(
            desired, cur.path, "error", seen=seen_of(cur), refusal="conflict",
            message=f"{cur.path} is being written by another apply (it has no digest)",
            hint="run plan again once it is done",
        )  # fmt: skip
    return replace(_update(desired, reads, cur, "update"), version=number(cur))


def _next(
    desired: Desired, reads: Reads, cur: Node, path: str, versions: list[Node]
) -> ArtifactPlan:
    """New content: the next version, numbered after the newest. A sealed stage an
    interrupted apply left with this content is taken as it is (its identity too)."""
    children: tuple[Node, ...] = _get(reads, "children", desired.folder)
    built = [n for n in stages(children, desired.folder, desired.spec.name)
             if n.extra_dict.get("contentDigest") == desired.digest]  # fmt: skip
    at = built[0].path if built else ""
    if built:
        desired = _adopt(desired, reads, built[0])
    elif not desired.adopt:  # the lock's identity is published: this version needs its own
        alt, created = desired.next_identity or _get(reads, "identity", desired.spec.name)
        desired = replace(desired, alternative_name=alt, created_timestamp=created,
                          local_dir=desired.local_dir.with_name(alt))  # fmt: skip
    note = ""
    if not built:
        desired, at, note = _resume_abandoned(desired, reads, children)
    newest = max([number(cur), *(number(n) for n in versions if n.path != path)])
    version = newest + 1  # a stage's number counts only once it moves in
    retire_to = ""
    if cur.path == path:
        retire_to = f"{desired.folder}/{cur.extra_dict['alternativeName']}"
        blocking: Node | None = _get(reads, "node", retire_to)
        if blocking is not None:
            return _plan(
                desired, path, "error", seen=seen_of(blocking), refusal="conflict",
                message=f"v{number(cur)} cannot move aside: {retire_to} holds another node",
                hint="remove that node",
            )  # fmt: skip
    return _stage(desired, reads, path, "version", at=at, version=version, retire_to=retire_to,
                  message=note)  # fmt: skip


# -- aliases and retention ----------------------------------------------------------------


def _retention(
    plan: ArtifactPlan, reads: Reads, cur: Node | None, versions: list[Node] | None
) -> ArtifactPlan:
    """Move the manifest's aliases to the newest version; list the versions beyond
    ``keep_versions`` that no alias names. Reads the folder only when it matters."""
    d = plan.desired
    assert d is not None
    spec = d.spec
    publishing = bool(plan.stage) and plan.stage != (cur.path if cur else "")
    newest_aliases = () if publishing or cur is None else aliases(cur)
    aliases_wrong = bool(spec.aliases) and not set(spec.aliases) <= set(newest_aliases)
    # aliases an earlier manifest declared (the newest version records them) and this
    # one no longer does: they go
    dropped = tuple(a for a in declared_aliases(cur) if a not in spec.aliases) if cur else ()
    unrecorded = cur is not None and bool(newest_aliases) and declared_aliases(cur) != spec.aliases
    over = spec.keep_versions is not None and plan.version > spec.keep_versions
    if not (aliases_wrong or over or dropped or unrecorded):
        return plan
    if versions is None:
        if cur is None:  # the first version: nothing else to move or prune
            return replace(plan, alias_moves=((plan.path, spec.aliases),))
        children: tuple[Node, ...] = _get(reads, "children", d.folder)
        versions = version_nodes(children, d.folder, spec.name)
    layout = _layout(plan, versions, cur)
    moves = _alias_moves(layout, plan.path, spec.aliases, dropped, unrecorded)
    held = {p: a for p, a in moves}
    ranked = sorted(layout, key=lambda row: -row[1])
    keep = spec.keep_versions or len(ranked)
    prune = tuple(
        path for path, _, now in ranked[keep:] if not held.get(path, now) and path != plan.path
    )
    return replace(plan, alias_moves=moves, prune_versions=prune)


def _layout(
    plan: ArtifactPlan, versions: list[Node], cur: Node | None
) -> list[tuple[str, int, tuple[str, ...]]]:
    """(path, number, aliases) of each version once the plan's moves are done."""
    rows = []
    for node in versions:
        path = node.path
        if cur is not None and node.id == cur.id and plan.retire_to:
            path = plan.retire_to
        if plan.stage and path == plan.stage:
            path = plan.path
        rows.append((path, number(node), aliases(node)))
    if not any(path == plan.path for path, _, _ in rows):
        rows.append((plan.path, plan.version, ()))  # the new version, not yet sealed
    return rows


def _alias_moves(
    layout: list[tuple[str, int, tuple[str, ...]]],
    newest: str,
    declared: tuple[str, ...],
    dropped: tuple[str, ...] = (),
    record: bool = False,
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The declared aliases onto the newest version and off every other one (the
    newest first, so that a reader sees an alias at all times); the ``dropped`` ones
    off every version. The newest version's move also records what the manifest
    declares (so it is listed whenever something was dropped)."""
    moves = []
    for path, _, now in sorted(layout, key=lambda row: row[0] != newest):
        if path == newest:
            wanted = (*(a for a in now if a not in dropped), *(a for a in declared if a not in now))
        else:
            wanted = tuple(a for a in now if a not in declared and a not in dropped)
        if wanted != now or (path == newest and (dropped or record)):
            moves.append((path, wanted))
    return tuple(moves)
