"""``manifest-tool serve``: the AIStore node/object API over the embedded store."""

from __future__ import annotations

from .app import create_app
from .limits import Limits

__all__ = ["Limits", "create_app"]
