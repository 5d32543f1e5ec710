"""Object downloads: the blob streamed from its opened reader, honouring one ``Range``.

The blob is opened before the answer starts: a file through a descriptor, which a
concurrent removal cannot cut short; an S3 key, which GC keeps for a grace period
after its last object went; inline bytes, already read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

from starlette.responses import StreamingResponse

from ..remotes.base import ObjectInfo
from ..remotes.blobs import BlobReader
from .context import run
from .errors import RangeNotSatisfiable

CHUNK = 1024 * 1024
# fullmatch, not "$" (which accepts a trailing newline); ASCII digits, not \d
RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
BEYOND = 1 << 63  # any position of more than 18 digits lies past every object


def _position(digits: str) -> int:
    """A Range position; Python refuses int() of 4,300+ digits, so a long one is read
    as "past the end" rather than parsed."""
    return int(digits) if len(digits) <= 18 else BEYOND


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range`` asks for; None means the whole.

    Several ranges, or a header we cannot read, are ignored as RFC 9110 allows: the
    client then gets the whole object with a 200.
    """
    match = RANGE_RE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        if _position(last) == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - _position(last), 0), size - 1
    start = _position(first)
    end = min(_position(last), size - 1) if last else size - 1
    if start >= size or (last and _position(last) < start):
        raise RangeNotSatisfiable(size)
    return start, end


async def object_response(
    info: ObjectInfo, reader: BlobReader, range_header: str | None
) -> StreamingResponse:
    try:
        span = byte_range(range_header, info.size_bytes)
    except BaseException:
        reader.close()
        raise
    first, last = span if span else (0, info.size_bytes - 1)
    headers = {
        "Content-Length": str(last - first + 1),
        "Accept-Ranges": "bytes",
        "ETag": f'"{info.checksum}"',
        # a user's object is never a page of this origin (an uploaded .html or .svg
        # would otherwise run with the web UI's cookie): always an inert attachment
        "Content-Disposition": f"attachment; filename*=UTF-8''{_filename(info.path)}",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "X-Content-Type-Options": "nosniff",
    }
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size_bytes}"
    chunks = reader.chunks(first, last - first + 1)
    try:  # the first chunk before the status line: a reader that opens lazily (an S3
        # key) fails here, as a clean error answer, not as a cut-off 200
        head = await run(next, chunks, None)
    except BaseException:
        await run(reader.close)
        raise
    return StreamingResponse(
        _read(reader, head, chunks), 206 if span else 200, headers, info.content_type
    )


def _filename(key: str) -> str:
    return quote(key.rsplit("/", 1)[-1], safe="")


async def _read(
    reader: BlobReader, head: bytes | None, chunks: Iterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        chunk = head
        while chunk is not None:
            yield chunk
            chunk = await run(next, chunks, None)
    finally:
        await run(reader.close)
