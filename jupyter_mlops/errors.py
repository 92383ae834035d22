"""One error hierarchy whose messages are meant for users.

Each class says how the faces report it: ``http_status`` for the server extension and the
model server, ``exit_code`` for the CLI (domain errors exit 1, usage errors 2; checks that
fire keep their own documented codes). Magics show every ``MlopsError`` as a one-line
``UsageError``. ``details()`` adds machine-readable fields to a JSON error body.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: CLI exit code of a command that did what it was asked.
EXIT_OK = 0
#: CLI exit code of a domain error (the command was understood but could not be done), and
#: of a check that fired (``monitor check``, ``drift --fail-on-drift``, a failed pipeline,
#: a ``reproduce`` that did not reproduce).
EXIT_ERROR = 1
#: CLI exit code of a usage error (the command line itself is wrong), as argparse uses.
EXIT_USAGE = 2
#: CLI exit code of a check that could not judge (``monitor check --strict``: a rule names a
#: figure the deployment does not have).
EXIT_UNJUDGED = 3

#: Every exit status of the command line and what it means (docs/commands.md, ``--help``).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_ERROR: "the command could not be done (an error of the jupyter-mlops family), or a "
    "check fired: `monitor check`, `drift --fail-on-drift`, a failed `pipeline run`/`retrain`, "
    "a `reproduce` whose verdict is DIFFERENT or FAILED",
    EXIT_USAGE: "usage error: the command line is wrong (argparse's status) or its options "
    "contradict each other",
    EXIT_UNJUDGED: "`monitor check --strict`: a rule names a figure the deployment lacks",
}


class MlopsError(Exception):
    """Base class of every error jupyter-mlops raises on purpose."""

    http_status: ClassVar[int] = 400
    exit_code: ClassVar[int] = EXIT_ERROR

    def details(self) -> dict[str, Any]:
        """Extra fields for a JSON error reply (beside ``message``)."""
        return {}


class UsageError(MlopsError):
    """The options of a command contradict each other or lack something required."""

    exit_code = EXIT_USAGE


class ConfigError(MlopsError):
    """The project's configuration is missing, unreadable or contradictory."""


class DataError(MlopsError):
    """A data path cannot be snapshotted or restored."""


class TrackingError(MlopsError):
    """A run cannot be recorded or read back."""


class StoreUnavailableError(TrackingError):
    """The tracking store (its server or database) cannot be reached at all."""

    http_status = 503


class QueryError(MlopsError):
    """A ``--where`` filter or a run query cannot be understood."""


class NotFoundError(MlopsError):
    """A run, model, deployment or file asked for does not exist."""

    http_status = 404


class ConflictError(MlopsError):
    """Someone else changed the shared state this operation was decided on; it did nothing.

    ``current`` names what holds the state now (e.g. the alias's new version), when known.
    """

    http_status = 409
    current: str | None = None

    def details(self) -> dict[str, Any]:
        return {"reason": "conflict", "current": self.current}


class ConditionError(MlopsError):
    """A gate, alert rule or trigger expression cannot be parsed or evaluated."""


class RegistryError(MlopsError):
    """A registry operation cannot be done as asked."""


class ServingError(MlopsError):
    """A deployment cannot be started, changed, stopped or reached."""


class DeploymentNotFoundError(NotFoundError, ServingError):
    """No deployment of that name exists in the project."""


class MonitoringError(MlopsError):
    """Monitoring figures or a drift report cannot be computed as asked."""


class PipelineError(MlopsError):
    """A pipeline file is invalid or a pipeline cannot be run as asked."""


class RequestError(MlopsError):
    """A server-extension request's parameters cannot be used (page token, limit, body)."""


class OutcomeError(MlopsError):
    """Outcomes (ground truth for logged predictions) cannot be recorded as sent; none was.

    ``code`` says why and sets the HTTP status: ``UNKNOWN_REQUEST_ID`` (404: the prediction
    log of that deployment has no such request or row), ``DUPLICATE_OUTCOME`` (409: already
    recorded, or twice in the batch), ``OUTCOME_TYPE`` (422: not a class of the model, or not
    a number for a regressor), ``BAD_PAYLOAD`` (400: malformed or missing fields).
    ``rejected`` lists every refused item (``index``, ``request_id``, ``code``, ``message``).
    """

    STATUSES: ClassVar[dict[str, int]] = {
        "UNKNOWN_REQUEST_ID": 404,
        "DUPLICATE_OUTCOME": 409,
        "OUTCOME_TYPE": 422,
        "BAD_PAYLOAD": 400,
    }

    def __init__(
        self, message: str, code: str = "BAD_PAYLOAD", rejected: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.rejected = rejected or []

    @property
    def http_status(self) -> int:  # type: ignore[override]
        """The status of ``code`` (400 for one not listed)."""
        return self.STATUSES.get(self.code, 400)

    def details(self) -> dict[str, Any]:
        return {"error_code": self.code, "rejected": self.rejected}
