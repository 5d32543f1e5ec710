"""The real PostgreSQL and S3 (Ceph RGW) the shared-store tests run against.

Found through the environment: ``MT_TEST_PG_DSN`` (a superuser DSN),
``MT_TEST_S3_ENDPOINT`` and the standard ``AWS_*`` keys. Each test gets a fresh,
uniquely named database and S3 prefix (in one bucket per test run; ``s3_bucket``
makes a bucket of its own), dropped afterwards. Without the engines a test
fails when ``CI`` is set (CI must run them) and is skipped, with the reason shown,
on a developer machine.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest


def _missing(what: str) -> None:
    reason = f"{what} not set: source the engines' settings (see README) to run this test"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def pg_dsn() -> str:
    """The administrative PostgreSQL DSN (fails or skips when absent)."""
    dsn = os.environ.get("MT_TEST_PG_DSN", "")
    if not dsn:
        _missing("MT_TEST_PG_DSN")
    return dsn


def s3_endpoint() -> str:
    """The S3 endpoint URL (fails or skips when it or the AWS keys are absent)."""
    endpoint = os.environ.get("MT_TEST_S3_ENDPOINT", "")
    if not endpoint:
        _missing("MT_TEST_S3_ENDPOINT")
    if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        _missing("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    return endpoint


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def _with_db(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database's DSN; the database is dropped afterwards."""
    import psycopg

    admin = pg_dsn()
    name = unique_name("mt_test_")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


@contextmanager
def s3_bucket() -> Iterator[str]:
    """A fresh, empty bucket's name; emptied and removed afterwards."""
    client = s3_client()
    name = unique_name("mt-test-")
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _drop_bucket(client, name)


def _empty(client: Any, name: str, prefix: str = "") -> None:
    uploads = client.get_paginator("list_multipart_uploads")
    for page in uploads.paginate(Bucket=name, Prefix=prefix):
        for up in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys})


def _drop_bucket(client: Any, name: str) -> None:
    _empty(client, name)
    client.delete_bucket(Bucket=name)


_RUN_BUCKET: list[str] = []


def run_bucket() -> str:
    """One bucket for this test run (made on first use, dropped at exit): creating a
    bucket is RGW's slowest call, a fresh prefix per test isolates as well."""
    if not _RUN_BUCKET:
        client = s3_client()
        name = unique_name("mt-test-")
        client.create_bucket(Bucket=name)
        _RUN_BUCKET.append(name)
        atexit.register(_drop_bucket, client, name)
    return _RUN_BUCKET[0]


@contextmanager
def s3_prefix() -> Iterator[str]:
    """``s3://BUCKET/PREFIX``: a fresh prefix in this run's bucket, emptied afterwards."""
    bucket, prefix = run_bucket(), unique_name("t-")
    try:
        yield f"s3://{bucket}/{prefix}"
    finally:
        _empty(s3_client(), bucket, prefix + "/")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as dsn:
        yield dsn


@pytest.fixture
def s3_url() -> Iterator[str]:
    """``s3://BUCKET/PREFIX`` of a fresh prefix (the endpoint from the environment)."""
    with s3_prefix() as url:
        yield url
