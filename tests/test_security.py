"""Keys, users' trees and paths that try to escape, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from serverutil import Server, running_server

A, B = "alice", "bob"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("sec")) as server:
        for user in (A, B):
            for parent, name, kind in (
                (f"/{user}", "f", "Folder"),
                (f"/{user}/f", "art", "Artifact"),
            ):
                resp = requests.post(
                    f"{server.url}/apis/v1/nodes",
                    headers=server.headers(user),
                    json={"parent": parent, "name": name, "type": kind},
                    timeout=10,
                )
                assert resp.status_code == 200, resp.text
        put = requests.post(
            f"{server.url}/apis/v1/objects",
            headers=server.headers(B),
            params={"path": f"/{B}/f/art/secret"},
            files={"content": ("f", b"bob's")},
            timeout=10,
        )
        assert put.status_code == 200
        yield server


def call(srv: Server, method: str, path: str, user: str | None = A, **kw: Any) -> requests.Response:
    headers = srv.headers(user) if user else {}
    return requests.request(method, srv.url + path, headers=headers, timeout=10, **kw)


def test_no_key_is_401(srv: Server) -> None:
    for path in ("/oauth2/userinfo", "/apis/v1/nodes?parent=/alice", "/apis/v1/objects/ls"):
        assert call(srv, "GET", path, user=None).status_code == 401


def test_unknown_key_is_400_with_t9k_text(srv: Server) -> None:
    for auth in (
        {"headers": {"Authorization": "Bearer 00000000-0000-0000-0000-000000000000"}},
        {"params": {"apikey": "00000000-0000-0000-0000-000000000000"}},
    ):
        resp = requests.get(f"{srv.url}/oauth2/userinfo", timeout=10, **auth)  # type: ignore[arg-type]
        assert resp.status_code == 400
        assert resp.text.startswith("api key") and resp.text.endswith("not found\n")


def test_apikey_query_accepted(srv: Server) -> None:
    resp = requests.get(f"{srv.url}/oauth2/userinfo", params={"apikey": srv.keys[B]}, timeout=10)
    assert resp.json() == {"preferred_username": B}


def test_revoked_key_stops_working(tmp_path: Any) -> None:
    import subprocess
    import sys

    with running_server(tmp_path, users=["carol"]) as one:
        assert call(one, "GET", "/oauth2/userinfo", user="carol").status_code == 200
        subprocess.run(
            [
                sys.executable,
                "-m",
                "manifest_tool",
                "user",
                "revoke",
                "carol",
                "--data",
                str(one.data),
            ],
            check=True,
            capture_output=True,
        )
        assert call(one, "GET", "/oauth2/userinfo", user="carol").status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("GET", "/apis/v1/nodes", {"params": {"parent": f"/{B}"}}),
        ("GET", "/apis/v1/nodes/info", {"params": {"node": f"/{B}/f"}}),
        ("POST", "/apis/v1/nodes", {"json": {"parent": f"/{B}", "name": "x", "type": "Folder"}}),
        ("PUT", "/apis/v1/nodes", {"json": {"node": f"/{B}/f", "description": "mine"}}),
        ("DELETE", "/apis/v1/nodes", {"json": {"node": f"/{B}/f"}}),
        ("GET", "/apis/v1/objects/ls", {"params": {"path": f"/{B}/f/art"}}),
        ("GET", "/apis/v1/objects", {"params": {"path": f"/{B}/f/art/secret"}}),
        (
            "POST",
            "/apis/v1/objects",
            {"params": {"path": f"/{B}/f/art/secret"}, "files": {"content": ("f", b"alice's")}},
        ),
        ("POST", "/apis/v1/objects/delete", {"json": {"node": f"/{B}/f/art", "paths": ["secret"]}}),
        ("POST", "/apis/v1/objects/multipart", {"params": {"path": f"/{B}/f/art/new"}}),
    ],
)
def test_other_users_tree_is_403(srv: Server, method: str, path: str, kw: dict[str, Any]) -> None:
    resp = call(srv, method, path, **kw)
    assert (resp.status_code, resp.text) == (403, "permission denied")
    still = call(srv, "GET", "/apis/v1/objects", user=B, params={"path": f"/{B}/f/art/secret"})
    assert still.content == b"bob's"


def test_node_id_of_other_user_is_not_found(srv: Server) -> None:
    bob_id = call(srv, "GET", "/apis/v1/nodes/info", user=B, params={"node": f"/{B}/f"}).json()[
        "id"
    ]
    assert call(srv, "GET", "/apis/v1/nodes/info", params={"node": bob_id}).status_code == 404


ESCAPES = [
    f"/{A}/f/art/../../../{B}/f/art/secret",
    f"/{A}/f/art/%2e%2e/x",
    f"/{A}/f/art/a/../b",
    f"/{A}/f/art//etc/passwd",
    f"/{A}/f/art/x//y",
    f"/{A}/f//art/x",
    f"/{A}/f/art/./x",
    f"/{A}/f/art/x\\..\\y",
    f"{A}/f/art/x",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escaping_object_paths_refused(srv: Server, path: str) -> None:
    # ``%2e%2e`` is sent as is, so the server itself must decode and refuse it.
    query = "path=" + path.replace("/", "%2F") if "%2e" in path else None
    kw: dict[str, Any] = {"params": query} if query else {"params": {"path": path}}
    put = call(srv, "POST", "/apis/v1/objects", files={"content": ("f", b"x")}, **kw)
    get = call(srv, "GET", "/apis/v1/objects", **kw)
    assert put.status_code == 400, put.text
    assert get.status_code == 400, get.text
    listed = call(srv, "GET", "/apis/v1/objects/ls", params={"path": f"/{A}/f/art"}).json()
    assert listed["data"] == []


@pytest.mark.parametrize("name", ["..", ".", "a/b", "", "x\\y"])
def test_escaping_node_names_refused(srv: Server, name: str) -> None:
    resp = call(
        srv, "POST", "/apis/v1/nodes", json={"parent": f"/{A}", "name": name, "type": "Folder"}
    )
    assert resp.status_code == 400


@pytest.mark.parametrize("parent", [f"/{A}/../{B}", f"/{A}//f", f"/{A}/%2e%2e"])
def test_escaping_node_paths_refused(srv: Server, parent: str) -> None:
    resp = call(srv, "GET", "/apis/v1/nodes", params={"parent": parent.replace("%2e", ".")})
    assert resp.status_code == 400


def test_delete_objects_refuses_escaping_keys(srv: Server) -> None:
    resp = call(
        srv,
        "POST",
        "/apis/v1/objects/delete",
        json={"node": f"/{A}/f/art/../../{B}/f/art", "paths": ["secret"]},
    )
    assert resp.status_code == 400


def test_keys_never_logged(srv: Server) -> None:
    for user in (A, B):
        call(srv, "GET", "/oauth2/userinfo", user=None, params={"apikey": srv.keys[user]})
        call(srv, "GET", "/apis/v1/nodes", params={"parent": f"/{user}", "apikey": srv.keys[user]})
    call(srv, "GET", "/oauth2/userinfo", user=None, params={"apikey": "not-a-key-123"})
    logs = srv.logs()
    assert "apikey=***" in logs  # the access log ran...
    for secret in (*srv.keys.values(), "not-a-key-123"):
        assert secret not in logs  # ...without the keys
