"""The lock file: each artifact's identity, committed beside the manifest.

``<manifest stem>.lock`` gives a fresh CI checkout the same alternative names as the
developer's machine, so it recognises the remote nodes as its own and uploads
nothing. Written atomically; a corrupt lock is reported, never half-trusted.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .cache import parsed
from .errors import ManifestToolError
from .identity import valid_alternative_name
from .localdir import write_atomic
from .yamlpos import YamlSyntaxError, safe_load

HEADER = b"# Written by manifest-tool apply. Commit it: it keeps artifact identities stable.\n"


@dataclass(frozen=True)
class LockEntry:
    alternativeName: str
    createdTimestamp: str
    contentDigest: str = ""
    remote: dict[str, str] = field(default_factory=dict)
    version: int = 0  # versions: keep: the newest version's number (0: not versioned)


def lock_text(entries: dict[str, LockEntry]) -> str:
    """The lock's YAML: the same text as dumping it whole, built from per-entry pieces.

    Apply writes the lock after each artifact; dumping all of it each time made a
    first apply of 1,000 artifacts quadratic. An entry's text is made once.
    """
    if not entries:
        return "version: 1\nartifacts: {}\n"
    parts = [_text_of(name, e) for name, e in sorted(entries.items())]
    return "version: 1\nartifacts:\n" + "".join(parts)


# name -> (the entry last written under it, its text). Entries are frozen and replaced,
# never changed, so the same object has the same text: a write of 1,000 entries looks
# up 1,000 objects instead of building and hashing 1,000 keys (a first apply of 1,000
# artifacts writes the lock 2,000 times).
_LAST: dict[str, tuple[LockEntry, str]] = {}


def _text_of(name: str, entry: LockEntry) -> str:
    last = _LAST.get(name)
    if last is not None and last[0] is entry:
        return last[1]
    text = _entry_text(name, _key(entry))
    _LAST[name] = (entry, text)
    return text


Key = tuple[str, str, str, tuple[tuple[str, str], ...], int]


def _key(e: LockEntry) -> Key:
    remote = tuple(e.remote.items())
    return e.alternativeName, e.createdTimestamp, e.contentDigest, remote, e.version


@lru_cache(maxsize=65536)
def _entry_text(name: str, key: Key) -> str:
    import yaml  # only when writing: a plan that reads a cached lock never needs it

    alt, created, digest, remote, version = key
    fields = entry_fields(LockEntry(alt, created, digest, dict(remote), version))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump({name: fields}, Dumper=dumper, sort_keys=False, allow_unicode=True)
    return "".join(f"  {line}\n" for line in text.splitlines())


def entry_fields(entry: LockEntry) -> dict[str, Any]:
    """What the lock records of one entry: ``version`` only for a versioned artifact,
    so the lock of an artifact without versions reads as it always did."""
    fields = asdict(entry)
    if not entry.version:
        del fields["version"]
    return fields


def lock_path(manifest: Path) -> Path:
    return manifest.with_name(f"{manifest.stem}.lock")


def read_lock(path: Path) -> dict[str, LockEntry]:
    if not path.exists():
        return {}
    try:
        data = parsed(path, "lock", path.read_text(encoding="utf-8"), safe_load) or {}
        entries = data.get("artifacts") or {}
        return {str(name): _entry(value) for name, value in entries.items()}
    except (OSError, ValueError, YamlSyntaxError, AttributeError, KeyError, TypeError) as err:
        raise ManifestToolError(
            f"{path}: the lock file is unreadable ({err.__class__.__name__}); "
            "restore it from version control or delete it to start new identities"
        ) from None


def _entry(value: dict[str, Any]) -> LockEntry:
    alt = value["alternativeName"]
    if not valid_alternative_name(alt):  # it names a directory: never a path
        raise ValueError(f"invalid alternativeName {alt!r}")
    return LockEntry(
        alternativeName=str(alt),
        createdTimestamp=str(value["createdTimestamp"]),
        contentDigest=str(value.get("contentDigest") or ""),
        remote={str(k): str(v) for k, v in (value.get("remote") or {}).items()},
        version=int(value.get("version") or 0),
    )


def write_lock(path: Path, entries: dict[str, LockEntry]) -> None:
    data = HEADER + lock_text(entries).encode()
    if _on_disk(path) == data:
        return  # unchanged: leave the file (and its mtime) alone
    write_atomic(path, data)
    with suppress(OSError):
        _WRITTEN[path] = (_stamp(path), data)


# path -> (stat of the lock as this process last wrote it, its bytes): a file still at
# that stat need not be read back to compare
_WRITTEN: dict[Path, tuple[tuple[int, int, int], bytes]] = {}


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _on_disk(path: Path) -> bytes | None:
    try:
        stamp = _stamp(path)
    except OSError:
        return None
    known = _WRITTEN.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    try:
        return path.read_bytes()
    except OSError:
        return None
