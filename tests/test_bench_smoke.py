"""The performance table's own machinery, on tiny real runs: per-child peak RSS, the
ratio and verdict of a row, and request counts taken from a real server's /metrics."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from harness import TOOL, BenchError, Trash, counted, run, serving, tool_env  # noqa: E402
from table import Figure, Goal, Row, markdown  # noqa: E402
from trees import Edited  # noqa: E402

PY = sys.executable
ENV = dict(os.environ)


def test_peak_rss_is_each_childs_own_and_rows_judge_it(tmp_path: Path) -> None:
    big = run([PY, "-c", "b = b'x' * (200 << 20)"], tmp_path, ENV, 60)
    held = b"y" * (150 << 20)  # a big parent must not show in its child's figure
    small = run([PY, "-c", "pass"], tmp_path, ENV, 60)
    assert len(held) and big.rss_mib > 200
    assert small.rss_mib < 100  # neither the largest child so far nor this process
    limit = Goal("<", 150, on_ratio=False)
    assert Row(1, "big", Figure(big.rss_mib, "MiB"), goal=limit).met is False
    assert Row(2, "small", Figure(small.rss_mib, "MiB"), goal=limit).met is True


def test_a_row_is_the_ratio_of_two_measures_against_its_goal(tmp_path: Path) -> None:
    slow = run(["sleep", "1"], tmp_path, ENV, 60)
    fast = run(["true"], tmp_path, ENV, 60)
    behind = Row(
        1, "slow", Figure(slow.seconds, "s"), "fast", Figure(fast.seconds, "s"), Goal("<=", 1.5)
    )
    ahead = Row(
        2, "fast", Figure(fast.seconds, "s"), "slow", Figure(slow.seconds, "s"), Goal("<=", 1.5)
    )
    assert behind.ratio == slow.seconds / fast.seconds > 1.5
    assert (behind.met, ahead.met) == (False, True)
    skipped = Row(3, "peer", Figure(1.0, "s"), "DVC", goal=Goal("<=", 0.2), missing="skipped: x")
    lines = markdown([behind, ahead, skipped]).splitlines()
    assert lines[2].endswith("| <= 1.5x | **not met** |")
    assert lines[3].endswith("| <= 1.5x | met |")
    assert lines[4].endswith("| - | <= 0.2x | skipped: x |")


def test_requests_are_counted_from_the_servers_metrics(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    for i in range(3):
        (project / "data" / f"f{i}.bin").write_bytes(os.urandom(100))
    (project / "artifacts.yaml").write_text(
        "version: 1\nartifacts:\n  - name: a\n    folder: f\n    make_folder: true\n"
        "    objects:\n      - dir: data\n"
    )
    with serving(tmp_path / "srv", tmp_path / "logs") as srv:
        env = tool_env(tmp_path, srv)
        _, first = counted(srv, lambda: run([*TOOL, "apply"], project, env, 120))
        _, noop = counted(srv, lambda: run([*TOOL, "plan"], project, env, 120))
    assert first.uploads >= 1 and "POST objects" in first.breakdown()
    assert first.total > first.uploads
    assert noop.uploads == 0 and 1 <= noop.total < first.total


def test_a_child_past_its_time_is_killed_with_what_it_started(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BenchError, match="timed out"):
        run(["sh", "-c", "sleep 30 & sleep 30"], tmp_path, ENV, 0.5)
    assert time.monotonic() - started < 10


def test_state_is_set_aside_then_deleted_and_edits_are_put_back(tmp_path: Path) -> None:
    state = tmp_path / "tree" / ".em"
    state.mkdir(parents=True)
    victim = tmp_path / "tree" / "f.bin"
    victim.write_bytes(b"original")
    trash = Trash(tmp_path / "trash")
    trash.discard(state)
    assert not state.exists() and list((tmp_path / "trash").rglob(".em"))
    trash.empty()
    assert not (tmp_path / "trash").exists()
    with Edited(victim):
        assert victim.read_bytes() != b"original"
    assert victim.read_bytes() == b"original"
