"""Feed: chunks consumed in order on a helper thread, errors brought back to the caller."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from manifest_tool.remotes.feed import Feed


def test_every_chunk_is_consumed_in_order_on_another_thread() -> None:
    chunks = [os.urandom(1000 + n) for n in range(200)]
    seen: list[bytes] = []
    threads: set[int] = set()

    def consume(chunk: bytes) -> None:
        threads.add(threading.get_ident())
        seen.append(chunk)

    with Feed(consume, depth=2) as feed:
        for chunk in chunks:
            feed.put(chunk)
    assert seen == chunks  # all of them, by the time the block ends
    assert threads and threading.get_ident() not in threads


def test_the_two_hashes_of_a_feed_agree_with_one_pass() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    beside, here = hashlib.md5(), hashlib.md5()
    with Feed(beside.update) as feed:
        for start in range(0, len(data), 65536):
            chunk = data[start : start + 65536]
            feed.put(chunk)
            here.update(chunk)
    assert beside.hexdigest() == here.hexdigest() == hashlib.md5(data).hexdigest()


def test_a_consumer_error_is_raised_in_the_caller() -> None:
    def consume(chunk: bytes) -> None:
        if chunk == b"bad":
            raise OSError(28, "No space left on device")

    # raised at a later put, or at the end
    with pytest.raises(OSError, match="No space left"), Feed(consume) as feed:
        for chunk in [b"ok", b"bad", *[b"more"] * 100]:
            feed.put(chunk)


def test_a_consumer_error_on_the_last_chunk_is_raised_at_the_end() -> None:
    def consume(chunk: bytes) -> None:
        if chunk == b"last":
            raise ValueError("refused the last chunk")

    with pytest.raises(ValueError, match="refused the last chunk"), Feed(consume) as feed:
        feed.put(b"first")
        feed.put(b"last")


def test_a_caller_error_stops_the_consumer_before_the_block_ends() -> None:
    started, release = threading.Event(), threading.Event()
    consumed: list[bytes] = []

    def consume(chunk: bytes) -> None:
        started.set()
        release.wait(10)
        consumed.append(chunk)

    with pytest.raises(ConnectionError), Feed(consume, depth=8) as feed:
        for n in range(5):
            feed.put(b"%d" % n)
        assert started.wait(10)
        release.set()
        raise ConnectionError("client went away")
    # the consumer finished the chunk it was on and dropped the rest; it is done now
    held = list(consumed)
    assert held and held == [b"%d" % n for n in range(len(held))]
    assert all(t.name != "feed" for t in threading.enumerate())
