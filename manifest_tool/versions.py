"""Versions of an artifact: which nodes they are, their numbers and aliases, and references.

Under ``versions: keep`` every published state of an artifact is its own Artifact node
with its own identity: the newest at F/N (what a T9k client's ``load_artifact('F/N')``
gets), each older one at F/<its alternativeName>. What makes them versions lives in
the node's ``extra``, which a T9k client ignores: ``version`` (1, 2, ... in
publication order), ``versionOf`` (the artifact's name) and ``aliases`` (names such as
``prod`` that a user or the manifest points at one version), ``manifestAliases`` (on
the newest version: those the manifest declares, so that an alias it drops is removed);
and ``stage`` while a new
version is built beside F/N (it counts as a version only once moved in). ``latest`` is
never stored: it is whatever sits at F/N.

A reference ``NAME@REF`` names one version: ``latest``, ``vK``, an alias or an
alternative name. This module is the one place that reads those keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import ConflictError, InvalidInput, NotFound, RevisionMismatch
from .identity import valid_alternative_name
from .remotes.base import ARTIFACT, Node, Remote

LATEST = "latest"
STAGE = "stage"  # on a new version's node until it moves to F/N
STATS = "contentStats"  # {"digest", "size", "objects"}: what ``versions`` lists
DECLARED = "manifestAliases"  # on the newest version: the aliases the manifest declares
NUMBER_RE = re.compile(r"v([1-9][0-9]{0,8})")
ALIAS_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,38}[A-Za-z0-9])?")


def check_alias(alias: str) -> str:
    """An alias names one version: not ``latest``, not a version number."""
    if not ALIAS_RE.fullmatch(alias) or alias == LATEST or NUMBER_RE.fullmatch(alias):
        raise InvalidInput(
            f"invalid alias {alias!r}: 1 to 40 of A-Z a-z 0-9 _ . -, starting and ending "
            "with a letter or digit, and not 'latest' or a version number like v3"
        )
    return alias


def alias_problem(alias: str) -> str | None:
    try:
        check_alias(alias)
    except InvalidInput as err:
        return str(err)
    return None


def number(node: Node) -> int:
    """The node's version number; a node published before versions were kept is v1."""
    return number_of(node.extra_dict)


def number_of(extra: dict[str, object]) -> int:
    value = extra.get("version")
    return value if type(value) is int and value > 0 else 1


def aliases(node: Node) -> tuple[str, ...]:
    value = node.extra_dict.get("aliases")
    if not isinstance(value, list):
        return ()
    return tuple(a for a in value if isinstance(a, str))


def declared_aliases(node: Node) -> tuple[str, ...]:
    """The aliases the manifest declared when this version was last given them."""
    value = node.extra_dict.get(DECLARED)
    return tuple(a for a in value if isinstance(a, str)) if isinstance(value, list) else ()


def sealed(node: Node) -> bool:
    digest = node.extra_dict.get("contentDigest")
    return isinstance(digest, str) and bool(digest)


def created(node: Node) -> str:
    """When the version was made, as an ISO time in UTC ending in Z (the node's own
    time when its record says nothing usable)."""
    value = node.extra_dict.get("createdTimestamp")
    for stamp in (value, node.created_at):
        if not isinstance(stamp, str):
            continue
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return node.created_at


def is_version(node: Node, folder: str, name: str) -> bool:
    """Whether ``node`` is a published state of artifact ``name`` in ``folder``: the
    node at F/N, or a sibling that says it is a version of N with an alternative name
    that can be one (anything else a hand or another client wrote is not ours)."""
    if node.type != ARTIFACT or node.parent.rstrip("/") != folder:
        return False
    if node.name == name:
        return True
    extra = node.extra_dict
    return extra.get("versionOf") == name and valid_alternative_name(extra.get("alternativeName"))


def version_nodes(children: Iterable[Node], folder: str, name: str) -> list[Node]:
    """The versions of ``name`` among ``children`` (F/N always), newest first.

    A sibling without a digest is a version that is still being written (or one an
    interrupted apply left), and a stage is one that never reached F/N (an apply that
    lost a race to another leaves it sealed): neither is a version yet, so neither
    holds a number another version may have.
    """
    found = [
        n for n in children
        if is_version(n, folder, name) and (n.name == name or (sealed(n) and not staged(n)))
    ]  # fmt: skip
    return sorted(found, key=lambda n: (number(n), n.name == name), reverse=True)


def stages(children: Iterable[Node], folder: str, name: str) -> list[Node]:
    """The sealed stages of ``name``: versions built beside F/N, not yet moved in."""
    return [
        n for n in children
        if is_version(n, folder, name) and n.name != name and sealed(n) and staged(n)
    ]  # fmt: skip


def staged(node: Node) -> bool:
    return node.extra_dict.get(STAGE) is True


def moved_in_extra(node: Node) -> str:
    """The ``extra`` of a stage once it is at F/N: a version from then on."""
    return json.dumps({k: v for k, v in node.extra_dict.items() if k != STAGE})


def version_extra(base: dict[str, object], alt: str, name: str, version: int,
                  created: str) -> str:  # fmt: skip
    """``extra`` of a new version's node, before any object is written."""
    return json.dumps({**base, "alternativeName": alt, "versionOf": name, "version": version,
                       "createdTimestamp": created, STAGE: True})  # fmt: skip


def mark_version(
    remote: Remote, node: Node, name: str, version: int, stats: Stats | None = None
) -> None:
    """Make ``node`` say whose version it is and its number: a node published before
    versions were kept says nothing, and a stage built while another apply published
    the number it was made for moves up one. ``stats``: the size and object count of
    the content it is built with, so that listing versions needs no object listings."""
    extra = node.extra_dict
    fields: dict[str, object] = {"versionOf": name, "version": version}
    if stats is not None:
        fields[STATS] = stats.as_json()
    if all(extra.get(k) == v for k, v in fields.items()):
        return
    _write_extra(remote, node, lambda e: {**e, **fields})


@dataclass(frozen=True)
class Stats:
    """A version's size and object count, valid for the content of one digest."""

    digest: str
    size: int
    objects: int

    def as_json(self) -> dict[str, object]:
        return {"digest": self.digest, "size": self.size, "objects": self.objects}


def stats(node: Node) -> Stats | None:
    """The size and count a version recorded, if they describe its sealed content."""
    value = node.extra_dict.get(STATS)
    if not isinstance(value, dict) or not sealed(node):
        return None
    digest, size, count = value.get("digest"), value.get("size"), value.get("objects")
    if digest != node.extra_dict.get("contentDigest"):
        return None  # recorded for other content: the objects changed since
    if type(size) is not int or type(count) is not int or size < 0 or count < 0:
        return None
    return Stats(str(digest), size, count)


def set_aliases(
    remote: Remote, node: Node, wanted: Sequence[str], declared: Sequence[str] | None = None
) -> None:
    """Give ``node`` exactly the aliases ``wanted`` (and, for the newest version, record
    the aliases the manifest ``declared``), keeping its digest only while its objects
    are unchanged (the same compare-and-set that seals it)."""
    same_declared = declared is None or list(declared_aliases(node)) == list(declared)
    if list(aliases(node)) == list(wanted) and same_declared:
        return

    def change(extra: dict[str, object]) -> dict[str, object]:
        keys = ("aliases",) if declared is None else ("aliases", DECLARED)
        extra = {k: v for k, v in extra.items() if k not in keys}
        if declared:
            extra[DECLARED] = list(declared)
        return {**extra, "aliases": list(wanted)} if wanted else extra

    _write_extra(remote, node, change)


def _write_extra(
    remote: Remote, node: Node, change: Callable[[dict[str, object]], dict[str, object]]
) -> None:
    """Change the ``extra`` of ``node`` (the node as read earlier) and of no other.

    Another apply may have moved ``node`` aside and a new version in at its path since
    it was read, and a node's objects revision counts per node, so the new one may
    carry the same value. So the node at the path is read again and must be the same
    node (its id and alternative name); the change applies to what it says now, under
    the compare-and-set that seals a node (it never revives a stale digest); and the
    path is read once more afterwards: should a new version have moved in during the
    write itself, what it was given is undone (see ``_repair``) and the command stops.
    """
    fresh = remote.node_info(node.path)
    if fresh is None or not same_node(fresh, node):
        raise ConflictError(f"{node.path} changed while this command ran; run it again")
    text = json.dumps(change(fresh.extra_dict))
    try:
        if fresh.revision is None:
            remote.update_node(fresh.path, extra=text)
        else:
            remote.set_if_unchanged(fresh.path, fresh.revision, extra=text)
    except RevisionMismatch:
        raise ConflictError(f"{node.path} changed while this command ran; run it again") from None
    after = remote.node_info(node.path)
    if after is not None and after.id != node.id and after.extra_dict == json.loads(text):
        _repair(remote, after, fresh.extra_dict)
        raise ConflictError(
            f"{node.path} was replaced by another version while this command wrote to it;"
            f" its record was repaired (unsealed: the next apply re-checks it); run it again"
        )


def same_node(a: Node, b: Node) -> bool:
    return a.id == b.id and a.extra_dict.get("alternativeName") == b.extra_dict.get(
        "alternativeName"
    )


def _repair(remote: Remote, clobbered: Node, written_over: dict[str, object]) -> None:
    """A write meant for one version landed on the version that replaced it: give that
    node back its own identity (its ``metadata.yaml`` records it) without a digest,
    so nothing trusts it until an apply has checked its objects again."""
    from .transfer import remote_metadata

    meta = remote_metadata(remote, clobbered)
    extra = {
        k: v for k, v in clobbered.extra_dict.items()
        if k not in ("contentDigest", "aliases", "alternativeName", "createdTimestamp")
    }  # fmt: skip
    extra["alternativeName"] = str(meta.get("alternativeName") or "")
    extra["createdTimestamp"] = str(meta.get("createdTimestamp") or clobbered.created_at)
    extra["version"] = number_of(written_over) + 1
    remote.update_node(clobbered.path, extra=json.dumps(extra))


# -- references ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """``PATH@REF`` split: the artifact's node path (F/N) and the reference, or ''."""

    path: str
    ref: str = ""


def split_ref(path: str) -> Ref:
    """``/alice/cv/mnist@v2`` -> (``/alice/cv/mnist``, ``v2``); only the last segment may
    carry a reference."""
    head, _, last = path.rpartition("/")
    if "@" not in last:
        return Ref(path)
    name, _, ref = last.partition("@")
    if not name or not ref or "@" in ref:
        raise InvalidInput(
            f"{path!r}: write a reference as NAME@latest, NAME@v3, NAME@ALIAS or "
            "NAME@ALTERNATIVE_NAME"
        )
    return Ref(f"{head}/{name}" if head or path.startswith("/") else name, ref)


def resolve(remote: Remote, ref: Ref) -> str:
    """The node path that ``ref`` names (its path must be absolute): a version, else a
    node whose name is literally ``NAME@REF``."""
    if not ref.ref or ref.ref == LATEST:
        return ref.path
    folder, _, name = ref.path.rpartition("/")
    versions = version_nodes(list_children(remote, folder, ref), folder, name)
    hit = pick(versions, ref.ref)
    if hit is None:
        literal = f"{ref.path}@{ref.ref}"  # a node named with '@', as the server allows
        if remote.node_info(literal) is not None:
            return literal
        have = ", ".join(label(n, name) for n in versions) or "none"
        raise NotFound(f"{ref.path} has no version {ref.ref!r} (versions: {have})")
    return hit.path


def pick(versions: Sequence[Node], ref: str) -> Node | None:
    """The version ``ref`` names among ``versions`` (newest first): a number, an
    alternative name (it names one node for good, so it wins over an alias) or an alias
    (the newest holding it, should two claim it after an interrupted move)."""
    match = NUMBER_RE.fullmatch(ref)
    if match:
        return next((n for n in versions if number(n) == int(match.group(1))), None)
    named = [n for n in versions if n.extra_dict.get("alternativeName") == ref]
    return next(iter(named), None) or next((n for n in versions if ref in aliases(n)), None)


def latest(versions: Sequence[Node], name: str) -> Node | None:
    """``latest``: the version at F/N, as ``pull NAME`` and a T9k client read it,
    whatever number a sibling claims."""
    return next((n for n in versions if n.name == name), None)


def label(node: Node, name: str) -> str:
    tags = [*([LATEST] if node.name == name else []), *aliases(node)]
    return f"v{number(node)}" + (f" ({', '.join(tags)})" if tags else "")


def list_children(remote: Remote, folder: str, ref: Ref) -> list[Node]:
    from .errors import NodeNotFound

    try:
        return remote.list_nodes(folder)
    except NodeNotFound:
        raise NotFound(f"no artifact at {ref.path} on {remote.url}") from None


def move_alias(remote: Remote, versions: Sequence[Node], target: Node, alias: str) -> None:
    """Point ``alias`` at ``target``: onto it first, then off the others, so the alias
    always names a version (the newest holding it, between the two steps)."""
    set_aliases(remote, target, [*(a for a in aliases(target) if a != alias), alias])
    for node in versions:
        if node.id != target.id and alias in aliases(node):
            set_aliases(remote, node, [a for a in aliases(node) if a != alias])
