"""Multipart uploads assembled as the parts arrive, on a real store directory."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from manifest_tool.errors import ChecksumMismatch, InvalidInput, NodeNotFound
from manifest_tool.remotes.base import ARTIFACT, FOLDER
from manifest_tool.remotes.multipart import RESTARTED, Multipart
from manifest_tool.remotes.store import Store

A = "alice"
KEY = "big.bin"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    s.create_node(A, f"/{A}", "f", FOLDER)
    s.create_node(A, f"/{A}/f", "art", ARTIFACT)
    return s


ART = f"/{A}/f/art"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def chunked(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def put(mp: Multipart, upload_id: str, number: int, data: bytes) -> str:
    return mp.put_part(A, upload_id, ART, KEY, number, chunked(data))


def finish(mp: Multipart, upload_id: str, etags: dict[int, str], whole: bytes | None) -> object:
    md5_whole = md5(whole) if whole is not None else None
    return mp.finish(A, upload_id, ART, KEY, sorted(etags.items()), md5_whole)


def stored(store: Store) -> bytes:
    return store.object_blob(A, ART, KEY)[1].read_bytes()


def upload_files(store: Store, upload_id: str) -> list[str]:
    return sorted(p.name for p in (store.root / "uploads" / upload_id).iterdir())


def parts_of(count: int, size: int = 50_000) -> list[bytes]:
    return [os.urandom(size + n) for n in range(count)]


def test_in_order_parts_go_straight_into_one_file(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(3)
    upload_id = mp.start(A, ART, KEY)
    etags = {}
    for n, data in enumerate(parts, 1):
        etags[n] = put(mp, upload_id, n, data)
        assert etags[n] == md5(data)
        # no part files: only the assembly, which lives with the upload
        assert [name[:3] for name in upload_files(store, upload_id)] == ["up-"]
    assert store.list_objects(A, ART) == ([], 0)
    whole = b"".join(parts)
    info = finish(mp, upload_id, etags, whole)
    assert info == store.list_objects(A, ART)[0][0]
    assert stored(store) == whole
    assert list((store.root / "uploads").iterdir()) == []
    with pytest.raises(NodeNotFound, match="upload not found"):
        put(mp, upload_id, 4, b"late")


@pytest.mark.parametrize("order", [(3, 1, 2), (2, 3, 1), (4, 2, 1, 3)])
def test_out_of_order_parts_wait_and_join_when_the_gap_fills(
    store: Store, order: tuple[int, ...]
) -> None:
    mp, parts = Multipart(store), parts_of(len(order))
    upload_id = mp.start(A, ART, KEY)
    etags = {n: put(mp, upload_id, n, parts[n - 1]) for n in order}
    assert not [f for f in upload_files(store, upload_id) if f.startswith("part-")]
    whole = b"".join(parts)
    finish(mp, upload_id, etags, whole)
    assert stored(store) == whole


def test_early_parts_are_parked_on_disk(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(3)
    upload_id = mp.start(A, ART, KEY)
    put(mp, upload_id, 3, parts[2])
    put(mp, upload_id, 2, parts[1])
    assert sum(f.startswith("part-") for f in upload_files(store, upload_id)) == 2
    put(mp, upload_id, 1, parts[0])
    assert sum(f.startswith("part-") for f in upload_files(store, upload_id)) == 0


def test_a_resent_part_with_the_same_bytes_gets_the_same_etag(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(2)
    upload_id = mp.start(A, ART, KEY)
    etags = {1: put(mp, upload_id, 1, parts[0])}
    assert put(mp, upload_id, 1, parts[0]) == etags[1]  # e.g. a retry after a timeout
    etags[2] = put(mp, upload_id, 2, parts[1])
    finish(mp, upload_id, etags, b"".join(parts))
    assert stored(store) == b"".join(parts)


def test_a_resent_part_with_other_bytes_is_refused(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(2)
    upload_id = mp.start(A, ART, KEY)
    etags = {1: put(mp, upload_id, 1, parts[0])}
    with pytest.raises(InvalidInput, match="part 1 was already assembled with other bytes"):
        put(mp, upload_id, 1, b"something else")
    etags[2] = put(mp, upload_id, 2, parts[1])
    finish(mp, upload_id, etags, b"".join(parts))  # the first bytes stand
    assert stored(store) == b"".join(parts)


def test_a_parked_part_sent_again_replaces_the_first_copy(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(2)
    upload_id = mp.start(A, ART, KEY)
    put(mp, upload_id, 2, b"first try")
    etags = {2: put(mp, upload_id, 2, parts[1]), 1: put(mp, upload_id, 1, parts[0])}
    finish(mp, upload_id, etags, b"".join(parts))
    assert stored(store) == b"".join(parts)


def test_a_part_that_breaks_off_leaves_no_bytes_behind(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(2)
    upload_id = mp.start(A, ART, KEY)
    etags = {1: put(mp, upload_id, 1, parts[0])}

    def broken() -> Iterator[bytes]:
        yield parts[1][:1000]
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        mp.put_part(A, upload_id, ART, KEY, 2, broken())
    etags[2] = put(mp, upload_id, 2, parts[1])
    finish(mp, upload_id, etags, b"".join(parts))
    assert stored(store) == b"".join(parts)


def test_a_part_over_the_limit_is_refused_and_taken_back(store: Store) -> None:
    mp = Multipart(store)
    upload_id = mp.start(A, ART, KEY)
    with pytest.raises(InvalidInput, match="limit of 10 bytes"):
        mp.put_part(A, upload_id, ART, KEY, 1, [b"x" * 8, b"x" * 8], max_size=10)
    etags = {1: mp.put_part(A, upload_id, ART, KEY, 1, [b"small"], max_size=10)}
    finish(mp, upload_id, etags, b"small")
    assert stored(store) == b"small"


def test_a_wrong_etag_stores_nothing_and_the_finish_can_be_retried(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(2)
    upload_id = mp.start(A, ART, KEY)
    etags = {n: put(mp, upload_id, n, data) for n, data in enumerate(parts, 1)}
    with pytest.raises(InvalidInput, match="part 2: eTag 'bad' does not match its bytes"):
        finish(mp, upload_id, {**etags, 2: "bad"}, None)
    with pytest.raises(InvalidInput, match=r"part 3 of upload .* was never uploaded"):
        finish(mp, upload_id, {**etags, 3: md5(b"x")}, None)
    assert store.list_objects(A, ART) == ([], 0)
    finish(mp, upload_id, {n: f'"{e.upper()}"' for n, e in etags.items()}, b"".join(parts))
    assert stored(store) == b"".join(parts)


def test_a_wrong_checksum_stores_nothing(store: Store) -> None:
    mp = Multipart(store)
    upload_id = mp.start(A, ART, KEY)
    etag = put(mp, upload_id, 1, b"content")
    with pytest.raises(ChecksumMismatch):
        mp.finish(A, upload_id, ART, KEY, [(1, etag)], "0" * 32)
    assert store.list_objects(A, ART) == ([], 0)
    assert list((store.root / "uploads").iterdir()) == []
    assert [p for p in (store.root / "blobs").rglob("*") if p.is_file()] == []


def test_a_list_that_is_not_the_assembled_sequence_is_refused(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(3)
    upload_id = mp.start(A, ART, KEY)
    etags = {n: put(mp, upload_id, n, data) for n, data in enumerate(parts, 1)}
    with pytest.raises(InvalidInput, match="list each of the parts 1 to 3 once"):
        finish(mp, upload_id, {1: etags[1], 3: etags[3]}, None)
    with pytest.raises(InvalidInput, match="list each of the parts 1 to 3 once"):
        mp.finish(A, upload_id, ART, KEY, [(1, etags[1]), (1, etags[1]), (2, etags[2])])
    assert store.list_objects(A, ART) == ([], 0)


def test_parked_parts_alone_are_joined_from_their_files(store: Store) -> None:
    """Part 1 never came: the slow path joins the listed parts from disk."""
    mp, parts = Multipart(store), parts_of(3)
    upload_id = mp.start(A, ART, KEY)
    etags = {n: put(mp, upload_id, n, parts[n - 1]) for n in (3, 2)}
    finish(mp, upload_id, etags, parts[1] + parts[2])
    assert stored(store) == parts[1] + parts[2]


def test_a_restart_loses_the_upload_but_never_commits_part_of_it(
    store: Store, tmp_path: Path
) -> None:
    mp, parts = Multipart(store), parts_of(3)
    upload_id = mp.start(A, ART, KEY)
    etags = {n: put(mp, upload_id, n, parts[n - 1]) for n in (1, 3)}
    after = Store(tmp_path / "store")  # a new server process over the same directory
    mp2 = Multipart(after)
    with pytest.raises(InvalidInput, match=RESTARTED):
        mp2.put_part(A, upload_id, ART, KEY, 2, [parts[1]])
    with pytest.raises(InvalidInput, match=RESTARTED):
        mp2.finish(A, upload_id, ART, KEY, sorted(etags.items()))
    assert after.list_objects(A, ART) == ([], 0)
    mp2.abort(A, upload_id, ART, KEY)
    assert list((after.root / "uploads").iterdir()) == []
    with pytest.raises(NodeNotFound, match="upload not found"):
        mp2.finish(A, upload_id, ART, KEY, sorted(etags.items()))


def test_abort_discards_the_assembly_and_parked_parts(store: Store) -> None:
    mp = Multipart(store)
    upload_id = mp.start(A, ART, KEY)
    put(mp, upload_id, 1, b"one")
    put(mp, upload_id, 3, b"three")
    mp.abort(A, upload_id, ART, KEY)
    assert list((store.root / "uploads").iterdir()) == []
    assert [p for p in (store.root / "blobs").rglob("*") if p.is_file()] == []
    with pytest.raises(NodeNotFound):
        put(mp, upload_id, 2, b"two")


def test_parts_sent_concurrently_in_any_order(store: Store) -> None:
    mp, parts = Multipart(store), parts_of(24, 20_000)
    order = list(range(1, len(parts) + 1))
    random.Random(7).shuffle(order)
    upload_id = mp.start(A, ART, KEY)
    with ThreadPoolExecutor(4) as pool:
        numbers = [*order, *order[:6]]  # some resent, as a retrying client would
        sent = pool.map(lambda n: put(mp, upload_id, n, parts[n - 1]), numbers)
        etags = dict(zip(numbers, sent, strict=True))
    whole = b"".join(parts)
    finish(mp, upload_id, etags, whole)
    assert stored(store) == whole
    assert list((store.root / "uploads").iterdir()) == []


def test_a_part_in_flight_blocks_finish_and_is_cleaned_up_by_abort(store: Store) -> None:
    mp = Multipart(store)
    upload_id = mp.start(A, ART, KEY)
    started, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def slow() -> Iterator[bytes]:
        yield b"first half"
        started.set()
        release.wait(10)
        yield b"second half"

    def send() -> None:
        try:
            mp.put_part(A, upload_id, ART, KEY, 1, slow())
        except Exception as err:
            errors.append(err)

    sender = threading.Thread(target=send)
    sender.start()
    assert started.wait(10)
    with pytest.raises(InvalidInput, match="still arriving"):
        mp.finish(A, upload_id, ART, KEY, [(1, md5(b"first halfsecond half"))])
    mp.abort(A, upload_id, ART, KEY)
    release.set()
    sender.join(10)
    assert len(errors) == 1 and isinstance(errors[0], NodeNotFound)
    assert list((store.root / "uploads").iterdir()) == []
    assert store.list_objects(A, ART) == ([], 0)


def test_big_in_order_parts_with_a_wrong_whole_md5_are_refused(store: Store) -> None:
    """Parts of many chunks (the object's hashes run beside the part's): each eTag is
    its part's MD5, and a finish whose Content-MD5 is not the whole's stores nothing."""
    mp, parts = Multipart(store), [os.urandom(3 * 1024 * 1024 + n) for n in range(3)]
    upload_id = mp.start(A, ART, KEY)
    etags = {}
    for n, data in enumerate(parts, 1):
        etags[n] = mp.put_part(A, upload_id, ART, KEY, n, chunked(data, 65536))
        assert etags[n] == md5(data)
    wrong = md5(b"".join(parts[:2]))  # every part but the last: still refused
    with pytest.raises(ChecksumMismatch, match=f"expected md5 {wrong}"):
        mp.finish(A, upload_id, ART, KEY, sorted(etags.items()), wrong)
    assert store.list_objects(A, ART) == ([], 0)
    assert list((store.root / "uploads").iterdir()) == []
    assert [p for p in (store.root / "blobs").rglob("*") if p.is_file()] == []


def test_a_part_breaking_off_mid_way_in_big_chunks_is_taken_back(store: Store) -> None:
    mp, parts = Multipart(store), [os.urandom(2 * 1024 * 1024 + n) for n in range(2)]
    upload_id = mp.start(A, ART, KEY)
    etags = {1: mp.put_part(A, upload_id, ART, KEY, 1, chunked(parts[0], 65536))}

    def broken() -> Iterator[bytes]:
        yield from chunked(parts[1][: 1024 * 1024], 65536)
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        mp.put_part(A, upload_id, ART, KEY, 2, broken())
    etags[2] = mp.put_part(A, upload_id, ART, KEY, 2, chunked(parts[1], 65536))
    whole = b"".join(parts)
    finish(mp, upload_id, etags, whole)
    assert stored(store) == whole
