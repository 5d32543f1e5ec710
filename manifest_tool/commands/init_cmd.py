"""``manifest-tool init``: a first, commented artifacts.yaml for the files found here."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from ..cli import handle_errors
from ..errors import InvalidInput
from .common import DEFAULT_MANIFEST, SCHEMA_FILE, write_schema

# Directories that hold code, tools or caches rather than data to publish.
NOT_DATA = frozenset(
    {"__pycache__", "node_modules", "venv", "env", "build", "dist", "site-packages"}
)
IGNORED = ".em/"

HEADER = f"""\
# yaml-language-server: $schema={SCHEMA_FILE}
# The artifacts this directory publishes: `manifest-tool plan` shows what would change on
# the remote, `manifest-tool apply` makes it so. Written by `manifest-tool init`: edit it.
#
# Every string is a Jinja2 template ({{{{ env.NAME }}}}, {{{{ vars.NAME }}}}); paths are
# relative to this file's directory. `manifest-tool validate` checks it; {SCHEMA_FILE}
# beside it lets editors complete and check keys (`manifest-tool schema --write` refreshes
# it). Commit this file and artifacts.lock (apply writes it); .em/ is local state.
version: 1

# Template variables; `--var NAME=VALUE` overrides a declared one for one run.
# vars:
#   run: dev

# The remote (default: an embedded store in .em/store). MANIFEST_TOOL_REMOTE or --remote
# override it; the key comes from MANIFEST_TOOL_API_KEY or `manifest-tool login`.
# remote:
#   url: http://HOST:PORT

# Every artifact goes to this folder (under /<user>/) unless it sets its own.
defaults:
  folder: default
  make_folder: true

artifacts:
"""

ARTIFACT = """\
  - name: {name}
    description: ""
    labels: []
    objects:
      - dir: {path}
        # Leave files out, .gitignore-style, relative to the directory:
        # exclude: ["*.tmp", "checkpoints/"]
"""

PLACEHOLDER = """\
  # No data directory was found here: create data/ or point dir: at yours.
  - name: data
    objects:
      - dir: data
"""


@click.command("init")
@click.pass_context
@handle_errors
def init_command(ctx: click.Context) -> None:
    """Write a commented artifacts.yaml for the directories found here, the schema
    beside it, and the .gitignore line for manifest-tool's local state."""
    group_file = (ctx.find_root().obj or {}).get("manifest")
    manifest = Path(group_file or DEFAULT_MANIFEST)
    if manifest.exists() or manifest.is_symlink():
        raise InvalidInput(f"{manifest} exists: init never overwrites a manifest")
    root = manifest.parent
    if not root.is_dir():
        raise InvalidInput(f"no folder {root} to write {manifest.name} in")
    ignore = read_gitignore(root / ".gitignore")  # first: a refused init writes nothing
    create_new(manifest, manifest_text(data_dirs(root)))
    write_schema(root / SCHEMA_FILE)
    added = add_gitignore(root / ".gitignore", ignore)
    click.echo(f"wrote {manifest} and {root / SCHEMA_FILE}")
    if added:
        click.echo(f"added {IGNORED} to {root / '.gitignore'}")
    click.echo("next: manifest-tool validate, then manifest-tool plan")


def create_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet, never through a symlink."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise InvalidInput(f"cannot write {path}: {err.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def data_dirs(root: Path) -> list[str]:
    """The top-level directories that may hold data: not hidden, not code or caches,
    and with a name a manifest can hold as written (UTF-8, no template braces)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in NOT_DATA
        and _plain(p.name)
    )


def _plain(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "{" not in name and "}" not in name


def manifest_text(dirs: list[str]) -> str:
    body = "".join(
        ARTIFACT.format(name=json.dumps(_name(d)), path=json.dumps(d)) for d in _unique(dirs)
    )
    return HEADER + (body or PLACEHOLDER)


def _unique(dirs: list[str]) -> list[str]:
    """Directories whose artifact names do not collide (the first one wins)."""
    seen: set[str] = set()
    out = []
    for d in dirs:
        if _name(d) not in seen:
            seen.add(_name(d))
            out.append(d)
    return out


def _name(directory: str) -> str:
    """An artifact name for ``directory``: 1-40 of A-Za-z0-9_-, alphanumeric at the ends."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", directory)[:40].strip("_-")
    return name or "data"


def read_gitignore(path: Path) -> str:
    """The .gitignore's text ("" when there is none), or why init must not touch it."""
    if path.is_symlink():  # a cloned repository may point it anywhere
        raise InvalidInput(f"{path} is a symlink: add {IGNORED} to it yourself")
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(f"cannot read {path} ({err}): add {IGNORED} to it yourself") from None


def add_gitignore(path: Path, text: str) -> bool:
    """Append ``.em/`` to ``text`` (the file as read) unless it already ignores it;
    True when it was added."""
    if IGNORED in {line.strip() for line in text.splitlines()}:
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    comment = "# manifest-tool's local state: hash cache, embedded store\n"
    path.write_text(f"{text}{sep}{comment}{IGNORED}\n", encoding="utf-8")
    return True
