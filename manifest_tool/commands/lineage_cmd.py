"""``manifest-tool lineage PATH``: the Runs that used or produced an artifact.

The edges are T9k's graphs (what its SDK's ``Run.upload`` records): Artifact -> Run
for an input, Run -> Artifact for an output. For a Run, the same edges read as its
inputs and outputs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from ..cli import handle_errors
from ..errors import InvalidInput, NodeNotFound
from ..remotes import Lineage, Node, absolute_folder
from ..remotes.base import FOLDER, RUN
from ..versions import resolve, split_ref
from .common import gather, manifest_options
from .remote_cmds import KINDS, artifact_path, remote_and_paths


@click.command("lineage")
@manifest_options
@click.argument("path")
@click.pass_context
@handle_errors
def lineage_command(ctx: click.Context, /, path: str, **kw: object) -> None:
    """Show which Runs used or produced the artifact at PATH (a manifest name or a
    remote path, NAME@v2 for one version); for a Run, its inputs and outputs."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    remote, paths = remote_and_paths(opts)
    ref = split_ref(artifact_path(paths, path))
    target = absolute_folder(ref.path, remote.whoami())
    if ref.ref:
        target = resolve(remote, replace(ref, path=target))
    node = remote.node_info(target)
    if node is None:
        raise NodeNotFound(target, f"nothing at {target} on {remote.url} (see manifest-tool ls)")
    if node.type == FOLDER:
        raise InvalidInput(f"{target} is a Folder: lineage is kept for Runs and Artifacts")
    found = remote.lineage(node.id)
    if opts.json:
        click.echo(json.dumps(as_json(found), indent=2))
    else:
        click.echo("\n".join(as_text(found)))


def sections(found: Lineage) -> tuple[tuple[str, tuple[Node, ...]], ...]:
    """Named lists of neighbours: what the edges mean depends on the node's type."""
    if found.node.type == RUN:
        return (("inputs", found.inbound), ("outputs", found.outbound))
    return (("producedBy", found.inbound), ("usedBy", found.outbound))


def as_json(found: Lineage) -> dict[str, Any]:
    out: dict[str, Any] = _brief(found.node)
    for name, nodes in sections(found):
        out[name] = [_brief(n) for n in nodes]
    return out


def as_text(found: Lineage) -> list[str]:
    titles = {"inputs": "inputs", "outputs": "outputs",
              "producedBy": "produced by", "usedBy": "used by"}  # fmt: skip
    lines = [f"{found.node.type.lower()} {found.node.path}"]
    for name, nodes in sections(found):
        lines.append(f"  {titles[name]}:")
        lines.extend(f"    {KINDS.get(n.type, 'art ')} {n.path}" for n in nodes)
        if not nodes:
            lines.append("    (none)")
    return lines


def _brief(node: Node) -> dict[str, Any]:
    return {"path": node.path, "type": node.type, "id": node.id}
