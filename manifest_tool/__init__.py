"""manifest-tool: publish ML artifacts declared in a checked-in manifest."""

from __future__ import annotations

from pathlib import Path

from .artifact import Artifact, create_artifact, parent_dir
from .session import login

__all__ = ["Artifact", "create_artifact", "load_artifact", "login"]
__version__ = "0.1.0"


def load_artifact(path: str) -> Artifact:
    """An Artifact from a local directory, or from the remote (``/alice/cv/x``, ``cv/x``).

    A path naming an existing local directory holding ``metadata.yaml`` is read from
    disk; anything else is a remote node path, downloaded below
    ``$EM_ARTIFACT_PARENT_DIR`` with every checksum verified.
    """
    from .loading import load_local
    from .session import remote
    from .transfer import download_artifact

    if Path(path, "metadata.yaml").is_file():
        return load_local(Path(path))
    return download_artifact(remote(), path, parent_dir())
