"""Remotes: open the one a URL names."""

from __future__ import annotations

from pathlib import Path

from ..config import file_url_path, resolve_api_key, store_user
from ..errors import InvalidInput
from .base import Lineage, Node, ObjectInfo, Remote, Upload, absolute_folder

__all__ = ["Lineage", "Node", "ObjectInfo", "Remote", "Upload", "absolute_folder", "open_remote"]


def open_remote(url: str, base: Path, api_key: str | None = None) -> Remote:
    """The remote for ``url``: ``file:`` -> embedded store, ``http(s):`` -> server."""
    if url.startswith("file:"):
        from .local import LocalRemote

        return LocalRemote(file_url_path(url, base), store_user())
    if url.startswith(("http://", "https://")):
        from .http import HttpRemote

        return HttpRemote(url, resolve_api_key(url, api_key))
    raise InvalidInput(
        f"remote {url!r} is not a file:, http:// or https:// URL "
        "(check --remote, MANIFEST_TOOL_REMOTE or remote.url in the manifest)"
    )
