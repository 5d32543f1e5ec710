"""Where the remote is and which API key to use.

Remote: ``--remote`` > ``MANIFEST_TOOL_REMOTE`` > the manifest's ``remote.url`` >
the embedded store ``file:.em/store`` beside the manifest. API key, only for the
host it belongs to: ``MANIFEST_TOOL_API_KEY`` (for the resolved remote) > the key
``manifest-tool login`` saved for that host > the T9k config file's key, when the
remote is that context's server. Keys are never read from the manifest and never
printed.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .credentials import host_of, saved_key
from .errors import InvalidInput

DEFAULT_STORE = ".em/store"


@dataclass(frozen=True)
class T9kContext:
    server: str | None
    api_key: str | None


def store_user() -> str:
    """The embedded store's acting user."""
    return os.environ.get("MANIFEST_TOOL_USER") or getpass.getuser()


def resolve_remote_url(explicit: str | None, manifest_url: str | None, base: Path) -> str:
    url = explicit or os.environ.get("MANIFEST_TOOL_REMOTE") or manifest_url
    if not url:
        return f"file:{(base / DEFAULT_STORE).resolve()}"
    return url


def file_url_path(url: str, base: Path) -> Path:
    """``file:PATH`` (relative to ``base``) or ``file:///abs`` as an absolute path."""
    rest = url[len("file:") :]
    if rest.startswith("//"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"remote {url!r}: file: URLs name a local path, not a host")
        return Path(parts.path)
    path = Path(rest)
    return path if path.is_absolute() else (base / path).resolve()


def resolve_api_key(url: str, explicit: str | None = None) -> str | None:
    """The key for the remote at ``url``; a key saved for another host is never used."""
    if explicit or os.environ.get("MANIFEST_TOOL_API_KEY"):
        return explicit or os.environ["MANIFEST_TOOL_API_KEY"]
    saved = saved_key(url)
    if saved:
        return saved
    t9k = t9k_context()
    if t9k.server and t9k.api_key and _same_host(t9k.server, url):
        return t9k.api_key
    return None


def _same_host(a: str, b: str) -> bool:
    try:
        return host_of(a) == host_of(b)
    except InvalidInput:
        return False


def t9k_config_path() -> Path:
    """``$T9K_CONFIG`` (``~`` expanded, as the T9k SDK does), else ``~/.t9k/...``."""
    configured = os.environ.get("T9K_CONFIG")
    if configured:
        return Path(os.path.expanduser(configured))
    return Path.home() / ".t9k" / "t9k-config.yaml"


def t9k_context() -> T9kContext:
    """The T9k config file's context (``$T9K_CONFIG_CONTEXT``, else its current one);
    an absent or odd file is empty."""
    path = t9k_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return T9kContext(None, None)
    import yaml  # here, not at the top: most runs have no such file

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return T9kContext(None, None)
    context = _current(data) if isinstance(data, dict) else None
    if context is None:
        return T9kContext(None, None)
    auth = context.get("auth") or {}
    prefix = (context.get("prefixes") or {}).get("aistore") or ""
    server = context.get("server")
    host = f"{str(server).rstrip('/')}{prefix}" if server else None
    return T9kContext(host, (auth.get("apikey") or None) if isinstance(auth, dict) else None)


def _current(data: dict[str, Any]) -> dict[str, Any] | None:
    name = os.environ.get("T9K_CONFIG_CONTEXT") or data.get("current-context")
    for context in data.get("contexts") or []:
        if isinstance(context, dict) and context.get("name") == name:
            return context
    return None
