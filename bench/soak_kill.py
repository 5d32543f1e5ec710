"""Soak: kill -9 ``manifest-tool apply`` at random points, then check it converges.

Each run changes some files, starts ``apply``, kills it with SIGKILL after a random
delay (up to about one full apply's duration), checks that no node is torn, runs a
clean ``apply``, and checks convergence: the clean apply succeeds, ``plan
--detailed-exitcode`` says no changes, and every node's ``contentDigest`` matches
the objects it holds (a digest over other objects would be "torn"). Prints
"N/N converged, 0 torn" when all is well; exits 1 otherwise. Not part of the test
run: 100 runs take a few minutes.

    python bench/soak_kill.py [--runs 100] [--seed 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from manifest_tool.hashing import content_digest  # noqa: E402

ARTIFACTS = 3
FILES = 12
METADATA = ("metadata.yaml", "references.yaml")
MANIFEST = "version: 1\nartifacts:\n" + "".join(
    f"  - name: part{i}\n    conflict_strategy: replace\n    objects: [{{dir: d{i}}}]\n"
    for i in range(ARTIFACTS)
)


@dataclass(frozen=True)
class Outcome:
    converged: bool
    torn: int
    note: str
    mid_run: bool  # the kill landed while apply was still running


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MANIFEST_TOOL_", "EM_"))}
    return {**clean, "MANIFEST_TOOL_USER": "soak", "PYTHONPATH": str(ROOT)}


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "manifest_tool", *args]
    return subprocess.run(cmd, cwd=project, env=env(), capture_output=True, text=True, timeout=300)


def change_files(project: Path, rng: random.Random) -> None:
    """New content for a few files of each artifact, sizes from 1 KiB to 2 MiB."""
    for i in range(ARTIFACTS):
        for j in rng.sample(range(FILES), 3):
            size = rng.choice((1024, 64 * 1024, 512 * 1024, 2 * 1024 * 1024))
            (project / f"d{i}" / f"f{j:02}.bin").write_bytes(os.urandom(size))


def torn_nodes(store: Path) -> list[str]:
    """Artifact nodes whose contentDigest is not the digest of their objects."""
    conn = sqlite3.connect(f"file:{store / 'store.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        torn = []
        nodes = conn.execute("SELECT id, path, extra FROM nodes WHERE type = 'Artifact'")
        for node_id, path, extra in nodes.fetchall():
            digest = json.loads(extra or "{}").get("contentDigest")
            rows = conn.execute(
                "SELECT key, size, md5 FROM objects WHERE node_id = ?", (node_id,)
            ).fetchall()
            objects = [
                {"path": k, "size_bytes": n, "checksum": m} for k, n, m in rows if k not in METADATA
            ]
            if digest is not None and digest != content_digest(objects):
                torn.append(path)
        return torn
    finally:
        conn.close()


def one_run(project: Path, rng: random.Random, window: float) -> Outcome:
    change_files(project, rng)
    cmd = [sys.executable, "-m", "manifest_tool", "apply"]
    proc = subprocess.Popen(
        cmd, cwd=project, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(rng.uniform(0, window))
    mid_run = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = project / ".em" / "store"
    torn = len(torn_nodes(store)) if (store / "store.sqlite").exists() else 0
    clean = cli(project, "apply")
    if clean.returncode != 0:
        return Outcome(False, torn, f"clean apply failed: {clean.stderr.strip()}", mid_run)
    plan = cli(project, "plan", "--detailed-exitcode")
    torn += len(torn_nodes(store))
    if plan.returncode != 0:
        return Outcome(False, torn, f"plan after a clean apply: exit {plan.returncode}", mid_run)
    return Outcome(torn == 0, torn, "", mid_run)


def setup(project: Path, rng: random.Random) -> float:
    """The project, and how long one full apply takes: the window kills land in."""
    (project / "artifacts.yaml").write_text(MANIFEST)
    for i in range(ARTIFACTS):
        (project / f"d{i}").mkdir(parents=True)
        for j in range(FILES):
            (project / f"d{i}" / f"f{j:02}.bin").write_bytes(os.urandom(rng.randint(1, 256) * 1024))
    started = time.monotonic()
    first = cli(project, "apply")
    if first.returncode != 0:
        raise SystemExit(f"the first apply failed: {first.stderr}")
    change_files(project, rng)
    return max(time.monotonic() - started, 0.5) * 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="Keep the project directory.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    project = Path(tempfile.mkdtemp(prefix="soak-kill-"))
    converged = torn = mid_run = 0
    try:
        window = setup(project, rng)
        for run in range(1, args.runs + 1):
            outcome = one_run(project, rng, window)
            converged += outcome.converged
            torn += outcome.torn
            mid_run += outcome.mid_run
            if outcome.note or outcome.torn:
                print(f"run {run}: {outcome.note or f'{outcome.torn} torn'}", flush=True)
    finally:
        if args.keep:
            print(f"project kept in {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)
    print(f"({mid_run} of {args.runs} kills landed while apply was running)")
    print(f"{converged}/{args.runs} converged, {torn} torn")
    return 0 if converged == args.runs and torn == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
