"""Run nodes, the graphs API and T9k's error answers, over raw HTTP shaped exactly
like the requests of T9k's SDK 0.6.0b0 (``Run.upload``, ``_EMClient.request``).

The SDK sends its key as the ``apikey`` query parameter and JSON bodies; the tests
do the same, so what passes here is what the SDK sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from serverutil import Server, running_server

A, B = "alice", "bob"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("runs"), users=[A, B]) as server:
        yield server


class Sdk:
    """One user's requests, as the SDK's client makes them."""

    def __init__(self, srv: Server, user: str) -> None:
        self.url, self.key = srv.url, srv.keys[user]

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        params = {**kw.pop("params", {}), "apikey": self.key}
        return requests.request(
            method, self.url + path, params=params, timeout=30, allow_redirects=False, **kw
        )

    def create(self, parent: str, name: str, kind: str, storage: int) -> requests.Response:
        body = {
            "parent": parent,
            "name": name,
            "labels": [],
            "description": "",
            "type": kind,
            "storageType": storage,
            "extra": json.dumps({"alternativeName": f"{name}_alt"}),
        }
        return self.request("POST", "/apis/v1/nodes", json=body)

    def make(self, parent: str, name: str, kind: str) -> str:
        resp = self.create(parent, name, kind, 0 if kind == "Folder" else 2)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    def graph(self, node_id: str) -> requests.Response:
        return self.request("GET", "/apis/v1/graphs", params={"current": node_id})

    def link(self, pairs: list[tuple[str, str]]) -> requests.Response:
        body = {"graphs": [{"from": src, "to": dst} for src, dst in pairs]}
        return self.request("POST", "/apis/v1/graphs", json=body)


@pytest.fixture
def folder(srv: Server, request: pytest.FixtureRequest) -> str:
    """A fresh folder of alice's per test, on the shared server."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    Sdk(srv, A).make(f"/{A}", name, "Folder")
    return f"/{A}/{name}"


def ids(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["id"] for n in nodes]


def test_run_upload_as_the_sdk_does_it(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    run_id = sdk.make(folder, "train", "Run")
    # the Run's own files, metrics below a subdirectory
    for key in ("metadata.yaml", "metrics/train.yaml", "stdout.log"):
        put = sdk.request(
            "POST",
            "/apis/v1/objects",
            params={"path": f"{folder}/train/{key}"},
            files={"content": ("f", key.encode())},
        )
        assert put.status_code == 200, put.text
    listed = sdk.request("GET", "/apis/v1/objects/ls", params={"path": f"{folder}/train"})
    assert sorted(o["path"] for o in listed.json()["data"]) == [
        "metadata.yaml",
        "metrics/train.yaml",
        "stdout.log",
    ]
    empty = sdk.graph(run_id)
    assert (empty.status_code, empty.json()["in"], empty.json()["out"]) == (200, [], [])

    data_id, model_id = sdk.make(folder, "data", "Artifact"), sdk.make(folder, "model", "Artifact")
    assert sdk.link([(data_id, run_id), (run_id, model_id)]).status_code == 200
    got = sdk.graph(run_id).json()
    assert (ids(got["in"]), ids(got["out"])) == ([data_id], [model_id])
    assert got["in"][0]["path"] == f"{folder}/data"
    assert got["current"]["type"] == "Run"
    data_side = sdk.graph(data_id).json()
    assert (ids(data_side["in"]), ids(data_side["out"])) == ([], [run_id])
    assert sdk.link([(data_id, run_id)]).status_code == 200  # again: nothing changes
    assert ids(sdk.graph(run_id).json()["in"]) == [data_id]


def test_run_nodes_in_info_and_listings(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    run_id = sdk.make(folder, "r", "Run")
    sdk.make(folder, "a", "Artifact")
    info = sdk.request("GET", "/apis/v1/nodes/info", params={"node": run_id}).json()
    assert (info["type"], info["storageType"], info["path"]) == ("Run", 2, f"{folder}/r")
    runs = sdk.request("GET", "/apis/v1/nodes", params={"parent": folder, "type": "Run"})
    assert [n["name"] for n in runs.json()["data"]] == ["r"]
    below = sdk.create(f"{folder}/r", "child", "Folder", 0)
    assert (below.status_code, below.text) == (403, "permission denied")
    assert sdk.request("DELETE", "/apis/v1/nodes", json={"node": f"{folder}/r"}).ok
    gone = sdk.request("GET", "/apis/v1/nodes/info", params={"node": run_id})
    assert gone.status_code == 404


def test_deleting_a_node_removes_its_edges(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    run_id, art_id = sdk.make(folder, "r", "Run"), sdk.make(folder, "a", "Artifact")
    assert sdk.link([(art_id, run_id)]).ok
    assert sdk.request("DELETE", "/apis/v1/nodes", json={"node": f"{folder}/a"}).ok
    assert sdk.graph(run_id).json()["in"] == []
    # a node made again at the same path is a new node, with no lineage
    again = sdk.make(folder, "a", "Artifact")
    assert sdk.graph(again).json()["out"] == []


def test_deleting_a_folder_removes_the_edges_below_it(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    run_id = sdk.make(folder, "r", "Run")
    sdk.make(folder, "sub", "Folder")
    art_id = sdk.make(f"{folder}/sub", "a", "Artifact")
    assert sdk.link([(run_id, art_id)]).ok
    assert sdk.request("DELETE", "/apis/v1/nodes", json={"node": f"{folder}/sub"}).ok
    assert sdk.graph(run_id).json()["out"] == []


def test_a_user_cannot_link_or_read_another_users_nodes(srv: Server, folder: str) -> None:
    alice, bob = Sdk(srv, A), Sdk(srv, B)
    run_id, art_id = alice.make(folder, "r", "Run"), alice.make(folder, "a", "Artifact")
    bobs_run = bob.make(f"/{B}", f"r-{folder.rsplit('/', 1)[1]}", "Run")
    refused = bob.link([(art_id, bobs_run)])
    assert (refused.status_code, refused.text) == (403, "permission denied")
    refused = alice.link([(art_id, run_id), (run_id, bobs_run)])
    assert refused.status_code == 403
    assert alice.graph(run_id).json()["in"] == []  # all or nothing: the good pair too
    hidden = bob.graph(run_id)
    assert (hidden.status_code, hidden.text) == (404, f"node not found [{run_id}]")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"graphs": "x"},
        {"graphs": [{"from": "a"}]},
        {"graphs": [["a", "b"]]},
        {"graphs": [{"from": 1, "to": 2}]},
    ],
)
def test_malformed_graphs_are_400(srv: Server, body: dict[str, Any]) -> None:
    resp = Sdk(srv, A).request("POST", "/apis/v1/graphs", json=body)
    assert resp.status_code == 400
    assert "graphs" in resp.json()["error"]


def test_edges_that_make_no_sense_are_refused(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    run_id, art_id = sdk.make(folder, "r", "Run"), sdk.make(folder, "a", "Artifact")
    other_art = sdk.make(folder, "b", "Artifact")
    folder_id = sdk.request("GET", "/apis/v1/nodes/info", params={"node": folder}).json()["id"]
    for pair, words in [
        ((run_id, run_id), "itself"),
        ((folder_id, run_id), "is a Folder"),
        ((art_id, other_art), "needs a Run"),
    ]:
        resp = sdk.link([pair])
        assert resp.status_code == 400 and words in resp.json()["error"], resp.text
    missing = "00000000-0000-4000-8000-000000000000"
    resp = sdk.link([(missing, run_id)])
    assert (resp.status_code, resp.text) == (404, f"node not found [{missing}]")
    assert sdk.graph(missing).status_code == 404
    assert sdk.request("GET", "/apis/v1/graphs").status_code == 400  # no 'current'


@pytest.mark.parametrize("path", ["/apis/v1/nope", "/t9k/aistore/server/apis/v1/nodes", "/"])
def test_unknown_routes_are_404_with_an_empty_body(srv: Server, path: str) -> None:
    # the SDK: 404 and no text -> ValueError('Incorrect URL')
    resp = Sdk(srv, A).request("GET", path)
    assert (resp.status_code, resp.text) == (404, "")


def test_an_empty_key_is_400_query_is_needed(srv: Server) -> None:
    resp = requests.get(f"{srv.url}/oauth2/userinfo", params={"apikey": ""}, timeout=10)
    assert resp.status_code == 400
    assert resp.text.startswith("query is needed")  # the SDK: ValueError('Empty string ...')
    missing = requests.get(f"{srv.url}/oauth2/userinfo", timeout=10)
    assert missing.status_code == 401  # no key at all stays 401


def test_a_node_below_an_artifact_is_403_permission_denied(srv: Server, folder: str) -> None:
    # the SDK: RuntimeError('Permission denied'); a 404 would send its make_folder
    # into a loop (the "missing folder" exists, the create fails again)
    sdk = Sdk(srv, A)
    sdk.make(folder, "a", "Artifact")
    resp = sdk.create(f"{folder}/a", "child", "Artifact", 2)
    assert (resp.status_code, resp.text) == (403, "permission denied")
    assert "is an Artifact, not a Folder" in resp.headers["X-Error-Detail"]


def test_a_create_with_only_storage_type_2_is_an_artifact(srv: Server, folder: str) -> None:
    sdk = Sdk(srv, A)
    body = {"parent": folder, "name": "x", "storageType": 2}
    resp = sdk.request("POST", "/apis/v1/nodes", json=body)
    assert resp.status_code == 200
    info = sdk.request("GET", "/apis/v1/nodes/info", params={"node": f"{folder}/x"}).json()
    assert info["type"] == "Artifact"


def test_a_wrong_prefix_is_404_with_an_empty_body(tmp_path: Path) -> None:
    # the SDK's login against a host missing the mount prefix: 'Incorrect URL'
    with running_server(tmp_path, users=[A], extra_args=["--prefix", "/t9k/aistore/server"]) as p:
        params = {"apikey": p.keys[A]}
        wrong = requests.get(p.url + "/oauth2/userinfo", params=params, timeout=10)
        assert (wrong.status_code, wrong.text) == (404, "")
        inside = requests.get(p.url + "/t9k/aistore/server/apis/v1/nope", params=params, timeout=10)
        assert (inside.status_code, inside.text) == (404, "")
