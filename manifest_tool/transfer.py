"""Uploading an Artifact to a remote and loading one back, checksums verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ChecksumMismatch, InvalidInput, RemoteError, write_error
from .hashing import content_digest, md5_bytes, md5_file
from .localdir import dump_yaml
from .paths import check_key
from .publish import (
    RESERVED,
    Target,
    claim_node,
    history_entry,
    object_changes,
    open_node,
    seal,
    upload_all,
)
from .remotes.base import ARTIFACT, Node, ObjectInfo, Remote, Upload, absolute_folder

if TYPE_CHECKING:
    from .artifact import Artifact

WORKERS = 4


def upload_artifact(
    art: Artifact, remote: Remote, folder: str, make_folder: bool, strategy: str
) -> Node | None:
    """Upload ``art``; returns the node written, or None when 'skip' left it alone."""
    user = remote.whoami()
    target = Target(
        absolute_folder(folder, user), art.name, art.alternative_name, strategy, make_folder
    )
    node = claim_node(remote, target, user)
    if node is None:
        return None
    open_node(remote, node, art.alternative_name)
    files = {k: o for k, o in art.objects.items() if "uri" not in o}
    wanted = {k: (int(o["size_bytes"]), str(o["checksum"])) for k, o in files.items()}
    present = remote.list_objects(node.path)
    upload, delete = object_changes(wanted, present)
    uploads = [Upload(k, wanted[k][1], wanted[k][0], source=Path(art.local, k)) for k in upload]
    upload_all(remote, node.path, uploads, WORKERS)
    art.remote.append(history_entry("upload", remote, node))
    art.save()
    put_metadata(remote, node.path, art.to_dict(), _references(art.objects), lambda: present)
    if delete:
        remote.delete_objects(node.path, delete)
    digest = content_digest(art.objects.values())
    refs = _references(art.objects)
    return seal(remote, node, art.alternative_name, digest, art.labels, art.description, refs)


def put_metadata(
    remote: Remote,
    node_path: str,
    metadata: dict[str, Any],
    references: dict[str, str],
    present: Callable[[], Iterable[ObjectInfo]],
) -> None:
    """Write ``metadata.yaml`` and ``references.yaml`` (or drop a stale one).

    ``present`` lists the node's objects; it is called only when there are no
    references, to see whether an old ``references.yaml`` must go.
    """
    data = dump_yaml(metadata)
    remote.put_object(node_path, Upload("metadata.yaml", md5_bytes(data), len(data), data=data))
    if references:
        data = dump_yaml(references)
        upload = Upload("references.yaml", md5_bytes(data), len(data), data=data)
        remote.put_object(node_path, upload)
    elif any(o.path == "references.yaml" for o in present()):
        remote.delete_objects(node_path, ["references.yaml"])


def _references(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: str(o["uri"]) for k, o in sorted(objects.items()) if "uri" in o}


def node_for(remote: Remote, path: str) -> Node:
    """The Artifact node at ``path`` (relative -> below /<user>/), or a clear error."""
    full = absolute_folder(path, remote.whoami())
    node = remote.node_info(full)
    if node is None:
        raise RemoteError(
            f"no artifact at {full} on {remote.url} (list them with 'manifest-tool ls')"
        )
    if node.type != ARTIFACT:
        raise InvalidInput(f"{full} is a {node.type}, not an Artifact")
    return node


def download_artifact(remote: Remote, path: str, parent: Path) -> Artifact:
    """Fetch an Artifact into ``parent/<alternativeName>``, verifying every object."""
    from .artifact import Artifact

    node = node_for(remote, path)
    present = {o.path: o for o in remote.list_objects(node.path)}
    metadata = _read_yaml_object(remote, node, present, "metadata.yaml") or _metadata_of(node)
    refs = _read_yaml_object(remote, node, present, "references.yaml") or {}
    art = Artifact(metadata)
    art.local = str((parent / art.alternative_name).absolute())
    files = [o for k, o in sorted(present.items()) if k not in RESERVED]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda o: fetch_verified(remote, node.path, o, Path(art.local)), files))
    art.objects = {
        o.path: {"path": o.path, "size_bytes": o.size_bytes, "checksum": o.checksum} for o in files
    }
    art.objects.update({k: {"path": k, "uri": str(u)} for k, u in refs.items()})
    art.remote.append(history_entry("download", remote, node))
    art.save()
    return art


def pull_into(remote: Remote, path: str, dest: Path) -> tuple[int, int]:
    """Download the artifact at ``path`` into ``dest`` (files, metadata, references)."""
    node = node_for(remote, path)
    objects = remote.list_objects(node.path)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, dest) from None
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda o: fetch_verified(remote, node.path, o, dest), objects))
    return len(objects), sum(o.size_bytes for o in objects)


def fetch_verified(remote: Remote, node_path: str, obj: ObjectInfo, dest_dir: Path) -> None:
    """Download one object next to its destination, check it, then move it in place.
    A local write that fails (a full disk, a name too long) is one line naming the file."""
    dest = dest_dir / check_key(obj.path, what="remote object key", allow_reserved=True)
    part = dest.with_name(_part_name(dest.name))
    try:
        if _already_there(dest, obj):
            return
        remote.get_object(node_path, obj.path, part)
        got = md5_file(part)
        if got != obj.checksum or part.stat().st_size != obj.size_bytes:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"object {obj.path!r} of {node_path} is corrupt: md5 {got}, expected "
                f"{obj.checksum} (nothing was written; ask the server's admin to check its storage)"
            )
        os.replace(part, dest)
    except OSError as err:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise write_error(err, dest) from None


def _already_there(dest: Path, obj: ObjectInfo) -> bool:
    if not dest.is_file() or dest.stat().st_size != obj.size_bytes:
        return False
    return md5_file(dest) == obj.checksum


def _part_name(name: str) -> str:
    """The temp name beside ``name``; hashed when ``name`` leaves no room for the
    suffix (file names stop at 255 bytes)."""
    if len(os.fsencode(name)) <= 200:
        return f".{name}.part"
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}.part"


def _read_yaml_object(remote: Remote, node: Node, present: dict[str, ObjectInfo], key: str) -> Any:
    if key not in present:
        return None
    tmp = Path(os.environ.get("TMPDIR", "/tmp"), f"mt-{os.getpid()}-{node.id}-{key}")
    try:
        remote.get_object(node.path, key, tmp)
        if md5_file(tmp) != present[key].checksum:
            raise ChecksumMismatch(f"{key} of {node.path} is corrupt (md5 mismatch)")
        return yaml.safe_load(tmp.read_text(encoding="utf-8"))
    finally:
        tmp.unlink(missing_ok=True)


def remote_metadata(remote: Remote, node: Node) -> dict[str, Any]:
    """The node's ``metadata.yaml``, or what the node itself says when it has none."""
    present = {o.path: o for o in remote.list_objects(node.path)}
    data = _read_yaml_object(remote, node, present, "metadata.yaml")
    return data if isinstance(data, dict) else _metadata_of(node)


def _metadata_of(node: Node) -> dict[str, Any]:
    """Metadata for a node some other client made without ``metadata.yaml``."""
    return {
        "name": node.name,
        "labels": list(node.labels),
        "description": node.description,
        "createdTimestamp": node.created_at,
        "alternativeName": node.extra_dict.get("alternativeName") or node.name,
    }
