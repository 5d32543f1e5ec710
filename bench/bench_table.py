"""The performance table: every measure as a ratio to its anchor taken in the same run.

    python bench/bench_table.py [--quick] [--only files,wide,big,render,many]
                                [--out FILE.md] [--work DIR] [--dvc PATH] [--prepare]

Measures this checkout's code (its directory goes first on PYTHONPATH) against
`git status`, `curl -F` and DVC add+push on the same data, on 127.0.0.1 only. DVC is
never a dependency: give one installed in its own virtualenv with --dvc or BENCH_DVC
(`python3 -m venv ~/dvc-venv && ~/dvc-venv/bin/pip install dvc`); without
it the DVC rows say they were skipped. Trees are built once under --work and kept;
--quick uses small sizes for a smoke run of a few minutes. Progress goes to stderr,
the markdown table to stdout (and to --out).
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import peers
from context import FULL, QUICK, Bench
from groups import GROUPS, TREES, run_groups
from harness import ROOT, Trash, git_head, say
from table import Row, markdown


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups of rows (default: {','.join(GROUPS)})",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mt-bench",
        help="where the trees are kept between runs",
    )
    parser.add_argument("--dvc", help="the dvc executable (default: $BENCH_DVC)")
    parser.add_argument(
        "--prepare", action="store_true", help="only build the trees the groups need, and stop"
    )
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(GROUPS)
    if unknown:
        parser.error(
            f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}"
        )
    return args


def main() -> None:
    args = parse()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    # measured as installed: pip compiles a package's modules once, while a checkout
    # run with PYTHONDONTWRITEBYTECODE set would compile them all on every command
    compileall.compile_dir(ROOT / "manifest_tool", quiet=1)
    work = args.work.resolve()
    run_dir = work / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dvc, no_dvc = peers.find_dvc(args.dvc)
    if dvc is None:
        say(f"DVC rows will be skipped: {no_dvc}")
    trash = Trash(work / "trash")
    bench = Bench(QUICK if args.quick else FULL, work, run_dir, trash, dvc, no_dvc)
    groups = [g for g in GROUPS if g in args.only.split(",")]
    if args.prepare:
        for name in groups:
            say(f"{name}: tree {TREES[name](bench)}")
        return
    run_dir.mkdir(parents=True)
    started, load = time.monotonic(), os.getloadavg()[0]

    def table(rows: list[Row], done: bool) -> str:
        minutes = (time.monotonic() - started) / 60
        return header(bench, args.quick, load, minutes, done) + "\n" + markdown(rows)

    def partial(rows: list[Row]) -> None:
        if args.out:
            args.out.write_text(table(rows, done=False))

    try:
        rows = run_groups(bench, groups, partial)
    finally:
        # this run's servers, remotes and set-aside state; the trees stay
        trash.discard(run_dir)
        say("deleting this run's state")
        trash.empty()
    text = table(rows, done=True)
    print(text)
    if args.out:
        args.out.write_text(text)


def header(bench: Bench, quick: bool, load: float, minutes: float, done: bool) -> str:
    dvc = bench.dvc.version if bench.dvc else f"none ({bench.no_dvc})"
    return (
        f"{'' if done else '(Partial: the run goes on.) '}"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python bench/bench_table.py"
        f"{' --quick' if quick else ''}` in {minutes:.1f} min: code {git_head(ROOT)}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores (load average {load:.1f} "
        f"at the start, {os.getloadavg()[0]:.1f} at the end), DVC {dvc}. Plans, `git status` "
        f"and curl: the median of 3 runs (plans "
        f"and git after one warm-up run; one run when it takes over 10 s); first applies and "
        f"DVC: one run.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
