"""No request may rename, move or delete a user root, or put one user's path under
another's: every write endpoint, tried by dave against erin's namespace and his own
root, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from serverutil import Server, running_server

D, E = "dave", "erin"


def call(srv: Server, user: str, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, srv.url + path, headers=srv.headers(user), timeout=10, **kw)


def make(srv: Server, user: str, parent: str, name: str, kind: str) -> None:
    body = {"parent": parent, "name": name, "type": kind}
    assert call(srv, user, "POST", "/apis/v1/nodes", json=body).status_code == 200


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ns"), users=[D, E]) as server:
        for user in (D, E):
            make(server, user, f"/{user}", "f", "Folder")
            make(server, user, f"/{user}/f", "art", "Artifact")
            put = call(
                server,
                user,
                "POST",
                "/apis/v1/objects",
                params={"path": f"/{user}/f/art/obj"},
                files={"content": ("obj", user.encode())},
            )
            assert put.status_code == 200
        yield server


def snapshot(srv: Server) -> dict[str, Any]:
    """What each user sees of their own tree: root, children, one object."""
    seen: dict[str, Any] = {}
    for user in (D, E):
        root = call(srv, user, "GET", "/apis/v1/nodes/info", params={"node": f"/{user}"}).json()
        kids = call(srv, user, "GET", "/apis/v1/nodes", params={"parent": f"/{user}"}).json()
        obj = call(srv, user, "GET", "/apis/v1/objects", params={"path": f"/{user}/f/art/obj"})
        seen[user] = (
            (root["id"], root["name"], root["path"]),
            [n["path"] for n in kids["data"]],
            obj.content,
        )
    return seen


NODES = "/apis/v1/nodes"
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # update: rename a root (the reported takeover), in every spelling of the path
    ("PUT", NODES, {"json": {"node": f"/{D}", "name": E}}, 403),
    ("PUT", NODES, {"json": {"node": f"/{D}/", "name": E}}, 403),
    ("PUT", NODES, {"json": {"node": f"//{D}", "name": E}}, 403),
    ("PUT", NODES, {"json": {"node": f"/{D}", "name": "dave2"}}, 403),
    ("PUT", NODES, {"json": {"node": f"/{E}", "name": "x"}}, 403),
    # update: a rename that escapes its parent, or a move
    ("PUT", NODES, {"json": {"node": f"/{D}/f", "name": f"../{E}"}}, 400),
    ("PUT", NODES, {"json": {"node": f"/{D}/f", "name": f"{E}/f2"}}, 400),
    ("PUT", NODES, {"json": {"node": f"/{D}/f", "name": ".."}}, 400),
    ("PUT", NODES, {"json": {"node": f"/{D}/f", "parent": f"/{E}"}}, 400),
    ("PUT", NODES, {"json": {"node": f"/{D}/f", "path": f"/{E}/f2"}}, 400),
    ("PUT", NODES, {"json": {"node": f"/{E}/f", "name": "mine"}}, 403),
    # delete: a root, the other user's nodes
    ("DELETE", NODES, {"json": {"node": f"/{D}"}}, 403),
    ("DELETE", NODES, {"json": {"node": f"/{D}/"}}, 403),
    ("DELETE", NODES, {"json": {"node": f"/{E}"}}, 403),
    ("DELETE", NODES, {"json": {"node": f"/{E}/f"}}, 403),
    # create: at the top level, under the other user, through '..'
    ("POST", NODES, {"json": {"parent": "/", "name": E, "type": "Folder"}}, 400),
    ("POST", NODES, {"json": {"parent": f"/{E}", "name": "x", "type": "Folder"}}, 403),
    ("POST", NODES, {"json": {"parent": f"/{D}/..", "name": E, "type": "Folder"}}, 400),
    ("POST", NODES, {"json": {"parent": f"/{D}/../{E}", "name": "x", "type": "Folder"}}, 400),
    # objects: put into a root or the other user's artifact, delete there
    (
        "POST",
        "/apis/v1/objects",
        {"params": {"path": f"/{D}/x"}, "files": {"content": ("x", b"x")}},
        400,
    ),
    (
        "POST",
        "/apis/v1/objects",
        {"params": {"path": f"/{E}/f/art/obj"}, "files": {"content": ("x", b"x")}},
        403,
    ),
    ("POST", "/apis/v1/objects/delete", {"json": {"node": f"/{D}", "paths": ["f"]}}, 400),
    ("POST", "/apis/v1/objects/delete", {"json": {"node": f"/{E}/f/art", "paths": ["obj"]}}, 403),
    # multipart: start in the other user's artifact
    ("POST", "/apis/v1/objects/multipart", {"params": {"path": f"/{E}/f/art/obj"}}, 403),
]


@pytest.mark.parametrize(("method", "path", "kw", "status"), CASES)
def test_write_cannot_take_over_a_namespace(
    srv: Server, method: str, path: str, kw: dict[str, Any], status: int
) -> None:
    before = snapshot(srv)
    resp = call(srv, D, method, path, **kw)
    assert resp.status_code == status, resp.text
    assert snapshot(srv) == before


def test_another_users_upload_cannot_be_used(srv: Server) -> None:
    """erin's upload id in dave's hands: not found for every multipart call."""
    params = {"path": f"/{E}/f/art/big"}
    upload_id = call(srv, E, "POST", "/apis/v1/objects/multipart", params=params).json()["uploadId"]
    route = f"/apis/v1/objects/multipart/{upload_id}"
    before = snapshot(srv)
    mine = {"path": f"/{D}/f/art/big"}
    part = {"files": {"content": ("p", b"dave")}}
    assert call(srv, D, "PUT", route, params={**mine, "partNumber": 1}, **part).status_code == 404
    assert call(srv, D, "PUT", route, params={**params, "partNumber": 1}, **part).status_code == 403
    body = {"parts": [{"partNumber": 1, "etag": "x"}]}
    assert call(srv, D, "POST", route, params=mine, json=body).status_code == 404
    assert call(srv, D, "DELETE", route, params=mine).status_code == 404
    assert snapshot(srv) == before
    assert call(srv, E, "DELETE", route, params=params).status_code == 200


def test_renaming_a_root_to_itself_and_describing_it_are_allowed(srv: Server) -> None:
    resp = call(srv, D, "PUT", NODES, json={"node": f"/{D}", "name": D, "description": "mine"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == f"/{D}"
