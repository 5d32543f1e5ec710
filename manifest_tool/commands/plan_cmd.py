"""``manifest-tool plan``: show what apply would do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli import handle_errors
from ..colors import paint_plan, use_color
from ..plan import save_plan
from ..progress import hashing_notices
from ..render import render_plan
from ..workspace import make_plan, open_workspace
from .common import gather, keep_option, manifest_options


@click.command("plan")
@manifest_options
@click.option("--out", type=click.Path(path_type=Path), help="Save the plan for 'apply FILE'.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@click.option("--verbose", "-v", is_flag=True, help="List every object path, unfolded.")
@click.option("--prune", is_flag=True, help="Plan to delete artifacts no longer declared.")
@keep_option
@click.pass_context
@handle_errors
def plan_command(
    ctx: click.Context,
    /,
    out: Path | None,
    detailed_exitcode: bool,
    verbose: bool,
    prune: bool,
    keep: int | None,
    **kw: object,
) -> None:
    """Show what differs between the manifest, the local state and the remote."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    ws = open_workspace(opts.manifest, opts.vars, opts.remote)
    with hashing_notices(not opts.quiet and not opts.json, opts.no_color):
        plan = make_plan(ws, opts.targets, prune=prune, keep=keep)
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    if out:
        save_plan(plan, out)
    if opts.json:
        click.echo(json.dumps(plan.to_json(), indent=2))
    elif not opts.quiet or plan.errors:
        text = render_plan(plan, verbose)
        click.echo(paint_plan(text) if use_color(opts.no_color, sys.stdout) else text)
    if plan.errors:
        first, more = plan.errors[0], len(plan.errors) - 1
        tail = f" (and {more} more artifact(s) in error)" if more else ""
        click.echo(f"error: artifact '{first.name}': {first.full_message}{tail}", err=True)
        sys.exit(1)
    if detailed_exitcode and plan.changes:
        sys.exit(2)
