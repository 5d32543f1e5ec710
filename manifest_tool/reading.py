"""Reading a user's small files whole, for upload."""

from __future__ import annotations

import os
from pathlib import Path


def read_at_most(path: str | Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of a file, through its descriptor: an upload batch reads
    thousands of small files, and a file object each costs more than the reads.
    Errors are the OSError raised, for the caller to word."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, limit)
        while len(data) < limit and (more := os.read(fd, limit - len(data))):
            data += more
        return data
    finally:
        os.close(fd)
