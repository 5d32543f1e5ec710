"""Streaming uploads: a multipart/form-data body parsed as it arrives.

The event loop only receives the body and queues it in ~1 MiB batches; a worker
thread parses the batches and hands the ``content`` field's bytes to the store,
which hashes and writes them (hashing in the loop would halve throughput). Memory
per upload stays at a few batches whatever the object's size, and nothing is
published unless the whole field arrived and verified.

A slow client must not starve anyone: the worker thread is taken only once a first
batch is full (or the body complete), from a pool of its own (``upload_threads``),
so a trickling body holds no thread and other calls never wait behind uploads; a
body that sends nothing for ``body_idle_s`` is dropped with a 408.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from ..errors import InvalidInput
from .body import body_chunks
from .context import upload_slot
from .errors import BodyTooLarge

if TYPE_CHECKING:
    from .context import Context

T = TypeVar("T")
BATCH = 1024 * 1024
QUEUED_BATCHES = 4
FRAMING_SLACK = 64 * 1024  # the form's headers and boundaries around the content field
Item = list[bytes] | Exception | None


class ContentField:
    """Incremental parser keeping only the bytes of the form field ``content``."""

    def __init__(self, boundary: bytes, limit: int | None) -> None:
        self.limit = limit
        self.size = 0
        self._out: list[bytes] = []
        self._header = [b"", b""]
        self._in_content = self._seen = self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._grow(0, d[s:e]),
                "on_header_value": lambda d, s, e: self._grow(1, d[s:e]),
                "on_header_end": self._header_end,
                "on_part_data": self._data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, raw: bytes) -> list[bytes]:
        try:
            self._parser.write(raw)
        except FormParserError as err:
            raise InvalidInput(f"malformed multipart/form-data body: {err}") from None
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        if not self._seen:
            raise InvalidInput("the multipart/form-data body has no field 'content'")
        if not self._ended:
            raise InvalidInput("the multipart/form-data body ended early (no closing boundary)")

    def _part_begin(self) -> None:
        self._in_content = False
        self._header = [b"", b""]

    def _grow(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        name, value = self._header
        self._header = [b"", b""]
        if name.lower() != b"content-disposition":
            return
        _, options = parse_options_header(value)
        if options.get(b"name") == b"content":
            if self._seen:
                raise InvalidInput("the multipart/form-data body has two 'content' fields")
            self._in_content = self._seen = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_content:
            return
        self.size += end - start
        if self.limit is not None and self.size > self.limit:
            raise BodyTooLarge(f"object larger than the server's limit of {self.limit} bytes")
        self._out.append(data[start:end])

    def _part_end(self) -> None:
        self._in_content = False

    def _end(self) -> None:
        self._ended = True


MAX_BOUNDARY = 200


def boundary_of(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("send the object as multipart/form-data with the field 'content'")
    if len(boundary) > MAX_BOUNDARY:  # RFC 2046: at most 70; the parser fails past 256
        raise InvalidInput(f"the multipart boundary is longer than {MAX_BOUNDARY} characters")
    return boundary


def check_length(request: Request, limit: int | None) -> None:
    """Refuse an over-long body from its Content-Length, before reading any of it."""
    length = request.headers.get("content-length", "")
    if limit is not None and length.isdigit() and int(length) > limit + FRAMING_SLACK:
        raise BodyTooLarge(f"body of {length} bytes is over the server's limit of {limit} bytes")


async def receive_content(
    request: Request, ctx: Context, user: str, consume: Callable[[Iterator[bytes]], T]
) -> T:
    """``consume(chunks)`` in a thread, ``chunks`` being the content field as it arrives."""
    limit = ctx.limits.max_body
    form = ContentField(boundary_of(request), limit)
    check_length(request, limit)
    send, receive = anyio.create_memory_object_stream[Item](QUEUED_BATCHES)
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_pump, request, send, limit, ctx.limits.body_idle_s)
        try:
            first = await receive.receive()  # waited for here, where it costs no thread
            chunks = _chunks(form, first, receive)
            with upload_slot(ctx, user):
                work = partial(consume, chunks)
                result = await anyio.to_thread.run_sync(work, limiter=ctx.uploads)
        except Exception as err:  # raised below, not as a task group's ExceptionGroup
            failure = err
        tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _pump(
    request: Request, send: MemoryObjectSendStream[Item], limit: int | None, idle_s: float
) -> None:
    """Receive the body into batches; a failure is passed on for the consumer to raise."""
    batch: list[bytes] = []  # joined by the worker: no copy in the event loop
    total = size = 0
    async with send:
        try:
            async for chunk in body_chunks(request, idle_s):
                total += len(chunk)
                if limit is not None and total > limit + FRAMING_SLACK:
                    raise BodyTooLarge(f"body over the server's limit of {limit} bytes")
                batch.append(chunk)
                size += len(chunk)
                if size >= BATCH:
                    await send.send(batch)
                    batch, size = [], 0
            await send.send(batch)
            await send.send(None)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as err:
            await send.send(err)


def _chunks(
    form: ContentField, first: Item, receive: MemoryObjectReceiveStream[Item]
) -> Iterator[bytes]:
    item = first
    while item is not None:
        if isinstance(item, Exception):
            raise item
        yield from form.feed(b"".join(item))
        item = anyio.from_thread.run(receive.receive)
    form.close()
