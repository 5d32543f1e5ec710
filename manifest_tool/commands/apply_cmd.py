"""``manifest-tool apply [PLANFILE]``: make the remote match the manifest."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..apply import Applier
from ..applylock import exclusive_apply
from ..cli import handle_errors
from ..colors import paint_plan, use_color
from ..errors import InvalidInput, StalePlan
from ..plan import Plan, check_fresh, read_saved, saved_identities
from ..progress import hashing_notices, progress_bars
from ..render import render_applied, render_plan
from ..workspace import Workspace, make_plan, open_workspace
from .common import gather, keep_option, manifest_options


@click.command("apply")
@manifest_options
@click.argument("planfile", required=False, type=click.Path(path_type=Path))
@click.option("--workers", default=4, show_default=True, help="Parallel uploads.")
@click.option("--prune", is_flag=True, help="Delete the nodes of artifacts no longer declared.")
@keep_option
@click.pass_context
@handle_errors
def apply_command(
    ctx: click.Context,
    /,
    planfile: Path | None,
    workers: int,
    prune: bool,
    keep: int | None,
    **kw: object,
) -> None:
    """Upload what changed so the remote matches the manifest (a second run does nothing)."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    started = time.monotonic()
    ws = open_workspace(opts.manifest, opts.vars, opts.remote)
    with exclusive_apply(ws.em_dir):
        with hashing_notices(not opts.quiet and not opts.json, opts.no_color):
            plan = _plan(ws, opts.targets, planfile, prune, keep)
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if not plan.changes and not plan.errors:
            _echo_none(opts.json, opts.quiet, plan, opts.no_color)
            return
        with progress_bars(not opts.quiet and not opts.json, opts.no_color) as bars:
            applier = Applier(
                ws.remote, ws.lock_file, ws.lock(), workers, bars.on_upload, bars.on_start,
                on_bytes=bars.on_bytes, sealed=ws.sealed,
            )
            results = applier.apply(plan)
    elapsed = time.monotonic() - started
    if opts.json:
        click.echo(
            json.dumps(
                {
                    "changes": True,
                    "applied": [r.__dict__ for r in results],
                    "seconds": round(elapsed, 3),
                },
                indent=2,
            )
        )
    elif not opts.quiet:
        text = render_applied(results, elapsed)
        click.echo(paint_plan(text) if use_color(opts.no_color, sys.stdout) else text)


def _plan(
    ws: Workspace, targets: tuple[str, ...], planfile: Path | None, prune: bool, keep: int | None
) -> Plan:
    if planfile is None:
        return make_plan(ws, targets, prune=prune, keep=keep)
    if targets:
        raise InvalidInput(
            f"--target does not go with a saved plan: {planfile} already names its artifacts"
        )
    saved = read_saved(planfile)
    if saved.get("prune", False) != prune:
        raise StalePlan(
            f"{planfile} was planned {'with' if saved.get('prune') else 'without'} --prune;"
            " give apply the same, or run 'manifest-tool plan' again"
        )
    saved_keep = saved.get("keep")
    if keep is not None and keep != saved_keep:
        raise StalePlan(
            f"{planfile} was planned with --keep {saved_keep or '(none)'}; give apply the"
            " same, or run 'manifest-tool plan' again"
        )
    keep = saved_keep  # the saved plan's retention, as it showed it
    names = tuple(str(t) for t in saved.get("targets") or ())
    unknown = sorted(set(names) - {a.name for a in ws.manifest.artifacts})
    if unknown:
        raise StalePlan(
            f"{planfile} is stale: artifact '{unknown[0]}' was removed since; "
            "run 'manifest-tool plan' again"
        )
    fresh = make_plan(ws, names, identities=saved_identities(saved), prune=prune, keep=keep)
    check_fresh(saved, fresh, planfile)
    return fresh


def _echo_none(as_json: bool, quiet: bool, plan: Plan, no_color: bool) -> None:
    if as_json:
        click.echo(json.dumps({"changes": False, "applied": []}))
    elif not quiet:
        text = render_plan(plan)
        click.echo(paint_plan(text) if use_color(no_color, sys.stdout) else text)
