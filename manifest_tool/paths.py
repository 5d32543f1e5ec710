"""Object paths: the T9k obj_path rules, plus the checks T9k lacks.

An object path (a "key") is a relative POSIX path inside an artifact. The rules of
``t9k.em.Artifact.add_file``/``add_dir``: None or '' means the source's basename;
one leading '/' is dropped; a trailing '/' puts the source inside that folder.
Stricter than T9k, a key may not climb out (``..``), have empty or ``.`` segments,
or take the names the artifact itself uses at its root.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable

from .errors import InvalidInput

RESERVED_ROOT_NAMES = frozenset({"metadata.yaml", "references.yaml"})


def touches_content(keys: Iterable[str]) -> bool:
    """Whether writing or deleting ``keys`` changes an artifact's content: any key but
    its own metadata files does (docs/protocol.md: the objects revision moves one
    step and the digest goes; the server and a client counting its writes agree)."""
    return not all(k in RESERVED_ROOT_NAMES for k in keys)


def resolve_obj_path(source: str, obj_path: str | None) -> str:
    """The key a file, directory or reference ``source`` lands at."""
    base = _basename(source)
    if not base and (not obj_path or obj_path.endswith("/")):
        raise InvalidInput(
            f"{source!r} has no file name to use as its object path: give obj_path a file name"
        )
    if not obj_path:
        key = base
    else:
        key = obj_path[1:] if obj_path.startswith("/") else obj_path
        if key.endswith("/"):
            key = key + base
    return check_key(key, what=f"object path for {source!r}")


def reference_key(uri: str, obj_path: str | None) -> str:
    """The key ``Artifact.add_reference`` gives ``uri``: T9k's rule with the URI's
    basename taken as a string (query and fragment kept, nothing after a trailing
    '/'), so the Python API names references exactly as the SDK does. The manifest
    keeps ``resolve_obj_path``'s rule (its documented behaviour)."""
    base = uri.rpartition("/")[2]
    key = obj_path or base
    key = key[1:] if key.startswith("/") else key
    if obj_path and key.endswith("/"):
        key += base
    if not base and (not obj_path or obj_path.endswith("/")):
        raise InvalidInput(
            f"reference {uri!r} ends in '/', so it has no name to use as its object "
            "path: give obj_path a file name"
        )
    return check_key(key, what=f"object path for {uri!r}")


# What every file system and S3 can hold: a name of 255 bytes, a key of 1,024.
MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_key(key: str, what: str = "object path", allow_reserved: bool = False) -> str:
    """Return ``key`` if it is a safe relative object path, else raise InvalidInput."""
    if not key:
        raise InvalidInput(f"{what} is empty: give a file name or a folder ending in '/'")
    if "\\" in key or "\x00" in key:
        raise InvalidInput(f"{what} {key!r} contains a backslash or NUL: use '/' separators")
    if CONTROL_CHARACTERS.search(key):
        raise InvalidInput(f"{what} {key!r} contains a control character: rename it")
    size = len(key.encode("utf-8", "surrogateescape"))
    if size > MAX_KEY_BYTES:
        raise InvalidInput(
            f"{what} {key[:60]!r}... is {size} bytes long: at most {MAX_KEY_BYTES} (shorten it)"
        )
    if key.startswith("/"):
        raise InvalidInput(f"{what} {key!r} is absolute: drop the leading '/'")
    parts = key.split("/")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
            raise InvalidInput(
                f"{what} {key[:60]!r}... has a name over {MAX_SEGMENT_BYTES} bytes, more than a "
                "file system holds (shorten it)"
            )
        if part in ("", ".", ".."):
            raise InvalidInput(
                f"{what} {key!r} has an empty, '.' or '..' segment: "
                "object paths must stay inside the artifact"
            )
    if not allow_reserved and len(parts) == 1 and key in RESERVED_ROOT_NAMES:
        raise InvalidInput(f"{what} {key!r} is reserved for the artifact's own metadata")
    return key


def join_key(prefix: str, rel: str) -> str:
    """``prefix`` (a folder key, possibly '') joined with a relative POSIX path."""
    return f"{prefix}/{rel}" if prefix else rel


def _basename(source: str) -> str:
    """The last path segment of a local path or URI, ignoring trailing slashes; for a
    URI, of its path: query and fragment dropped, "" when it has no path (not the host)."""
    if "://" in source:
        rest = source.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
        return posixpath.basename(rest.partition("/")[2].rstrip("/"))
    stripped = source.rstrip("/").rstrip(os.sep) or source
    return posixpath.basename(stripped.replace(os.sep, "/"))


def key_clash(key: str, first: str, second: str) -> str:
    """The one message for an object path that two sources declare (the manifest's
    static check and the expanded sources both say it this way)."""
    return (
        f"object path '{key}' comes from both {first} and {second} "
        "(give one of them another obj_path, or exclude it)"
    )
