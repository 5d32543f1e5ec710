"""``manifest-tool validate`` and ``manifest-tool schema``."""

from __future__ import annotations

import click

from ..cli import handle_errors
from ..manifest import load_manifest, schema_text
from ..sources import expand_all
from .common import gather, manifest_options


@click.command("validate")
@manifest_options
@click.pass_context
@handle_errors
def validate_command(ctx: click.Context, /, **kw: object) -> None:
    """Check the manifest and that every declared source exists; write nothing."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    manifest = load_manifest(opts.manifest, opts.vars)
    specs = manifest.select(opts.targets)
    expansions = expand_all(manifest, specs)
    for name, exp in expansions.items():
        for warning in exp.warnings:
            click.echo(f"warning: {warning}", err=True)
        if not opts.quiet:
            click.echo(f"{name}: {len(exp.files)} file(s), {len(exp.references)} reference(s)")
    if not opts.quiet:
        click.echo(f"{opts.manifest}: valid ({len(specs)} artifact(s))")


@click.command("schema")
def schema_command() -> None:
    """Print the manifest's JSON Schema (for editors and CI checks)."""
    click.echo(schema_text(), nl=False)
