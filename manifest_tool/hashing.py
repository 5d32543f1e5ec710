"""Streaming digests: never read a whole file into memory."""

from __future__ import annotations

import hashlib
import heapq
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from json.encoder import encode_basestring as _quote
from operator import itemgetter
from pathlib import Path

from .errors import MissingSource

CHUNK = 1024 * 1024


def md5_file(path: Path | str, buffer: bytearray | None = None) -> str:
    """MD5 hex of a file, read in 1 MiB blocks into one reused buffer."""
    return md5_raw(path, buffer).hex()


def md5_raw(path: Path | str, buffer: bytearray | None = None) -> bytes:
    """MD5 of a file as 16 bytes, read in 1 MiB blocks into one reused buffer.

    Straight through the descriptor, without a Python file object: a third less
    time over 100,000 files of 1 KiB, where opening is most of the work."""
    digest = hashlib.md5()
    buf = buffer if buffer is not None else bytearray(CHUNK)
    view = memoryview(buf)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            while n := os.readv(fd, [buf]):
                digest.update(view[:n])
        finally:
            os.close(fd)
    except OSError as err:  # unreadable, or gone since the walk listed it
        reason = err.strerror or type(err).__name__
        raise MissingSource(
            f"cannot read '{path}': {reason} (check it exists and is readable)"
        ) from None
    return digest.digest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def content_digest(objects: Iterable[dict[str, object]]) -> str:
    """DESIGN: sha256 of the canonical JSON of the sorted objects, 'sha256:<hex>'.

    Each object is {path, size_bytes, checksum} or {path, uri}; metadata.yaml and
    references.yaml are not objects and never part of it. The canonical JSON is
    ``json.dumps(sorted objects, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, written out here directly: for 100,000 objects that is
    a fifth of the time of building and dumping the dicts.
    """
    return _digest(map(_canonical, sorted(objects, key=_path)))


Row = tuple[str, int, str] | tuple[str, str]  # (path, size, md5) or (path, uri)


def rows_digest(
    files: Iterable[tuple[str, int, str]], references: Iterable[tuple[str, str]]
) -> str:
    """``content_digest`` of objects as (path, size, md5) and references as (path, uri)
    tuples: the same digest, without a dict per object (a listing of 300,000)."""
    rows: list[Row] = [*files, *references]
    rows.sort(key=itemgetter(0))
    return _digest(map(_canonical_row, rows))


def sorted_rows_digest(
    files: Iterable[tuple[str, int, str]], references: Iterable[tuple[str, str]]
) -> str:
    """``rows_digest`` of files and references each already sorted by path: streamed,
    nothing held but a slice of the canonical text."""
    refs = tuple(references)
    if not refs:  # the usual case: no merge, and one shape of row
        return _digest(_canonical_files(files))
    rows: Iterable[Row] = heapq.merge(files, refs, key=itemgetter(0))
    return _digest(map(_canonical_row, rows))


def _canonical_files(files: Iterable[tuple[str, int, str]]) -> Iterator[str]:
    """``_canonical_row`` of (path, size, md5) rows, a third faster over 100,000."""
    quote = _quote
    for path, size, checksum in files:
        yield f'{{"checksum":{quote(checksum)},"path":{quote(path)},"size_bytes":{int(size)}}}'


class Unsorted(Exception):
    """Rows given as sorted were not."""


def _in_order(rows: Iterable[tuple[str, int, str]]) -> Iterator[tuple[str, int, str]]:
    last = None
    for row in rows:
        if last is not None and row[0] <= last:
            raise Unsorted(row[0])
        last = row[0]
        yield row


def listed_rows_digest(
    files: Iterable[tuple[str, int, str]], references: Iterable[tuple[str, str]]
) -> str | None:
    """``rows_digest`` of a listing streamed as it arrives, if it arrives sorted by
    path (both of our servers list so); None if it does not, and the caller sorts."""
    try:
        return sorted_rows_digest(_in_order(files), sorted(references))
    except Unsorted:
        return None


def _digest(pieces: Iterable[str]) -> str:
    """sha256 of ``"[" + ",".join(pieces) + "]"``, fed in slices: the whole text of
    300,000 objects would be another 30 MB at once."""
    digest = hashlib.sha256(b"[")
    pieces = iter(pieces)
    first = next(pieces, None)
    if first is not None:
        digest.update(first.encode())
        while block := list(islice(pieces, DIGEST_SLICE)):
            digest.update(("," + ",".join(block)).encode())
    digest.update(b"]")
    return "sha256:" + digest.hexdigest()


DIGEST_SLICE = 4096


def _path(obj: dict[str, object]) -> str:
    return str(obj["path"])


def _canonical(obj: dict[str, object]) -> str:
    path = _quote(str(obj["path"]))
    if "uri" in obj:
        return f'{{"path":{path},"uri":{_quote(str(obj["uri"]))}}}'
    checksum = _quote(str(obj["checksum"]))
    return f'{{"checksum":{checksum},"path":{path},"size_bytes":{int(obj["size_bytes"])}}}'  # type: ignore[call-overload]


def _canonical_row(row: Row) -> str:
    if len(row) == 2:
        return f'{{"path":{_quote(row[0])},"uri":{_quote(row[1])}}}'
    path, size, checksum = row
    return f'{{"checksum":{_quote(checksum)},"path":{_quote(path)},"size_bytes":{int(size)}}}'
