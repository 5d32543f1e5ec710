"""Upload bodies for the HTTP remote: multipart/form-data streamed from a file, or
built whole for a batch of small objects."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import ChecksumMismatch, MissingSource
from ..reading import read_at_most
from .base import Upload

BLOCK = 1024 * 1024


class FormBody:
    """A multipart/form-data body with one field ``content``, read lazily.

    It has a length, so requests sends a Content-Length instead of chunking, and
    it yields 1 MiB blocks (requests' own file handling sends 16 KiB ones). Each
    iteration reads the file afresh, so a retry can send the same body again.
    """

    def __init__(
        self,
        key: str,
        source: str | Path | None,
        data: bytes | None,
        offset: int = 0,
        length: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.boundary = uuid.uuid4().hex
        name = key.rsplit("/", 1)[-1].replace('"', "%22").replace("\r", "").replace("\n", "")
        self.head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.source, self.data, self.offset = source, data, offset
        self.on_bytes = on_bytes
        if length is None:
            length = len(data) if data is not None else file_size(source) - offset
        self.length = length

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.length + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        if self.data is not None:
            yield self.data
        else:
            for block in _file_range(self.source, self.offset, self.length):
                yield block
                if self.on_bytes is not None:  # after the send: requests pulls the next
                    self.on_bytes(len(block))
        yield self.tail


def file_size(path: str | Path | None) -> int:
    assert path is not None, "an Upload has a source or data"
    return os.stat(path).st_size  # callers may pass a str path


def _file_range(path: str | Path | None, offset: int, length: int) -> Iterator[bytes]:
    assert path is not None, "an Upload has a source or data"
    with open(path, "rb") as fh:
        fh.seek(offset)
        while length > 0:
            block = fh.read(min(BLOCK, length))
            if not block:
                raise ChecksumMismatch(f"{path} shrank while it was being uploaded")
            length -= len(block)
            yield block


def batch_form(uploads: Sequence[Upload]) -> tuple[str, bytes]:
    """The body of a batch upload (docs/protocol.md): the field ``index`` naming each
    object's key, size and MD5, then ``content``, their bytes back to back. Small
    objects only: the whole body is built in memory."""
    blobs = [_whole(u) for u in uploads]
    index = {
        "objects": [
            {"path": u.key, "size": len(b), "md5": u.md5}
            for u, b in zip(uploads, blobs, strict=True)
        ]
    }
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="index"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    middle = (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = b"".join([head, json.dumps(index).encode(), middle, *blobs, tail])
    return f"multipart/form-data; boundary={boundary}", body


def _whole(upload: Upload) -> bytes:
    """An upload's bytes; a file that grew since it was hashed is read one byte past
    its size, enough for the server's MD5 check to refuse it."""
    if upload.data is not None:
        return upload.data
    assert upload.source is not None, "an Upload has a source or data"
    try:
        return read_at_most(upload.source, upload.size + 1)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise MissingSource(f"cannot read '{upload.source}': {reason} (check it)") from None
