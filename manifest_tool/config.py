"""Where the remote is and which API key to use.

Remote: ``--remote`` > ``MANIFEST_TOOL_REMOTE`` > the manifest's ``remote.url`` >
the embedded store ``file:.em/store`` beside the manifest. API key:
``MANIFEST_TOOL_API_KEY`` > the T9k config file's current context. Keys are never
read from the manifest and never printed.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

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


def resolve_api_key(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("MANIFEST_TOOL_API_KEY") or t9k_context().api_key


def t9k_context() -> T9kContext:
    """The current context of the T9k config file; an absent or odd file is empty."""
    path = Path(os.environ.get("T9K_CONFIG") or Path.home() / ".t9k" / "t9k-config.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
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
    name = data.get("current-context")
    for context in data.get("contexts") or []:
        if isinstance(context, dict) and context.get("name") == name:
            return context
    return None
