"""Options shared by the manifest commands, and opening the workspace they name."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import InvalidInput
from ..localdir import write_atomic
from ..manifest import schema_text

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_MANIFEST = "artifacts.yaml"
SCHEMA_FILE = "manifest.schema.json"  # beside the manifest; init's $schema comment names it


@dataclass(frozen=True)
class Options:
    manifest: Path
    targets: tuple[str, ...]
    vars: dict[str, str]
    remote: str | None
    json: bool
    quiet: bool
    no_color: bool = False


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--var {pair!r}: write it as NAME=VALUE")
        out[key.strip()] = value
    return out


def manifest_options(func: F) -> F:
    """-f, --target, --var, --remote, --json, --quiet, gathered into ``opts``."""
    decorators = [
        click.option("-f", "--file", "manifest", type=click.Path(path_type=Path), default=None,
                     help=f"The manifest (default: the group's -f, $MANIFEST_TOOL_FILE, or "
                     f"{DEFAULT_MANIFEST} here or in the nearest parent directory)."),
        click.option("--target", "-t", "targets", multiple=True, metavar="NAME",
                     help="Only this artifact (repeatable)."),
        click.option("--var", "vars_", multiple=True, metavar="K=V",
                     help="Set a manifest variable (repeatable)."),
        click.option("--remote", default=None, metavar="URL",
                     help="Remote URL (file:PATH, http(s)://HOST); overrides the manifest."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        click.option("--quiet", "-q", is_flag=True, help="Print only errors."),
        click.option("--no-color", is_flag=True,
                     help="No colour, even on a terminal (as NO_COLOR=1 does)."),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


def keep_option(func: F) -> F:
    """--keep N: retention for every artifact with versions: keep (over keep_versions)."""
    return click.option(
        "--keep", type=click.IntRange(min=1), default=None, metavar="N",
        help="Versions to keep per versioned artifact (the newest N, and aliased ones).",
    )(func)  # fmt: skip


def gather(ctx: click.Context, manifest: Path | None, targets: tuple[str, ...],
           vars_: tuple[str, ...], remote: str | None, as_json: bool, quiet: bool,
           no_color: bool = False) -> Options:
    path = manifest or default_manifest(ctx)
    no_color = no_color or bool((ctx.find_root().obj or {}).get("no_color"))
    return Options(path, targets, parse_vars(vars_), remote, as_json, quiet, no_color)


def default_manifest(ctx: click.Context) -> Path:
    """The manifest when no -f is given to the subcommand: the group's, the
    environment's, else the one found from the current directory."""
    group_file = (ctx.find_root().obj or {}).get("manifest")
    from_env = os.environ.get("MANIFEST_TOOL_FILE")
    return Path(group_file or from_env or find_manifest())


def write_schema(target: Path) -> None:
    """A copy of the schema for editors: the manifest's ``$schema`` comment names it,
    so it works in a repository that does not vendor this project."""
    try:  # replaced, never written through: a symlink there could point anywhere
        write_atomic(target, schema_text().encode())
    except OSError as err:
        raise InvalidInput(f"cannot write {target}: {err.strerror}") from None


def find_manifest(start: Path | None = None) -> Path:
    """``artifacts.yaml`` in the current directory or the nearest parent holding one (as
    git finds ``.git``), shown relative to the current directory; when there is none,
    ``artifacts.yaml`` itself, so the error names the file the user expected."""
    here = (start or Path.cwd()).absolute()
    device = here.stat().st_dev
    for folder in (here, *here.parents):
        if folder.stat().st_dev != device:
            break  # as git does: the search stops at a file system boundary
        candidate = folder / DEFAULT_MANIFEST
        if candidate.is_file():
            _check_owner(candidate, folder == here)
            return Path(os.path.relpath(candidate, here))
    return Path(DEFAULT_MANIFEST)


def _check_owner(candidate: Path, here: bool) -> None:
    """A manifest found above the current directory must be the user's own: anyone can
    leave an artifacts.yaml in /tmp, naming a remote that would receive the API key."""
    owner = candidate.stat().st_uid
    if not here and owner != os.geteuid():
        raise InvalidInput(
            f"{candidate} was found above the current directory but belongs to another "
            f"user (uid {owner}); pass -f to use it on purpose"
        )
