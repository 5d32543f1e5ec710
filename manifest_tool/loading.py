"""Loading an Artifact: from its local directory (as T9k writes it) or the remote."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .artifact import Artifact, parent_dir
from .errors import InvalidInput, MissingMetadata, NotAnArtifact, NotFound
from .hashing import md5_file
from .localdir import read_yaml
from .paths import RESERVED_ROOT_NAMES
from .walker import plain_files

log = logging.getLogger(__name__)


def load(path: str) -> Artifact:
    """``load_artifact``: a local directory if one is there, else a remote path."""
    if os.path.isdir(path):
        art = load_local(Path(path))
        log.info("Loaded Artifact from local directory %s", path)
        return art
    return _load_remote(path)


def _load_remote(path: str) -> Artifact:
    from .session import remote
    from .transfer import download_artifact

    try:
        art = download_artifact(remote(), path, parent_dir())
    except NotFound:
        log.error("%s is not a local directory or a remote path", path)
        raise
    except NotAnArtifact as err:
        log.error("Failed to load Artifact from remote path: %s, %s", path, err)
        raise
    log.info("Loaded Artifact from remote path %s", path)
    return art


def load_local(path: Path) -> Artifact:
    """The Artifact in ``path``: metadata.yaml, references.yaml and the files."""
    if not (path / "metadata.yaml").is_file():
        log.error(
            "Failed to load Artifact from local directory: %s, file %s is missing",
            path, path / "metadata.yaml",
        )  # fmt: skip
        raise MissingMetadata(f"Missing file of Artifact: '{path / 'metadata.yaml'}'")
    metadata = read_yaml(path / "metadata.yaml")
    if not isinstance(metadata, dict) or metadata.get("kind", "Artifact") != "Artifact":
        raise InvalidInput(f"{path / 'metadata.yaml'} does not describe an Artifact")
    art = Artifact(metadata)
    art.local = str(path.absolute())
    buf = bytearray(1024 * 1024)
    for full, key in plain_files(path):
        if key in RESERVED_ROOT_NAMES:
            continue
        art.objects[key] = {
            "path": key,
            "size_bytes": os.path.getsize(full),
            "checksum": md5_file(full, buf),
        }
    refs = path / "references.yaml"
    if refs.is_file():
        for key, uri in (read_yaml(refs) or {}).items():
            art.objects[str(key)] = {"path": str(key), "uri": str(uri)}
    return art
