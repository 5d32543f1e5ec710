"""The batch upload (an extension): many small objects in one request.

One request per small file caps an upload of 100,000 of them at what one connection
can turn around; a batch pays the request, the authentication and the store's
transaction once. The body is a form of two fields: ``index`` (JSON naming each
object's key, size and MD5) and ``content`` (the objects' bytes back to back, in the
index's order). Each object is verified on its own: one whose bytes do not match its
MD5 is not stored and is reported as failed; the others are stored. The batch is
bounded (objects and bytes) and held in memory, which those bounds and the user's
upload slots keep small.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidInput
from ..paths import check_key
from .body import body_chunks
from .context import Context, context, query, upload_slot, user_of
from .errors import BodyTooLarge
from .formdata import FRAMING_SLACK, boundary_of
from .objects import MD5_RE

INDEX_BYTES_PER_OBJECT = 4096  # a key of 1,024 bytes, JSON-escaped, with its size and MD5


@dataclass(frozen=True)
class Entry:
    """One object of a batch as its index names it."""

    key: str
    size: int
    md5: str


async def put_batch(request: Request) -> Response:
    user = await user_of(request)
    node_path = query(request, "path")
    ctx = context(request)
    boundary = boundary_of(request)
    most = _body_limit(ctx)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > most:
        raise BodyTooLarge(_too_large(int(length), ctx))
    # The slot is taken before the body is read: it bounds the batches one user holds
    # in memory at once, and a user's slow batch costs only that user's slots.
    with upload_slot(ctx, user):
        body = await _read_body(request, most, ctx)
        work = partial(store_batch, ctx, user, node_path, boundary, body)
        results = await anyio.to_thread.run_sync(work, limiter=ctx.uploads)
    return JSONResponse({"data": results})


def _body_limit(ctx: Context) -> int:
    limits = ctx.limits
    return limits.batch_bytes + limits.batch_objects * INDEX_BYTES_PER_OBJECT + FRAMING_SLACK


def _too_large(size: int, ctx: Context) -> str:
    limits = ctx.limits
    return (
        f"batch body of {size} bytes is over the server's limit of {limits.batch_bytes} "
        f"bytes of content (and {limits.batch_objects} objects) per batch"
    )


async def _read_body(request: Request, most: int, ctx: Context) -> bytes:
    body = bytearray()
    async for chunk in body_chunks(request, ctx.limits.body_idle_s):
        body += chunk
        if len(body) > most:
            raise BodyTooLarge(_too_large(len(body), ctx))
    return bytes(body)


def store_batch(
    ctx: Context, user: str, node_path: str, boundary: bytes, body: bytes
) -> list[dict[str, Any]]:
    """Verify each object by its MD5, store the good ones in one call, and answer
    one result per object in the index's order."""
    fields = parse_form(boundary, body)
    entries = parse_index(fields.get("index"), ctx)
    content = fields.get("content", b"")
    total = sum(e.size for e in entries)
    if total != len(content):
        raise InvalidInput(
            f"field 'content' holds {len(content)} bytes, but the index's sizes add up to {total}"
        )
    good: list[tuple[str, Iterable[bytes], str | None]] = []
    failed: dict[int, str] = {}
    offset = 0
    for n, entry in enumerate(entries):
        data = content[offset : offset + entry.size]
        offset += entry.size
        got = hashlib.md5(data).hexdigest()
        if got != entry.md5:
            failed[n] = f"checksum mismatch: expected md5 {entry.md5}, got {got}"
        else:
            good.append((entry.key, (data,), entry.md5))
    stored = iter(ctx.store.put_batch(user, node_path, good) if good else ())
    return [
        {"path": e.key, "error": failed[n]} if n in failed else next(stored).to_api()
        for n, e in enumerate(entries)
    ]


def parse_form(boundary: bytes, body: bytes) -> dict[str, bytes]:
    """The fields of a whole multipart/form-data body, by name."""
    form = _Fields(boundary)
    try:
        form.parser.write(body)
    except FormParserError as err:
        raise InvalidInput(f"malformed multipart/form-data body: {err}") from None
    if not form.ended:
        raise InvalidInput("the multipart/form-data body ended early (no closing boundary)")
    return form.fields


class _Fields:
    """Callbacks of the multipart parser, gathering each field's bytes."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, bytes] = {}
        self.ended = False
        self._data: list[bytes] = []
        self._header = [b"", b""]
        self._name = ""
        self.parser = MultipartParser(
            boundary,
            {
                "on_header_field": lambda d, s, e: self._grow(0, d[s:e]),
                "on_header_value": lambda d, s, e: self._grow(1, d[s:e]),
                "on_header_end": self._header_end,
                "on_part_data": lambda d, s, e: self._data.append(d[s:e]),
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def _grow(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        name, value = self._header
        self._header = [b"", b""]
        if name.lower() == b"content-disposition":
            self._name = parse_options_header(value)[1].get(b"name", b"").decode("latin-1")

    def _part_end(self) -> None:
        if self._name in self.fields:
            raise InvalidInput(f"the batch form has two fields {self._name!r}")
        self.fields[self._name] = b"".join(self._data)
        self._data, self._name = [], ""

    def _end(self) -> None:
        self.ended = True


def parse_index(raw: bytes | None, ctx: Context) -> list[Entry]:
    """The ``index`` field: ``{"objects": [{"path", "size", "md5"}, ...]}``, checked
    against the server's batch limits before any byte is stored."""
    if raw is None:
        raise InvalidInput("the batch form has no field 'index'")
    try:
        data = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise InvalidInput("field 'index' is not valid JSON") from None
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, list):
        raise InvalidInput("field 'index' must be a JSON object with a list 'objects'")
    limits = ctx.limits
    if len(objects) > limits.batch_objects:
        raise BodyTooLarge(
            f"batch of {len(objects)} objects is over the server's limit of "
            f"{limits.batch_objects} objects per batch"
        )
    entries = [_entry(item, ctx) for item in objects]
    total = sum(e.size for e in entries)
    if total > limits.batch_bytes:
        raise BodyTooLarge(
            f"batch of {total} bytes is over the server's limit of {limits.batch_bytes} "
            "bytes of content per batch"
        )
    keys = {e.key for e in entries}
    if len(keys) != len(entries):
        raise InvalidInput("the batch's index names one object path twice")
    return entries


def _entry(item: object, ctx: Context) -> Entry:
    if not isinstance(item, dict):
        raise InvalidInput("each entry of 'objects' must be {'path', 'size', 'md5'}")
    key, size, md5 = item.get("path"), item.get("size"), item.get("md5")
    if not isinstance(key, str):
        raise InvalidInput("each entry of 'objects' needs a string 'path' (the object key)")
    try:  # "\ud800" parses, but no database or file name can hold it
        key.encode()
    except UnicodeEncodeError:
        raise InvalidInput("an object path holds a lone surrogate (\\ud800-\\udfff)") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"object {key!r}: 'size' must be a non-negative integer")
    if not isinstance(md5, str) or not MD5_RE.fullmatch(md5):
        raise InvalidInput(f"object {key!r}: 'md5' must be 32 hex digits")
    most = ctx.limits.max_body
    if most is not None and size > most:
        raise BodyTooLarge(f"object {key!r} is larger than the server's limit of {most} bytes")
    return Entry(check_key(key, "object key", allow_reserved=True), size, md5.lower())
