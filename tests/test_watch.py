"""``manifest-tool watch`` end to end: the real CLI in a subprocess, real file events in
tmp_path, the embedded store and the real server. Every wait has a deadline and ends
on an event line, never on a blind sleep."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import USER, Project, cli_env
from serverutil import running_server

from manifest_tool import watch_events
from manifest_tool.remotes import Remote, open_remote
from manifest_tool.remotes.local import LocalRemote
from manifest_tool.watch import Watcher, WatchOptions
from manifest_tool.watch_events import Collector, Observers, Routes

Event = dict[str, Any]
DEADLINE_S = 15.0
NODE = f"/{USER}/datasets/mnist"
MANIFEST = """\
version: 1
artifacts:
  - name: mnist
    folder: datasets
    make_folder: true
    objects:
      - glob: "data/**/*.txt"
        base: data
"""
SECOND = """\
  - name: extra
    folder: datasets
    objects:
      - file: notes/readme.md
"""


class Watch:
    """A running ``manifest-tool watch --json`` and the events it printed."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "manifest_tool", "watch", "--json", "--debounce", "0.2"]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            cwd=root,
            env=env or cli_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def next(self, kind: str, match: Callable[[Event], bool] = lambda e: True) -> Event:
        """The next event of ``kind`` that ``match``es; fails at the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(event)
            if event["event"] == kind and match(event):
                return event
        pytest.fail(f"no {kind!r} event in {DEADLINE_S} s; saw {self.seen}; {self.stderr}")

    def started(self) -> Event:
        """Wait for the start-up apply; the watches are in place by then."""
        self.next("start")
        return self.next("round")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=DEADLINE_S)
        self.next("stopped")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watch(project: Project) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Watch:
        started.append(Watch(project.root, *args, env=env))
        return started[-1]

    yield start
    for w in started:
        w.kill()


@pytest.fixture
def mnist(project: Project) -> Project:
    project.manifest(MANIFEST)
    project.write("data/a.txt", "alpha\n")
    project.write("data/b.txt", "beta\n")
    return project


def md5(data: str) -> str:
    return hashlib.md5(data.encode()).hexdigest()


def objects(remote: Remote, node: str = NODE) -> dict[str, str]:
    """The node's declared objects (key -> MD5), without the metadata files."""
    listed = remote.list_objects(node)
    return {
        o.path: o.checksum for o in listed if o.path not in ("metadata.yaml", "references.yaml")
    }


def until_objects(w: Watch, remote: Remote, want: dict[str, str], node: str = NODE) -> int:
    """Wait through rounds until the remote holds ``want``; how many rounds it took.
    (One change may span two rounds when its events straddle the debounce.)"""
    rounds = 0
    while objects(remote, node) != want:
        w.next("round")
        rounds += 1
    return rounds


def store(project: Project) -> Remote:
    return LocalRemote(project.store, USER)


def test_create_modify_delete_rename_and_new_dir(mnist: Project, watch: Any) -> None:
    w = watch()
    first = w.started()
    remote = store(mnist)
    assert (first["round"], first["uploaded"]) == (1, 2)
    want = {"a.txt": md5("alpha\n"), "b.txt": md5("beta\n")}
    assert objects(remote) == want

    mnist.write("data/c.txt", "gamma\n")
    until_objects(w, remote, want | {"c.txt": md5("gamma\n")})
    mnist.write("data/a.txt", "alpha 2\n")
    until_objects(w, remote, want | {"c.txt": md5("gamma\n"), "a.txt": md5("alpha 2\n")})
    (mnist.root / "data/c.txt").unlink()
    until_objects(w, remote, {"a.txt": md5("alpha 2\n"), "b.txt": md5("beta\n")})
    os.rename(mnist.root / "data/b.txt", mnist.root / "data/renamed.txt")
    until_objects(w, remote, {"a.txt": md5("alpha 2\n"), "renamed.txt": md5("beta\n")})
    mnist.write("data/new/deep/d.txt", "delta\n")
    until_objects(
        w,
        remote,
        {"a.txt": md5("alpha 2\n"), "renamed.txt": md5("beta\n"), "new/deep/d.txt": md5("delta\n")},
    )
    assert w.stop() == 0


def test_source_dir_removed_and_made_again(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    shutil.rmtree(mnist.root / "data")
    assert any("data/**/*.txt" in p for p in w.next("invalid-manifest")["problems"])
    mnist.write("data/again.txt", "again\n")
    until_objects(w, store(mnist), {"again.txt": md5("again\n")})
    shutil.rmtree(mnist.root / "data")  # and at once again, inside one debounce window
    mnist.write("data/quick.txt", "quick\n")
    until_objects(w, store(mnist), {"quick.txt": md5("quick\n")})
    mnist.write("data/later.txt", "later\n")  # seen by a fresh watch on the new directory
    until_objects(w, store(mnist), {"quick.txt": md5("quick\n"), "later.txt": md5("later\n")})
    assert w.stop() == 0


def test_burst_of_writes_gives_few_rounds(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    for i in range(1000):
        mnist.write(f"data/burst/f{i % 100}.txt", f"write {i}\n")
    want = {"a.txt": md5("alpha\n"), "b.txt": md5("beta\n")}
    want |= {f"burst/f{n}.txt": md5(f"write {900 + n}\n") for n in range(100)}
    assert until_objects(w, store(mnist), want) <= 5
    assert w.stop() == 0


def test_touch_and_identical_save_upload_nothing(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    later = time.time_ns() + 10**9
    os.utime(mnist.root / "data/a.txt", ns=(later, later))  # no content event: no round
    mnist.write("data/b.txt", "beta\n")  # saved without an edit: a round that sends nothing
    event = w.next("round")
    assert (event["round"], event["uploaded"], event["deleted"]) == (2, 0, 0)
    mnist.write("data/sentinel.txt", "s\n")
    event = w.next("round")
    assert (event["round"], event["uploaded"], event["changed"]) == (3, 1, 1)
    assert w.stop() == 0


def test_own_writes_trigger_no_round(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    lock = mnist.root / "artifacts.lock"
    lock.write_text(lock.read_text() + "# edited\n")
    mnist.write(".em/scratch/x.txt", "ours\n")
    mnist.write(".em/cache/other.txt", "ours\n")
    mnist.write("data/sentinel.txt", "s\n")
    event = w.next("round")  # the sentinel's round is the very next one, and only it
    assert (event["round"], event["changed"], event["uploaded"]) == (2, 1, 1)
    assert w.stop(signal.SIGTERM) == 0


def test_manifest_edit_adds_an_artifact(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    mnist.write("notes/readme.md", "# notes\n")
    mnist.manifest(MANIFEST + SECOND)
    event = w.next("round", lambda e: "extra" in e["artifacts"])
    assert event["artifacts"] == ["mnist", "extra"]
    assert objects(store(mnist), f"/{USER}/datasets/extra") == {"readme.md": md5("# notes\n")}
    mnist.write("notes/readme.md", "# notes 2\n")
    event = w.next("round", lambda e: e["reason"] == "files")
    assert (event["artifacts"], event["uploaded"]) == (["extra"], 1)
    assert w.stop() == 0


def test_invalid_manifest_keeps_the_last_good_one(mnist: Project, watch: Any) -> None:
    w = watch()
    w.started()
    mnist.manifest(MANIFEST + "  - name: 'bad name!'\n")
    problems = w.next("invalid-manifest")["problems"]
    assert problems and all("artifacts.yaml" in p for p in problems)
    mnist.write("data/a.txt", "still watching\n")
    assert w.next("round")["uploaded"] == 1
    mnist.write("notes/readme.md", "# notes\n")
    mnist.manifest(MANIFEST + SECOND)
    w.next("round", lambda e: "extra" in e["artifacts"])
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_unreachable_server_is_retried_and_the_watch_lives(mnist: Project, watch: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    w = watch("--remote", f"http://127.0.0.1:{port}", env=cli_env(MANIFEST_TOOL_API_KEY="k"))
    w.next("start")
    first = w.next("error")
    assert first["retry_in"] == 1 and str(port) in first["message"]
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_poll_picks_up_changes(mnist: Project, watch: Any) -> None:
    w = watch("--poll")
    assert w.next("start")["observer"] == "polling"
    w.next("round")
    remote = store(mnist)
    mnist.write("data/c.txt", "gamma\n")
    mnist.write("data/a.txt", "alpha 2\n")
    until_objects(
        w, remote, {"a.txt": md5("alpha 2\n"), "b.txt": md5("beta\n"), "c.txt": md5("gamma\n")}
    )
    assert w.stop() == 0


def test_real_server_create_and_modify(mnist: Project, watch: Any, tmp_path: Path) -> None:
    with running_server(tmp_path / "server", users=(USER,)) as server:
        key = server.keys[USER]
        w = watch("--remote", server.url, env=cli_env(MANIFEST_TOOL_API_KEY=key))
        assert w.started()["uploaded"] == 2
        remote = open_remote(server.url, mnist.root, api_key=key)
        try:
            mnist.write("data/c.txt", "gamma\n")
            mnist.write("data/a.txt", "alpha 2\n")
            until_objects(
                w,
                remote,
                {"a.txt": md5("alpha 2\n"), "b.txt": md5("beta\n"), "c.txt": md5("gamma\n")},
            )
        finally:
            remote.close()
        assert w.stop() == 0


@contextlib.contextmanager
def watcher_thread(mnist: Project) -> Iterator[queue.Queue[Event]]:
    """A Watcher running in a thread, past its first apply; its events, and the check
    on exit that it stopped."""
    events: queue.Queue[Event] = queue.Queue()
    watcher = Watcher(WatchOptions(mnist.root / "artifacts.yaml", debounce=0.2), events.put)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        assert events.get(timeout=DEADLINE_S)["event"] == "start"
        assert events.get(timeout=DEADLINE_S)["uploaded"] == 2
        yield events
    finally:
        watcher.stop()
        thread.join(DEADLINE_S)
    assert not thread.is_alive()


def test_watcher_class_in_process(mnist: Project, api_env: None) -> None:
    with watcher_thread(mnist) as events:
        mnist.write("data/c.txt", "gamma\n")
        event = events.get(timeout=DEADLINE_S)
        assert (event["event"], event["reason"], event["uploaded"]) == ("round", "files", 1)
    assert events.get(timeout=1)["event"] == "stopped"


def test_watch_limit_falls_back_to_polling(tmp_path: Path, monkeypatch: Any) -> None:
    class LimitReached(watch_events.Observer):  # type: ignore[misc, valid-type]
        def schedule(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watch_events, "Observer", LimitReached)
    top = str(tmp_path)
    collector = Collector(Routes(str(tmp_path / "m.yaml"), {"a": (top,)}, (), (), ()))
    warnings: list[str] = []
    observers = Observers(collector, poll=False, interval=0.1, warn=warnings.append)
    try:
        observers.sync({top: True})
        assert observers.polling and top in observers.watches
        assert len(warnings) == 1 and "limit reached" in warnings[0] and "polling" in warnings[0]
        (tmp_path / "new.txt").write_text("x")
        deadline = time.monotonic() + DEADLINE_S
        got = collector.wait_batch(0.1, lambda: time.monotonic() > deadline)
        assert str(tmp_path / "new.txt") in got
    finally:
        observers.close()


def test_a_round_that_meets_a_running_apply_is_retried(mnist: Project, api_env: None) -> None:
    """A manual apply holds the directory: the watcher says so and tries again later,
    instead of dropping the change."""
    from manifest_tool.applylock import exclusive_apply

    with watcher_thread(mnist) as events:
        with exclusive_apply(mnist.root / ".em"):
            mnist.write("data/c.txt", "gamma\n")
            busy = events.get(timeout=DEADLINE_S)
            assert busy["event"] == "error" and "another apply is running" in busy["message"]
            assert busy["retry_in"] > 0
        event = events.get(timeout=DEADLINE_S)
        assert (event["event"], event["reason"], event["uploaded"]) == ("round", "retry", 1)
