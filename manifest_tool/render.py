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
    "version": "+",
    "update": "~",
    "metadata": "~",
    "rename": "~",
    "replace": "-/+",
    "skip": "!",
    "error": "x",
    "none": "*",
    "orphan": "?",
    "delete": "-",
}


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render_plan(plan: Plan, verbose: bool = False) -> str:
    shown = [a for a in plan.artifacts if a.changes or a.action in ("error", "orphan")]
    if not shown:
        return "No changes."
    lines: list[str] = []
    for ap in shown:
        lines.extend(_artifact_lines(ap, verbose))
    lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines)


def _artifact_lines(ap: ArtifactPlan, verbose: bool) -> list[str]:
    head = f"{SYMBOL[ap.action]} {ap.name}: {_describe(ap)}"
    rows = _metadata_rows(ap) if ap.action not in ("create", "new") else []
    new = _new_keys(ap)
    objects = [f"    {'+' if k in new else '~'} {k}" for k in ap.upload]
    objects += [f"    - {k}" for k in ap.delete]
    if len(objects) > FOLD and not verbose:
        more = len(objects) - FOLD
        objects = [*objects[:FOLD], f"    ... and {more} more (--verbose shows all)"]
    return [head, *rows, *_version_rows(ap), *objects]


def _version_rows(ap: ArtifactPlan) -> list[str]:
    """Where the replaced version goes, the aliases that move, the versions pruned."""
    rows = []
    if ap.retire_to:
        rows.append(f"    ~ the version at {ap.path} now stays at {ap.retire_to}")
    rows += [
        f"    ~ aliases of {path}: {', '.join(held) or 'none'}" for path, held in ap.alias_moves
    ]
    why = "apply --prune" if ap.action in ("orphan", "delete") else "keep_versions"
    rows += [f"    - version {path} ({why})" for path in ap.prune_versions]
    return rows


def _new_keys(ap: ArtifactPlan) -> set[str]:
    """Uploads that add an object; the rest (``modified``) replace one the node has."""
    return set(ap.upload) - set(ap.modified)


def _metadata_rows(ap: ArtifactPlan) -> list[str]:
    if ap.desired is None or ap.action in ("skip", "error", "none"):
        return []
    rows = []
    if tuple(ap.old_labels) != tuple(ap.labels):
        rows.append(f"    ~ labels: {list(ap.old_labels)} -> {list(ap.labels)}")
    if ap.old_description != ap.description:
        rows.append(f"    ~ description: {ap.old_description!r} -> {ap.description!r}")
    return rows


def _describe(ap: ArtifactPlan) -> str:
    if ap.action in ("skip", "error", "orphan"):
        where = f" at {ap.path}" if ap.action == "orphan" and ap.path else ""
        return f"{ap.action}{where}: {ap.full_message}"
    if ap.action == "delete":
        tail = f": {ap.message}" if ap.message else ""
        return f"delete {ap.path or '(never published)'}{tail}"
    if ap.action == "none":
        return f"up to date at {ap.path}" + (f" (v{ap.version})" if ap.version else "")
    if ap.action == "metadata":
        return f"update labels/description of {ap.path}"
    size = _upload_size(ap)
    counts = f"{len(ap.upload)} to upload ({human_size(size)}), {len(ap.delete)} to delete"
    if ap.action == "rename":
        return f"rename {ap.rename_from} -> {ap.path}: {counts}"
    if ap.stage:
        note = f"; {ap.message}" if ap.message else ""
        return f"{ap.action} v{ap.version} at {ap.path} (built at {ap.stage}): {counts}{note}"
    return f"{ap.action} {ap.path}: {counts}"


def _upload_size(ap: ArtifactPlan) -> int:
    if ap.desired is None or not ap.upload:
        return 0
    keys = set(ap.upload)
    return sum(h.file.size for h in ap.desired.files if h.file.key in keys)


def summary(plan: Plan) -> str:
    counted = [a for a in plan.artifacts if a.changes or a.action in ("error", "orphan")]
    actions = Counter(_counted_as(a) for a in counted)
    uploads = sum(len(a.upload) for a in plan.artifacts)
    deletes = sum(len(a.delete) for a in plan.artifacts)
    parts = [f"{n} {action}" for action, n in sorted(actions.items())]
    text = f"Plan: {', '.join(parts)}; {uploads} object(s) to upload, {deletes} to delete"
    versions = sum(len(a.prune_versions) for a in plan.artifacts)
    moves = sum(len(a.alias_moves) for a in plan.artifacts)
    extra = [f"{versions} old version(s) to delete"] if versions else []
    extra += [f"{moves} version(s) whose aliases change"] if moves else []
    return text + "".join(f", {e}" for e in extra) + "."


def _counted_as(ap: ArtifactPlan) -> str:
    """An artifact whose content is up to date but whose versions change (retention,
    aliases) is counted as that, not as 'none'."""
    return "versions" if ap.action == "none" and ap.retention else ap.action


def render_applied(results: Sequence[Applied], seconds: float) -> str:
    lines = []
    for r in results:
        if r.action in ("create", "new", "update", "replace", "version"):
            number = f" v{r.version} at" if r.version else ""
            lines.append(
                f"{r.name}: {r.action}{number} {r.path}: uploaded {r.uploaded} object(s) "
                f"({human_size(r.uploaded_bytes)}), deleted {r.deleted}"
            )
        elif r.action == "metadata":
            lines.append(f"{r.name}: updated labels/description of {r.path}")
        elif r.action == "rename":
            lines.append(
                f"{r.name}: renamed to {r.path}: uploaded {r.uploaded} object(s) "
                f"({human_size(r.uploaded_bytes)}), deleted {r.deleted}"
            )
        elif r.action == "skip":
            lines.append(f"{r.name}: skipped ({r.path} holds another artifact)")
        elif r.action == "delete":
            lines.append(f"{r.name}: deleted {r.path or '(never published)'} (pruned)")
        why = "pruned" if r.action in ("delete", "orphan") else "keep_versions"
        lines += [f"{r.name}: aliases of {path}: {', '.join(held) or 'none'}"
                  for path, held in r.aliases.items()]  # fmt: skip
        lines += [f"{r.name}: deleted old version {path} ({why})" for path in r.pruned]
    sent = sum(r.uploaded_bytes for r in results)
    count = sum(r.uploaded for r in results)
    lines.append(
        f"Apply complete: {count} object(s) uploaded ({human_size(sent)}) in {seconds:.1f} s."
    )
    return "\n".join(lines)
