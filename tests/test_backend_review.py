"""Regressions found by a hostile review of the PostgreSQL + S3 server backends."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import engines
import pytest
import requests
from conftest import USER, run_in_process
from serverutil import Replicas, Server, running_replicas, running_server

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


def _artifact(server: Server | Replicas) -> str:
    name = f"r-{uuid.uuid4().hex[:8]}"
    HttpRemote(server.url, server.keys[USER]).create_node(f"/{USER}", name, ARTIFACT)
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


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("embedded"), users=[USER]) as server:
        yield server


NUL_CALLS: list[tuple[str, str, dict[str, Any], str]] = [
    # (method, route, request arguments with {art} filled in, the field the 400 names)
    (
        "POST",
        "/apis/v1/nodes",
        {"json": {"parent": f"/{USER}", "name": "n", "type": ARTIFACT, "description": "a\x00b"}},
        "'description'",
    ),
    (
        "POST",
        "/apis/v1/nodes",
        {"json": {"parent": f"/{USER}", "name": "n", "type": ARTIFACT, "labels": ["a\x00"]}},
        "'labels'",
    ),
    ("PUT", "/apis/v1/nodes", {"json": {"node": "{art}", "extra": '{"a": 1}\x00'}}, "'extra'"),
    ("GET", "/apis/v1/nodes/info", {"params": {"node": "abc\x00"}}, "'node'"),
    ("POST", "/apis/v1/nodes/infos", {"json": {"nodes": ["{art}\x00"]}}, "'nodes'"),
    ("GET", "/apis/v1/graphs", {"params": {"current": "x\x00"}}, "'current'"),
    ("POST", "/apis/v1/graphs", {"json": {"graphs": [{"from": "a\x00", "to": "b"}]}}, "'graphs'"),
    ("POST", "/apis/v1/objects/delete", {"json": {"node": "{art}", "paths": ["a\x00"]}}, "'paths'"),
    ("GET", "/apis/v1/objects/ls", {"params": {"path": "{art}", "after": "\x00"}}, "'after'"),
    (
        "DELETE",
        "/apis/v1/objects/multipart/ab%00cd",
        {"params": {"path": "{art}/k"}},
        "'upload_id'",
    ),
    (
        "POST",
        "/apis/v1/objects/multipart/ab%00cd",
        {"params": {"path": "{art}/k"}, "json": {"parts": [{"partNumber": 1, "etag": "x"}]}},
        "'upload_id'",
    ),
]


def _fill(value: Any, art: str) -> Any:
    if isinstance(value, str):
        return value.replace("{art}", art)
    if isinstance(value, dict):
        return {k: _fill(v, art) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, art) for v in value]
    return value


@pytest.mark.parametrize("engine", ["embedded", "replica"])
def test_a_nul_in_client_text_is_the_same_400_on_every_engine(
    engine: str, request: pytest.FixtureRequest
) -> None:
    server: Server | Replicas = request.getfixturevalue(engine)
    art = _artifact(server)
    for method, route, args, name in NUL_CALLS:
        resp = requests.request(
            method,
            server.url + route,
            headers=server.headers(USER),
            timeout=30,
            **_fill(args, art),
        )
        assert resp.status_code == 400, (route, resp.text)
        error = resp.json()["error"]
        assert name in error and "NUL" in error, (route, error)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--blobs", "s3://bucket/p", "--s3-endpoint", "notaurl"], "invalid S3 endpoint"),
        (["--blobs", "s3://Bad_Bucket!/p"], "invalid bucket name 'Bad_Bucket!'"),
        (["--blobs", "s3://u:PW1234@bucket/p"], "no credentials in it"),
        (["--db", "sqlite:relative.db"], "use sqlite:///ABSOLUTE/PATH"),
        (["--db", "sqlite:///proc/nope/x.sqlite"], "cannot open the database"),
    ],
)
def test_a_bad_store_flag_is_a_one_line_error(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    chosen = {"--db": f"sqlite:///{tmp_path}/db.sqlite", "--blobs": f"file://{tmp_path}/b"}
    chosen.update(zip(flags[::2], flags[1::2], strict=True))
    args = [item for pair in chosen.items() for item in pair]
    result = run_in_process("gc", *args, cwd=tmp_path)
    assert result.code == 1 and message in result.err, result
    assert len(result.err.strip().splitlines()) == 1 and "PW1234" not in result.err
    assert not (tmp_path / "relative.db").exists()


@pytest.mark.parametrize("engine", ["embedded", "replica"])
def test_an_api_key_with_a_nul_is_an_unknown_key(
    engine: str, request: pytest.FixtureRequest
) -> None:
    server: Server | Replicas = request.getfixturevalue(engine)
    resp = requests.get(
        server.url + "/oauth2/userinfo", params={"apikey": "a\x00bcdefgh"}, timeout=30
    )
    assert resp.status_code == 400 and resp.text == "api key not found\n", resp.text
