"""The flags that name a store, shared by ``serve``, ``user`` and ``gc``.

``--data DIR`` is the embedded store; ``--db URL --blobs URL [--s3-endpoint URL]``
a shared one (see ``remotes.backends``). A mistyped ``--data`` never quietly
becomes a new, empty store: that takes ``--init``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import InvalidInput, ManifestToolError

F = TypeVar("F", bound=Callable[..., Any])
STORE_FILE = "store.sqlite"


def store_flags(func: F) -> F:
    """The store flags with ``--init`` (serve, user)."""
    return _flags(func, with_init=True)


def existing_store_flags(func: F) -> F:
    """The store flags of a command that never creates a store (gc)."""
    return _flags(func, with_init=False)


def _flags(func: F, with_init: bool) -> F:
    options = [
        click.option(
            "--data",
            "data",
            type=click.Path(file_okay=False, path_type=Path),
            help="Directory holding the embedded store (see --init).",
        ),
        click.option(
            "--db",
            "db",
            metavar="URL",
            help="Metadata database: postgresql://USER:PASS@HOST:PORT/DB (or sqlite:///PATH).",
        ),
        click.option(
            "--blobs",
            "blobs",
            metavar="URL",
            help="Blob store: s3://BUCKET/PREFIX (or file:///DIR).",
        ),
        click.option(
            "--s3-endpoint",
            "s3_endpoint",
            metavar="URL",
            envvar="AWS_ENDPOINT_URL",
            help="The S3 server (default: AWS_ENDPOINT_URL); keys from the AWS_* variables.",
        ),
    ]
    if with_init:
        options.append(
            click.option(
                "--init", is_flag=True, help="Create the store in --data if it is not one yet."
            )
        )
    for option in reversed(options):
        func = option(func)
    return func


def open_flags(
    data: Path | None,
    db: str | None,
    blobs: str | None,
    s3_endpoint: str | None,
    init: bool | None = None,
) -> Any:
    """The store the flags name, or a one-line error (``init`` None: never create)."""
    from ..remotes.backends import Engines, check, open_store

    engines = Engines(data, db, blobs, s3_endpoint)
    check(engines)
    if data is not None and db is None and not init and not (data / STORE_FILE).is_file():
        if init is None:
            raise InvalidInput(f"{data} is not a manifest-tool store (no {STORE_FILE} in it)")
        raise ManifestToolError(
            f"{data} is not a manifest-tool store (no {STORE_FILE}); "
            "pass --init to create one there"
        )
    return open_store(engines)
