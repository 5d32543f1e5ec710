"""Artifact names and identities: the rules T9k's ``t9k.em`` uses."""

from __future__ import annotations

import random
import re
import string
from datetime import datetime

from .errors import InvalidInput

NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,38}[A-Za-z0-9])?")
# Not the module-level ``random``: ML code seeds it, and equal seeds must not give
# two artifacts made in the same second one alternative name.
_SUFFIX_RNG = random.SystemRandom()


def check_artifact_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid Artifact name {name!r}: 1 to 40 of A-Z a-z 0-9 _ -, "
            "starting and ending with a letter or digit"
        )
    return name


# An alternative name names a local directory and a node: one plain path segment.
ALT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


def valid_alternative_name(alt: object) -> bool:
    return isinstance(alt, str) and ALT_RE.fullmatch(alt) is not None


def check_alternative_name(alt: str) -> str:
    """An alternative name names the local directory: it must be one safe segment."""
    if not valid_alternative_name(alt):
        raise InvalidInput(
            f"invalid alternativeName {alt!r}: it must be a plain name of A-Z a-z 0-9 _ . -"
        )
    return alt


def new_identity(name: str) -> tuple[str, str]:
    """(createdTimestamp, alternativeName) for an artifact made now."""
    stamp = datetime.now().astimezone()
    suffix = "".join(_SUFFIX_RNG.choices(string.ascii_lowercase + string.digits, k=6))
    alt = f"{name}_{stamp:%y%m%d}_{stamp:%H%M%S}_{suffix}"
    return stamp.isoformat(timespec="microseconds"), alt
