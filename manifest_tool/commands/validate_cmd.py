"""``manifest-tool validate`` and ``manifest-tool schema``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli import handle_errors
from ..errors import InvalidInput, ManifestInvalid
from ..manifest import load_manifest, schema_text
from ..sources import expand_all
from .common import SCHEMA_FILE, default_manifest, gather, manifest_options, write_schema


@click.command("validate")
@manifest_options
@click.pass_context
@handle_errors
def validate_command(ctx: click.Context, /, **kw: object) -> None:
    """Check the manifest and that every declared source exists; write nothing."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    try:
        manifest = load_manifest(opts.manifest, opts.vars)
    except ManifestInvalid as err:
        if not opts.json:
            raise
        click.echo(json.dumps({"valid": False, "manifest": str(opts.manifest),
                               "problems": err.problems}, indent=2))  # fmt: skip
        sys.exit(1)
    specs = manifest.select(opts.targets)
    expansions = expand_all(manifest, specs)
    for exp in expansions.values():
        for warning in exp.warnings:
            click.echo(f"warning: {warning}", err=True)
    if opts.json:
        artifacts = [
            {"name": name, "files": len(exp.files), "references": len(exp.references)}
            for name, exp in expansions.items()
        ]
        click.echo(json.dumps({"valid": True, "manifest": str(opts.manifest),
                               "artifacts": artifacts}, indent=2))  # fmt: skip
        return
    if not opts.quiet:
        for name, exp in expansions.items():
            click.echo(f"{name}: {len(exp.files)} file(s), {len(exp.references)} reference(s)")
        click.echo(f"{opts.manifest}: valid ({len(specs)} artifact(s))")


@click.command("schema")
@click.option("--write", "write", is_flag=True,
              help=f"Write it to PATH (default: {SCHEMA_FILE} beside the manifest).")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.pass_context
@handle_errors
def schema_command(ctx: click.Context, /, write: bool, path: Path | None) -> None:
    """Print the manifest's JSON Schema (for editors and CI checks), or --write it."""
    if not write:
        if path is not None:
            raise InvalidInput(f"{path}: give --write to write the schema to a file")
        click.echo(schema_text(), nl=False)
        return
    target = path or default_manifest(ctx).parent / SCHEMA_FILE
    if target.is_dir():
        target = target / SCHEMA_FILE
    write_schema(target)
    click.echo(f"wrote {target}")
