"""Reading an Artifact back from its local directory (as T9k writes it)."""

from __future__ import annotations

import os
from pathlib import Path

from .artifact import Artifact
from .errors import InvalidInput
from .hashing import md5_file
from .localdir import read_yaml
from .paths import RESERVED_ROOT_NAMES
from .walker import plain_files


def load_local(path: Path) -> Artifact:
    """The Artifact in ``path``: metadata.yaml, references.yaml and the files."""
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
