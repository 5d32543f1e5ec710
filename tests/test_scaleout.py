"""Several ``serve`` replicas on one PostgreSQL database and one S3 bucket.

Races across replicas (creates, the digest compare-and-set), replicas killed with
SIGKILL mid-upload and between the S3 write and the metadata commit, GC beside
uploads, and the real CLI and Python API through the round-robin proxy. Needs the
test engines (tests/engines.py): skipped with a reason on a machine without them,
failed under CI.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import engines
import pytest
import requests
from conftest import USER, cli_env, run_cli, tree
from rrproxy import running_proxy
from serverutil import Replicas, running_replicas

from manifest_tool.remotes.base import ARTIFACT, FOLDER, Upload
from manifest_tool.remotes.http import HttpRemote

MiB = 1024 * 1024
CONFLICT_TEXT = "Invalid conflicting node Name"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with running_replicas(tmp_path_factory.mktemp("scaleout"), users=[USER]) as replicas:
        yield replicas


@pytest.fixture
def folder(pair: Replicas) -> str:
    """A fresh folder per test (the replicas are shared by the module)."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    HttpRemote(pair.url, pair.keys[USER]).create_node(f"/{USER}", name, FOLDER)
    return f"/{USER}/{name}"


def session(pair: Replicas) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.headers.update(pair.headers(USER))
    return s


def up(key: str, data: bytes) -> Upload:
    return Upload(key, hashlib.md5(data).hexdigest(), len(data), data=data)


def artifact(pair: Replicas, folder: str, name: str = "art") -> tuple[HttpRemote, str]:
    remote = HttpRemote(pair.url, pair.keys[USER])
    remote.create_node(folder, name, ARTIFACT)
    return remote, f"{folder}/{name}"


def wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- one winner per create ------------------------------------------------------------------


def test_racing_creates_across_replicas_have_one_winner_each_round(
    pair: Replicas, folder: str
) -> None:
    """50 rounds: two clients, one per replica, create the same path at once."""
    sessions = [session(pair) for _ in pair.servers]
    barrier = threading.Barrier(len(sessions))

    def create(i: int, name: str) -> requests.Response:
        body = {"parent": folder, "name": name, "type": ARTIFACT, "storageType": 2,
                "labels": [], "description": f"by {i}", "extra": "{}"}  # fmt: skip
        barrier.wait()
        return sessions[i].post(f"{pair.servers[i].url}/apis/v1/nodes", json=body, timeout=30)

    with ThreadPoolExecutor(len(sessions)) as pool:
        for round_ in range(50):
            name = f"n{round_:02d}"
            answers = list(pool.map(create, range(len(sessions)), [name] * len(sessions)))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 400], (round_, [(a.status_code, a.text) for a in answers])
            winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
            loser = answers[1 - winner]
            assert CONFLICT_TEXT in loser.text
            node = sessions[1 - winner].get(
                f"{pair.servers[1 - winner].url}/apis/v1/nodes/info",
                params={"node": f"{folder}/{name}"},
            )
            assert node.json()["id"] == answers[winner].json()["id"]
            assert node.json()["description"] == f"by {winner}"
    listed = HttpRemote(pair.url, pair.keys[USER]).list_nodes(folder)
    assert [n.name for n in listed] == [f"n{i:02d}" for i in range(50)]


# -- the digest compare-and-set -------------------------------------------------------------


def write_after(barrier: threading.Barrier, remote: HttpRemote, art: str, n: int) -> None:
    barrier.wait()
    remote.put_object(art, up(f"r{n}", b"%d" % n))


def test_digest_compare_and_set_across_replicas(pair: Replicas, folder: str) -> None:
    remote, art = artifact(pair, folder)
    remote.put_object(art, up("a.txt", b"first"))
    a, b = (session(pair) for _ in range(2))
    url_a, url_b = (s.url for s in pair.servers[:2])

    def info(s: requests.Session, url: str) -> dict[str, Any]:
        got = s.get(f"{url}/apis/v1/nodes/info", params={"node": art}, timeout=30)
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]

    def seal(s: requests.Session, url: str, revision: int) -> requests.Response:
        extra = json.dumps({"alternativeName": "x", "contentDigest": f"sha256:{revision}"})
        body = {"node": art, "extra": extra, "ifObjectsRevision": revision}
        return s.put(f"{url}/apis/v1/nodes", json=body, timeout=30)

    seen_by_a = info(a, url_a)["objectsRevision"]
    HttpRemote(url_b, pair.keys[USER]).put_object(art, up("b.txt", b"second"))  # via B
    now = info(a, url_a)["objectsRevision"]
    assert now != seen_by_a  # A sees B's write at once
    stale, fresh = seal(a, url_a, seen_by_a), seal(b, url_b, now)
    assert stale.status_code == 412, stale.text
    assert stale.json()["error"] == (
        f"node {art} changed: its objects are at revision {now}, not {seen_by_a}"
    )
    assert fresh.status_code == 200, fresh.text
    assert json.loads(info(a, url_a)["extra"])["contentDigest"] == f"sha256:{now}"

    # Racing a seal on one replica with a write on the other: whatever the order, no
    # digest survives for objects it was not computed from.
    writer_b = HttpRemote(url_b, pair.keys[USER])
    for i in range(10):
        revision = info(a, url_a)["objectsRevision"]
        barrier = threading.Barrier(2)
        writer = threading.Thread(target=write_after, args=(barrier, writer_b, art, i))
        writer.start()
        barrier.wait()
        answer = seal(a, url_a, revision)
        writer.join()
        assert answer.status_code in (200, 412), answer.text
        assert "contentDigest" not in json.loads(info(b, url_b)["extra"])


# -- one multipart upload, every call on another replica ------------------------------------


def send_part(
    s: requests.Session, url: str, upload_id: str, path: str, number: int, data: bytes
) -> dict[str, Any]:
    sent = s.put(
        f"{url}/apis/v1/objects/multipart/{upload_id}",
        params={"path": path, "partNumber": number},
        files={"content": ("blob", data)},
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    return {"etag": sent.json()["eTag"], "partNumber": number}


def start_multipart(s: requests.Session, url: str, path: str) -> str:
    started = s.post(f"{url}/apis/v1/objects/multipart", params={"path": path}, timeout=30)
    assert started.status_code == 200, started.text
    return str(started.json()["uploadId"])


def finish_multipart(
    s: requests.Session, url: str, upload_id: str, path: str, etags: list[dict[str, Any]]
) -> dict[str, Any]:
    done = s.post(
        f"{url}/apis/v1/objects/multipart/{upload_id}",
        params={"path": path},
        json={"parts": etags},
        timeout=60,
    )
    assert done.status_code == 200, done.text
    return done.json()  # type: ignore[no-any-return]


def test_multipart_upload_moves_between_replicas(pair: Replicas, folder: str) -> None:
    """Start on A, parts on B then A, finish on B: the state lives in the database."""
    remote, art = artifact(pair, folder)
    s = session(pair)
    a, b = (server.url for server in pair.servers[:2])
    path = f"{art}/parts.bin"
    parts = [os.urandom(5 * MiB), os.urandom(1024)]
    upload_id = start_multipart(s, a, path)
    etags = [send_part(s, b, upload_id, path, 1, parts[0])]
    etags.append(send_part(s, a, upload_id, path, 2, parts[1]))
    whole = b"".join(parts)
    done = finish_multipart(s, b, upload_id, path, etags)
    assert done["checksum"] == hashlib.md5(whole).hexdigest()
    for url in (a, b):
        got = s.get(f"{url}/apis/v1/objects", params={"path": path}, timeout=60)
        assert got.status_code == 200 and got.content == whole
    assert [o.path for o in remote.list_objects(art)] == ["parts.bin"]


def test_a_multipart_upload_survives_the_replica_that_started_it(
    pair: Replicas, folder: str
) -> None:
    """Start and part 1 on a replica that is then killed with SIGKILL; part 2 and the
    finish on another: nothing of the upload lived in the dead process."""
    remote, art = artifact(pair, folder)
    s = session(pair)
    victim, survivor = pair.start_replica(), pair.servers[1].url
    path = f"{art}/resumed.bin"
    parts = [os.urandom(5 * MiB), os.urandom(3000)]
    upload_id = start_multipart(s, victim.url, path)
    etags = [send_part(s, victim.url, upload_id, path, 1, parts[0])]
    victim.stop(signal.SIGKILL)
    etags.append(send_part(s, survivor, upload_id, path, 2, parts[1]))
    finish_multipart(s, survivor, upload_id, path, etags)
    got = s.get(f"{pair.url}/apis/v1/objects", params={"path": path}, timeout=60)
    assert got.status_code == 200 and got.content == b"".join(parts)
    assert [o.path for o in remote.list_objects(art)] == ["resumed.bin"]


# -- killed replicas --------------------------------------------------------------------------


BOUNDARY = "scaleoutboundary"


def start_put(
    server_url: str, api_key: str, node_path: str, key: str, size: int
) -> http.client.HTTPConnection:
    """Begin a put of ``size`` bytes: headers and form preamble sent, body to follow."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="blob"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    parts = urlsplit(server_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    conn.putrequest("POST", f"/apis/v1/objects?path={quote(f'{node_path}/{key}')}")
    conn.putheader("Authorization", f"Bearer {api_key}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    return conn


def test_a_replica_killed_mid_upload_leaves_nothing_and_the_other_serves(
    pair: Replicas, folder: str, tmp_path: Path
) -> None:
    remote, art = artifact(pair, folder)
    victim = pair.start_replica()
    size, block = 64 * MiB, os.urandom(MiB)
    conn = start_put(victim.url, pair.keys[USER], art, "big.bin", size)
    for _ in range(16):  # a quarter of the body is on its way
        conn.send(block)
    victim.stop(signal.SIGKILL)
    with pytest.raises(OSError):
        for _ in range(48):
            conn.send(block)
        conn.getresponse()
    conn.close()
    # One URL before the killed replica and a live one: the proxy skips the dead one.
    with running_proxy([victim.url, pair.servers[0].url]) as proxy:
        through = HttpRemote(proxy.url, pair.keys[USER])
        assert through.list_objects(art) == []
        assert requests.get(
            f"{proxy.url}/apis/v1/objects", params={"path": f"{art}/big.bin"},
            headers=pair.headers(USER), timeout=30,
        ).status_code == 404  # fmt: skip
        data = block * 64
        (tmp_path / "big.bin").write_bytes(data)
        info = through.put_object(
            art, Upload("big.bin", hashlib.md5(data).hexdigest(), size, source=tmp_path / "big.bin")
        )
        assert info.size_bytes == size
        through.get_object(art, "big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    assert [o.path for o in remote.list_objects(art)] == ["big.bin"]


def bucket_keys(pair: Replicas) -> set[str]:
    client = engines.s3_client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=pair.bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def referenced_locations(pair: Replicas) -> set[str]:
    """Where the blobs that objects reference live in the bucket, from the database."""
    import psycopg

    with psycopg.connect(pair.db) as conn:
        rows = conn.execute(
            "SELECT DISTINCT b.location FROM blobs b JOIN objects o ON o.blob = b.hash"
            " WHERE b.location IS NOT NULL"
        ).fetchall()
    return {row[0] for row in rows}


def as_keys(pair: Replicas, locations: set[str]) -> set[str]:
    """Database locations as bucket keys (locations may or may not carry the prefix)."""
    prefix = pair.prefix.strip("/") + "/"
    return {loc if loc.startswith(prefix) else prefix + loc for loc in locations}


def assert_bucket_holds_only_referenced_blobs(pair: Replicas) -> None:
    """Every key in the bucket is a blob some object refers to, and vice versa. RGW's
    listing can show a just-deleted key for a moment, so a mismatch is read again."""
    deadline = time.monotonic() + 10
    while True:
        listed, wanted = bucket_keys(pair), as_keys(pair, referenced_locations(pair))
        if listed == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed - wanted == set(), "unreferenced blobs left in the bucket"
    assert wanted - listed == set(), "referenced blobs missing from the bucket"


def test_a_replica_killed_between_blob_write_and_commit_leaves_nothing_gc_misses(
    pair: Replicas, folder: str
) -> None:
    remote, art = artifact(pair, folder)
    remote.put_object(art, up("kept.bin", os.urandom(300_000)))  # one blob that must stay
    victim = pair.start_replica(env={"MANIFEST_TOOL_FAILPOINTS": "store.blob-written=pause"})
    data = os.urandom(MiB)  # above the inline size: an S3 write
    before = bucket_keys(pair)
    failed: list[BaseException] = []

    def put() -> None:
        try:
            HttpRemote(victim.url, pair.keys[USER]).put_object(art, up("lost.bin", data))
        except BaseException as e:  # the connection dies with the replica
            failed.append(e)

    uploader = threading.Thread(target=put)
    uploader.start()
    wait_for(lambda: "failpoint store.blob-written" in victim.logs(), "the failpoint")
    assert bucket_keys(pair) - before, "the blob was not in S3 at the failpoint"
    victim.stop(signal.SIGKILL)
    uploader.join(60)
    assert failed, "the upload to a killed replica cannot have succeeded"
    assert [o.path for o in remote.list_objects(art)] == ["kept.bin"]
    gc = pair.cli("gc", "--grace", "0")  # nothing else is in flight
    assert gc.returncode == 0, gc.stderr
    assert_bucket_holds_only_referenced_blobs(pair)
    assert remote.list_objects(art)[0].path == "kept.bin"


# -- GC beside uploads ------------------------------------------------------------------------


def test_gc_beside_uploads_never_loses_a_blob(pair: Replicas, folder: str, tmp_path: Path) -> None:
    """10 s of uploads of shared and fresh contents, deletes that orphan the shared
    ones for a moment, and ``gc`` over and over: every object reads back exact."""
    remote, art = artifact(pair, folder)
    shared = [os.urandom(100_000 + i) for i in range(8)]  # in S3, orphaned and reused
    small = [os.urandom(1000 + i) for i in range(4)]  # inline in the database
    expected: dict[str, bytes] = {}
    stop = threading.Event()
    gc_runs: list[subprocess.CompletedProcess[str]] = []

    def collect() -> None:
        # A 1 s grace: blobs orphaned a second ago go while the same contents are being
        # uploaded again; no single upload here is in flight that long.
        while not stop.is_set():
            gc_runs.append(pair.cli("gc", "--grace", "1"))

    collector = threading.Thread(target=collect)
    collector.start()
    rng = random.Random(7)
    try:
        deadline, i = time.monotonic() + 10, 0
        while time.monotonic() < deadline:
            # fresh/N is overwritten every 5 rounds: its old blob is garbage at once
            batch = {f"same/{i}": rng.choice(shared), f"tiny/{i}": rng.choice(small),
                     f"fresh/{i % 5}": os.urandom(70_000)}  # fmt: skip
            for key, data in batch.items():
                remote.put_object(art, up(key, data))
            expected.update(batch)
            if i % 4 == 3:  # orphan every shared blob, then use them again at once
                gone = [k for k in expected if k.startswith(("same/", "tiny/"))]
                remote.delete_objects(art, gone)
                for k in gone:
                    del expected[k]
            i += 1
    finally:
        stop.set()
        collector.join(120)
    assert all(r.returncode == 0 for r in gc_runs), [r.stderr for r in gc_runs if r.returncode]
    removed = sum(r.stdout.count("removed blob ") for r in gc_runs)
    assert len(gc_runs) >= 2 and removed > 0, "gc removed nothing beside the uploads"
    time.sleep(1.5)
    final = pair.cli("gc", "--grace", "1")
    assert final.returncode == 0, final.stderr
    assert sorted(o.path for o in remote.list_objects(art)) == sorted(expected)
    for n, (key, data) in enumerate(sorted(expected.items())):
        remote.get_object(art, key, tmp_path / f"{n}")
        assert (tmp_path / f"{n}").read_bytes() == data, key
    assert_bucket_holds_only_referenced_blobs(pair)


# -- the real CLI and the Python API through the proxy -------------------------------------------

MANIFEST = """version: 1
artifacts:
  - name: ds
    folder: FOLDER
    make_folder: true
    objects:
      - dir: data
"""

API_SCRIPT = """
import sys
from manifest_tool import load_artifact, login
login(sys.argv[1], sys.argv[2])
art = load_artifact(sys.argv[3])
print(sorted(art.objects))
print(art.local)
"""


def test_cli_and_api_through_the_proxy(pair: Replicas, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "data" / "sub").mkdir(parents=True)
    (project / "data" / "a.txt").write_text("alpha")
    (project / "data" / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    folder = f"e2e-{uuid.uuid4().hex[:8]}"
    (project / "artifacts.yaml").write_text(MANIFEST.replace("FOLDER", folder))
    env = cli_env(MANIFEST_TOOL_API_KEY=pair.keys[USER])
    before = list(pair.proxy.counts)

    def cli(*args: str, cwd: Path = project) -> str:
        result = run_cli(*args, "--remote", pair.url, cwd=cwd, env=env)
        assert result.code == 0, result.err
        return result.out

    cli("apply")
    assert cli("apply") == "No changes.\n"
    assert (
        run_cli("plan", "--detailed-exitcode", "--remote", pair.url, cwd=project, env=env).code == 0
    )
    cli("pull", "ds", "--dest", str(tmp_path / "pulled"))
    source = {f"data/{key}": data for key, data in tree(project / "data").items()}
    pulled = tree(tmp_path / "pulled")
    assert pulled.pop("metadata.yaml") and pulled == source
    api = subprocess.run(
        [sys.executable, "-c", API_SCRIPT, pair.url, pair.keys[USER], f"{folder}/ds"],
        cwd=tmp_path, env={**env, "EM_ARTIFACT_PARENT_DIR": str(tmp_path / "em")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert api.returncode == 0, api.stderr
    keys, local = api.stdout.splitlines()
    assert keys == str(sorted(source))
    assert tree(Path(local))["data/sub/b.bin"] == source["data/sub/b.bin"]
    spread = [now - then for now, then in zip(pair.proxy.counts, before, strict=True)]
    assert all(n > 0 for n in spread), spread  # both replicas served this session
