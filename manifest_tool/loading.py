"""Reading an Artifact back from its local directory (as T9k writes it)."""

from __future__ import annotations

import os
from pathlib import Path

from .artifact import Artifact
from .download import STAGING_PREFIX
from .errors import InvalidInput
from .hashing import md5_file
from .localdir import read_yaml
from .publish import RESERVED


def load_local(path: Path) -> Artifact:
    """The Artifact in ``path``: metadata.yaml, references.yaml and the files."""
    metadata = read_yaml(path / "metadata.yaml")
    if not isinstance(metadata, dict) or metadata.get("kind", "Artifact") != "Artifact":
        raise InvalidInput(f"{path / 'metadata.yaml'} does not describe an Artifact")
    art = Artifact(metadata)
    art.local = str(path.absolute())
    buf = bytearray(1024 * 1024)
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(STAGING_PREFIX))
        rel_dir = os.path.relpath(dirpath, path).replace(os.sep, "/")
        for name in sorted(filenames):
            key = name if rel_dir == "." else f"{rel_dir}/{name}"
            if key in RESERVED:
                continue
            full = os.path.join(dirpath, name)
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
