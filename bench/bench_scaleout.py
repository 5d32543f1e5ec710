"""First apply through two replicas on PostgreSQL + S3 (Ceph RGW) behind the round-robin
proxy, against the embedded server (``serve --data``), in the same run; one replica
without the proxy shows what the proxy itself costs.

Cases: 10,000 files of 1 KiB, and one file of 1 GiB, each the first ``manifest-tool
apply`` of a fresh project (its own hash cache) into an empty store, then a no-op
apply. Everything listens on 127.0.0.1. By default the bench starts its own throw-away
PostgreSQL and RGW (tools/pg-up.sh, tools/ceph-up.sh; root, the Debian packages, and
RAM for the memstore OSD) and stops them at the end; ``--env-engines`` uses the ones
in MT_TEST_PG_DSN / MT_TEST_S3_ENDPOINT / AWS_* instead (their store must hold the
big file). The machines are noisy: compare the ratios of one run.

    python bench/bench_scaleout.py [--big-mib 1024] [--small 10000] [--env-engines]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serverutil import running_replicas, running_server  # noqa: E402

MiB = 1024 * 1024
USER = "alice"
APPLY_TIMEOUT_S = 900  # one case; a hung store ends the bench instead of stalling it


@dataclass(frozen=True)
class Case:
    name: str
    entry: str  # the manifest's objects entry
    units: float  # for the rate column
    unit: str


def make_data(src: Path, big_mib: int, small: int) -> None:
    (src / "small").mkdir(parents=True)
    for i in range(small):
        (src / "small" / f"f{i:05d}.bin").write_bytes(os.urandom(1024))
    block = os.urandom(MiB)
    with open(src / "big.bin", "wb") as fh:
        for i in range(big_mib):
            fh.write(block[i % 997 :] + block[: i % 997])


def fresh_project(src: Path, dest: Path) -> Path:
    """A project over hardlinks of the data: same bytes, its own empty hash cache."""
    subprocess.run(["cp", "-al", str(src), str(dest)], check=True)
    return dest


def apply(project: Path, url: str, key: str, case: Case, folder: str) -> float:
    manifest = project / f"{case.name}.yaml"
    manifest.write_text(
        f'version: 1\nremote: {{url: "{url}"}}\nartifacts:\n'
        f"  - name: {case.name}\n    folder: {folder}\n    make_folder: true\n"
        f"    objects:\n      - {case.entry}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANIFEST_TOOL_")}
    env["MANIFEST_TOOL_API_KEY"] = key
    cmd = [sys.executable, "-m", "manifest_tool", "-f", str(manifest), "apply"]
    start = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=project, env=env, capture_output=True, text=True, timeout=APPLY_TIMEOUT_S
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"apply {case.name} to {url} failed: {done.stderr.strip()[:500]}")
    return elapsed


def run_cases(url: str, key: str, src: Path, work: Path, cases: list[Case]) -> list[float]:
    """First apply of each case, then one no-op apply of the last, in seconds."""
    times = []
    for case in cases:
        project = fresh_project(src, work / case.name)
        times.append(apply(project, url, key, case, "bench"))
    times.append(apply(work / cases[-1].name, url, key, cases[-1], "bench"))
    return times


def engine_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v.strip("'") for k, v in pairs}


@contextlib.contextmanager
def own_engines(work: Path, big_mib: int) -> Iterator[None]:
    """Throw-away PostgreSQL and RGW on free ports, exported as the tests' variables."""
    tools = ROOT / "tools"
    pg_dir, ceph_dir = work / "pg", work / "ceph"
    work.mkdir()
    for d in (work.parent, work):
        d.chmod(0o755)  # the postgres user must reach its data dir below
    osd_mb = str(2 * big_mib + 2048)  # memstore keeps the big object (and its parts) in RAM
    started: list[tuple[Path, Path]] = []
    try:
        subprocess.run([tools / "pg-up.sh", pg_dir], check=True, stdout=subprocess.DEVNULL)
        started.append((tools / "pg-up.sh", pg_dir))
        subprocess.run(
            [tools / "ceph-up.sh", ceph_dir],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "CEPH_OSD_SIZE_MB": osd_mb},
        )
        started.append((tools / "ceph-up.sh", ceph_dir))
        pg, s3 = engine_env(pg_dir / "pg.env"), engine_env(ceph_dir / "s3.env")
        os.environ.update(
            MT_TEST_PG_DSN=pg["PG_DSN"],
            MT_TEST_S3_ENDPOINT=s3["S3_ENDPOINT"],
            AWS_ACCESS_KEY_ID=s3["S3_ACCESS_KEY"],
            AWS_SECRET_ACCESS_KEY=s3["S3_SECRET_KEY"],
            AWS_DEFAULT_REGION="us-east-1",
        )
        yield
    finally:
        for script, where in reversed(started):
            subprocess.run([script, "--down", where], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--env-engines", action="store_true", help="use MT_TEST_* engines")
    args = parser.parse_args()
    cases = [
        Case("small", "dir: src/small\n        obj_path: small/", args.small, "files"),
        Case("big", "file: src/big.bin", args.big_mib, "MiB"),
    ]
    columns: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="mt-bench-scaleout-") as tmp:
        work = Path(tmp)
        make_data(work / "data" / "src", args.big_mib, args.small)
        src = work / "data"
        (work / "embedded").mkdir()
        with running_server(work / "embedded" / "srv", users=[USER]) as srv:
            columns["embedded"] = run_cases(srv.url, srv.keys[USER], src, work / "embedded", cases)
        engines = (
            contextlib.nullcontext()
            if args.env_engines
            else own_engines(work / "eng", args.big_mib)
        )
        with engines:
            # each on a fresh database and bucket: nothing deduplicates against the other
            (work / "direct").mkdir()
            with running_replicas(work / "direct" / "srv", users=[USER], n=1) as one:
                url = one.servers[0].url  # no proxy in between
                columns["1 replica"] = run_cases(url, one.keys[USER], src, work / "direct", cases)
            (work / "replicas").mkdir()
            with running_replicas(work / "replicas" / "srv", users=[USER]) as pair:
                columns["2 + proxy"] = run_cases(
                    pair.url, pair.keys[USER], src, work / "replicas", cases
                )
                spread = pair.proxy.counts
    report(cases, columns, spread)


def report(cases: list[Case], columns: dict[str, list[float]], spread: list[int]) -> None:
    """Seconds per case and store, and each shared store's time over the embedded one's."""
    rows: list[tuple[str, Case | None]] = [
        (f"first apply, {c.units:g} {c.unit} ({c.name})", c) for c in cases
    ]
    rows.append((f"no-op apply ({cases[-1].name})", None))
    names = list(columns)
    print(
        f"{'case':36}"
        + "".join(f"{n:>12}" for n in names)
        + "".join(f"{'ratio ' + n:>18}" for n in names[1:])
    )
    for i, (label, case) in enumerate(rows):
        secs = [columns[n][i] for n in names]
        line = f"{label:36}" + "".join(f"{t:11.2f}s" for t in secs)
        line += "".join(f"{t / secs[0]:17.2f}x" for t in secs[1:])
        if case:
            line += "   " + " / ".join(f"{case.units / t:,.0f}" for t in secs) + f" {case.unit}/s"
        print(line)
    print(f"requests per replica through the proxy: {spread}")
    print("ratio = that store's time / the embedded server's time (above 1: slower)")


if __name__ == "__main__":
    main()
