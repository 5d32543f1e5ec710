"""The seed's Artifact API, compatible on disk with T9k's ``t9k.em`` (SDK 0.6.0b0)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from . import session
from .errors import InvalidInput, MissingSource
from .hashing import md5_file
from .identity import check_alternative_name, check_artifact_name, new_identity
from .localdir import write_yaml_atomic
from .paths import join_key, reference_key, resolve_obj_path
from .publish import check_strategy
from .walker import plain_files

KIND = "Artifact"
log = logging.getLogger(__name__)


def parent_dir() -> Path:
    return Path(os.environ.get("EM_ARTIFACT_PARENT_DIR") or ".em/artifacts")


class Artifact:
    """A set of files that a Run inputs or outputs."""

    def __init__(
        self, metadata: dict[str, Any], objects: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.parse_from_dict(metadata)
        self.objects: dict[str, dict[str, Any]] = dict(objects or {})
        self.local = str((parent_dir() / self.alternative_name).absolute())

    # -- adding objects -----------------------------------------------------------
    def add_file(self, file_path: str, obj_path: str | None = None) -> None:
        """Copy a local file into the artifact at ``obj_path`` (T9k's rules)."""
        if not os.path.isfile(file_path):
            log.error("File %s does not exist", file_path)
            raise MissingSource(f"File not found: {file_path!r}")
        key = self._free_key(resolve_obj_path(str(file_path), obj_path), as_file=True)
        self._copy_in(Path(file_path), key)

    def add_dir(self, dir_path: str, obj_path: str | None = None) -> None:
        """Copy every file below a directory into the artifact under ``obj_path``."""
        if not os.path.isdir(dir_path):
            log.error("Directory %s does not exist", dir_path)
            raise MissingSource(f"Directory not found: {dir_path!r}")
        prefix = resolve_obj_path(str(dir_path), obj_path)
        pairs = [(Path(src), join_key(prefix, rel)) for src, rel in plain_files(dir_path)]
        for _, key in pairs:  # refuse before the first byte is written
            self._free_key(key, as_file=True)
        for src, key in pairs:
            self._copy_in(src, key)

    def add_reference(self, uri: str, obj_path: str | None = None) -> None:
        """Record ``uri`` as an object of the artifact, without fetching it."""
        key = self._free_key(reference_key(uri, obj_path), as_file=False)
        self.objects[key] = {"path": key, "uri": uri}
        self._save_references()

    def _free_key(self, key: str, as_file: bool) -> str:
        current = self.objects.get(key)
        if current is not None and ("uri" in current) == as_file:
            kind = "a reference" if as_file else "a file"
            log.error("Failed to add object %s: it is already %s of the Artifact", key, kind)
            raise InvalidInput(f"object path {key!r} is already {kind} of this Artifact")
        if as_file:
            self._check_no_clash(key)
        return key

    def _check_no_clash(self, key: str) -> None:
        """A file cannot sit where the local dir has a folder, nor below a file."""
        if Path(self.local, key).is_dir():
            raise InvalidInput(f"object path {key!r} is already a folder of this Artifact")
        for parent in list(PurePosixPath(key).parents)[:-1]:
            if Path(self.local, parent).is_file():
                raise InvalidInput(
                    f"object path {key!r} would be below {str(parent)!r}, "
                    "already a file of this Artifact"
                )

    def _copy_in(self, src: Path, key: str) -> None:
        dest = Path(self.local, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        shutil.copystat(src, dest)
        self.objects[key] = {
            "path": key,
            "size_bytes": dest.stat().st_size,
            "checksum": md5_file(dest),
        }

    # -- dict form ----------------------------------------------------------------
    def parse_from_dict(self, data: dict[str, Any]) -> None:
        self.name = check_artifact_name(data["name"])
        self.labels: list[str] = list(data.get("labels") or [])
        self.description: str = data.get("description") or ""
        self.created_timestamp: str = data["createdTimestamp"]
        self.alternative_name: str = check_alternative_name(data["alternativeName"])
        self.remote: list[dict[str, str]] = list(data.get("remote") or [])

    def to_dict(self) -> dict[str, Any]:
        return metadata_dict(
            self.name,
            self.labels,
            self.description,
            self.created_timestamp,
            self.alternative_name,
            self.remote,
        )

    def save(self) -> None:
        """Write ``metadata.yaml`` (and ``references.yaml``) into the local dir."""
        Path(self.local).mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(Path(self.local, "metadata.yaml"), self.to_dict())
        self._save_references()

    def _save_references(self) -> None:
        refs = {k: o["uri"] for k, o in self.objects.items() if "uri" in o}  # T9k: as added
        path = Path(self.local, "references.yaml")
        if refs:
            Path(self.local).mkdir(parents=True, exist_ok=True)
            write_yaml_atomic(path, refs)
        else:
            path.unlink(missing_ok=True)

    # -- remote ------------------------------------------------------------------
    def upload(
        self, folder: str = "default", make_folder: bool = False, conflict_strategy: str = "new"
    ) -> None:
        """Upload to ``folder`` (relative -> /<user>/folder), as docs/protocol.md describes."""
        check_strategy(conflict_strategy)
        from .transfer import upload_artifact

        upload_artifact(self, session.remote(), folder, make_folder, conflict_strategy)

    def __repr__(self) -> str:
        return f"Artifact(name={self.name!r}, alternative_name={self.alternative_name!r})"


def metadata_dict(
    name: str,
    labels: Sequence[str],
    description: str,
    created_timestamp: str,
    alternative_name: str,
    remote: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """An artifact's ``metadata.yaml``: T9k's ``to_dict()``, keys in its order. The one
    place that builds it, for the Python API and for apply alike."""
    return {
        "kind": KIND,
        "name": name,
        "labels": list(labels),
        "description": description,
        "createdTimestamp": created_timestamp,
        "alternativeName": alternative_name,
        "remote": list(remote),
    }


def create_artifact(name: str, labels: list[str] | None = None, description: str = "") -> Artifact:
    """A new, empty Artifact with a fresh alternative name and its local directory."""
    check_artifact_name(name)
    created, alt = new_identity(name)
    artifact = Artifact(
        {
            "name": name,
            "labels": labels or [],
            "description": description,
            "createdTimestamp": created,
            "alternativeName": alt,
        }
    )
    artifact.save()
    log.info("Artifact %s saved to local directory %s", name, artifact.local)
    return artifact
