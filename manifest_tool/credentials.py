"""Per-host API keys saved by ``manifest-tool login``, in a file only the user can read.

The file is ``$XDG_CONFIG_HOME/manifest-tool/credentials.yaml`` (else
``~/.config/...``), mode 0600, mapping a normalised remote URL to its key. A key is
looked up by the exact remote it was saved for, so it is never sent anywhere else.
A missing or corrupt file holds no keys.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

from .errors import InvalidInput


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "manifest-tool" / "credentials.yaml"


def host_of(url: str) -> str:
    """``url`` as keys are filed under: scheme and host lower-cased, no trailing '/'."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"remote {url!r} is not an http:// or https:// URL (keys are per host)")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def saved_keys() -> dict[str, str]:
    """Every saved host -> key; a missing, unreadable or odd file holds none."""
    try:
        text = credentials_path().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    import yaml  # here, not at the top: most runs have no such file

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        return {}
    return {str(h): str(k) for h, k in hosts.items() if isinstance(k, str) and k}


def saved_key(url: str) -> str | None:
    try:
        return saved_keys().get(host_of(url))
    except InvalidInput:
        return None


def save_key(url: str, key: str) -> Path:
    keys = saved_keys()
    keys[host_of(url)] = key
    return _write(keys)


def forget_key(url: str) -> bool:
    """Remove ``url``'s key; whether there was one."""
    keys = saved_keys()
    if keys.pop(host_of(url), None) is None:
        return False
    _write(keys)
    return True


def _write(keys: dict[str, str]) -> Path:
    """Atomically, and created 0600 so the key is never readable by others, not even
    for the instant between create and chmod."""
    import yaml

    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump({"hosts": keys}, fh)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
