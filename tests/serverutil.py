"""A real ``manifest-tool serve`` in a subprocess on a free loopback port, or several
replicas on one PostgreSQL database and one S3 bucket behind a round-robin proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import engines
from rrproxy import RunningProxy, running_proxy

CLI = [sys.executable, "-m", "manifest_tool"]
READY_TIMEOUT_S = 20.0


@dataclass
class Server:
    data: Path
    url: str
    proc: subprocess.Popen[bytes]
    log_dir: Path
    keys: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("server-*.log"))
        )

    def settled_logs(self, quiet: float = 0.3, timeout: float = 10.0) -> str:
        """The logs once they stopped growing for ``quiet`` seconds: the access-log
        line of a request is written after its answer is sent, so a client that has
        its answer may read the log a moment before that line arrives."""
        deadline = time.monotonic() + timeout
        text = self.logs()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.logs()
            if now == text:
                break
            text = now
        return text

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def add_user(data: Path, name: str) -> str:
    return add_user_to(["--data", str(data)], name)


def add_user_to(store_args: Sequence[str], name: str) -> str:
    """``user add`` on the store that ``store_args`` (--data or --db/--blobs) name."""
    out = subprocess.run(
        [*CLI, "user", "add", name, *store_args, "--init"], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"user add {name} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def start(data: Path, log_dir: Path, extra_args: Sequence[str] = ()) -> Server:
    """Start a server on a port the OS picks and wait for its ready line."""
    return start_on(["--data", str(data)], data, log_dir, extra_args)


def start_on(
    store_args: Sequence[str],
    data: Path,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Server:
    """``serve`` over the store that ``store_args`` name; ``env`` adds variables."""
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(log_dir.glob("server-*.out.log")))
    out_path, err_path = log_dir / f"server-{n}.out.log", log_dir / f"server-{n}.err.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [*CLI, "serve", *store_args, "--port", "0", *extra_args],
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in out_path.read_text().splitlines():
            if line.startswith("serving ") and " on http://" in line:
                return Server(data, line.rsplit(" on ", 1)[1].strip(), proc, log_dir)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{err_path.read_text()}")


@contextmanager
def running_server(
    root: Path, users: Sequence[str] = ("alice", "bob"), extra_args: Sequence[str] = ()
) -> Iterator[Server]:
    """A server over ``root/data`` with ``users`` made first; killed on exit."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    keys = {user: add_user(data, user) for user in users}
    server = start(data, root / "logs", extra_args)
    server.keys = keys
    try:
        yield server
    finally:
        server.stop()


# -- replicas on PostgreSQL + S3 behind the round-robin proxy ----------------------------


@dataclass
class Replicas:
    """N ``serve`` replicas sharing one database and bucket; ``url`` is the proxy's."""

    url: str
    keys: dict[str, str]
    servers: list[Server]
    proxy: RunningProxy
    store_args: tuple[str, ...]  # --db/--blobs/--s3-endpoint, for user, gc and more replicas
    db: str
    bucket: str
    prefix: str
    root: Path
    extra: list[Server] = field(default_factory=list)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def logs(self) -> str:
        return "".join(s.logs() for s in self.servers)

    def start_replica(
        self, extra_args: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Server:
        """One more replica on the same store, not behind the proxy (talk to its .url);
        stopped with the others at the latest."""
        server = start_on(self.store_args, self.root, self.root / "logs", extra_args, env)
        server.keys = self.keys
        self.extra.append(server)
        return server

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A store command (``gc``, ``user list``...) with this store's flags."""
        return subprocess.run(
            [*CLI, *args, *self.store_args], capture_output=True, text=True, timeout=300
        )


def store_args_for(db: str, blobs: str) -> tuple[str, ...]:
    return ("--db", db, "--blobs", blobs, "--s3-endpoint", engines.s3_endpoint())


@contextmanager
def running_replicas(
    root: Path,
    users: Sequence[str] = ("alice", "bob"),
    n: int = 2,
    extra_args: Sequence[str] = (),
) -> Iterator[Replicas]:
    """``n`` replicas on a fresh PostgreSQL database and S3 bucket (from the test
    engines; skipped or failed as tests/engines.py decides when they are missing),
    users made once, behind a round-robin proxy; all stopped and dropped on exit."""
    prefix = "store"
    with engines.pg_database() as db, engines.s3_bucket() as bucket:
        store_args = store_args_for(db, f"s3://{bucket}/{prefix}")
        keys = {user: add_user_to(store_args, user) for user in users}
        servers: list[Server] = []
        replicas: Replicas | None = None
        try:
            for _ in range(n):
                servers.append(start_on(store_args, root, root / "logs", extra_args))
            for server in servers:
                server.keys = keys
            with running_proxy([s.url for s in servers]) as proxy:
                replicas = Replicas(
                    proxy.url, keys, servers, proxy, store_args, db, bucket, prefix, root
                )
                yield replicas
        finally:
            for server in [*servers, *(replicas.extra if replicas else [])]:
                server.stop()
