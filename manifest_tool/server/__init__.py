"""``manifest-tool serve``: the AIStore node/object API over the embedded store."""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, create_app

__all__ = ["DEFAULT_MAX_BODY", "create_app"]
