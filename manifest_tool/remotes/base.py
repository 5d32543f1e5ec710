"""The Remote interface: the AIStore node/object API as Python calls.

Two implementations: the embedded store (``file:`` URLs) and the HTTP client
(``http:``/``https:``). Both raise the typed errors of ``errors.py`` so callers never
see a transport detail: NodeNotFound (with the missing path), NameConflict,
PermissionDenied, AuthError, ChecksumMismatch, RemoteError.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..paths import touches_content

FOLDER = "Folder"
ARTIFACT = "Artifact"
RUN = "Run"  # T9k's experiment runs: their SDK's Run.upload makes them
STORAGE_TYPES = {FOLDER: 0, ARTIFACT: 2, RUN: 2}  # T9k's storageType of each node type
# A create that names only a storageType means a Folder or an Artifact: T9k gives a
# Run storageType 2 too, so 2 alone cannot mean a Run.
TYPES_BY_STORAGE = {0: FOLDER, 2: ARTIFACT}
HOLDS_OBJECTS = (ARTIFACT, RUN)


@dataclass(frozen=True)
class Node:
    """A node as the API returns it."""

    id: str
    name: str
    parent: str
    path: str
    type: str
    labels: tuple[str, ...] = ()
    description: str = ""
    extra: str = "{}"
    created_at: str = ""
    updated_at: str = ""
    # extension: bumped by every change to the node's objects; None from a server
    # without the digest compare-and-set
    revision: int | None = None

    @property
    def extra_dict(self) -> dict[str, Any]:
        """``extra`` parsed; a malformed value (another client's) reads as empty."""
        try:
            value = json.loads(self.extra or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_api(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "path": self.path,
            "type": self.type,
            "storageType": STORAGE_TYPES.get(self.type, 0),
            "labels": list(self.labels),
            "description": self.description,
            "extra": self.extra,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        if self.revision is not None:
            out["objectsRevision"] = self.revision
        return out

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Node:
        revision = data.get("objectsRevision")
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            parent=str(data.get("parent", "")),
            path=str(data.get("path", "")),
            type=str(data.get("type", "")),
            labels=tuple(data.get("labels") or ()),
            description=str(data.get("description") or ""),
            extra=data.get("extra") or "{}",
            created_at=str(data.get("createdAt", "")),
            updated_at=str(data.get("updatedAt", "")),
            revision=revision if type(revision) is int else None,
        )


@dataclass(frozen=True)
class Lineage:
    """A node and its neighbours in the graphs API.

    ``inbound`` have an edge to the node, ``outbound`` an edge from it: for a Run its
    inputs and its outputs, for an Artifact the Runs that produced it and those that
    used it.
    """

    node: Node
    inbound: tuple[Node, ...] = ()
    outbound: tuple[Node, ...] = ()

    def to_api(self) -> dict[str, Any]:
        return {
            "current": self.node.to_api(),
            "in": [n.to_api() for n in self.inbound],
            "out": [n.to_api() for n in self.outbound],
        }

    @classmethod
    def from_api(cls, node: Node, data: dict[str, Any]) -> Lineage:
        """From a graphs answer; T9k's may lack ``current``, so the node comes apart."""
        inbound = tuple(Node.from_api(n) for n in data.get("in") or ())
        outbound = tuple(Node.from_api(n) for n in data.get("out") or ())
        return cls(node, inbound, outbound)


class ObjectInfo(NamedTuple):
    """One object of an Artifact node.

    A tuple, not a dataclass: listing an artifact of 100,000 objects builds 100,000.
    """

    path: str
    size_bytes: int
    checksum: str  # MD5 hex of the whole object
    mtime: str = ""
    content_type: str = "application/octet-stream"

    def to_api(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "checksum": self.checksum,
            "mtime": self.mtime,
            "content_type": self.content_type,
            "path_type": "object",
        }

    @classmethod
    def from_api(cls, data: dict[str, Any], shared: dict[str, str] | None = None) -> ObjectInfo:
        """From a listing row; ``shared`` gives rows of one listing one copy of each
        mtime and content type (a batch has one mtime, most objects one type)."""
        mtime = str(data.get("mtime", ""))
        ctype = str(data.get("content_type", "application/octet-stream"))
        if shared is not None:
            mtime, ctype = shared.setdefault(mtime, mtime), shared.setdefault(ctype, ctype)
        return cls(str(data["path"]), int(data.get("size_bytes", 0)),
                   str(data.get("checksum", "")), mtime, ctype)  # fmt: skip


@dataclass(frozen=True)
class Upload:
    """One object to send: bytes from ``source`` (a file) or ``data``."""

    key: str
    md5: str
    size: int
    source: str | Path | None = None
    data: bytes | None = field(default=None, repr=False)
    # Told the size of each block as it is read for sending, so a progress bar moves
    # during a large object instead of only when it completes. A retry reads again.
    on_bytes: Callable[[int], None] | None = field(default=None, repr=False, compare=False)


class Remote(Protocol):
    """What plan, apply, pull and the Artifact API need from a server."""

    url: str

    def whoami(self) -> str: ...
    def node_info(self, path: str) -> Node | None: ...
    def node_infos(self, paths: Sequence[str]) -> list[Node | None]: ...
    def list_nodes(self, parent: str) -> list[Node]: ...
    def create_node(
        self,
        parent: str,
        name: str,
        type: str,
        labels: Sequence[str] = (),
        description: str = "",
        extra: str = "{}",
    ) -> str: ...
    def update_node(self, path: str, **fields: Any) -> Node: ...
    def set_if_unchanged(self, path: str, revision: int, **fields: Any) -> Node: ...
    def delete_node(self, path: str) -> None: ...
    def lineage(self, node: str) -> Lineage:
        """The node (a path or id) and the Runs or Artifacts linked to it."""
        ...

    def add_edges(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Link (from id, to id) pairs: Artifact -> Run for an input, Run -> Artifact
        for an output."""
        ...

    def list_objects(self, node_path: str) -> list[ObjectInfo]: ...
    def put_object(self, node_path: str, upload: Upload) -> ObjectInfo: ...
    def get_object(self, node_path: str, key: str, dest: Path) -> None: ...
    def delete_objects(self, node_path: str, keys: Iterable[str]) -> None: ...
    def close(self) -> None: ...


class ContentWrites:
    """How many requests of this client changed each node's objects.

    docs/protocol.md: every request that changes a node's objects (a put, a batch, a
    multipart finish, a delete naming any key besides metadata.yaml and
    references.yaml) moves the node's objects revision by exactly one. So a node read
    at revision R that shows R + n after this client's n writes was written by no one
    else in between: its objects are what it held at R plus these writes, and a seal
    needs no listing to know them (``publish.seal``). A count that is off only ever
    makes the revisions disagree, and the seal lists as before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # uploads run on several threads
        self._by_node: Counter[str] = Counter()

    def add(self, node_path: str, keys: Iterable[str]) -> None:
        """One request that wrote ``keys`` into the node succeeded."""
        if not touches_content(keys):
            return
        with self._lock:
            self._by_node[node_path] += 1

    def of(self, node_path: str) -> int:
        with self._lock:
            return self._by_node[node_path]


def content_writes(remote: Remote, node_path: str) -> int | None:
    """This client's content-changing requests to the node so far (None: not counted)."""
    writes: ContentWrites | None = getattr(remote, "writes", None)
    return None if writes is None else writes.of(node_path)


def each_object(remote: Remote, node_path: str) -> Iterable[ObjectInfo]:
    """The node's objects, a page at a time where the remote can (both of ours): a
    reader that looks at each once need not hold a listing of 300,000."""
    pages: Callable[[str], Iterable[ObjectInfo]] | None = getattr(remote, "iter_objects", None)
    return pages(node_path) if pages is not None else remote.list_objects(node_path)


def absolute_folder(folder: str, user: str) -> str:
    """PROTOCOL: a folder not starting with '/' is below /<user>/; no trailing '/'."""
    path = folder if folder.startswith("/") else f"/{user}/{folder}"
    path = path.rstrip("/")
    return path or "/"
