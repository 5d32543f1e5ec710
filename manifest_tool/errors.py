"""The errors manifest-tool knows about.

Every known error carries a message written where it is raised, on one line, that
says what went wrong, where (file:line, artifact, URL) and what to do next. The CLI
prints it and exits 1; anything else is a bug and exits 3.
"""

from __future__ import annotations

import errno
import tempfile
import traceback


def write_log(prefix: str = "manifest-tool-") -> str:
    """The traceback being handled, in a file a bug report can attach; its path."""
    with tempfile.NamedTemporaryFile("w", prefix=prefix, suffix=".log", delete=False) as fh:
        fh.write(traceback.format_exc())
        return fh.name


class ManifestToolError(Exception):
    """A known failure; ``str(err)`` is the one line a user sees."""


class InvalidInput(ManifestToolError, ValueError):
    """A name, path, strategy or value the caller gave is not acceptable."""


class MissingSource(ManifestToolError, RuntimeError):
    """A local file or directory that should exist does not (or is unreadable)."""


class ManifestInvalid(ManifestToolError):
    """The manifest failed validation; ``problems`` holds every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class NotAFolder(InvalidInput):
    """A node was to be made below a node that is not a Folder (an Artifact or Run)."""


class ChecksumMismatch(ManifestToolError):
    """Bytes on disk or over the wire do not match their recorded MD5."""


class RemoteError(ManifestToolError):
    """The remote refused or failed a request."""


class NodeNotFound(RemoteError):
    """A node or its parent does not exist; ``missing`` names the missing path."""

    def __init__(self, missing: str, message: str | None = None) -> None:
        self.missing = missing
        super().__init__(message or f"node not found [{missing}]")


class NameConflict(RemoteError):
    """A node of that name already exists in the parent."""


class PermissionDenied(RemoteError, RuntimeError):
    """The user may not touch that path (a RuntimeError, as T9k's SDK raises it)."""


class AuthError(RemoteError):
    """No API key, or one the server does not know."""


class KeyNotFound(AuthError, RuntimeError):
    """The server does not know the API key (T9k's SDK: RuntimeError)."""


class KeyMissing(AuthError, ValueError):
    """No API key was given, or it is not a UUID (T9k's SDK: ValueError)."""


class NotFound(RemoteError, OSError):
    """Neither a local directory nor a remote path (T9k's SDK: OSError)."""


class NotAnArtifact(ManifestToolError, RuntimeError):
    """The path names a node of another type (T9k's SDK: RuntimeError)."""


class MissingMetadata(ManifestToolError, FileNotFoundError):
    """A local artifact directory without metadata.yaml (T9k's SDK: FileNotFoundError)."""


class ConflictError(ManifestToolError, RuntimeError):
    """An artifact exists where we want to upload and the strategy says 'error'
    (a RuntimeError, as T9k's SDK raises it)."""


class ApplyBusy(ManifestToolError):
    """Another apply holds this manifest directory."""


class StalePlan(ManifestToolError):
    """A saved plan no longer matches the manifest, local files or remote."""


class RevisionMismatch(RemoteError):
    """A compare-and-set on a node lost: its objects changed since they were listed."""


class CannotWrite(ManifestToolError):
    """A local file or store could not be written (see ``write_error``)."""


class DiskFull(CannotWrite):
    """No space (or quota) left where we write."""


def write_error(err: OSError, path: object) -> CannotWrite:
    """The one-line error for an OSError while writing at ``path``."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"disk full at {path}: free some space, then run the command again")
    reason = err.strerror or type(err).__name__
    return CannotWrite(f"cannot write {path}: {reason} (check the path and its permissions)")
