"""Every call of PROTOCOL.md against a real ``manifest-tool serve``."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import store_rows
from serverutil import Server, running_server

A = "alice"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("api")) as server:
        yield server


class Api:
    """Alice's calls, answers returned as they come."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.s = requests.Session()
        self.s.headers.update(srv.headers(A))

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.s.request(method, self.srv.url + path, timeout=30, **kw)

    def put(self, path: str, data: bytes, **kw: Any) -> requests.Response:
        return self.call(
            "POST", "/apis/v1/objects", params={"path": path}, files={"content": ("f", data)}, **kw
        )

    def node(self, parent: str, name: str, type: str = "Artifact") -> str:
        resp = self.call(
            "POST", "/apis/v1/nodes", json={"parent": parent, "name": name, "type": type}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])


@pytest.fixture
def api(srv: Server) -> Api:
    return Api(srv)


@pytest.fixture
def art(api: Api, request: pytest.FixtureRequest) -> str:
    """A fresh Artifact node per test."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    api.node(f"/{A}", name)
    return f"/{A}/{name}"


def blob_files(srv: Server) -> list[str]:
    """The stored blobs: files, and small ones inline in the database."""
    root = srv.data / "blobs"
    inline = store_rows(srv.data, "SELECT hash FROM blobs WHERE data IS NOT NULL")
    files = [p.parent.name + p.name for p in root.glob("??/*") if p.is_file()]
    return files + [r["hash"] for r in inline]


def test_userinfo(api: Api) -> None:
    assert api.call("GET", "/oauth2/userinfo").json() == {"preferred_username": A}


def test_node_create_info_update_delete(api: Api) -> None:
    node_id = api.node(f"/{A}", "folder1", "Folder")
    info = api.call("GET", "/apis/v1/nodes/info", params={"node": f"/{A}/folder1"}).json()
    assert info["id"] == node_id and info["type"] == "Folder" and info["storageType"] == 0
    by_id = api.call("GET", "/apis/v1/nodes/info", params={"node": node_id}).json()
    assert by_id["path"] == f"/{A}/folder1"
    api.node(f"/{A}/folder1", "a1")
    upd = api.call(
        "PUT",
        "/apis/v1/nodes",
        json={"node": f"/{A}/folder1/a1", "labels": ["x"], "description": "d", "extra": '{"k": 1}'},
    )
    assert upd.status_code == 200
    assert (upd.json()["labels"], upd.json()["extra"]) == (["x"], '{"k": 1}')
    renamed = api.call("PUT", "/apis/v1/nodes", json={"node": f"/{A}/folder1/a1", "name": "a2"})
    assert renamed.json()["path"] == f"/{A}/folder1/a2"
    assert api.call("DELETE", "/apis/v1/nodes", json={"node": f"/{A}/folder1"}).json() == {}
    gone = api.call("GET", "/apis/v1/nodes/info", params={"node": f"/{A}/folder1/a2"})
    assert gone.status_code == 404 and gone.text.endswith(f"[/{A}/folder1/a2]")


def test_storage_type_gives_the_type(api: Api) -> None:
    resp = api.call(
        "POST", "/apis/v1/nodes", json={"parent": f"/{A}", "name": "st2", "storageType": 2}
    )
    assert resp.status_code == 200
    info = api.call("GET", "/apis/v1/nodes/info", params={"node": f"/{A}/st2"}).json()
    assert (info["type"], info["storageType"]) == ("Artifact", 2)


def test_conflict_and_missing_parent(api: Api) -> None:
    api.node(f"/{A}", "dup")
    again = api.call(
        "POST", "/apis/v1/nodes", json={"parent": f"/{A}", "name": "dup", "type": "Artifact"}
    )
    assert again.status_code == 400 and "Invalid conflicting node Name" in again.text
    orphan = api.call(
        "POST", "/apis/v1/nodes", json={"parent": f"/{A}/no/such", "name": "x", "type": "Folder"}
    )
    assert orphan.status_code == 404
    assert "node not found" in orphan.text and orphan.text.endswith(f"[/{A}/no/such]")


def test_list_nodes_pages(api: Api) -> None:
    api.node(f"/{A}", "pages", "Folder")
    for i in range(5):
        api.node(f"/{A}/pages", f"n{i}", "Folder" if i % 2 else "Artifact")
    seen = []
    for page in (1, 2, 3):
        body = api.call(
            "GET", "/apis/v1/nodes", params={"parent": f"/{A}/pages", "page": page, "size": 2}
        ).json()
        assert body["pagination"] == {"page": page, "size": 2, "total": 5}
        seen += [n["name"] for n in body["data"]]
    assert seen == [f"n{i}" for i in range(5)]
    empty = api.call("GET", "/apis/v1/nodes", params={"parent": f"/{A}/pages", "page": 9})
    assert empty.json()["data"] == []
    arts = api.call("GET", "/apis/v1/nodes", params={"parent": f"/{A}/pages", "type": "Artifact"})
    assert [n["name"] for n in arts.json()["data"]] == ["n0", "n2", "n4"]


def test_put_get_list_delete_objects(api: Api, art: str) -> None:
    data = os.urandom(3000)
    put = api.put(f"{art}/d/x.bin", data)
    assert put.status_code == 200, put.text
    assert put.json()["checksum"] == hashlib.md5(data).hexdigest()
    assert put.json()["size_bytes"] == 3000 and put.json()["path_type"] == "object"
    got = api.call("GET", "/apis/v1/objects", params={"path": f"{art}/d/x.bin"})
    assert got.content == data
    for i in range(4):
        api.put(f"{art}/k{i}", b"%d" % i)
    pages = [
        api.call("GET", "/apis/v1/objects/ls", params={"path": art, "page": p, "size": 2}).json()
        for p in (1, 2, 3)
    ]
    assert [o["path"] for p in pages for o in p["data"]] == ["d/x.bin", "k0", "k1", "k2", "k3"]
    assert pages[0]["pagination"]["total"] == 5
    default = api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()
    assert default["pagination"]["size"] == 1000
    deleted = api.call("POST", "/apis/v1/objects/delete", json={"node": art, "paths": ["k0", "k1"]})
    assert deleted.json() == {}
    left = api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()["data"]
    assert [o["path"] for o in left] == ["d/x.bin", "k2", "k3"]
    missing = api.call("GET", "/apis/v1/objects", params={"path": f"{art}/k0"})
    assert missing.status_code == 404 and missing.text.endswith(f"[{art}/k0]")


def test_put_replaces(api: Api, art: str) -> None:
    api.put(f"{art}/f", b"one")
    api.put(f"{art}/f", b"two")
    assert api.call("GET", "/apis/v1/objects", params={"path": f"{art}/f"}).content == b"two"


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        ("bytes=2-5", 206, b"2345"),
        ("bytes=7-", 206, b"789"),
        ("bytes=-3", 206, b"789"),
        ("bytes=8-100", 206, b"89"),
        ("bytes=0-0,2-3", 200, b"0123456789"),
    ],
)
def test_range_reads(api: Api, art: str, header: str, status: int, body: bytes) -> None:
    api.put(f"{art}/r", b"0123456789")
    got = api.call(
        "GET", "/apis/v1/objects", params={"path": f"{art}/r"}, headers={"Range": header}
    )
    assert (got.status_code, got.content) == (status, body)
    if status == 206:
        assert got.headers["Content-Range"].endswith("/10")


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=5-2"])
def test_unsatisfiable_range(api: Api, art: str, header: str) -> None:
    api.put(f"{art}/r", b"0123456789")
    got = api.call(
        "GET", "/apis/v1/objects", params={"path": f"{art}/r"}, headers={"Range": header}
    )
    assert got.status_code == 416
    assert got.headers["Content-Range"] == "bytes */10"


def test_multipart_round_trip(api: Api, art: str) -> None:
    parts = [os.urandom(1000), os.urandom(2000), os.urandom(10)]
    whole = b"".join(parts)
    q = {"path": f"{art}/big/file"}
    upload_id = api.call("POST", "/apis/v1/objects/multipart", params=q).json()["uploadId"]
    route = f"/apis/v1/objects/multipart/{upload_id}"
    etags = []
    for n, part in reversed(list(enumerate(parts, 1))):  # order of arrival does not matter
        resp = api.call("PUT", route, params={**q, "partNumber": n}, files={"content": ("p", part)})
        assert resp.json()["eTag"] == hashlib.md5(part).hexdigest()
        etags.append({"etag": resp.json()["eTag"], "partNumber": n})
    before = api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()["data"]
    assert before == []  # nothing visible before finish
    done = api.call(
        "POST", route, params={**q, "md5": hashlib.md5(whole).hexdigest()}, json={"parts": etags}
    )
    assert done.status_code == 200, done.text
    assert done.json()["checksum"] == hashlib.md5(whole).hexdigest()
    assert api.call("GET", "/apis/v1/objects", params=q).content == whole
    assert not any((api.srv.data / "uploads").iterdir())


def test_multipart_abort(api: Api, art: str) -> None:
    q = {"path": f"{art}/aborted"}
    upload_id = api.call("POST", "/apis/v1/objects/multipart", params=q).json()["uploadId"]
    route = f"/apis/v1/objects/multipart/{upload_id}"
    api.call("PUT", route, params={**q, "partNumber": 1}, files={"content": ("p", b"x")})
    assert api.call("DELETE", route, params=q).json() == {}
    finish = api.call("POST", route, params=q, json={"parts": [{"etag": "", "partNumber": 1}]})
    assert finish.status_code == 404
    assert api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()["data"] == []


def test_multipart_finish_mismatch_stores_nothing(api: Api, art: str) -> None:
    q = {"path": f"{art}/mp"}
    upload_id = api.call("POST", "/apis/v1/objects/multipart", params=q).json()["uploadId"]
    route = f"/apis/v1/objects/multipart/{upload_id}"
    part = api.call("PUT", route, params={**q, "partNumber": 1}, files={"content": ("p", b"abc")})
    bad = api.call(
        "POST",
        route,
        params={**q, "md5": "0" * 32},
        json={"parts": [{"etag": part.json()["eTag"], "partNumber": 1}]},
    )
    assert bad.status_code == 400 and bad.json()["error"].startswith("checksum mismatch")
    assert api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()["data"] == []


@pytest.mark.parametrize("how", ["header", "query"])
def test_verified_write(api: Api, art: str, how: str) -> None:
    data = os.urandom(5000)
    blobs_before = set(blob_files(api.srv))
    good, bad = hashlib.md5(data).digest(), hashlib.md5(b"other").digest()

    def put(digest: bytes) -> requests.Response:
        if how == "header":
            return api.put(
                f"{art}/v", data, headers={"Content-MD5": base64.b64encode(digest).decode()}
            )
        return api.call(
            "POST",
            "/apis/v1/objects",
            params={"path": f"{art}/v", "md5": digest.hex()},
            files={"content": ("f", data)},
        )

    wrong = put(bad)
    assert wrong.status_code == 400
    assert wrong.json()["error"].startswith("checksum mismatch")
    assert api.call("GET", "/apis/v1/objects/ls", params={"path": art}).json()["data"] == []
    assert set(blob_files(api.srv)) == blobs_before
    assert not list((api.srv.data / "blobs" / "tmp").iterdir())
    assert put(good).status_code == 200


def test_identical_content_stored_once(api: Api, srv: Server) -> None:
    data = os.urandom(4096)
    before = len(blob_files(srv))
    api.node(f"/{A}", "dedup1")
    api.node(f"/{A}", "dedup2")
    for path in ("/dedup1/a", "/dedup1/b", "/dedup2/a"):
        assert api.put(f"/{A}{path}", data).status_code == 200
    assert len(blob_files(srv)) == before + 1


def test_bad_input_is_400(api: Api, art: str) -> None:
    cases = [
        api.call("POST", "/apis/v1/nodes", data=b"not json"),
        api.call("POST", "/apis/v1/nodes", json=[1]),
        api.call("POST", "/apis/v1/nodes", json={"parent": f"/{A}", "name": 3}),
        # Runs are nodes now (test_server_runs.py); the Asset Hub's types are not
        api.call("POST", "/apis/v1/nodes", json={"parent": f"/{A}", "name": "x", "type": "Model"}),
        api.call("GET", "/apis/v1/nodes", params={"parent": f"/{A}", "page": "zero"}),
        api.call("GET", "/apis/v1/nodes"),
        api.call("POST", "/apis/v1/objects", params={"path": f"{art}/f"}, data=b"raw"),
        api.call(
            "POST", "/apis/v1/objects", params={"path": f"{art}/f"}, files={"other": ("f", b"x")}
        ),
        api.call(
            "POST",
            "/apis/v1/objects",
            params={"path": f"{art}/f", "md5": "xyz"},
            files={"content": ("f", b"x")},
        ),
    ]
    for resp in cases:
        assert resp.status_code == 400, (resp.request.url, resp.text)
        assert "error" in resp.json()


def test_an_md5_with_a_trailing_newline_is_not_32_hex_digits(api: Api, art: str) -> None:
    data = b"hello"
    resp = api.call(
        "POST",
        "/apis/v1/objects",
        params={"path": f"{art}/nl", "md5": hashlib.md5(data).hexdigest() + "\n"},
        files={"content": ("f", data)},
    )
    assert resp.status_code == 400 and "must be 32 hex digits" in resp.json()["error"]


@pytest.mark.parametrize("revision", [2**63, 2**64, 10**30, -1])
def test_an_out_of_range_objects_revision_is_a_400(api: Api, art: str, revision: int) -> None:
    body = {"node": art, "description": "x", "ifObjectsRevision": revision}
    resp = api.call("PUT", "/apis/v1/nodes", json=body)
    assert resp.status_code == 400 and "ifObjectsRevision" in resp.json()["error"], resp.text


@pytest.mark.parametrize("value", [" 1", "1 ", "\u0661", "+1", "1_0"])
def test_page_and_size_take_only_ascii_digits(api: Api, value: str) -> None:
    for name in ("page", "size"):
        resp = api.call("GET", "/apis/v1/nodes", params={"parent": f"/{A}", name: value})
        assert resp.status_code == 400, (name, value, resp.text)
        assert f"'{name}' must be an integer" in resp.json()["error"]


def test_body_limit(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A], extra_args=["--max-body-mb", "1"]) as small:
        api = Api(small)
        api.node(f"/{A}", "lim")
        ok = api.put(f"/{A}/lim/fits", os.urandom(1024 * 1024))
        assert ok.status_code == 200, ok.text
        blobs = set(blob_files(small))
        over = api.put(f"/{A}/lim/over", os.urandom(1024 * 1024 + 1))
        assert over.status_code == 413 and "limit" in over.json()["error"]
        huge = api.put(f"/{A}/lim/huge", os.urandom(3 * 1024 * 1024))
        assert huge.status_code == 413
        listed = api.call("GET", "/apis/v1/objects/ls", params={"path": f"/{A}/lim"}).json()
        assert [o["path"] for o in listed["data"]] == ["fits"]
        assert set(blob_files(small)) == blobs
        assert not list((small.data / "blobs" / "tmp").iterdir())


def test_prefix(tmp_path: Path) -> None:
    with running_server(tmp_path, users=[A], extra_args=["--prefix", "/t9k/aistore/server"]) as p:
        base = p.url + "/t9k/aistore/server"
        who = requests.get(base + "/oauth2/userinfo", headers=p.headers(A), timeout=10)
        assert who.json() == {"preferred_username": A}
        assert requests.get(p.url + "/oauth2/userinfo", timeout=10).status_code == 404


def test_openapi_served(api: Api) -> None:
    doc = requests.get(api.srv.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert "/apis/v1/objects/multipart/{upload_id}" in doc["paths"]
