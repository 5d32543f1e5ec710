"""Named points where a test can freeze a process, to kill it at a precise moment.

``hit(name)`` does nothing unless ``MANIFEST_TOOL_FAILPOINTS`` lists ``name=pause``
(comma-separated): then it tells stderr ``failpoint NAME`` and sleeps until the
process is killed. The crash tests use it to kill a server between two steps
whose order matters (a blob written, its metadata not yet committed).
"""

from __future__ import annotations

import os
import sys
import time

ENV = "MANIFEST_TOOL_FAILPOINTS"


def _active() -> set[str]:
    names = set()
    for item in os.environ.get(ENV, "").split(","):
        name, _, action = item.strip().partition("=")
        if name and action in ("", "pause"):
            names.add(name)
    return names


def hit(name: str) -> None:
    """Pause here forever if the environment asks for ``name``."""
    if ENV not in os.environ or name not in _active():
        return
    sys.stderr.write(f"failpoint {name}\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)
