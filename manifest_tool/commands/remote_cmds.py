"""``manifest-tool ls`` and ``manifest-tool pull``: read what the remote holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli import handle_errors
from ..config import resolve_remote_url
from ..errors import NodeNotFound
from ..lockfile import lock_path, read_lock
from ..manifest import load_manifest
from ..remotes import Remote, absolute_folder, open_remote
from ..transfer import pull_into
from ..versions import split_ref
from .common import Options, gather, manifest_options

KINDS = {"Folder": "dir ", "Run": "run "}  # the first column of ls; anything else: art


def remote_and_paths(opts: Options) -> tuple[Remote, dict[str, str]]:
    """The remote, plus artifact name -> node path from the manifest and lock, if any."""
    if not opts.manifest.exists():
        base = Path.cwd()
        return open_remote(resolve_remote_url(opts.remote, None, base), base), {}
    manifest = load_manifest(opts.manifest, opts.vars)
    remote = open_remote(resolve_remote_url(opts.remote, manifest.remote_url, manifest.root),
                         manifest.root)
    lock = read_lock(lock_path(manifest.path))
    user = remote.whoami()
    paths = {a.name: f"{absolute_folder(a.folder, user)}/{a.name}" for a in manifest.artifacts}
    for name, entry in lock.items():
        if entry.remote.get("path"):
            paths[name] = entry.remote["path"]
    return remote, paths


def artifact_path(paths: dict[str, str], name_or_path: str) -> str:
    """A manifest NAME (or remote PATH), with any ``@REF`` kept: NAME@v2 -> F/N@v2."""
    ref = split_ref(name_or_path)
    path = paths.get(ref.path, ref.path)
    return f"{path}@{ref.ref}" if ref.ref else path


@click.command("ls")
@manifest_options
@click.argument("folder", required=False)
@click.pass_context
@handle_errors
def ls_command(ctx: click.Context, /, folder: str | None, **kw: object) -> None:
    """List the nodes in FOLDER (default: your root folder) on the remote."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    remote, _ = remote_and_paths(opts)
    path = absolute_folder(folder or "", remote.whoami()) if folder else f"/{remote.whoami()}"
    try:
        nodes = remote.list_nodes(path)
    except NodeNotFound:
        raise NodeNotFound(
            path, f"no folder {path} on {remote.url} (list {path.rsplit('/', 1)[0] or '/'} to see)"
        ) from None
    if opts.json:
        click.echo(json.dumps([n.to_api() for n in nodes], indent=2))
        return
    for node in nodes:
        extra = node.extra_dict
        alt = extra.get("alternativeName", "")
        digest = str(extra.get("contentDigest", ""))[7:19]
        kind = KINDS.get(node.type, "art ")
        click.echo(f"{kind} {node.path:<40} {alt:<36} {digest:<12} {node.updated_at}")


@click.command("pull")
@manifest_options
@click.argument("name_or_path")
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Directory to write into (default: ./<name>).")
@click.option("--force", is_flag=True, help="Overwrite local files that differ.")
@click.pass_context
@handle_errors
def pull_command(
    ctx: click.Context, /, name_or_path: str, dest: Path | None, force: bool, **kw: object
) -> None:
    """Download an artifact (a manifest NAME or a remote PATH), verifying every checksum.
    NAME@v2, NAME@latest, NAME@ALIAS or NAME@ALTERNATIVE_NAME pulls one version."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    remote, paths = remote_and_paths(opts)
    path = artifact_path(paths, name_or_path)
    target = dest or Path(split_ref(path).path.rstrip("/").rsplit("/", 1)[-1])
    got = pull_into(remote, path, target, force)
    if opts.json:
        body = {"path": got.path, "dest": str(target), "objects": got.objects,
                "bytes": got.bytes, "fetched": got.fetched}  # fmt: skip
        click.echo(json.dumps(body, indent=2))
    elif not opts.quiet:
        click.echo(
            f"pulled {got.path} into {target}: {got.objects} object(s), {got.bytes} bytes,"
            f" all verified ({got.fetched} fetched)"
        )
