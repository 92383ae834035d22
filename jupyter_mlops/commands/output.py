"""``--json`` of the listing commands: each result as JSON with explicit, stable keys.

Scripts read these (``jupyter-mlops runs --json | jq``), so each listing names its keys
once in :data:`LISTINGS` (docs/commands.md is generated from it), and every record is built
through :func:`_record`, which refuses a key the listing does not name or a named key left
out: the documented keys and the printed ones cannot drift apart. Times are ISO 8601 in UTC;
URLs have their passwords redacted, and no token or password is ever printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jupyter_mlops._util.reprs import shown_as_text


@dataclass(frozen=True)
class Listing:
    """A listing's command lines, the shape of its JSON and the keys of its records."""

    commands: str
    shape: str
    keys: tuple[str, ...]
    nested: tuple[tuple[str, tuple[str, ...]], ...] = ()


_MODEL_REF = ("name", "version", "alias", "run_id", "uri")

#: Every listing with ``--json``: its keys, in the order they are printed.
LISTINGS: dict[str, Listing] = {
    "info": Listing(
        "`info --json`",
        "one object",
        (
            "version",
            "project_root",
            "tracking_uri",
            "tracking_uri_source",
            "store_reachable",
            "store_detail",
            "artifact_root",
            "experiment",
            "dvc_initialised",
            "dvc_remote",
            "prediction_log",
            "git",
            "buffered_runs",
            "notebook",
        ),
        (("git", ("commit", "dirty", "branch")),),
    ),
    "runs": Listing(
        "`runs --json`",
        "list, newest first",
        (
            "run_id",
            "run_name",
            "experiment",
            "status",
            "start_time",
            "notebook",
            "params",
            "metrics",
        ),
    ),
    "pending": Listing(
        "`retry --list --json`",
        "list",
        ("id", "run_name", "experiment", "status", "tracking_uri", "reason", "created", "metrics"),
    ),
    "models": Listing(
        "`models --json`",
        "list",
        ("name", "aliases", "versions", "problem"),
        (("versions[]", ("version", "run_id", "aliases", "metrics", "created")),),
    ),
    "history": Listing(
        "`history NAME --json`",
        "list, oldest first",
        (
            "model",
            "alias",
            "action",
            "version",
            "previous",
            "time",
            "user",
            "notebook",
            "git_commit",
            "gate",
            "comparison",
        ),
    ),
    "deployments": Listing(
        "`deploy list --json` (a list), `deploy status NAME --json` (one object)",
        "list",
        (
            "name",
            "status",
            "url",
            "pid",
            "workers",
            "primary",
            "canary",
            "canary_weight",
            "traffic",
            "predict",
            "token_required",
            "started_at",
            "uptime_s",
            "decisions",
            "problem",
        ),
        (("primary, canary", _MODEL_REF),),
    ),
    "pipeline_history": Listing(
        "`pipeline history --json`",
        "list, newest first",
        ("time", "kind", "id", "pipeline", "status", "summary"),
    ),
    "alert_rules": Listing(
        "`monitor rules DEPLOYMENT --json`",
        "one object",
        ("deployment", "rules", "webhook"),
        (("rules[]", ("expression", "name", "action", "cooldown_s")),),
    ),
    "doctor": Listing(
        "`doctor --json`",
        "one object",
        ("ok", "checked", "problems"),
        (("problems[]", ("kind", "path", "problem", "fix")),),
    ),
    "servers": Listing(
        "`server status --json`",
        "list",
        ("url", "pid", "alive", "state", "backend_store_uri", "artifacts_destination", "log"),
    ),
}


@shown_as_text
class Text(str):
    """A line shown as it reads, without a string's quotes (``%mlops --version``)."""


@shown_as_text
@dataclass
class Json:
    """A listing as JSON: printed by the command line, ``data`` for Python callers."""

    data: Any

    def __str__(self) -> str:
        return json.dumps(self.data, indent=2, default=str)


def warn(lines: Iterable[str]) -> None:
    """One ``jupyter-mlops: warning:`` line per damaged record left out, on stderr (stdout
    may be JSON for a script)."""
    for line in lines:
        print(f"jupyter-mlops: warning: {line}", file=sys.stderr)


def _record(listing: str, **values: Any) -> dict[str, Any]:
    """``values`` in the order of ``listing``'s keys; exactly those keys, or a bug here."""
    keys = LISTINGS[listing].keys
    if set(values) != set(keys):
        raise AssertionError(f"{listing}: keys {sorted(set(values) ^ set(keys))} differ")
    return {key: values[key] for key in keys}


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _redacted(url: str | None) -> str | None:
    from jupyter_mlops._util.urls import redact

    return None if url is None else redact(url)


def info(state: Any) -> Json:
    """``info --json`` from :class:`jupyter_mlops.present.ProjectState`."""
    from jupyter_mlops._version import __version__

    config, git = state.config, state.git
    return Json(
        _record(
            "info",
            version=__version__,
            project_root=str(config.root),
            tracking_uri=_redacted(config.tracking_uri),
            tracking_uri_source=config.sources.get("tracking_uri"),
            store_reachable=bool(state.store.ok),
            store_detail=str(state.store.detail),
            artifact_root=None if config.artifact_root is None else str(config.artifact_root),
            experiment=config.experiment,
            dvc_initialised=state.dvc,
            dvc_remote=_redacted(config.dvc_remote),
            prediction_log=_redacted(config.prediction_log),
            git=None
            if git is None
            else {"commit": git.commit, "dirty": git.dirty, "branch": git.branch},
            buffered_runs=state.buffered,
            notebook=state.notebook,
        )
    )


def runs(records: Iterable[dict[str, Any]]) -> Json:
    """``runs --json`` from :func:`jupyter_mlops.tracking.latest_runs`."""
    return Json(
        [
            _record(
                "runs",
                run_id=r["run_id"],
                run_name=r["run_name"],
                experiment=r["experiment"],
                status=r["status"],
                start_time=_iso(r["start_time"] / 1000 if r["start_time"] else None),
                notebook=r["notebook"],
                params=dict(sorted(r["params"].items())),
                metrics=dict(sorted(r["metrics"].items())),
            )
            for r in records
        ]
    )


def pending(items: Iterable[Any], damaged: Iterable[Any] = ()) -> Json:
    """``retry --list --json`` from :func:`jupyter_mlops.tracking.buffer.pending`; a damaged
    buffered run has status ``corrupt`` and its path and the fix in ``reason``."""
    from jupyter_mlops._util.urls import redact_text

    corrupt = [
        _record(
            "pending",
            **{
                **dict.fromkeys(LISTINGS["pending"].keys),
                "id": d.path.name,
                "status": "corrupt",
                "reason": str(d),
                "metrics": {},
            },
        )
        for d in damaged
    ]
    return Json(
        corrupt
        + [
            _record(
                "pending",
                id=p.id,
                run_name=p.run_name,
                experiment=p.experiment,
                status=p.status,
                tracking_uri=_redacted(p.tracking_uri),
                reason=redact_text(p.reason),  # an error message may quote the URL
                created=_iso(p.created),
                metrics=dict(sorted(p.metrics.items())),
            )
            for p in items
        ]
    )


def models(summaries: Iterable[Any]) -> Json:
    """``models --json`` from :func:`jupyter_mlops.registry.list_models`."""
    return Json(
        [
            _record(
                "models",
                name=m.name,
                aliases=dict(sorted(m.aliases.items())),
                versions=[
                    {
                        "version": v["version"],
                        "run_id": v["run_id"],
                        "aliases": list(v["aliases"]),
                        "metrics": dict(v["metrics"]),
                        "created": _iso(v["created"] / 1000 if v["created"] else None),
                    }
                    for v in m.versions
                ],
                problem=m.problem,
            )
            for m in summaries
        ]
    )


def alias_history(events: Iterable[Any]) -> Json:
    """``history NAME --json`` from :func:`jupyter_mlops.registry.history`."""
    from jupyter_mlops._util.records import attributes

    return Json([_record("history", **attributes(e, *LISTINGS["history"].keys)) for e in events])


def _model_ref(ref: Any) -> dict[str, Any] | None:
    from jupyter_mlops._util.records import attributes

    return None if ref is None else attributes(ref, *_MODEL_REF)


def deployment(d: Any) -> Json:
    """``deploy status NAME --json`` from :class:`jupyter_mlops.serving.Deployment`."""
    return Json(_deployment(d))


def deployments(listed: Iterable[Any]) -> Json:
    """``deploy list --json`` from :func:`jupyter_mlops.serving.list_deployments`; one whose
    state is damaged has status ``corrupt`` and says why and the fix in ``problem``."""
    damaged = [
        _record(
            "deployments",
            **{
                **dict.fromkeys(LISTINGS["deployments"].keys),
                "name": d.name,
                "status": d.status,
                "pid": d.pid,
                "problem": str(d),
            },
        )
        for d in getattr(listed, "damaged", [])
    ]
    return Json([_deployment(d) for d in listed] + damaged)


def _deployment(d: Any) -> dict[str, Any]:
    return _record(
        "deployments",
        name=d.name,
        status=d.status,
        url=d.url,
        pid=d.pid,
        workers=d.workers,
        primary=_model_ref(d.primary),
        canary=_model_ref(d.canary),
        canary_weight=d.canary_weight,
        traffic=dict(d.traffic),
        predict=d.predict_mode,
        token_required=d.token_required,
        started_at=_iso(d.started_at),
        uptime_s=d.uptime,
        decisions=[{**e, "at": _iso(e.get("at"))} for e in d.decisions],
        problem=None,
    )


def pipeline_history(found: Any) -> Json:
    """``pipeline history --json`` from :func:`jupyter_mlops.pipelines.history`."""
    return Json(
        [_record("pipeline_history", **{**row, "time": _iso(row["time"])}) for row in found.rows()]
    )


def _origin(url: str) -> str:
    """A webhook URL as its scheme and host: its path often is the secret (Slack's is)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}/..." if parts.scheme else "..."


def alert_rules(deployment: str, stored: Any) -> Json:
    """``monitor rules DEPLOYMENT --json`` from :func:`jupyter_mlops.monitoring.get_rules`;
    webhook URLs (the stored one, and those of ``webhook:`` actions) show only their host."""

    def action(text: str | None) -> str | None:
        kind, _, target = (text or "").partition(":")
        return f"webhook:{_origin(target)}" if kind == "webhook" else text

    rules = [
        {
            "expression": r.expression,
            "name": r.name,
            "action": action(r.action),
            "cooldown_s": r.cooldown_s,
        }
        for r in stored.rules
    ]
    webhook = _origin(stored.webhook) if stored.webhook else None
    return Json(_record("alert_rules", deployment=deployment, rules=rules, webhook=webhook))


def servers(known: Iterable[tuple[Any, bool]]) -> Json:
    """``server status --json`` from :func:`jupyter_mlops.tracking.server.servers`."""
    from jupyter_mlops.tracking.server import probe

    return Json(
        [
            _record(
                "servers",
                url=info.url,
                pid=info.pid,
                alive=alive,
                state=str(probe(info.url)) if alive else "process gone",
                backend_store_uri=_redacted(info.backend_store_uri),
                artifacts_destination=_redacted(info.artifacts_destination),
                log=info.log,
            )
            for info, alive in known
        ]
    )


def keys_table() -> list[str]:
    """docs/commands.md: the JSON of each listing, as Markdown lines."""
    lines = [
        "## `--json`",
        "",
        "Each listing prints JSON with these keys, in this order (times ISO 8601 in UTC, "
        "passwords in URLs as `***`, tokens never). Other commands' `--json` (`lineage`, "
        "`drift`, `monitor check`, `monitor figures`) print their report's own fields.",
        "",
        "| command line | JSON | keys |",
        "| --- | --- | --- |",
    ]
    for listing in LISTINGS.values():
        keys = ", ".join(f"`{k}`" for k in listing.keys)
        for where, inner in listing.nested:
            keys += f"; {where}: " + ", ".join(f"`{k}`" for k in inner)
        lines.append(f"| {listing.commands} | {listing.shape} | {keys} |")
    return lines
