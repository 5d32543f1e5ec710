"""The Python API's remote: set by ``login``, else from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from .config import DEFAULT_STORE, t9k_context
from .remotes import Remote, open_remote

_host: str | None = None
_api_key: str | None = None
_remote: Remote | None = None


def login(host: str | None = None, api_key: str | None = None) -> None:
    """Choose the remote for later uploads and loads.

    ``host`` is an AIStore host URL (``http(s)://...``) or a ``file:`` URL; without
    it, ``MANIFEST_TOOL_REMOTE``, then the T9k config file, then ``.em/store`` in the
    working directory (without a ``login``, the T9k config file is not consulted).
    ``api_key`` defaults to ``MANIFEST_TOOL_API_KEY``, else the key ``manifest-tool
    login`` saved for that host, else the T9k config file's key if the host is its
    server: a key is never sent to another host.
    """
    global _host, _api_key, _remote
    _host = host or os.environ.get("MANIFEST_TOOL_REMOTE") or t9k_context().server
    _api_key = api_key
    if _remote is not None:
        _remote.close()
    _remote = None
    remote()  # connect now so a bad host or key fails here, not at upload


def remote() -> Remote:
    global _remote
    if _remote is None:
        url = _host or os.environ.get("MANIFEST_TOOL_REMOTE")
        _remote = open_remote(url or f"file:{DEFAULT_STORE}", Path.cwd(), _api_key)
        _remote.whoami()
    return _remote


def reset() -> None:
    """Forget the remote (tests and long-lived processes that change directory)."""
    global _host, _api_key, _remote
    if _remote is not None:
        _remote.close()
    _host = _api_key = _remote = None
