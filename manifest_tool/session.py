"""The Python API's remote: set by ``login``, else from the environment."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .config import DEFAULT_STORE, resolve_api_key, t9k_context
from .errors import KeyMissing
from .remotes import Remote, open_remote

log = logging.getLogger(__name__)

# T9k's SDK accepts only an API key in the standard UUID form (lower-case hex).
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_host: str | None = None
_api_key: str | None = None
_timeout: float | None = None
_remote: Remote | None = None


def login(
    ais_host: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    *,
    host: str | None = None,
) -> None:
    """Choose the remote for later uploads and loads (T9k's ``em.login``).

    ``ais_host`` (or its alias ``host``) is an AIStore host URL (``http(s)://...``)
    or a ``file:`` URL; without it, ``MANIFEST_TOOL_REMOTE``, then the T9k config
    file, then ``.em/store`` in the working directory. ``api_key`` defaults to
    ``MANIFEST_TOOL_API_KEY``, else the key ``manifest-tool login`` saved for that
    host, else the T9k config file's key if the host is its server: a key is never
    sent to another host. Over HTTP the key must be a UUID, as the SDK requires.
    ``timeout`` bounds each wait for the server (seconds).
    """
    global _host, _api_key, _timeout, _remote
    url = ais_host or host or os.environ.get("MANIFEST_TOOL_REMOTE") or t9k_context().server
    if url and url.startswith(("http://", "https://")):
        _check_key(resolve_api_key(url, api_key))
    _host, _api_key, _timeout = url, api_key, timeout
    if _remote is not None:
        _remote.close()
    _remote = None
    user = remote().whoami()  # connect now so a bad host or key fails here, not at upload
    log.info("Logged in to AIStore server as user %s", user)


def _check_key(key: str | None) -> None:
    """The SDK's checks, before any request: a key is needed, in UUID form."""
    if not key:
        log.error("API Key not provided by either argument or config")
        raise KeyMissing(
            "API Key not provided: pass api_key, set MANIFEST_TOOL_API_KEY or run t9k login"
        )
    if not UUID_RE.fullmatch(key):
        log.error("Invalid API Key format")
        raise KeyMissing("Invalid API Key format: an API key is a UUID")


def remote() -> Remote:
    global _remote
    if _remote is None:
        url = _host or os.environ.get("MANIFEST_TOOL_REMOTE")
        _remote = open_remote(url or f"file:{DEFAULT_STORE}", Path.cwd(), _api_key)
        if _timeout is not None:
            _set_timeout(_remote, _timeout)
        try:
            _remote.whoami()
        except Exception:
            _remote.close()
            _remote = None
            raise
    return _remote


def _set_timeout(rem: Remote, seconds: float) -> None:
    from .remotes.http import HttpRemote  # only an HTTP remote waits on anything

    if isinstance(rem, HttpRemote):
        rem.timeout = (seconds, seconds)


def reset() -> None:
    """Forget the remote (tests and long-lived processes that change directory)."""
    global _host, _api_key, _timeout, _remote
    if _remote is not None:
        _remote.close()
    _host = _api_key = _remote = None
    _timeout = None
