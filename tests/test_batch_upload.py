"""The batch upload extension: many small objects in one request, each verified by
its MD5 and stored or refused on its own; bounded; and a client that falls back to one
request per object on a server without it."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import USER, Cli, Project, cli_env
from serverutil import Server, running_server

from manifest_tool.errors import ChecksumMismatch, InvalidInput
from manifest_tool.remotes.base import Upload
from manifest_tool.remotes.formbody import batch_form
from manifest_tool.remotes.http import HttpRemote
from manifest_tool.remotes.store import Store
from manifest_tool.remotes.users import add_user
from manifest_tool.server import Limits, create_app
from manifest_tool.server.metrics import Metrics

ART = f"/{USER}/art"
BATCH = "/apis/v1/objects/batch"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("batch"), users=[USER, "bob"]) as server:
        api = HttpRemote(server.url, server.keys[USER])
        api.create_node(f"/{USER}", "art", "Artifact")
        yield server
        assert "Traceback" not in server.logs() and "unexpected error" not in server.logs()


def upload(key: str, data: bytes, md5: str | None = None) -> Upload:
    return Upload(key, md5 or hashlib.md5(data).hexdigest(), len(data), data=data)


def post(srv: Server, uploads: list[Upload], node: str = ART, user: str = USER) -> Any:
    content_type, body = batch_form(uploads)
    headers = {**srv.headers(user), "Content-Type": content_type}
    return requests.post(
        srv.url + BATCH, params={"path": node}, data=body, headers=headers, timeout=30
    )


def form(index: object, content: bytes, boundary: str = "b0undary") -> tuple[str, bytes]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="index"\r\n\r\n'
            f"{json.dumps(index)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def post_form(srv: Server, index: object, content: bytes) -> requests.Response:
    content_type, body = form(index, content)
    headers = {**srv.headers(USER), "Content-Type": content_type}
    return requests.post(srv.url + BATCH, params={"path": ART}, data=body, headers=headers)


def objects(srv: Server, node: str = ART) -> dict[str, str]:
    return {o.path: o.checksum for o in HttpRemote(srv.url, srv.keys[USER]).list_objects(node)}


def test_every_object_of_a_batch_is_stored_byte_exact(srv: Server, tmp_path: Path) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 9)
    data = {
        "a.txt": b"alpha\n",
        "empty": b"",
        "deep/er/crlf.bin": b"\r\n--b0undary\r\n" * 50,  # looks like framing: is not
        "nön-ascii/ключ.txt": "ключ".encode(),
        "metadata.yaml": b"name: art\n",
    }
    uploads = [upload(k, v) for k, v in data.items()]
    raw = (tmp_path / "f.bin").read_bytes()
    md5 = hashlib.md5(raw).hexdigest()
    uploads.append(Upload("from/file.bin", md5, len(raw), tmp_path / "f.bin"))
    data["from/file.bin"] = raw

    infos = api.put_objects(ART, uploads)

    assert [i.path for i in infos] == [u.key for u in uploads]
    assert [i.checksum for i in infos] == [u.md5 for u in uploads]
    for key, content in data.items():
        api.get_object(ART, key, tmp_path / "got" / key)
        assert (tmp_path / "got" / key).read_bytes() == content, key
    assert srv.logs().count(f'"POST {BATCH}?') == 1


def test_a_wrong_md5_fails_that_object_and_stores_the_others(srv: Server) -> None:
    good1, good2 = upload("md5/one", b"one"), upload("md5/two", b"two")
    bad = upload("md5/bad", b"tampered", md5=hashlib.md5(b"original").hexdigest())

    resp = post(srv, [good1, bad, good2])

    assert resp.status_code == 200, resp.text
    rows = resp.json()["data"]
    assert [r["path"] for r in rows] == ["md5/one", "md5/bad", "md5/two"]
    assert rows[1]["error"].startswith("checksum mismatch: expected md5 ")
    assert rows[0]["checksum"] == good1.md5 and rows[2]["checksum"] == good2.md5
    stored = objects(srv)
    assert stored["md5/one"] == good1.md5 and stored["md5/two"] == good2.md5
    assert "md5/bad" not in stored


def test_the_client_reports_a_failed_object_as_a_checksum_mismatch(srv: Server) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    bad = upload("client/bad", b"changed", md5=hashlib.md5(b"hashed").hexdigest())
    with pytest.raises(ChecksumMismatch, match=r"checksum mismatch.*client/bad"):
        api.put_objects(ART, [upload("client/ok", b"ok"), bad])


@pytest.mark.parametrize(
    ("index", "content", "message"),
    [
        ({"objects": [{"path": "x", "size": 3, "md5": "0" * 32}]}, b"toolong", "add up to 3"),
        ({"objects": [{"path": "../x", "size": 0, "md5": "0" * 32}]}, b"", "'..' segment"),
        ({"objects": [{"path": "x", "size": -1, "md5": "0" * 32}]}, b"", "non-negative"),
        ({"objects": [{"path": "x", "size": 0, "md5": "nothex"}]}, b"", "32 hex digits"),
        ({"objects": [{"path": "x", "size": 0}]}, b"", "32 hex digits"),
        ({"objects": [{"path": "x", "size": 0, "md5": "0" * 32 + "\n"}]}, b"", "32 hex digits"),
        ({"objects": "x"}, b"", "a list 'objects'"),
        (["x"], b"", "a list 'objects'"),
        ({"objects": [{"path": "\ud800", "size": 0, "md5": "0" * 32}]}, b"", "surrogate"),
    ],
)
def test_a_bad_index_is_a_400_and_stores_nothing(
    srv: Server, index: object, content: bytes, message: str
) -> None:
    before = objects(srv)
    resp = post_form(srv, index, content)
    assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    assert objects(srv) == before


def test_one_key_twice_is_a_400_and_stores_nothing(srv: Server) -> None:
    resp = post(srv, [upload("twice/k", b"1"), upload("twice/k", b"2")])
    assert resp.status_code == 400 and "twice" in resp.json()["error"]
    assert "twice/k" not in objects(srv)


def test_a_form_without_an_index_or_not_a_form_is_a_400(srv: Server) -> None:
    headers = {**srv.headers(USER), "Content-Type": "multipart/form-data; boundary=zz"}
    body = b'--zz\r\nContent-Disposition: form-data; name="content"\r\n\r\nabc\r\n--zz--\r\n'
    resp = requests.post(srv.url + BATCH, params={"path": ART}, data=body, headers=headers)
    assert resp.status_code == 400 and "no field 'index'" in resp.json()["error"]
    resp = requests.post(srv.url + BATCH, params={"path": ART}, data=body[:-6], headers=headers)
    assert resp.status_code == 400 and "ended early" in resp.json()["error"]
    plain = {**srv.headers(USER), "Content-Type": "application/json"}
    resp = requests.post(srv.url + BATCH, params={"path": ART}, data=b"{}", headers=plain)
    assert resp.status_code == 400 and "multipart/form-data" in resp.json()["error"]


def test_limits_are_4xx_naming_them(srv: Server) -> None:
    many = [upload(f"many/{i}", b"") for i in range(1001)]
    resp = post(srv, many)
    assert resp.status_code == 413, resp.text
    assert "limit of 1000 objects per batch" in resp.json()["error"]
    big = {"objects": [{"path": "big", "size": 17 * 1024 * 1024, "md5": "0" * 32}]}
    resp = post_form(srv, big, b"")
    assert resp.status_code == 413 and f"limit of {16 * 1024 * 1024} bytes" in resp.text
    headers = {
        **srv.headers(USER),
        "Content-Type": "multipart/form-data; boundary=zz",
        "Content-Length": str(1 << 30),
    }
    with requests.Session() as session:
        prepared = requests.Request(
            "POST", srv.url + BATCH, params={"path": ART}, headers=headers, data=b""
        ).prepare()
        prepared.headers["Content-Length"] = str(1 << 30)
        resp = session.send(prepared, timeout=30)
    assert resp.status_code == 413 and "per batch" in resp.json()["error"]
    assert not any(k.startswith("many/") for k in objects(srv))


def test_the_client_halves_a_batch_the_server_finds_too_large(srv: Server) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    uploads = [upload(f"halves/{i:04d}", str(i).encode()) for i in range(1001)]
    infos = api.put_objects(ART, uploads)
    assert [i.checksum for i in infos] == [u.md5 for u in uploads]
    stored = objects(srv)
    assert all(stored[u.key] == u.md5 for u in uploads)


def test_refusals_of_the_caller_keep_the_protocol_texts(srv: Server) -> None:
    one = [upload("x", b"x")]
    assert post(srv, one, node=f"/{USER}/absent").text.endswith(f"[/{USER}/absent]")
    resp = post(srv, one, user="bob")
    assert (resp.status_code, resp.text) == (403, "permission denied")
    content_type, body = batch_form(one)
    resp = requests.post(
        srv.url + BATCH, params={"path": ART}, data=body, headers={"Content-Type": content_type}
    )
    assert resp.status_code == 401


def test_a_server_without_the_batch_call_gets_one_request_per_object(srv: Server) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    api.batch_route = "/apis/v1/objects/no-batch-here"  # what a server without it lacks
    first = [upload(f"fallback/{i}", f"{i}".encode()) for i in range(5)]
    second = [upload(f"fallback/more{i}", f"{i}".encode()) for i in range(3)]

    api.put_objects(ART, first)
    api.put_objects(ART, second)

    log = srv.settled_logs()
    assert log.count(f'"POST {api.batch_route}?') == 1  # asked once, then never again
    assert len(re.findall(r'"POST /apis/v1/objects\?path=[^"]*fallback', log)) == 8
    stored = objects(srv)
    assert all(stored[u.key] == u.md5 for u in [*first, *second])


def test_a_server_that_refuses_the_batch_form_gets_one_request_per_object(srv: Server) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    api.batch_route = "/apis/v1/objects/delete"  # a route that answers the form with a 400
    first = [upload(f"refused/{i}", f"{i}".encode()) for i in range(4)]
    second = [upload(f"refused/more{i}", f"{i}".encode()) for i in range(2)]

    api.put_objects(ART, first)
    api.put_objects(ART, second)

    log = srv.settled_logs()
    assert log.count('"POST /apis/v1/objects/delete?path=') == 1  # then never again
    assert len(re.findall(r'"POST /apis/v1/objects\?path=[^"]*refused', log)) == 6
    stored = objects(srv)
    assert all(stored[u.key] == u.md5 for u in [*first, *second])


def test_a_bad_object_refused_in_a_batch_is_reported_by_its_own_put(srv: Server) -> None:
    api = HttpRemote(srv.url, srv.keys[USER])
    with pytest.raises(InvalidInput, match=r"'\.\.' segment"):
        api.put_objects(ART, [upload("good/one", b"1"), upload("bad/../two", b"2")])
    batches = srv.logs().count(f'"POST {BATCH}?path=%2F{USER}%2Fart" 200')
    assert api.put_objects(ART, [upload("good/three", b"3")])[0].path == "good/three"
    assert srv.logs().count(f'"POST {BATCH}?path=%2F{USER}%2Fart" 200') == batches + 1


def test_an_apply_of_many_small_files_sends_one_request_per_batch(
    project: Project, cli: Cli, tmp_path: Path
) -> None:
    files = 1100
    for i in range(files):
        project.write(f"data/d{i // 100}/f{i:04d}.txt", f"file {i}\n")
    project.manifest(
        "version: 1\nartifacts:\n  - name: small\n    folder: many\n"
        "    make_folder: true\n    objects:\n      - dir: data\n"
    )
    with running_server(tmp_path / "srv", users=[USER]) as server:
        env = cli_env(MANIFEST_TOOL_REMOTE=server.url, MANIFEST_TOOL_API_KEY=server.keys[USER])
        result = cli("apply", env=env)
        assert result.code == 0, result.err
        log = server.settled_logs()
        stored = objects(server, f"/{USER}/many/small")
    batches = log.count(f'"POST {BATCH}?')
    singles = len(re.findall(r'"POST /apis/v1/objects\?', log))
    assert batches == -(-files // HttpRemote.batch_count), batches  # 1,000 a batch: 2
    assert singles <= 2, singles  # metadata.yaml (and references.yaml) only
    assert len(stored) == files + 1
    assert stored["data/d3/f0345.txt"] == hashlib.md5(b"file 345\n").hexdigest()


@contextmanager
def server_with(root: Path, limits: Limits) -> Iterator[tuple[HttpRemote, Metrics]]:
    """The real app with other limits than ``serve`` sets, on a loopback port in this
    process; alice's remote over it, with her artifact ``art``, and the app's counts."""
    import uvicorn

    data = root / "data"
    data.mkdir(parents=True)
    store = Store(data)
    key = add_user(store.db, USER)
    store.close()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(data, limits=limits)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive(), "the server did not start"
        api = HttpRemote(f"http://127.0.0.1:{sock.getsockname()[1]}", key)
        api.create_node(f"/{USER}", "art", "Artifact")
        yield api, app.metrics
        api.close()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_server_with_smaller_batch_limits_gets_halves(tmp_path: Path) -> None:
    with server_with(tmp_path, Limits(batch_objects=8, batch_bytes=100)) as (api, _):
        uploads = [upload(f"small/{i:02d}", b"%02d" % i * 5) for i in range(30)]
        infos = api.put_objects(ART, uploads)
        assert [i.checksum for i in infos] == [u.md5 for u in uploads]
        assert {o.path: o.checksum for o in api.list_objects(ART)} == {
            u.key: u.md5 for u in uploads
        }


def test_listings_page_in_what_the_server_allows(tmp_path: Path) -> None:
    uploads = [upload(f"many/{i:04d}", b"") for i in range(2500)]
    # one refuses our big pages (as a T9k server might), one takes them
    for page_size, asked in ((1000, {400: 1, 200: 6}), (10_000, {200: 2})):
        limits = Limits(page_size=page_size)
        with server_with(tmp_path / str(page_size), limits) as (api, metrics):
            for start in range(0, len(uploads), 500):
                api.put_objects(ART, uploads[start : start + 500])
            listed = api.list_objects(ART)
            assert [o.path for o in listed] == [u.key for u in uploads]
            assert api.list_objects(ART) == listed
            requests_ls = {
                status: n
                for (method, route, status), n in metrics.requests.items()
                if route == "/apis/v1/objects/ls"
            }
            assert requests_ls == asked
