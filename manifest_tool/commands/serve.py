"""``serve``: run the server; ``user add|list|revoke``: manage its API keys.

The user commands open the same database (SQLite in WAL mode, or PostgreSQL), so
they work while the server runs and take effect on its next request.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..cli import handle_errors
from ..errors import ManifestToolError
from .storeflags import open_flags, store_flags

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..server import Limits

def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one clear line
    (uvicorn would log its own text and exit from inside its loop)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ManifestToolError(f"port {port} on {host} is in use") from None
        raise ManifestToolError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(2048)
    return sock


def _run_uvicorn(app: ASGIApp, host: str, port: int, store_name: str, limits: Limits) -> None:
    import uvicorn  # only here: no other command needs it

    from ..server.protocol import protocol_class

    sock = _listen(host, port)

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()[1]
                click.echo(f"serving {store_name} on http://{host}:{bound}")
                sys.stdout.flush()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=protocol_class(limits.header_timeout_s),
        lifespan="on",  # the garbage sweep starts with the server
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=5,
    )
    server = ReadyServer(config)
    try:
        server.run([sock])  # uvicorn turns SIGINT/SIGTERM into a graceful shutdown...
    except KeyboardInterrupt:
        return  # ...then re-raises the signal: Ctrl-C on a server is a normal stop
    if not server.started:
        raise ManifestToolError(f"the server on {host}:{port} did not start (see above)")


@click.command()
@store_flags
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free).")
@click.option("--prefix", default="", help="Mount the API below this path, e.g. /aistore.")
@click.option("--max-body-mb", type=click.IntRange(min=1), help="Largest object or part, MiB.")
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a request body may send nothing before it is dropped (408).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's headers.",
)
@handle_errors
def serve(
    data: Path | None,
    db: str | None,
    blobs: str | None,
    s3_endpoint: str | None,
    init: bool,
    host: str,
    port: int,
    prefix: str,
    max_body_mb: int | None,
    body_timeout: float,
    header_timeout: float,
) -> None:
    """Serve the AIStore node/object API over the store in --data, or over
    --db and --blobs (any number of replicas may serve one such store)."""
    from ..server import Limits, create_app

    store = open_flags(data, db, blobs, s3_endpoint, init)

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("manifest_tool.access").setLevel(logging.INFO)
    limits = Limits(body_idle_s=body_timeout, header_timeout_s=header_timeout)
    if max_body_mb:
        limits = replace(limits, max_body=max_body_mb * 1024 * 1024)
    _run_uvicorn(create_app(store, prefix, limits), host, port, store.describe(), limits)


@click.group()
def user() -> None:
    """Manage the server's users and their API keys."""


@user.command("add")
@click.argument("name")
@store_flags
@handle_errors
def user_add(name: str, **flags: Any) -> None:
    """Create user NAME and print its new API key (shown only this once)."""
    from ..remotes.users import add_user

    click.echo(add_user(open_flags(**flags).db, name))


@user.command("list")
@store_flags
@handle_errors
def user_list(**flags: Any) -> None:
    """List the users, with when each was created."""
    from ..remotes.users import list_users

    for name, created in list_users(open_flags(**flags).db):
        click.echo(f"{name}\t{created}")


@user.command("revoke")
@click.argument("name")
@store_flags
@handle_errors
def user_revoke(name: str, **flags: Any) -> None:
    """Remove user NAME: its key stops working at once (its nodes stay)."""
    from ..remotes.users import revoke_user

    revoke_user(open_flags(**flags).db, name)
    click.echo(f"revoked {name}")
