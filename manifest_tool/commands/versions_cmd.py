"""``manifest-tool versions NAME`` and ``manifest-tool tag NAME@REF ALIAS``."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from ..cli import handle_errors
from ..errors import InvalidInput, NotFound
from ..paths import RESERVED_ROOT_NAMES
from ..remotes import Node, Remote, absolute_folder
from ..render import human_size
from ..versions import (
    LATEST,
    aliases,
    check_alias,
    created,
    label,
    latest,
    move_alias,
    number,
    pick,
    sealed,
    set_aliases,
    split_ref,
    stats,
    version_nodes,
)
from ..versions import list_children as children_of
from .common import gather, manifest_options
from .remote_cmds import remote_and_paths


def _versions(remote: Remote, paths: dict[str, str], name: str) -> tuple[str, list[Node]]:
    """The artifact's node path F/N and its versions, newest first."""
    ref = split_ref(name)
    path = paths.get(ref.path) or absolute_folder(ref.path, remote.whoami())
    folder, _, base = path.rpartition("/")
    found = version_nodes(children_of(remote, folder, replace(ref, path=path)), folder, base)
    if not found:
        raise NotFound(f"no artifact at {path} on {remote.url} (see manifest-tool ls)")
    return path, found


def describe(remote: Remote, node: Node, name: str) -> dict[str, Any]:
    """One version as ``versions --json`` lists it."""
    recorded = stats(node)
    if recorded is not None:
        size, count = recorded.size, recorded.objects
    else:  # published before versions recorded it, or changed since: list the objects
        objects = [o for o in remote.list_objects(node.path) if o.path not in RESERVED_ROOT_NAMES]
        size, count = sum(o.size_bytes for o in objects), len(objects)
    extra = node.extra_dict
    return {
        "version": number(node),
        "latest": node.name == name,
        "aliases": list(aliases(node)),
        "path": node.path,
        "alternativeName": _text(extra.get("alternativeName")),
        "createdTimestamp": created(node),
        "contentDigest": _text(extra.get("contentDigest")) if sealed(node) else "",
        "size": size,
        "objects": count,
    }


def _text(value: object) -> str:
    """A value another client wrote, shown only when it is text."""
    return value if isinstance(value, str) else ""


@click.command("versions")
@manifest_options
@click.argument("name")
@click.pass_context
@handle_errors
def versions_command(ctx: click.Context, /, name: str, **kw: object) -> None:
    """List the versions of an artifact (a manifest NAME or a remote PATH), newest
    first: number, aliases, created time, digest, size and object count."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    remote, paths = remote_and_paths(opts)
    path, found = _versions(remote, paths, name)
    rows = [describe(remote, n, path.rpartition("/")[2]) for n in found]
    if opts.json:
        click.echo(json.dumps({"path": path, "versions": rows}, indent=2))
        return
    click.echo(_table(rows))


def _table(rows: list[dict[str, Any]]) -> str:
    """One line per version, in columns as wide as their widest value."""
    cells = [
        [
            f"v{r['version']}",
            ",".join([*([LATEST] if r["latest"] else []), *r["aliases"]]) or "-",
            r["createdTimestamp"],
            str(r["contentDigest"])[7:19] or "(unsealed)",
            human_size(r["size"]),
            f"{r['objects']} object(s)",
            r["path"],
        ]
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]) - 1)]
    right = {4, 5}  # sizes and counts line up on the right
    return "\n".join(
        "  ".join(
            [*(c[i].rjust(w) if i in right else c[i].ljust(w) for i, w in enumerate(widths)), c[-1]]
        )
        for c in cells
    )


@click.command("tag")
@manifest_options
@click.argument("version")
@click.argument("alias")
@click.option("--delete", is_flag=True, help="Remove ALIAS from the version(s) holding it.")
@click.pass_context
@handle_errors
def tag_command(
    ctx: click.Context, /, version: str, alias: str, delete: bool, **kw: object
) -> None:
    """Point ALIAS at one version: manifest-tool tag NAME@v3 prod. The alias moves off
    whichever version held it (an artifact's manifest aliases move back to the newest
    version at its next apply). With --delete (tag NAME prod --delete) the alias goes;
    one the manifest declares goes when the manifest no longer declares it."""
    opts = gather(ctx, **kw)  # type: ignore[arg-type]
    ref = split_ref(version)
    if not ref.ref and not delete:
        raise InvalidInput(f"{version!r}: name the version, e.g. {version}@v3")
    check_alias(alias)
    remote, paths = remote_and_paths(opts)
    path, found = _versions(remote, paths, ref.path)
    base = path.rpartition("/")[2]
    if delete:
        held = [n for n in found if alias in aliases(n)]
        if ref.ref:
            held = [n for n in held if n is _target(found, ref.ref, path, base)]
        if not held:
            raise NotFound(f"no version of {path} has the alias {alias!r}")
        for node in held:
            set_aliases(remote, node, [a for a in aliases(node) if a != alias])
        _report(opts.json, opts.quiet, alias, None, f"{alias} removed from " +
                ", ".join(f"v{number(n)}" for n in held))  # fmt: skip
        return
    target = _target(found, ref.ref, path, base)
    named = next((n for n in found if n.extra_dict.get("alternativeName") == alias), None)
    if named is not None:
        raise InvalidInput(
            f"invalid alias {alias!r}: it is the alternative name of {label(named, base)}"
        )
    move_alias(remote, found, target, alias)
    _report(opts.json, opts.quiet, alias, target, f"{alias} -> v{number(target)} ({target.path})")


def _target(found: list[Node], ref: str, path: str, base: str) -> Node:
    target = pick(found, ref) if ref != LATEST else latest(found, base)
    if target is None:
        raise NotFound(f"{path} has no version {ref!r} (see manifest-tool versions)")
    return target


def _report(as_json: bool, quiet: bool, alias: str, target: Node | None, text: str) -> None:
    if as_json:
        body = {"alias": alias, "version": number(target) if target else None,
                "path": target.path if target else None}  # fmt: skip
        click.echo(json.dumps(body))
    elif not quiet:
        click.echo(text)
