"""How a benchmark runs things: a timed child process with its own peak RSS, repeats
with a median, a loopback server with its request counters, and a trash for state.

Every benchmark here measures whole processes (the CLI, git, curl, DVC), as a user
would run them, and compares figures taken in one run on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serverutil import Server, add_user, start  # noqa: E402

TOOL = (sys.executable, "-m", "manifest_tool")
USER = "bench"
STARTED = time.monotonic()


class BenchError(Exception):
    """A step that could not be measured; its rows report this message."""


def say(message: str) -> None:
    """Progress on stderr, so stdout stays the table."""
    elapsed = int(time.monotonic() - STARTED)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Run:
    seconds: float
    rss_mib: float  # this child's peak resident set (with the children it waited for)
    out: str
    err: str


# GNU time reports the peak RSS of the command alone. A child's own rusage would not:
# at exec the kernel keeps the parent's peak (shared until then) as the child's, so a
# big parent (pytest, say) would show up in every figure.
GNU_TIME = "/usr/bin/time"


def run(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float, ok: Sequence[int] = (0,)
) -> Run:
    """Run ``cmd`` to its end; its wall time and peak RSS, or BenchError."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with tempfile.NamedTemporaryFile("r") as rss:
            timed = os.access(GNU_TIME, os.X_OK)
            wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if timed else list(cmd)
            start_at = time.perf_counter()
            proc = subprocess.Popen(
                wrapped, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
            )
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the command too, not only GNU time
                proc.wait()
            seconds = time.perf_counter() - start_at
            peak = _peak_mib(rss.read()) if timed else float("nan")
        out.seek(0)
        err.seek(0)
        done = Run(
            seconds, peak, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )
    if proc.returncode not in ok:
        why = "timed out" if seconds >= timeout else f"exit {proc.returncode}"
        tail = (done.err.strip() or done.out.strip())[-300:]
        raise BenchError(f"{' '.join(cmd[-3:])} in {cwd.name}: {why}: {tail}")
    return done


def _peak_mib(report: str) -> float:
    """GNU time's ``%M`` (KiB) is its last line, after any 'Command exited ...' line."""
    lines = report.split()
    try:
        return int(lines[-1]) / 1024
    except (IndexError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class Repeated:
    seconds: float  # the median
    rss_mib: float  # the largest
    runs: int


def repeat(times: int, once: Callable[[], Run], long_s: float = 10.0) -> Repeated:
    """The median of ``times`` runs; a single run when the first takes over ``long_s``."""
    runs = [once()]
    while len(runs) < times and runs[0].seconds <= long_s:
        runs.append(once())
    return Repeated(
        statistics.median(r.seconds for r in runs), max(r.rss_mib for r in runs), len(runs)
    )


def tool_env(home: Path, remote: Server | None = None) -> dict[str, str]:
    """The CLI's environment: the bench user, no saved keys, the remote when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANIFEST_TOOL_")}
    env |= {
        "MANIFEST_TOOL_USER": USER,
        "XDG_CONFIG_HOME": str(home / "config"),
        "T9K_CONFIG": str(home / "no-t9k-config"),
        "NO_COLOR": "1",
    }
    if remote is not None:
        env |= {"MANIFEST_TOOL_REMOTE": remote.url, "MANIFEST_TOOL_API_KEY": remote.keys[USER]}
    return env


@contextmanager
def serving(data: Path, logs: Path) -> Iterator[Server]:
    """``manifest-tool serve`` over ``data`` (made a store if it is not one) on loopback."""
    key = add_user(data, USER)
    server = start(data, logs)
    server.keys = {USER: key}
    try:
        yield server
    finally:
        server.stop()


METRIC = re.compile(
    r'^manifest_tool_requests_total\{method="([^"]*)",route="([^"]*)",status="(\d+)"\} (\d+)$'
)


def request_counts(server: Server) -> Counter[tuple[str, str, int]]:
    """The server's requests so far by (method, route, status), from ``/metrics``."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found: Counter[tuple[str, str, int]] = Counter()
    for line in text.splitlines():
        if m := METRIC.match(line):
            found[(m[1], m[2], int(m[3]))] = int(m[4])
    return found


@dataclass(frozen=True)
class Requests:
    total: int
    uploads: int  # the calls that carry object bytes
    calls: tuple[tuple[str, str, int, int], ...]  # (method, route, status, count)

    def count(self) -> str:
        return f"{self.total:,} request{'' if self.total == 1 else 's'}"

    def breakdown(self) -> str:
        """``12 GET objects/ls, 2 POST objects, ...``: which calls, most first."""
        calls = sorted(self.calls, key=lambda c: -c[3])
        return ", ".join(
            f"{n} {m} {route.removeprefix('/apis/v1/')}{'' if status < 400 else f' ({status})'}"
            for m, route, status, n in calls
        )


def is_upload(method: str, route: str) -> bool:
    return (
        method in ("POST", "PUT")
        and route.startswith("/apis/v1/objects")
        and route not in ("/apis/v1/objects/delete", "/apis/v1/objects/ls")
    )


def counted(server: Server, once: Callable[[], Run]) -> tuple[Run, Requests]:
    """Run ``once`` and count the requests the server answered meanwhile."""
    before = request_counts(server)
    done = once()
    delta = request_counts(server) - before
    calls = {k: n for k, n in delta.items() if k[1] != "/metrics"}
    uploads = sum(n for (method, route, _), n in calls.items() if is_upload(method, route))
    breakdown = tuple(sorted((m, route, status, n) for (m, route, status), n in calls.items()))
    return done, Requests(sum(calls.values()), uploads, breakdown)


class Trash:
    """Old state is set aside during a run and deleted at its end: deleting many files
    makes creating many new ones 8-10x slower for minutes on these machines."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def discard(self, *paths: Path) -> None:
        for path in paths:
            if path.exists() or path.is_symlink():
                slot = self.root / str(time.time_ns())
                slot.mkdir(parents=True)
                path.rename(slot / path.name)

    def empty(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)


def git_head(path: Path) -> str:
    """The commit of the code measured, with ``+changes`` when its tree differs."""
    git = ["git", "-C", str(path)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    branch = subprocess.run([*git, "branch", "--show-current"], capture_output=True, text=True)
    mark = " +changes" if dirty.stdout.strip() else ""
    return f"{head.stdout.strip()} ({branch.stdout.strip() or 'detached'}){mark}"
