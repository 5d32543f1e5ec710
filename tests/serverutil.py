"""A real ``manifest-tool serve`` in a subprocess on a free loopback port."""

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
    out = subprocess.run(
        [*CLI, "user", "add", name, "--data", str(data), "--init"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def start(data: Path, log_dir: Path, extra_args: Sequence[str] = ()) -> Server:
    """Start a server on a port the OS picks and wait for its ready line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(log_dir.glob("server-*.out.log")))
    out_path, err_path = log_dir / f"server-{n}.out.log", log_dir / f"server-{n}.err.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [*CLI, "serve", "--data", str(data), "--port", "0", *extra_args],
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
