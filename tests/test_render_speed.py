"""The text plan renders in time linear in its objects (issue 14: 20,000 new files
once took 37.8 s because each row rebuilt a set of every upload)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from manifest_tool.plan import ArtifactPlan, Plan
from manifest_tool.render import render_plan


def _plan(count: int) -> Plan:
    keys = tuple(f"data/part-{i:06d}.bin" for i in range(count))
    files = [SimpleNamespace(file=SimpleNamespace(key=k, size=1024)) for k in keys]
    spec = SimpleNamespace(labels=("a",), description="d")
    desired: Any = SimpleNamespace(files=files, spec=spec)
    ap = ArtifactPlan(
        name="big", folder="/alice/f", path="/alice/f/big", action="update",
        desired=desired, upload=keys, modified=keys[: count // 2],
    )
    return Plan(Path("artifacts.yaml"), "file:store", (ap,))


def test_twenty_thousand_new_files_render_well_under_a_second() -> None:
    plan = _plan(20_000)
    started = time.perf_counter()
    text = render_plan(plan, verbose=True)
    elapsed = time.perf_counter() - started
    assert text.count("\n    + data/part-") == 10_000
    assert text.count("\n    ~ data/part-") == 10_000
    assert elapsed < 1.0, f"rendering 20,000 objects took {elapsed:.2f} s"
