"""Content-addressed blob files: written to a temp file, verified, then renamed.

Blobs are named by their BLAKE3 digest (a strong hash: MD5 alone would let a user
craft a collision and overwrite another user's content). The MD5 is computed on the
same pass because the protocol reports it. A blob appears under its final name only
once complete, so no reader ever sees a partial one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from ..errors import ChecksumMismatch, InvalidInput

TMP_MAX_AGE_S = 3600


@dataclass(frozen=True)
class BlobInfo:
    blob: str  # blake3 hex: the blob's name
    md5: str
    size: int


class BlobWriter:
    """Accumulates bytes into a temp file while hashing; ``finish`` verifies."""

    def __init__(self, tmp_dir: Path | str, max_size: int | None = None) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="up-")
        self.tmp_path = name  # a str: this runs once per object, pathlib costs add up
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5()
        self._strong = blake3.blake3()
        self._max = max_size
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise InvalidInput(f"body larger than the server's limit of {self._max} bytes")
        self._md5.update(chunk)
        self._strong.update(chunk)
        self._fh.write(chunk)

    def write_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def finish(self, expected_md5: str | None = None) -> BlobInfo:
        self._fh.close()
        md5 = self._md5.hexdigest()
        if expected_md5 and expected_md5.lower() != md5:
            self.discard()
            raise ChecksumMismatch(f"checksum mismatch: expected md5 {expected_md5}, got {md5}")
        return BlobInfo(blob=self._strong.hexdigest(), md5=md5, size=self.size)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        with suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


class BlobStore:
    """Blob files below ``root``: ``ab/cdef...`` plus a ``tmp/`` for writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._root = str(root)
        self._tmp = str(self.tmp)
        self._make_fanout()
        self._sweep_tmp()

    def _make_fanout(self) -> None:
        """The 256 ``ab/`` folders, made once, so that a commit never has to."""
        if not os.path.isdir(os.path.join(self._root, "ff")):
            for i in range(256):
                os.makedirs(os.path.join(self._root, f"{i:02x}"), exist_ok=True)

    def writer(self, max_size: int | None = None) -> BlobWriter:
        return BlobWriter(self._tmp, max_size)

    def path(self, blob: str) -> Path:
        return Path(self._file(blob))

    def _file(self, blob: str) -> str:
        return f"{self._root}/{blob[:2]}/{blob[2:]}"

    def commit(self, writer: BlobWriter, info: BlobInfo) -> None:
        """Move a verified temp file to its content address (dedup: keep the first)."""
        final = self._file(info.blob)
        if os.path.exists(final):
            writer.discard()
            return
        try:
            os.replace(writer.tmp_path, final)
        except FileNotFoundError:  # its ab/ folder was removed by hand: make it again
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(writer.tmp_path, final)

    def remove(self, blob: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._file(blob))

    def _sweep_tmp(self) -> None:
        """Temp files left by a crashed writer are garbage once old enough."""
        cutoff = time.time() - TMP_MAX_AGE_S
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass


def md5_from_header(value: str | None) -> str | None:
    """RFC 1864 Content-MD5 (base64 of the raw digest) as hex; None when absent."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as err:
        raise InvalidInput("Content-MD5 is not valid base64") from err
    if len(raw) != 16:
        raise InvalidInput("Content-MD5 is not an MD5 digest")
    return raw.hex()
