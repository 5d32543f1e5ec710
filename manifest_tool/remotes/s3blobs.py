"""Blobs in an S3 bucket (tested on Ceph RGW): write-once keys, verified writes.

Every write goes to a fresh random key (``PREFIX/blobs/<uuid>``), so no object is
ever overwritten; ``If-None-Match: *`` makes a single PUT refuse a key that exists.
Which key holds a given content is decided in the metadata database (the strong
hash's row in ``blobs``), never by S3: a writer that loses the dedup race deletes
its own new key.

Before the first byte is sent, the key is recorded as an *intent* row in its own
committed transaction; the commit that references the blob deletes the intent in
the same transaction. So a replica killed between the S3 write and that commit
leaves an intent naming the key, and GC finds it through the database, never by
listing the bucket (a listing can still show a deleted key).

Bodies stream through bounded buffers: up to ``PART`` bytes are one ``PUT``,
larger ones a multipart upload of ``PART``-sized parts; every PUT and part carries
Content-MD5, which RGW verifies. boto3 over plain http needs a seekable body, hence
``BytesIO`` of the part buffer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import InvalidInput, RemoteError
from .blobs import INLINE_MAX, BlobReader, BlobWriter
from .db import redact_url

PART = 8 * 1024 * 1024  # one part buffer
IN_FLIGHT = 2  # parts sent at once by one writer: it holds at most 3 buffers
READ_CHUNK = 1024 * 1024


BUCKET_RE = re.compile(r"[A-Za-z0-9._-]{3,63}")  # what S3 clients accept, checked up front


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix ending in '/' or empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInput(f"invalid blob store URL {redact_url(url)!r}: use s3://BUCKET/PREFIX")
    if "@" in parts.netloc:  # keys come from the AWS_* variables, never from the URL
        raise InvalidInput(
            f"invalid blob store URL {redact_url(url)!r}: no credentials in it;"
            " S3 keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if not BUCKET_RE.fullmatch(parts.netloc):
        raise InvalidInput(
            f"invalid bucket name {parts.netloc!r}: 3-63 letters, digits, '.', '-' or '_'"
        )
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def make_client(endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(
        s3={"addressing_style": "path"},  # RGW without wildcard DNS
        retries={"max_attempts": 5, "mode": "standard"},
        # RGW verifies Content-MD5 but not the newer x-amz-checksum trailers
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=config,
    )


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class S3Sink:
    """Streams one blob to its fresh key: one PUT, or a multipart upload past PART."""

    def __init__(self, blobs: S3Blobs, key: str) -> None:
        self.blobs = blobs
        self.location: str | None = key
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: deque[Future[tuple[int, str, int]]] = deque()
        self._sent = 0
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._buf += chunk
        while len(self._buf) >= PART:
            part = bytes(self._buf[:PART])
            del self._buf[:PART]
            self._send_part(part)

    def _send_part(self, data: bytes) -> None:
        """Send a part while the next one fills: at most IN_FLIGHT parts pending, so
        memory stays at a few part buffers whatever the object's size."""
        if self._upload_id is None:
            made = self.blobs.client.create_multipart_upload(
                Bucket=self.blobs.bucket, Key=self.location
            )
            self._upload_id = made["UploadId"]
        number = len(self._parts) + len(self._pending) + 1
        self._pending.append(self.blobs.pool.submit(self._upload_part, number, data))
        while len(self._pending) >= IN_FLIGHT:
            self._settle()

    def _upload_part(self, number: int, data: bytes) -> tuple[int, str, int]:
        sent = self.blobs.client.upload_part(
            Bucket=self.blobs.bucket,
            Key=self.location,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=io.BytesIO(data),
            ContentMD5=content_md5(data),
        )
        return number, sent["ETag"], len(data)

    def _settle(self) -> None:
        number, etag, size = self._pending.popleft().result()
        self._parts.append({"PartNumber": number, "ETag": etag})
        self._sent += size
        self.blobs.intents.touch(self.location)  # a long upload is alive, not garbage

    def close(self) -> None:
        client, bucket = self.blobs.client, self.blobs.bucket
        data, self._buf = bytes(self._buf), bytearray()
        if self._upload_id is None:
            client.put_object(
                Bucket=bucket,
                Key=self.location,
                Body=io.BytesIO(data),
                ContentMD5=content_md5(data),
                IfNoneMatch="*",  # write-once: never replace a key
            )
        else:
            if data:
                self._send_part(data)
            while self._pending:
                self._settle()
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self.location,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._done = True
            # RGW's completion answer has an empty ETag: check what was stored instead
            stored = client.head_object(Bucket=bucket, Key=self.location)["ContentLength"]
            if stored != self._sent:
                raise RemoteError(f"S3 stored {stored} of {self._sent} bytes of {self.location}")
        self._done = True

    def discard(self) -> None:
        """Best effort: what is left is still named by the intent, for GC."""
        try:
            if self._done:
                self.blobs.client.delete_object(Bucket=self.blobs.bucket, Key=self.location)
            elif self._upload_id is not None:
                self.blobs.client.abort_multipart_upload(
                    Bucket=self.blobs.bucket, Key=self.location, UploadId=self._upload_id
                )
        except Exception:
            return
        self._buf = bytearray()
        self.blobs.intents.forget(self.location)


class S3Reader:
    def __init__(self, blobs: S3Blobs, key: str) -> None:
        self.blobs = blobs
        self.key = key
        self._body: Any = None

    def chunks(self, offset: int, length: int) -> Iterator[bytes]:
        if length <= 0:
            return
        got = self.blobs.client.get_object(
            Bucket=self.blobs.bucket, Key=self.key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        self._body = got["Body"]
        yield from self._body.iter_chunks(READ_CHUNK)

    def read_bytes(self) -> bytes:
        got = self.blobs.client.get_object(Bucket=self.blobs.bucket, Key=self.key)
        with got["Body"] as body:
            return body.read()  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


class S3Blobs:
    """Blob bytes in ``s3://bucket/prefix``; intents recorded through ``record``."""

    kind = "s3"
    deferred_removal = True  # a download may have resolved the key: GC waits a grace

    def __init__(
        self, url: str, endpoint: str | None = None, inline_max: int = INLINE_MAX
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = url
        self.client = make_client(endpoint)
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3-part")
        self.inline_max = inline_max
        self.intents: Intents = _NoIntents()
        self._check_bucket()

    def describe(self) -> str:
        return self.url

    def has_file(self, blob: str) -> bool:
        """Blobs here are inline rows or S3 keys a row names: never a file alone."""
        return False

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            raise RemoteError(f"cannot use bucket {self.bucket!r}: S3 answered {code}") from None
        except BotoCoreError as err:
            raise RemoteError(f"cannot reach S3 for bucket {self.bucket!r}: {err}") from None

    def new_key(self, kind: str = "blobs") -> str:
        return f"{self.prefix}{kind}/{uuid.uuid4().hex}"

    def open_sink(self, kind: str = "blobs") -> S3Sink:
        key = self.new_key(kind)
        self.intents.record(key)  # committed before the first byte is sent
        return S3Sink(self, key)

    def writer(self, max_size: int | None = None, inline_max: int | None = None) -> BlobWriter:
        limit = self.inline_max if inline_max is None else inline_max
        return BlobWriter(self.open_sink, max_size, limit)

    def place(self, writer: BlobWriter, info: Any) -> None:
        """Nothing to move: the key was written before the commit."""

    def drop_unused(self, writer: BlobWriter) -> None:
        writer.discard()  # deletes the key, then its intent

    def remove(self, blob: str, location: str | None) -> None:
        if location:
            self.client.delete_object(Bucket=self.bucket, Key=location)

    def leftover_size(self, key: str) -> int:
        """Bytes an unfinished write left on ``key``: the stored object's, or the parts
        of multipart uploads still open on it (for GC's report)."""
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError:
            pass  # no object (yet): count the parts sent so far
        total = 0
        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for up in listing.get("Uploads", []):
            if up["Key"] != key:
                continue
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=up["UploadId"]
            )
            try:
                total += sum(p["Size"] for page in pages for p in page.get("Parts", []))
            except ClientError:  # completed or aborted meanwhile
                continue
        return total

    def abort_uploads(self, key: str) -> None:
        """Abort S3 multipart uploads a killed writer left on ``key`` (named by an intent)."""
        from botocore.exceptions import ClientError

        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for up in listing.get("Uploads", []):
            if up["Key"] == key:
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=up["UploadId"]
                    )
                except ClientError as err:  # its writer completed or aborted it meanwhile
                    if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise

    def open(self, blob: str, location: str | None) -> BlobReader:
        if location is None:
            raise RemoteError(f"blob {blob} has no S3 key")
        return S3Reader(self, location)


class Intents(Protocol):
    """The database side of intents (see ``blobrows.Intents``)."""

    def record(self, location: str) -> None: ...

    def touch(self, location: str | None) -> None: ...

    def forget(self, location: str | None) -> None: ...


class _NoIntents:
    def record(self, location: str) -> None:
        raise RuntimeError("S3Blobs used before a store connected its intents")

    def touch(self, location: str | None) -> None:
        raise RuntimeError("S3Blobs used before a store connected its intents")

    forget = touch
