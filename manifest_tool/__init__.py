"""manifest-tool: publish ML artifacts declared in a checked-in manifest.

The Python API follows T9k's ``t9k.em``: ``Artifact``, ``create_artifact``,
``load_artifact`` and ``login``. They are imported on first use, so the CLI's
commands do not pay for modules they never call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .artifact import Artifact, create_artifact
    from .session import login

__all__ = ["Artifact", "create_artifact", "load_artifact", "login"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Artifact", "create_artifact"):
        from . import artifact

        return getattr(artifact, name)
    if name == "login":
        from .session import login

        return login
    raise AttributeError(f"module 'manifest_tool' has no attribute {name!r}")


def load_artifact(path: str) -> Artifact:
    """An Artifact from a local directory, or from the remote (``/alice/cv/x``, ``cv/x``).

    As in T9k's SDK, a path naming an existing local directory is read from disk (it
    must hold ``metadata.yaml``); anything else is a remote node path, downloaded
    below ``$EM_ARTIFACT_PARENT_DIR`` with every checksum verified.
    """
    from .loading import load

    return load(path)
