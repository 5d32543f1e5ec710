"""Operations: /healthz, /metrics, the access log's fields, and where the protocol
document is (issue 14, bullet 2)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
from serverutil import Server, running_server

from manifest_tool.server import app as server_app
from manifest_tool.server import health

ROOT = Path(__file__).resolve().parent.parent
LINE_RE = re.compile(
    r'^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<client>\S+) (?P<user>\S+) '
    r'"(?P<method>[A-Z]+) (?P<target>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r"(?P<secs>\d+\.\d{3})s$"
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ops"), users=["alice"]) as server:
        yield server


def test_healthz_ok_without_a_key(srv: Server) -> None:
    resp = requests.get(f"{srv.url}/healthz", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def _asgi_get(app: Any, path: str) -> tuple[int, bytes]:
    """One GET straight into the ASGI app: no network, no client library."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "scheme": "http",
        "server": ("test", 80), "http_version": "1.1", "root_path": "",
    }
    anyio.run(app, scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_healthz_503_when_the_store_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = server_app.create_app(tmp_path / "data")
    assert _asgi_get(app, "/healthz") == (200, b'{"status":"ok"}')

    def broken(_store: object) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(health, "probe", broken)
    status, body = _asgi_get(app, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "unavailable"}  # no error text for strangers


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_counts_routes_bytes_uploads_and_store_size(srv: Server) -> None:
    s = requests.Session()
    s.headers.update(srv.headers("alice"))
    node = {"parent": "/alice", "name": "metrics-art", "type": "Artifact"}
    assert s.post(f"{srv.url}/apis/v1/nodes", json=node, timeout=10).status_code == 200
    payload = b"x" * 12345
    files = {"content": ("f", payload)}
    path = "/alice/metrics-art/a.bin"
    up = s.post(f"{srv.url}/apis/v1/objects", params={"path": path}, files=files, timeout=10)
    assert up.status_code == 200, up.text
    assert s.get(f"{srv.url}/apis/v1/nodes/info", params={"node": "/alice/nope"}).status_code == 404

    resp = requests.get(f"{srv.url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = _samples(resp.text)
    route = 'manifest_tool_requests_total{method="%s",route="%s",status="%s"}'
    assert got[route % ("POST", "/apis/v1/objects", 200)] == 1
    assert got[route % ("GET", "/apis/v1/nodes/info", 404)] == 1
    assert not [k for k in got if "metrics-art" in k]  # templates, never paths
    assert got["manifest_tool_request_bytes_total"] >= len(payload)
    assert got["manifest_tool_response_bytes_total"] > 0
    assert got["manifest_tool_upload_seconds_count"] == 1
    assert got['manifest_tool_upload_seconds_bucket{le="+Inf"}'] == 1
    assert got["manifest_tool_store_objects"] == 1
    assert got["manifest_tool_store_object_bytes"] == len(payload)
    assert got["manifest_tool_store_blob_bytes"] == len(payload)


def test_access_log_line_has_time_user_status_bytes_duration(srv: Server) -> None:
    info = requests.get(
        f"{srv.url}/apis/v1/nodes/info", params={"node": "/alice"}, headers=srv.headers("alice")
    )
    assert info.status_code == 200
    requests.get(f"{srv.url}/healthz", timeout=10)
    lines = [m for line in srv.logs().splitlines() if (m := LINE_RE.match(line))]
    mine = [m for m in lines if m["target"] == "/apis/v1/nodes/info?node=%2Falice"]
    assert mine, srv.logs()
    assert mine[-1]["user"] == "alice"
    assert mine[-1]["status"] == "200"
    assert int(mine[-1]["bytes"]) == len(info.content)
    anonymous = [m for m in lines if m["target"] == "/healthz"]
    assert anonymous and anonymous[-1]["user"] == "-"
    assert srv.keys["alice"] not in srv.logs()


def test_protocol_document_is_shipped_and_cited() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    for endpoint in ("/healthz", "/metrics", "/ui/"):
        assert endpoint in text
    assert "docs/protocol.md" in server_app.openapi_document()["info"]["description"]
