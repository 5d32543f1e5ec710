"""Streaming digests: never read a whole file into memory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1024 * 1024


def md5_file(path: Path | str, buffer: bytearray | None = None) -> str:
    """MD5 hex of a file, read in 1 MiB blocks into one reused buffer."""
    digest = hashlib.md5()
    buf = buffer if buffer is not None else bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def content_digest(objects: Iterable[dict[str, object]]) -> str:
    """DESIGN: sha256 of the canonical JSON of the sorted objects, 'sha256:<hex>'.

    Each object is {path, size_bytes, checksum} or {path, uri}; metadata.yaml and
    references.yaml are not objects and never part of it.
    """
    canon = sorted((_canonical(o) for o in objects), key=lambda o: str(o["path"]))
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _canonical(obj: dict[str, object]) -> dict[str, object]:
    if "uri" in obj:
        return {"path": obj["path"], "uri": obj["uri"]}
    return {"path": obj["path"], "size_bytes": obj["size_bytes"], "checksum": obj["checksum"]}
