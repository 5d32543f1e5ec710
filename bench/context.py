"""What every group of the table shares: the sizes, the bench's places and how it
runs the CLI and DVC, manifests, and the figures rows are made of."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import peers
from harness import (
    TOOL,
    BenchError,
    Repeated,
    Requests,
    Run,
    Server,
    Trash,
    counted,
    repeat,
    tool_env,
)
from harness import run as run_child
from table import Figure, Goal, Row


@dataclass(frozen=True)
class Sizes:
    files: int  # the tree of small files (100k)
    files_dirs: int
    wide: int  # the big tree (300k)
    wide_dirs: int
    many: int  # artifacts of `per` files each
    few: int  # ... and the smaller count they are compared with
    per: int
    big_mib: int
    render: int  # new files in the text plan
    timeout: float  # for any one process


FULL = Sizes(100_000, 1_000, 300_000, 3_000, 1_000, 100, 10, 1024, 20_000, 1800.0)
QUICK = Sizes(3_000, 30, 10_000, 100, 50, 5, 10, 64, 2_000, 300.0)
RSS_LIMIT = Goal("<", 150, on_ratio=False)


@dataclass(frozen=True)
class Bench:
    sizes: Sizes
    work: Path  # kept between runs: the trees
    run_dir: Path  # this run's servers, DVC remotes and logs
    trash: Trash
    dvc: peers.Dvc | None
    no_dvc: str  # why there is no DVC

    def tree(self, name: str) -> Path:
        path = self.work / "trees" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cli(self, args: Sequence[str], root: Path, server: Server | None = None) -> Run:
        return run_child([*TOOL, *args], root, tool_env(self.run_dir, server), self.sizes.timeout)

    def fresh(self, root: Path) -> None:
        """No local state: no hash index, no lock, no embedded store."""
        self.trash.discard(root / ".em", *root.glob("*.lock"))

    def warm_repeat(self, once: Callable[[], Run]) -> Repeated:
        """One run to warm caches (and the key's user lookup), then the median of 3."""
        once()
        return repeat(3, once)

    def warm_counted(
        self, args: Sequence[str], root: Path, server: Server
    ) -> tuple[Repeated, Requests]:
        """As warm_repeat, for a CLI run against ``server``, with its requests."""
        once = partial(self.cli, args, root, server)
        once()
        return repeat_counted(server, once)

    def dvc_seconds(
        self, root: Path, target: str, state: str, fresh: bool = True
    ) -> tuple[float | None, str]:
        """DVC add+push of ``target`` (from an empty cache and remote when ``fresh``),
        or (None, why)."""
        if self.dvc is None:
            return None, self.no_dvc
        try:
            place = self.run_dir / state
            if fresh:
                peers.dvc_fresh(self.dvc, root, place, self.trash, self.sizes.timeout)
            return peers.dvc_add_push(self.dvc, root, place, target, self.sizes.timeout), ""
        except BenchError as exc:
            return None, f"DVC failed: {exc}"


def repeat_counted(server: Server, once: Callable[[], Run]) -> tuple[Repeated, Requests]:
    """The median of 3 runs of ``once`` and the requests ``server`` saw in the last."""
    seen: list[Requests] = []

    def measured() -> Run:
        done, requests = counted(server, once)
        seen.append(requests)
        return done

    return repeat(3, measured), seen[-1]


def write_manifest(root: Path, name: str, artifacts: Sequence[tuple[str, str, list[str]]]) -> str:
    """A manifest of (artifact, folder, object entries such as ``dir: data``)."""
    lines = ["version: 1", "artifacts:"]
    for art, folder, entries in artifacts:
        lines += [
            f"  - name: {art}",
            f"    folder: {folder}",
            "    make_folder: true",
            "    objects:",
            *(f"      - {entry}" for entry in entries),
        ]
    (root / name).write_text("\n".join(lines) + "\n")
    return name


def seconds(value: float, note: str = "") -> Figure:
    return Figure(value, "s", note)


def mib(value: float, note: str = "") -> Figure:
    return Figure(value, "MiB", note)


def peer_row(
    order: int,
    work: str,
    figure: Figure,
    label: str,
    peer: tuple[float | None, str],
    goal: Goal | None,
) -> Row:
    value, why = peer
    if value is None:
        return Row(order, work, figure, label, goal=goal, missing=f"skipped: {why}")
    return Row(order, work, figure, label, seconds(value), goal)
