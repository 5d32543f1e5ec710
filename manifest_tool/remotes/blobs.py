"""Blob bytes: hashed while they stream in, kept inline, in files or (see s3blobs) in S3.

Blobs are named by their BLAKE3 digest (a strong hash: MD5 alone would let a user
craft a collision and overwrite another user's content). The MD5 is computed on the
same pass because the protocol reports it.

A writer keeps the first ``INLINE_MAX`` bytes in memory: a blob that fits is stored
inline in the metadata database (no file, no S3 request: 100,000 small objects are
100,000 rows, not 100,000 files). Past that the bytes go to the backend's sink: a
temp file renamed to ``ab/cdef...`` at commit (files), or a fresh write-once S3 key.
A blob becomes visible only with the commit that references it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import blake3

from ..errors import ChecksumMismatch, InvalidInput

TMP_MAX_AGE_S = 3600
INLINE_MAX = 64 * 1024  # the largest blob kept as a database row
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    blob: str  # blake3 hex: the blob's name
    md5: str
    size: int


class Sink(Protocol):
    """Where a writer's bytes go once they outgrow an inline blob."""

    location: str | None  # the S3 key; None for a temp file (its place is the hash)

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...


class BlobReader(Protocol):
    """An opened blob: a byte range streamed, or (small ones) all of it."""

    def chunks(self, offset: int, length: int) -> Iterator[bytes]: ...

    def read_bytes(self) -> bytes: ...  # the whole blob; closes the reader

    def close(self) -> None: ...


class BlobWriter:
    """Accumulates bytes (inline, then into a sink) while hashing; ``finish`` verifies."""

    def __init__(
        self,
        open_sink: Callable[[], Sink],
        max_size: int | None = None,
        inline_max: int = INLINE_MAX,
    ) -> None:
        self._open_sink = open_sink
        self._buf = bytearray()
        self._sink: Sink | None = None
        self._md5 = hashlib.md5()
        self._strong = blake3.blake3()
        self._max = max_size
        self._inline_max = inline_max
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max is not None and self.size > self._max:
            raise InvalidInput(f"body larger than the server's limit of {self._max} bytes")
        self._md5.update(chunk)
        self._strong.update(chunk)
        if self._sink is not None:
            self._sink.write(chunk)
            return
        self._buf += chunk
        if len(self._buf) > self._inline_max:
            self._sink = self._open_sink()
            self._sink.write(bytes(self._buf))
            self._buf = bytearray()

    def write_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def finish(self, expected_md5: str | None = None) -> BlobInfo:
        md5 = self._md5.hexdigest()
        if expected_md5 and expected_md5.lower() != md5:
            self.discard()
            raise ChecksumMismatch(f"checksum mismatch: expected md5 {expected_md5}, got {md5}")
        if self._sink is not None:
            try:
                self._sink.close()
            except BaseException:
                self.discard()
                raise
        return BlobInfo(blob=self._strong.hexdigest(), md5=md5, size=self.size)

    @property
    def inline(self) -> bytes | None:
        """The whole blob, when it is small enough to live in the database."""
        return None if self._sink is not None else bytes(self._buf)

    @property
    def sink(self) -> Sink | None:
        return self._sink

    @property
    def tmp_path(self) -> str | None:
        return getattr(self._sink, "path", None)

    def discard(self) -> None:
        self._buf = bytearray()
        if self._sink is not None:
            self._sink.discard()


class FileSink:
    location: str | None = None

    def __init__(self, tmp_dir: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=tmp_dir, prefix="up-")
        self.fh: BinaryIO = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)

    def close(self) -> None:
        self.fh.close()

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        with suppress(FileNotFoundError):
            os.unlink(self.path)


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        view = memoryview(self.data)[offset : offset + length]
        for start in range(0, len(view), READ_CHUNK):
            yield bytes(view[start : start + READ_CHUNK])

    def read_bytes(self) -> bytes:
        return self.data

    def close(self) -> None:
        pass


class FileReader:
    """Reads an open file: a concurrent removal cannot cut a started download short."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("rb")

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        while length > 0:
            chunk = os.pread(self.fh.fileno(), min(READ_CHUNK, length), offset)
            if not chunk:
                return
            offset += len(chunk)
            length -= len(chunk)
            yield chunk

    def read_bytes(self) -> bytes:
        with self.fh:
            return self.fh.read()

    def close(self) -> None:
        self.fh.close()


class BlobStore:
    """Blob files below ``root``: ``ab/cdef...`` plus a ``tmp/`` for writes."""

    kind = "files"
    deferred_removal = False  # an open file survives its unlink: remove at once

    def __init__(self, root: Path, inline_max: int = INLINE_MAX) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.inline_max = inline_max
        self._root = str(root)
        self._tmp = str(self.tmp)
        self._make_fanout()
        self._sweep_tmp()

    def describe(self) -> str:
        return self._root

    def _make_fanout(self) -> None:
        """The 256 ``ab/`` folders, made once, so that a commit never has to."""
        if not os.path.isdir(os.path.join(self._root, "ff")):
            for i in range(256):
                os.makedirs(os.path.join(self._root, f"{i:02x}"), exist_ok=True)

    def writer(self, max_size: int | None = None, inline_max: int | None = None) -> BlobWriter:
        limit = self.inline_max if inline_max is None else inline_max
        return BlobWriter(lambda: FileSink(self._tmp), max_size, limit)

    def path(self, blob: str) -> Path:
        return Path(self._file(blob))

    def has_file(self, blob: str) -> bool:
        return os.path.exists(self._file(blob))

    def _file(self, blob: str) -> str:
        return f"{self._root}/{blob[:2]}/{blob[2:]}"

    def place(self, writer: BlobWriter, info: BlobInfo) -> None:
        """Move a verified temp file to its content address (its row is locked)."""
        tmp = writer.tmp_path
        if tmp is None:
            return
        final = self._file(info.blob)
        if os.path.exists(final):
            writer.discard()
            return
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # its ab/ folder was removed by hand: make it again
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)

    def drop_unused(self, writer: BlobWriter) -> None:
        """The writer lost to a blob already there (dedup)."""
        writer.discard()

    def remove(self, blob: str, location: str | None) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._file(blob))

    def open(self, blob: str, location: str | None) -> BlobReader:
        return FileReader(self.path(blob))

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
