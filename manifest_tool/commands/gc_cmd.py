"""``manifest-tool gc``: remove what killed writers left in a store."""

from __future__ import annotations

from typing import Any

import click

from ..cli import handle_errors
from ..remotes.gc import GRACE_S, Report, collect
from .storeflags import existing_store_flags, open_flags


def _print(report: Report, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for item in report.items:
        click.echo(f"{verb} {item.kind} {item.path} ({item.size} bytes)")
    click.echo(
        f"{verb} {report.count('blob')} orphan blob(s), {report.count('temp file')} temp "
        f"file(s), {report.count('upload')} stale upload(s): {report.size} bytes"
    )


@click.command("gc")
@existing_store_flags
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--grace", type=float, default=GRACE_S, show_default=True, metavar="SECONDS",
              help="Leave anything younger than this (in-flight uploads).")
@handle_errors
def gc_command(dry_run: bool, grace: float, **flags: Any) -> None:
    """Remove orphan blobs, unfinished writes and stale multipart uploads from a store.

    Safe while the store is in use, also by several servers: a blob is removed only
    when no object refers to it, checked under its database row's lock, one
    collector runs at a time, and only garbage older than --grace is touched."""
    store = open_flags(**flags)
    try:
        _print(collect(store, grace, dry_run), dry_run)
    finally:
        store.close()
