"""``manifest-tool gc``: remove what killed writers left in an embedded store."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import handle_errors
from ..errors import InvalidInput
from ..remotes.gc import GRACE_S, Report, collect
from ..remotes.store import Store


def _open(data: Path) -> Store:
    """The store at ``data``; a path that holds none is refused, never created."""
    if not (data / "store.sqlite").is_file():
        raise InvalidInput(f"{data} is not a manifest-tool store (no store.sqlite in it)")
    return Store(data)


def _print(report: Report, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for item in report.items:
        click.echo(f"{verb} {item.kind} {item.path} ({item.size} bytes)")
    click.echo(
        f"{verb} {report.count('blob')} orphan blob(s), {report.count('temp file')} temp "
        f"file(s), {report.count('upload')} stale upload(s): {report.size} bytes"
    )


@click.command("gc")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="The store's directory (a file: remote's path, or serve's --data).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--grace", type=float, default=GRACE_S, show_default=True, metavar="SECONDS",
              help="Leave anything younger than this (in-flight uploads).")
@handle_errors
def gc_command(data: Path, dry_run: bool, grace: float) -> None:
    """Remove orphan blobs, temp files and stale multipart parts from a store.

    Safe while the store is in use: a blob is removed only when no object refers to
    it, checked under the store's write lock, and only garbage older than --grace is
    touched."""
    store = _open(data)
    try:
        _print(collect(store, grace, dry_run), dry_run)
    finally:
        store.close()
