"""Frozen values passed between modules: the validated manifest and expanded sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

ObjectKind = Literal["file", "dir", "glob", "reference"]
ConflictStrategy = Literal["skip", "error", "new", "replace"]
CONFLICT_STRATEGIES: tuple[str, ...] = ("skip", "error", "new", "replace")


@dataclass(frozen=True)
class ObjectSpec:
    """One entry of an artifact's ``objects`` list, rendered and validated."""

    kind: ObjectKind
    source: str  # a path relative to the manifest's directory, a glob pattern, or a URI
    obj_path: str | None = None
    exclude: tuple[str, ...] = ()
    base: str | None = None  # globs: object paths are relative to this directory
    if_no_files_found: Literal["error", "warn", "ignore"] = "error"
    symlinks: Literal["follow", "follow-external", "skip", "error"] = "follow"
    hidden: Literal["include", "exclude"] = "include"
    line: int = 0  # 1-based line of the entry in the manifest, 0 when unknown


@dataclass(frozen=True)
class ArtifactSpec:
    """One declared artifact."""

    name: str
    folder: str = "default"
    make_folder: bool = False
    conflict_strategy: ConflictStrategy = "new"
    description: str = ""
    labels: tuple[str, ...] = ()
    alternative_name: str | None = None
    objects: tuple[ObjectSpec, ...] = ()
    line: int = 0
    # "keep": a content change publishes a new version beside the old ones; "update"
    # changes the one node in place
    versions: Literal["update", "keep"] = "update"
    keep_versions: int | None = None  # retention: the newest N (and aliased ones) stay
    aliases: tuple[str, ...] = ()  # moved to the newest version at each apply

    @property
    def versioned(self) -> bool:
        return self.versions == "keep"


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: every string rendered, every value checked."""

    path: Path  # absolute path of the manifest file
    artifacts: tuple[ArtifactSpec, ...]
    remote_url: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    moved: Mapping[str, str] = field(default_factory=dict)  # new name -> old name

    @property
    def root(self) -> Path:
        return self.path.parent

    def select(self, targets: tuple[str, ...]) -> tuple[ArtifactSpec, ...]:
        """The artifacts named by ``targets`` (all when empty), in manifest order."""
        unknown = sorted(set(targets) - {a.name for a in self.artifacts})
        if unknown:
            from .errors import InvalidInput

            names = ", ".join(a.name for a in self.artifacts)
            raise InvalidInput(f"no artifact named {unknown[0]!r} in the manifest (have: {names})")
        if not targets:
            return self.artifacts
        return tuple(a for a in self.artifacts if a.name in targets)


class LocalFile(NamedTuple):
    """A file the manifest declares, with the stat that identifies its content.

    A tuple, not a dataclass: a tree of 100,000 files makes 100,000 of these on
    every plan, and the tuple is also the row the stat cache compares as a whole.
    """

    key: str  # object path inside the artifact
    source: str  # absolute path of the file to read
    size: int
    # st_ctime_ns, not the mtime: a tool that keeps the mtime (cp -p, touch -r, tar)
    # while changing the bytes still moves the ctime, and ctime >= mtime otherwise
    changed_ns: int
    inode: int


@dataclass(frozen=True)
class Reference:
    """A URI reference declared as an object."""

    key: str
    uri: str


@dataclass(frozen=True)
class Expansion:
    """An artifact's declared objects, expanded from its ObjectSpecs."""

    files: Sequence[LocalFile]  # sorted by key
    references: tuple[Reference, ...]
    warnings: tuple[str, ...] = ()
