"""Human-readable plans and apply reports (the CLI prints what these return)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .plan import ArtifactPlan, Plan

if TYPE_CHECKING:
    from .apply import Applied

FOLD = 20
SYMBOL = {
    "create": "+",
    "new": "+",
    "update": "~",
    "metadata": "~",
    "replace": "-/+",
    "skip": "!",
    "error": "x",
    "none": "*",
}


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render_plan(plan: Plan, verbose: bool = False) -> str:
    if not plan.changes and not plan.errors:
        return "No changes."
    lines: list[str] = []
    for ap in plan.artifacts:
        if ap.changes or ap.action == "error":
            lines.extend(_artifact_lines(ap, verbose))
    lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines)


def _artifact_lines(ap: ArtifactPlan, verbose: bool) -> list[str]:
    head = f"{SYMBOL[ap.action]} {ap.name}: {_describe(ap)}"
    rows = [f"    + {k}" for k in ap.upload] + [f"    - {k}" for k in ap.delete]
    if ap.action == "none":
        rows = []
    if len(rows) > FOLD and not verbose:
        rows = [*rows[:FOLD], f"    ... and {len(rows) - FOLD} more (--verbose shows all)"]
    return [head, *rows]


def _describe(ap: ArtifactPlan) -> str:
    size = sum(h.file.size for h in ap.desired.files if h.file.key in set(ap.upload))
    local = ap.local
    staged = len(local.add) + len(local.update) + len(local.remove)
    tail = f"; {staged} local file(s) to stage" if staged else ""
    if ap.action in ("skip", "error"):
        return f"{ap.action}: {ap.message}"
    if ap.action == "none":
        return f"up to date at {ap.path}{tail}"
    if ap.action == "metadata":
        return f"update labels/description of {ap.path}{tail}"
    counts = f"{len(ap.upload)} to upload ({human_size(size)}), {len(ap.delete)} to delete"
    return f"{ap.action} {ap.path}: {counts}{tail}"


def summary(plan: Plan) -> str:
    actions = Counter(a.action for a in plan.artifacts if a.changes or a.action == "error")
    uploads = sum(len(a.upload) for a in plan.artifacts)
    deletes = sum(len(a.delete) for a in plan.artifacts)
    parts = [f"{n} {action}" for action, n in sorted(actions.items())]
    return f"Plan: {', '.join(parts)}; {uploads} object(s) to upload, {deletes} to delete."


def render_applied(results: Sequence[Applied], seconds: float) -> str:
    lines = []
    for r in results:
        if r.action in ("create", "new", "update", "replace"):
            lines.append(
                f"{r.name}: {r.action} {r.path}: uploaded {r.uploaded} object(s) "
                f"({human_size(r.uploaded_bytes)}), deleted {r.deleted}"
            )
        elif r.action == "metadata":
            lines.append(f"{r.name}: updated labels/description of {r.path}")
        elif r.action == "skip":
            lines.append(f"{r.name}: skipped ({r.path} holds another artifact)")
        elif r.staged:
            lines.append(f"{r.name}: staged {r.staged} local file(s); remote up to date")
    sent = sum(r.uploaded_bytes for r in results)
    count = sum(r.uploaded for r in results)
    lines.append(
        f"Apply complete: {count} object(s) uploaded ({human_size(sent)}) in {seconds:.1f} s."
    )
    return "\n".join(lines)
