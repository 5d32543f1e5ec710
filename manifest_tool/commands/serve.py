"""``serve``: run the server; ``user add|list|revoke``: manage its API keys.

The user commands open the same SQLite database (WAL mode), so they work while
the server runs and take effect on its next request.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..cli import handle_errors
from ..errors import ManifestToolError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..remotes.store import Store

DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory holding the store (created if missing).",
)


def _run_uvicorn(app: ASGIApp, host: str, port: int, data: Path) -> None:
    import uvicorn  # only here: no other command needs it

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1]
                click.echo(f"serving {data} on http://{host}:{bound}")
                sys.stdout.flush()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=5,
    )
    server = ReadyServer(config)
    try:
        server.run()  # uvicorn turns SIGINT/SIGTERM into a graceful shutdown...
    except KeyboardInterrupt:
        return  # ...then re-raises the signal: Ctrl-C on a server is a normal stop
    if not server.started:
        raise ManifestToolError(
            f"cannot listen on {host}:{port} (is the port in use? try another --port)"
        )


@click.command()
@DATA
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free).")
@click.option("--prefix", default="", help="Mount the API below this path, e.g. /aistore.")
@click.option("--max-body-mb", type=click.IntRange(min=1), help="Largest object or part, MiB.")
@handle_errors
def serve(data: Path, host: str, port: int, prefix: str, max_body_mb: int | None) -> None:
    """Serve the AIStore node/object API over the store in --data."""
    from ..server import DEFAULT_MAX_BODY, create_app

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("manifest_tool.access").setLevel(logging.INFO)
    limit = max_body_mb * 1024 * 1024 if max_body_mb else DEFAULT_MAX_BODY
    _run_uvicorn(create_app(data, prefix, limit), host, port, data)


@click.group()
def user() -> None:
    """Manage the server's users and their API keys."""


@user.command("add")
@click.argument("name")
@DATA
@handle_errors
def user_add(name: str, data: Path) -> None:
    """Create user NAME and print its new API key (shown only this once)."""
    from ..remotes.users import add_user

    click.echo(add_user(_store(data).db, name))


@user.command("list")
@DATA
@handle_errors
def user_list(data: Path) -> None:
    """List the users, with when each was created."""
    from ..remotes.users import list_users

    for name, created in list_users(_store(data).db):
        click.echo(f"{name}\t{created}")


@user.command("revoke")
@click.argument("name")
@DATA
@handle_errors
def user_revoke(name: str, data: Path) -> None:
    """Remove user NAME: its key stops working at once (its nodes stay)."""
    from ..remotes.users import revoke_user

    revoke_user(_store(data).db, name)
    click.echo(f"revoked {name}")


def _store(data: Path) -> Store:
    from ..remotes.store import Store

    return Store(data)
