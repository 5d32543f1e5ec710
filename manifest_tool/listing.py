"""A node's objects as the planner diffs against them: listed from the remote, or
remembered from this checkout's own seals.

A node's objects revision moves with every change to its objects and starts at a
random value, so (node id, revision) names one state of one node's objects
(docs/protocol.md). When an apply seals a node, the rows it sealed are kept here
with the node's id and revision at the seal, and a plan that reads the node at that
same id and revision diffs against them without listing it: one changed file in
100,000 costs no listing of 100,000. The node's ``contentDigest`` alone would not
do: anyone may write an old digest back into ``extra``. An entry is checked against
its digest when read (a damaged or forged file is only a miss); an artifact keeps
one entry.
"""

from __future__ import annotations

import marshal
import operator
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

from .cache import Md5s, open_cache_file
from .hashing import sorted_rows_digest
from .localdir import write_atomic
from .paths import RESERVED_ROOT_NAMES
from .remotes.base import Node, ObjectInfo

FORMAT = 2
DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Listing:
    """A node's objects as columns sorted by path: 300,000 ObjectInfos held at once
    cost several times as much."""

    paths: list[str]
    sizes: array[int]
    checksums: list[str]

    @classmethod
    def of(cls, objects: Iterable[ObjectInfo] | Listing) -> Listing:
        if isinstance(objects, Listing):
            return objects
        paths, sizes, sums = [], array("q"), []
        for o in objects:
            paths.append(o.path)
            sizes.append(o.size_bytes)
            sums.append(o.checksum)
        if ascending(paths):
            return cls(paths, sizes, sums)
        order = sorted(range(len(paths)), key=paths.__getitem__)
        return cls(
            [paths[i] for i in order], array("q", [sizes[i] for i in order]),
            [sums[i] for i in order],
        )  # fmt: skip

    def holds(self, path: str) -> bool:
        at = bisect_left(self.paths, path)
        return at < len(self.paths) and self.paths[at] == path


def ascending(keys: Sequence[str]) -> bool:
    """Whether ``keys`` are strictly ascending: compared pairwise in C (a generator of
    pairs costs a tenth of a second for 300,000 keys)."""
    return all(map(operator.lt, keys, islice(keys, 1, None)))


BLOCK = 1024  # rows compared at once by edited_in_place


def edited_in_place(
    keys: Sequence[str], sizes: Sequence[int], md5s: Sequence[str], present: Listing
) -> list[str] | None:
    """The usual update, files edited in place: the node holds exactly the declared
    keys (besides metadata.yaml and references.yaml). Then the changed rows are found
    by comparing the columns a block at a time in C, not row by row in Python; None
    when the keys differ, for the merge to sort out."""
    paths, have_sizes, sums = _without_reserved(present)
    if len(paths) != len(keys) or list(keys) != paths:
        return None
    if set(map(len, sums)) - {32}:
        return None  # not all MD5s: the merge compares them one by one
    joined = "".join(sums)
    try:
        have = bytes.fromhex(joined)
    except ValueError:
        return None  # not MD5s (another server's part-wise ETags): the merge compares
    if have.hex() != joined:
        return None  # not in the canonical lower-case form the digest uses
    raw = md5s.raw if isinstance(md5s, Md5s) else bytes.fromhex("".join(md5s))
    mine, theirs = array("q", sizes), array("q", have_sizes)
    edited: list[str] = []
    for start in range(0, len(keys), BLOCK):
        end = min(start + BLOCK, len(keys))
        if raw[start * 16 : end * 16] == have[start * 16 : end * 16] and (
            mine[start:end] == theirs[start:end]
        ):
            continue
        for i in range(start, end):
            if mine[i] != theirs[i] or raw[i * 16 : i * 16 + 16] != have[i * 16 : i * 16 + 16]:
                edited.append(keys[i])
    return edited


def _without_reserved(present: Listing) -> tuple[list[str], Sequence[int], list[str]]:
    """The listing's columns without the artifact's own files."""
    paths, sizes, sums = present.paths, present.sizes, present.checksums
    at = sorted(i for i in map(_index_in(paths), RESERVED_ROOT_NAMES) if i is not None)
    if not at:
        return paths, sizes, sums
    keep = [slice(a + 1, b) for a, b in pairwise([-1, *at, len(paths)])]
    return (
        [p for part in keep for p in paths[part]],
        array("q", [x for part in keep for x in sizes[part]]),
        [c for part in keep for c in sums[part]],
    )


def _index_in(paths: list[str]) -> Callable[[str], int | None]:
    def index(name: str) -> int | None:
        at = bisect_left(paths, name)
        return at if at < len(paths) and paths[at] == name else None

    return index


@dataclass(frozen=True)
class Sealed:
    """The rows sealed into a node: its digest, its id and objects revision right
    after the seal, object keys (sorted), sizes, MD5s and references."""

    digest: str
    node: str
    revision: int
    keys: Sequence[str]
    sizes: Sequence[int]
    md5s: Sequence[str]
    references: tuple[tuple[str, str], ...]


class SealedListings:
    """``.em/cache/sealed/<digest hex>``: the rows of digests this checkout sealed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path | None:
        match = DIGEST_RE.fullmatch(digest)
        return self.root / match.group(1) if match else None

    def get(self, node: Node) -> Listing | None:
        """The listing of ``node`` if this checkout sealed it at its current revision."""
        digest = node.extra_dict.get("contentDigest")
        path = self._path(digest) if isinstance(digest, str) else None
        if path is None or node.revision is None:
            return None
        try:
            with open_cache_file(path) as (fh, _):
                data = marshal.loads(fh.read())
        except (OSError, EOFError, ValueError, TypeError):
            data = None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        if (data.get("node"), data.get("revision")) != (node.id, node.revision):
            return None  # another node's, or this one's before it changed
        listing = _listing(data, str(digest))
        if listing is None:
            with suppress(OSError):
                path.unlink()  # damaged: a later seal writes it again
        return listing

    def put(self, sealed: Sealed, previous: str = "") -> None:
        """Remember ``sealed``; drop the entry of ``previous``, the digest it replaced."""
        path = self._path(sealed.digest)
        if path is None:
            return
        md5s = sealed.md5s
        raw = md5s.raw if isinstance(md5s, Md5s) else bytes.fromhex("".join(md5s))
        data = {
            "format": FORMAT,
            "node": sealed.node,
            "revision": sealed.revision,
            # the columns as they are where they can be: 300,000 rows are megabytes
            "keys": sealed.keys if isinstance(sealed.keys, list) else list(sealed.keys),
            "sizes": _column_bytes(sealed.sizes),
            "md5s": raw,
            "references": [list(r) for r in sealed.references],
        }
        with suppress(OSError):  # only a cache: the next plan lists instead
            write_atomic(path, marshal.dumps(data))
        old = self._path(previous)
        if old is not None and old != path:
            with suppress(OSError):
                old.unlink()


def _column_bytes(sizes: Sequence[int]) -> bytes:
    return sizes.tobytes() if isinstance(sizes, array) and sizes.typecode == "q" else (
        array("q", sizes).tobytes()
    )


def _listing(data: dict[str, Any], digest: str) -> Listing | None:
    """The listing ``data`` stands for, if its rows hash to ``digest``."""
    try:
        keys, raw, refs = data["keys"], data["md5s"], data["references"]
        sizes = array("q")
        sizes.frombytes(data["sizes"])
        references = [(str(k), str(u)) for k, u in refs]
        if not (isinstance(keys, list) and isinstance(raw, bytes)):
            return None
        if not all(type(k) is str for k in keys):
            return None
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if not (len(keys) == len(sizes) == len(raw) // 16) or len(raw) % 16:
        return None
    hexes = raw.hex()
    sums = [hexes[i : i + 32] for i in range(0, len(hexes), 32)]
    if not ascending(keys):
        return None
    try:
        found = sorted_rows_digest(zip(keys, sizes, sums, strict=True), sorted(references))
    except ValueError:  # a key no encoding holds (a lone surrogate): not ours
        return None
    if found != digest:
        return None
    # what the node holds besides its content: apply wrote them with the digest
    extra = sorted(n for n in RESERVED_ROOT_NAMES if n == "metadata.yaml" or references)
    return _with_reserved(keys, sizes, sums, extra)


def _with_reserved(
    keys: list[str], sizes: array[int], sums: list[str], names: list[str]
) -> Listing:
    """The listing with the artifact's own files (metadata.yaml, references.yaml) in
    their places: a real listing holds them too."""
    for name in names:
        at = bisect_left(keys, name)
        if at < len(keys) and keys[at] == name:
            continue
        keys.insert(at, name)
        sizes.insert(at, 0)
        sums.insert(at, "")
    return Listing(keys, sizes, sums)
