"""``manifest-tool login`` and ``logout``: save or forget the API key for one host."""

from __future__ import annotations

import os
import sys

import click

from ..cli import handle_errors
from ..credentials import forget_key, host_of, save_key
from ..errors import InvalidInput
from ..manifest import load_manifest
from ..remotes.http import HttpRemote
from .common import default_manifest


def _target(ctx: click.Context, url: str | None) -> str:
    """URL, else MANIFEST_TOOL_REMOTE, else the manifest's remote.url: the host to
    log in to, checked to be http(s) (a file: store needs no key)."""
    if not url:
        url = os.environ.get("MANIFEST_TOOL_REMOTE") or _manifest_url(ctx)
    if not url:
        raise InvalidInput(
            "no remote to log in to: pass its URL (manifest-tool login http://HOST:PORT)"
        )
    if url.startswith("file:"):
        raise InvalidInput(f"remote {url!r} is a local store: it needs no key")
    return host_of(url)


def _manifest_url(ctx: click.Context) -> str | None:
    path = default_manifest(ctx)
    return load_manifest(path).remote_url if path.exists() else None


def _read_key(from_stdin: bool) -> str:
    if from_stdin:
        key = sys.stdin.readline().strip()
    else:
        key = str(click.prompt("API key", hide_input=True, err=True)).strip()
    if not key:
        raise InvalidInput("no API key given (paste the key the server's admin gave you)")
    return key


@click.command("login")
@click.argument("url", required=False)
@click.option("--api-key-stdin", is_flag=True, help="Read the key from stdin, not a prompt.")
@click.pass_context
@handle_errors
def login_command(ctx: click.Context, url: str | None, api_key_stdin: bool) -> None:
    """Save the API key for URL (default: MANIFEST_TOOL_REMOTE or the manifest's remote),
    after checking it with the server. The key is sent only to that host."""
    host = _target(ctx, url)
    key = _read_key(api_key_stdin)
    remote = HttpRemote(host, key)
    try:
        user = remote.whoami()  # a wrong key fails here, before anything is saved
    finally:
        remote.close()
    path = save_key(host, key)
    click.echo(f"logged in to {host} as {user} (key saved in {path})")


@click.command("logout")
@click.argument("url", required=False)
@click.pass_context
@handle_errors
def logout_command(ctx: click.Context, url: str | None) -> None:
    """Forget the API key saved for URL (default: as for login)."""
    host = _target(ctx, url)
    if forget_key(host):
        click.echo(f"logged out of {host}")
    else:
        click.echo(f"no key saved for {host}")
