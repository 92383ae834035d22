"""Serving errors: subclasses of the project's ``MlopsError`` hierarchy.

``InputError`` carries an HTTP status and, where one is at fault, the column, so the server
can answer a bad request with a message that names the problem.
"""

from __future__ import annotations

from jupyter_mlops._util.urls import redact_text
from jupyter_mlops.errors import DeploymentNotFoundError, ServingError

__all__ = [
    "DeploymentNotFoundError",
    "InputError",
    "PortInUseError",
    "PredictionError",
    "ServingError",
    "log_failed",
]


class PortInUseError(ServingError):
    """The port asked for is already taken on that host."""


class InputError(ServingError):
    """A prediction request is malformed or does not match the model's signature."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        code: str = "INVALID_INPUT",
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.column = column


class PredictionError(ServingError):
    """The model (or the prediction log) failed on a valid-looking request."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def log_failed(exc: BaseException) -> PredictionError:
    """The answer when the prediction log cannot take a record: 503, no prediction is sent."""
    return PredictionError(redact_text(f"Prediction log unavailable: {exc}"), status=503)
