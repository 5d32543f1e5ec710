"""No-op plan, first apply and one-file apply on 100,000 files of 1 KiB.

Prints wall times and the no-op plan / `git status` ratio, both measured here, in
this run, on the same tree (the goal is a ratio of at most 3). Usage:

    python bench/bench_plan.py [--files 100000] [--dirs 1000] [--work DIR]

The tree is kept between runs, and the previous run's store and caches are removed
only after this run's measurements (deleting 100k files makes creating the next
100k 8-10x slower for minutes on these machines); the store and caches start empty.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = """version: 1
artifacts:
  - name: bench
    folder: bench
    make_folder: true
    objects:
      - dir: data
"""


def build_tree(root: Path, files: int, dirs: int) -> None:
    data = root / "data"
    marker = root / f".built-{files}-{dirs}"
    if marker.exists():
        return
    per_dir = files // dirs
    payload = os.urandom(1024)
    for d in range(dirs):
        sub = data / f"d{d:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (sub / f"f{f:04d}.bin").write_bytes(
                payload[:1000] + d.to_bytes(4) + f.to_bytes(4) + payload[1008:]
            )
    git = ["git", "-c", "user.email=b@b", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "data"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], cwd=root, check=True)
    marker.touch()


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return elapsed


def median_of(n: int, cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    return statistics.median(timed(cmd, cwd, env) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dirs", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mt-bench")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    root = args.work
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_tree(root, args.files, args.dirs)
    print(f"tree: {args.files} files in {args.dirs} dirs ({time.perf_counter() - t0:.1f} s)")
    (root / "artifacts.yaml").write_text(MANIFEST)
    # Set the last run's state aside rather than delete it now: deleting 100,000 files
    # makes creating the next 100,000 many times slower for minutes on these machines.
    old = root / f".em-old-{time.time_ns()}"
    if (root / ".em").exists():
        (root / ".em").rename(old)
    (root / "artifacts.lock").unlink(missing_ok=True)
    env = {**os.environ, "MANIFEST_TOOL_USER": "bench"}
    tool = [sys.executable, "-m", "manifest_tool"]

    first = timed([*tool, "apply", "-q"], root, env)
    noop = median_of(args.repeat, [*tool, "plan", "-q"], root, env)
    git = median_of(args.repeat, ["git", "status", "--porcelain"], root, env)
    victim = root / "data" / "d0007" / "f0003.bin"
    original = victim.read_bytes()
    victim.write_bytes(original[::-1])
    one = timed([*tool, "apply", "-q"], root, env)
    victim.write_bytes(original)
    timed([*tool, "apply", "-q"], root, env)

    print(f"{'measure':<34}{'seconds':>10}")
    print(f"{'first apply (embedded store)':<34}{first:>10.2f}")
    print(f"{'no-op plan (median)':<34}{noop:>10.3f}")
    print(f"{'git status (median)':<34}{git:>10.3f}")
    print(f"{'one-file change apply':<34}{one:>10.3f}")
    print(f"no-op plan / git status = {noop / git:.2f} (goal: <= 3)")
    shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    main()
