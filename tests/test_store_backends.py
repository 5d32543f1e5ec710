"""The store's behaviour on each pair of engines: SQLite + blob files, SQLite + inline
blobs, PostgreSQL + S3 (real engines, see tests/engines.py). Two Store objects on one
PostgreSQL and one bucket stand for two replicas."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import blake3
import psycopg
import pytest
import requests
from engines import pg_database, s3_endpoint, s3_prefix

from manifest_tool.errors import NameConflict, NodeNotFound, RemoteError, RevisionMismatch
from manifest_tool.remotes import blobrows, gc
from manifest_tool.remotes.backends import Engines, open_store
from manifest_tool.remotes.base import ARTIFACT, FOLDER
from manifest_tool.remotes.blobs import INLINE_MAX, BlobStore
from manifest_tool.remotes.db import PostgresDatabase
from manifest_tool.remotes.shared_multipart import SharedMultipart
from manifest_tool.remotes.store import Store
from manifest_tool.remotes.users import add_user, list_users, revoke_user, user_for_key

A = "alice"
ART = f"/{A}/f/art"
MiB = 1024 * 1024
Make = Callable[[], Store]
BACKENDS = ["sqlite+files", "sqlite+inline", "postgres+s3"]


@contextmanager
def opener(kind: str, tmp_path: Path) -> Iterator[Make]:
    """A function opening another Store on the same engines (another replica)."""
    opened: list[Store] = []

    def track(store: Store) -> Store:
        opened.append(store)
        return store

    try:
        if kind == "sqlite+files":  # every blob a file: no inline rows
            root = tmp_path / "store"
            yield lambda: track(Store(root, blobs=BlobStore(root / "blobs", inline_max=0)))
        elif kind == "sqlite+inline":
            yield lambda: track(Store(tmp_path / "store"))
        else:
            with pg_database() as dsn, s3_prefix() as url:
                engines = Engines(db=dsn, blobs=url, s3_endpoint=s3_endpoint())
                try:
                    yield lambda: track(open_store(engines))
                finally:
                    for store in opened:
                        store.close()
    finally:
        for store in opened:
            store.close()


def _with_artifact(made: Store) -> Store:
    made.create_node(A, f"/{A}", "f", FOLDER)
    made.create_node(A, f"/{A}/f", "art", ARTIFACT)
    return made


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    with opener(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def store(make: Make) -> Store:
    return _with_artifact(make())


@pytest.fixture(params=["sqlite+inline", "postgres+s3"])
def inline_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with opener(request.param, tmp_path) as made:
        yield _with_artifact(made())


@pytest.fixture
def make_s3(tmp_path: Path) -> Iterator[Make]:
    with opener("postgres+s3", tmp_path) as made:
        yield made


@pytest.fixture
def s3_store(make_s3: Make) -> Store:
    return _with_artifact(make_s3())


def put(store: Store, key: str, data: bytes, node: str = ART) -> Any:
    chunks = [data[i : i + MiB] for i in range(0, len(data), MiB)] or [b""]
    return store.put_object(A, node, key, chunks, hashlib.md5(data).hexdigest())


def read(store: Store, key: str, node: str = ART) -> bytes:
    info, reader = store.object_blob(A, node, key)
    try:
        return b"".join(reader.chunks(0, info.size_bytes))
    finally:
        reader.close()


def rows(store: Store, sql: str, *args: Any) -> list[Any]:
    with store.db.read() as conn:
        return list(conn.execute(sql, args).fetchall())


def s3_keys(store: Store, under: str = "") -> set[str]:
    """What the bucket lists (tests only: the store never deletes by listing)."""
    blobs = store.blobs
    listing = blobs.client.list_objects_v2(Bucket=blobs.bucket, Prefix=blobs.prefix + under)
    return {o["Key"] for o in listing.get("Contents", [])}


def shared(store: Store) -> bool:
    return bool(store.blobs.kind == "s3")


# -- nodes: one winner, compare-and-set, renames, cascades -----------------------------------
def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at the same moment in threads: each one's result or exception."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_creates_have_exactly_one_winner(make: Make, store: Store) -> None:
    replicas = [store, make()]
    for round_ in range(10):
        name = f"n{round_}"
        results = race(
            *(partial(replicas[i % 2].create_node, A, f"/{A}/f", name, ARTIFACT) for i in range(6))
        )
        won = [r for r in results if isinstance(r, str)]
        lost = [r for r in results if isinstance(r, NameConflict)]
        assert len(won) == 1 and len(lost) == 5, results
        assert str(lost[0]) == f"Invalid conflicting node Name [/{A}/f/{name}]"
        assert store.node_info(A, f"/{A}/f/{name}").id == won[0]


def test_digest_compare_and_set_never_outlives_an_object_change(make: Make, store: Store) -> None:
    """A digest set against revision r while another replica changes an object: either
    the set fails (412) or the change comes after it and voids the digest."""
    replicas = [store, make()]
    for round_ in range(12):
        revision = store.node_info(A, ART).revision
        extra = f'{{"contentDigest": "d{round_}"}}'
        change, cas = race(
            partial(put, replicas[0], f"k{round_}", f"v{round_}".encode()),
            partial(replicas[1].update_node, A, ART, {"extra": extra}, if_revision=revision),
        )
        assert not isinstance(change, Exception), change
        assert not isinstance(cas, Exception) or isinstance(cas, RevisionMismatch), cas
        assert "contentDigest" not in store.node_info(A, ART).extra
    with pytest.raises(RevisionMismatch, match="changed: its objects are at revision"):
        store.update_node(A, ART, {"description": "x"}, if_revision=0)
    node = store.node_info(A, ART)
    digest = '{"contentDigest": "ok"}'
    done = store.update_node(A, ART, {"extra": digest}, if_revision=node.revision)
    assert "ok" in done.extra


def test_rename_and_cascading_delete(store: Store) -> None:
    put(store, "k", b"x" * 100)
    run = store.create_node(A, f"/{A}/f", "run", "Run")
    art = store.node_info(A, ART).id
    store.add_edges(A, [(art, run)])
    store.create_node(A, f"/{A}", "g", FOLDER)
    with pytest.raises(NameConflict, match=rf"\[/{A}/g\]"):
        store.update_node(A, f"/{A}/f", {"name": "g"})
    store.update_node(A, f"/{A}/f", {"name": "h"})
    assert read(store, "k", f"/{A}/h/art") == b"x" * 100
    assert store.lineage(A, f"/{A}/h/run").inbound[0].path == f"/{A}/h/art"
    store.delete_node(A, f"/{A}/h")
    with pytest.raises(NodeNotFound):
        store.node_info(A, f"/{A}/h/art")
    assert rows(store, "SELECT COUNT(*) FROM objects")[0][0] == 0
    assert rows(store, "SELECT COUNT(*) FROM edges")[0][0] == 0


def test_users_keys_are_hashed_and_revocable(store: Store) -> None:
    key = add_user(store.db, "bob")
    assert user_for_key(store.db, key) == "bob"
    assert key not in str(rows(store, "SELECT * FROM users"))
    with pytest.raises(Exception, match="already exists"):
        add_user(store.db, "bob")
    assert [name for name, _ in list_users(store.db)] == ["bob"]
    revoke_user(store.db, "bob")
    assert user_for_key(store.db, key) is None


# -- listing ------------------------------------------------------------------------------------
def test_paging_100k_objects_by_keyset_and_by_page(inline_store: Store) -> None:
    store = inline_store
    total = 100_000
    for start in range(0, total, 10_000):
        store.put_batch(A, ART, [(f"k{i:06}", [b"x"], None) for i in range(start, start + 10_000)])
    started, keys, after = time.monotonic(), [], None
    while True:
        page, count = store.list_objects(A, ART, size=1000, after=after)
        assert count == total
        if not page:
            break
        keys += [o.path for o in page]
        after = page[-1].path
    walk = time.monotonic() - started
    assert keys == [f"k{i:06}" for i in range(total)]
    assert walk < 60, walk  # 100 pages; offsets would make this quadratic
    last, _ = store.list_objects(A, ART, page=100, size=1000)
    assert [o.path for o in last] == keys[-1000:]
    assert store.list_objects(A, ART, page=101, size=1000)[0] == []


# -- blobs --------------------------------------------------------------------------------------
def test_inline_threshold(inline_store: Store) -> None:
    store = inline_store
    small, large = os.urandom(INLINE_MAX), os.urandom(INLINE_MAX + 1)
    put(store, "small", small)
    put(store, "large", large)
    inline = {r[0]: r[1] for r in rows(store, "SELECT hash, data IS NOT NULL FROM blobs")}
    assert inline[blake3.blake3(small).hexdigest()]
    assert not inline[blake3.blake3(large).hexdigest()]
    assert (read(store, "small"), read(store, "large")) == (small, large)
    if shared(store):
        assert len(s3_keys(store, "blobs/")) == 1


def test_same_content_twice_is_one_blob(make: Make, store: Store) -> None:
    data = os.urandom(3 * MiB)
    other = make()
    put(store, "one", data)
    put(other, "two", data)
    blob = blake3.blake3(data).hexdigest()
    assert rows(store, "SELECT COUNT(*) FROM blobs WHERE hash = ?", blob)[0][0] == 1
    if shared(store):
        assert len(s3_keys(store, "blobs/")) == 1  # the second writer dropped its copy
        assert rows(store, "SELECT COUNT(*) FROM intents")[0][0] == 0
    assert read(store, "one") == read(other, "two") == data


def test_writes_never_overwrite_a_key(s3_store: Store) -> None:
    store = s3_store
    first, second = os.urandom(MiB), os.urandom(MiB)
    put(store, "k", first)
    (old_key,) = s3_keys(store, "blobs/")
    put(store, "k", second)
    keys = s3_keys(store, "blobs/")
    assert old_key in keys and len(keys) == 2  # the old bytes stay until GC's grace
    client, bucket = store.blobs.client, store.blobs.bucket
    with pytest.raises(Exception, match=r"PreconditionFailed|412"):
        client.put_object(Bucket=bucket, Key=old_key, Body=b"overwrite", IfNoneMatch="*")
    assert gc.collect(store, grace=3600).items == ()
    report = gc.collect(store, grace=0)
    assert [i.kind for i in report.items] == ["blob"]
    assert s3_keys(store, "blobs/") == keys - {old_key}
    assert read(store, "k") == second


def test_download_bytes_exact_with_ranges(store: Store) -> None:
    data = os.urandom(9 * MiB + 17)
    put(store, "big", data)
    info, reader = store.object_blob(A, ART, "big")
    try:
        assert b"".join(reader.chunks(5 * MiB - 3, 100)) == data[5 * MiB - 3 : 5 * MiB + 97]
    finally:
        reader.close()
    assert read(store, "big") == data and info.size_bytes == len(data)


def test_a_failed_checksum_leaves_nothing(store: Store) -> None:
    with pytest.raises(Exception, match="checksum mismatch"):
        store.put_object(A, ART, "k", [os.urandom(2 * MiB)], "0" * 32)
    assert store.list_objects(A, ART) == ([], 0)
    assert rows(store, "SELECT COUNT(*) FROM blobs")[0][0] == 0
    if shared(store):
        assert s3_keys(store) == set()
        assert rows(store, "SELECT COUNT(*) FROM intents")[0][0] == 0


# -- crashes and GC -----------------------------------------------------------------------------
def test_a_write_never_committed_is_found_through_its_intent(s3_store: Store) -> None:
    store = s3_store
    whole = store.writer()  # as if killed after the PUT, before the commit
    whole.write_all([os.urandom(MiB)] * 3)
    whole.finish()
    half = store.writer()  # as if killed mid-stream: an S3 multipart upload in flight
    half.write_all([os.urandom(MiB)] * 9)
    assert half.sink is not None
    for sent in half.sink._pending:  # type: ignore[attr-defined]  # the part reached S3
        sent.result()
    assert len(rows(store, "SELECT location FROM intents")) == 2
    assert store.list_objects(A, ART) == ([], 0)
    assert len(s3_keys(store, "blobs/")) == 1
    assert gc.collect(store, grace=3600).items == ()  # young: maybe still being written
    report = gc.collect(store, grace=0)
    assert sorted(i.kind for i in report.items) == ["temp file", "temp file"]
    # what each left, not "0 bytes": the whole object, and the 8 MiB part sent so far
    assert sorted(i.size for i in report.items) == [3 * MiB, 8 * MiB]
    assert s3_keys(store) == set()
    client, bucket = store.blobs.client, store.blobs.bucket
    listing = client.list_multipart_uploads(Bucket=bucket, Prefix=store.blobs.prefix)
    assert listing.get("Uploads", []) == []
    assert rows(store, "SELECT COUNT(*) FROM intents")[0][0] == 0


def test_a_commit_whose_intent_gc_took_fails_instead_of_losing_bytes(s3_store: Store) -> None:
    store = s3_store
    writer = store.writer()
    writer.write(os.urandom(MiB))
    info = writer.finish()
    gc.collect(store, grace=0)  # an upload older than the grace: its key is deleted
    with pytest.raises(RemoteError, match="send it again"):
        store.commit_object(A, ART, "late", writer, info)
    assert store.list_objects(A, ART) == ([], 0)


def test_gc_keeps_a_blob_referenced_again_meanwhile(store: Store) -> None:
    data = os.urandom(2 * MiB)
    put(store, "a", data)
    store.delete_objects(A, ART, ["a"])  # released: GC may take it after the grace
    put(store, "b", data)  # ...but it is referenced again first
    gc.collect(store, grace=0)
    assert read(store, "b") == data
    blob = blake3.blake3(data).hexdigest()
    with store.db.write() as conn:  # the removal rule itself: a referenced row is kept
        assert blobrows.lock_for_removal(conn, store.db, store.blobs, blob) is None


def test_gc_beside_uploads_of_the_same_content(make: Make, store: Store) -> None:
    data = os.urandom(256 * 1024)
    other = make()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                put(other, "churn", data)
                other.delete_objects(A, ART, ["churn"])
        except BaseException as err:
            errors.append(err)
            raise

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for i in range(15):
            put(store, f"k{i}", data)
            gc.collect(store, grace=0)
            assert read(store, f"k{i}") == data
    finally:
        stop.set()
        thread.join()
    assert errors == []
    for i in range(15):
        assert read(store, f"k{i}") == data


def test_killed_between_blob_write_and_commit(s3_store: Store) -> None:
    store = s3_store
    script = (
        "import sys\n"
        "from manifest_tool.remotes.backends import Engines, open_store\n"
        "store = open_store(Engines(db=sys.argv[1], blobs=sys.argv[2], s3_endpoint=sys.argv[3]))\n"
        f"store.put_object('{A}', '{ART}', 'doomed', [b'x' * (3 * 1024 * 1024)])\n"
    )
    env = dict(os.environ, MANIFEST_TOOL_FAILPOINTS="store.blob-written=pause")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    blobs_url = f"s3://{store.blobs.bucket}/{store.blobs.prefix.rstrip('/')}"
    dsn = store.db._url  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, dsn, blobs_url, s3_endpoint()],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == "failpoint store.blob-written"
    finally:
        proc.kill()
        proc.wait()
    assert store.list_objects(A, ART) == ([], 0)  # nothing visible
    assert len(s3_keys(store, "blobs/")) == 1  # the bytes are in S3...
    assert len(rows(store, "SELECT location FROM intents WHERE doomed = 0")) == 1  # ...named
    gc.collect(store, grace=0)
    assert s3_keys(store) == set()


# -- multipart ----------------------------------------------------------------------------------
def test_multipart_any_replica_small_and_large_parts(make_s3: Make, s3_store: Store) -> None:
    store, make = s3_store, make_s3
    replicas = [SharedMultipart(store), SharedMultipart(make())]
    parts = [os.urandom(1000), os.urandom(6 * MiB), os.urandom(10), os.urandom(5 * MiB + 1)]
    upload = replicas[0].start(A, ART, "mp.bin")
    etags = {}
    for number in (3, 1, 4, 2):  # any order, alternating replicas
        data = parts[number - 1]
        mp = replicas[number % 2]
        etags[number] = mp.put_part(A, upload, ART, "mp.bin", number, [data])
    again = replicas[0].put_part(A, upload, ART, "mp.bin", 3, [parts[2]])  # a resend
    assert again == etags[3]
    assert store.list_objects(A, ART) == ([], 0)
    whole = b"".join(parts)
    info = replicas[1].finish(
        A, upload, ART, "mp.bin", sorted(etags.items()), hashlib.md5(whole).hexdigest()
    )
    assert (info.size_bytes, info.checksum) == (len(whole), hashlib.md5(whole).hexdigest())
    assert read(store, "mp.bin") == whole
    assert rows(store, "SELECT COUNT(*) FROM uploads")[0][0] == 0
    assert rows(store, "SELECT COUNT(*) FROM upload_parts")[0][0] == 0
    assert rows(store, "SELECT COUNT(*) FROM intents")[0][0] == 0
    assert len(s3_keys(store)) == 1  # the parts' keys are gone, the blob stays
    with pytest.raises(NodeNotFound, match="upload not found"):
        replicas[0].put_part(A, upload, ART, "mp.bin", 5, [b"late"])


def test_multipart_abort_and_idle_uploads(s3_store: Store) -> None:
    store = s3_store
    mp = SharedMultipart(store)
    aborted = mp.start(A, ART, "a.bin")
    mp.put_part(A, aborted, ART, "a.bin", 1, [os.urandom(MiB)])
    mp.abort(A, aborted, ART, "a.bin")
    idle = mp.start(A, ART, "b.bin")
    mp.put_part(A, idle, ART, "b.bin", 1, [os.urandom(MiB)])
    assert gc.collect(store, grace=3600).items == ()
    report = gc.collect(store, grace=0)
    assert [i.kind for i in report.items] == ["upload"]
    assert s3_keys(store) == set()
    with pytest.raises(NodeNotFound):
        mp.finish(A, idle, ART, "b.bin", [(1, "x")])


def _race(
    barrier: threading.Barrier, outcome: dict[str, str], name: str, call: Callable[[], Any]
) -> None:
    barrier.wait()
    try:
        call()
        outcome[name] = "ok"
    except NodeNotFound as err:
        outcome[name] = "404" if "upload not found" in str(err) else repr(err)
    except Exception as err:
        outcome[name] = repr(err)


def test_multipart_finish_racing_abort_has_exactly_one_winner(make_s3: Make) -> None:
    store = _with_artifact(make_s3())
    finisher, aborter = SharedMultipart(store), SharedMultipart(make_s3())
    parts = [os.urandom(2 * MiB), os.urandom(1000)]
    for round_ in range(6):
        key = f"race{round_}.bin"
        upload = finisher.start(A, ART, key)
        etags = [
            (n, finisher.put_part(A, upload, ART, key, n, [d])) for n, d in enumerate(parts, 1)
        ]
        barrier, outcome = threading.Barrier(2), dict[str, str]()
        calls = {
            "finish": partial(finisher.finish, A, upload, ART, key, etags),
            "abort": partial(aborter.abort, A, upload, ART, key),
        }
        threads = [
            threading.Thread(target=_race, args=(barrier, outcome, name, call))
            for name, call in calls.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcome.values()) == ["404", "ok"], outcome
        published = key in {o.path for o in store.list_objects(A, ART)[0]}
        assert published == (outcome["finish"] == "ok"), outcome
    assert rows(store, "SELECT COUNT(*) FROM uploads")[0][0] == 0


def test_multipart_finish_holds_one_inline_part_at_a_time(s3_store: Store) -> None:
    store, count = s3_store, 800  # 50 MiB of parts
    mp = SharedMultipart(store)
    upload = mp.start(A, ART, "many.bin")
    part = os.urandom(INLINE_MAX)  # inline: its bytes live in the database row
    etag = mp.put_part(A, upload, ART, "many.bin", 1, [part])
    for number in range(2, count + 1):
        mp.put_part(A, upload, ART, "many.bin", number, [part])
    tracemalloc.start()
    try:
        info = mp.finish(A, upload, ART, "many.bin", [(n, etag) for n in range(1, count + 1)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.size_bytes == count * INLINE_MAX
    # the writer's three 8 MiB S3 part buffers and a part or two, never all the parts
    assert peak < 40 * MiB, peak


def test_migration_is_safe_when_replicas_start_together() -> None:
    with pg_database() as dsn:
        errors: list[BaseException] = []

        def open_db() -> None:
            try:
                PostgresDatabase(dsn).close()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=open_db) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        db = PostgresDatabase(dsn)
        with db.read() as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
        db.close()


def test_serve_on_shared_engines_never_shows_secrets(tmp_path: Path) -> None:
    """Two replicas started by the CLI at once: both migrate safely, serve one store,
    and neither the startup line nor the logs show the password or the S3 keys."""
    secret = "pw-never-shown-4711"
    with pg_database() as dsn, s3_prefix() as url:
        parts = urlsplit(dsn)
        with_password = urlunsplit(
            parts._replace(netloc=f"postgres:{secret}@{parts.hostname}:{parts.port}")
        )
        flags = [
            "--db",
            with_password,
            "--blobs",
            url,
            "--s3-endpoint",
            s3_endpoint(),
        ]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        cli = [sys.executable, "-m", "manifest_tool"]
        added = subprocess.run(
            [*cli, "user", "add", A, *flags], env=env, capture_output=True, text=True
        )
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip()
        procs = [
            subprocess.Popen(
                [*cli, "serve", *flags, "--port", "0"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            lines = [p.stdout.readline() for p in procs if p.stdout is not None]
            assert all(line.startswith("serving postgresql://postgres:***@") for line in lines), (
                lines
            )
            urls = [line.split(" on ")[-1].strip() for line in lines]
            auth = {"Authorization": f"Bearer {key}"}
            made = requests.post(
                f"{urls[0]}/apis/v1/nodes",
                json={"parent": f"/{A}", "name": "art", "type": ARTIFACT},
                headers=auth,
                timeout=30,
            )
            again = requests.post(
                f"{urls[1]}/apis/v1/nodes",
                json={"parent": f"/{A}", "name": "art", "type": ARTIFACT},
                headers=auth,
                timeout=30,
            )
            assert (made.status_code, again.status_code) == (200, 400), again.text
            data = os.urandom(2 * MiB)
            put_ = requests.post(
                f"{urls[1]}/apis/v1/objects",
                params={"path": f"/{A}/art/k"},
                files={"content": data},
                headers=auth,
                timeout=60,
            )
            assert put_.status_code == 200, put_.text
            got = requests.get(
                f"{urls[0]}/apis/v1/objects",
                params={"path": f"/{A}/art/k"},
                headers=auth,
                timeout=60,
            )
            assert got.content == data
            ls = f"{urls[1]}/apis/v1/objects/ls"
            after = requests.get(ls, params={"path": f"/{A}/art", "after": "j"}, headers=auth)
            past = requests.get(ls, params={"path": f"/{A}/art", "after": "k"}, headers=auth)
            assert [o["path"] for o in after.json()["data"]] == ["k"]
            assert past.json() == {"data": [], "pagination": {"page": 1, "size": 1000, "total": 1}}
        finally:
            for p in procs:
                p.terminate()
            outputs = [p.communicate(timeout=30) for p in procs]
        text = "".join(out + err for out, err in outputs) + "".join(lines)
        assert "/apis/v1/objects" in text  # the access log was read
        for hidden in (
            secret,
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ["AWS_ACCESS_KEY_ID"],
        ):
            assert hidden not in text


def test_pooled_connections_ended_by_the_server_are_replaced_on_checkout() -> None:
    with pg_database() as dsn:
        db = PostgresDatabase(dsn, pool_size=4)
        try:
            with db.read() as a, db.read() as b, db.read() as c:  # three pooled connections
                for conn in (a, b, c):
                    conn.execute("SELECT 1")
            with psycopg.connect(dsn, autocommit=True) as admin:  # as a restart would
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                deadline = time.monotonic() + 10
                while admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone() != (0,):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            time.sleep(0.1)  # the sockets' ends reach this process
            for _ in range(5):  # every request succeeds, none answers "retry"
                with db.read() as conn:
                    assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
        finally:
            db.close()


def test_released_blobs_are_stamped_in_one_transaction_not_one_each(s3_store: Store) -> None:
    store, count = s3_store, 60
    for i in range(count):  # past the inline size: S3 keys, released for GC's grace
        put(store, f"many/{i}", os.urandom(INLINE_MAX + 1))
    store.delete_objects(A, ART, [f"many/{i}" for i in range(count)])
    released = rows(store, "SELECT xmin::text FROM blobs WHERE released_at IS NOT NULL")
    assert len(released) == count
    assert len({r[0] for r in released}) == 1  # one writing transaction stamped them all


@pytest.mark.parametrize("size", [100, 2 * MiB])  # an inline row, a file or an S3 key
def test_collecting_a_blob_twice_leaves_no_row_that_a_later_put_trusts(
    store: Store, size: int
) -> None:
    """Two deletes of objects sharing a blob each collect it; the second finds its row
    gone. A row made then (as for an orphaned file) held no bytes, and the next put of
    the same content took it as its blob: the put answered 200, the bytes were lost."""
    data = os.urandom(size)
    put(store, "a", data)
    blob = blake3.blake3(data).hexdigest()
    store.delete_objects(A, ART, ["a"])
    blobrows.collect(store.db, store.blobs, [blob])  # the second collector: nothing left
    put(store, "b", data)
    assert read(store, "b") == data
