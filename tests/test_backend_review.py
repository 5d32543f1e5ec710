"""Regressions found by a hostile review of the PostgreSQL + S3 server backends."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator

import engines
import pytest
import requests
from conftest import USER
from serverutil import Replicas, running_replicas

from manifest_tool.errors import RemoteError
from manifest_tool.remotes.base import ARTIFACT, Upload
from manifest_tool.remotes.db import PostgresDatabase, redact_url
from manifest_tool.remotes.http import HttpRemote

SECRET = "Sekr3t%2Fpw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:1/db",
        f"postgresql://u@127.0.0.1:1/db?password={SECRET}",
        f"postgresql://127.0.0.1:1/db?sslmode=disable&PassWord={SECRET}&user=u",
    ],
)
def test_a_database_password_never_shows_in_its_name_or_connect_error(url: str) -> None:
    assert "Sekr3t" not in redact_url(url) and "***" in redact_url(url)
    with pytest.raises(RemoteError) as err:
        PostgresDatabase(url)
    assert "cannot connect" in str(err.value) and "Sekr3t" not in str(err.value), err.value


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory.mktemp("review"), users=[USER], n=1) as replicas:
        yield replicas


def _artifact(replica: Replicas) -> str:
    name = f"r-{uuid.uuid4().hex[:8]}"
    HttpRemote(replica.url, replica.keys[USER]).create_node(f"/{USER}", name, ARTIFACT)
    return f"/{USER}/{name}"


def test_an_object_whose_s3_key_vanished_is_an_error_before_any_header(
    replica: Replicas,
) -> None:
    art = _artifact(replica)
    remote = HttpRemote(replica.url, replica.keys[USER])
    data = os.urandom(3 * 1024 * 1024)  # past the inline size: an S3 key
    remote.put_objects(art, [Upload("x", hashlib.md5(data).hexdigest(), len(data), data=data)])
    keys = engines.s3_client().list_objects_v2(Bucket=replica.bucket, Prefix=replica.prefix)
    for item in keys.get("Contents", []):
        engines.s3_client().delete_object(Bucket=replica.bucket, Key=item["Key"])
    resp = requests.get(
        f"{replica.url}/apis/v1/objects",
        params={"path": f"{art}/x"},
        headers=replica.headers(USER),
        timeout=30,
    )
    assert resp.status_code == 503 and "blob storage" in resp.json()["error"], resp.text
    assert "Traceback" not in replica.logs()
