"""One error hierarchy whose messages are meant for users.

Faces map these to their own conventions: magics raise ``UsageError``, the CLI exits
non-zero, the server extension answers with an HTTP status.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error jupyter-mlops raises on purpose."""


class ConfigError(MlopsError):
    """The project's configuration is missing, unreadable or contradictory."""


class DataError(MlopsError):
    """A data path cannot be snapshotted or restored."""


class TrackingError(MlopsError):
    """A run cannot be recorded or read back."""


class NotFoundError(MlopsError):
    """A run, model, deployment or file asked for does not exist."""


class ConflictError(MlopsError):
    """Someone else changed the shared state this operation was decided on; it did nothing."""
