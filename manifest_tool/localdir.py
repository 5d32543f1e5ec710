"""Small files written atomically: a reader sees the old or the new, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_yaml(data: Any) -> bytes:
    """An artifact's YAML (metadata.yaml, references.yaml) byte for byte as T9k's SDK
    writes it: ``yaml.dump(data, sort_keys=False)``, whose other defaults escape
    non-ASCII ("\\u6807") and keep insertion order. (The safe dumper: for the plain
    dicts, lists and strings written here its output is the same.)"""
    import yaml  # here, not at the top: a no-op plan writes no YAML

    return yaml.safe_dump(data, sort_keys=False).encode("ascii")


def write_yaml_atomic(path: Path, data: Any) -> None:
    write_atomic(path, dump_yaml(data))


def read_yaml(path: Path) -> Any:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
