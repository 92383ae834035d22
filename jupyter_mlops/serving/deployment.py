"""What a deployment is now, for people and programs: where it answers, what it serves, whether
it is alive, as text, HTML (notebooks) and JSON-able dicts (CLI ``--json``, the sidebar).

Only views: :mod:`~jupyter_mlops.serving.listing` builds them from a deployment's state.
"""

from __future__ import annotations

import html
import json
import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.records import attributes
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.errors import ServingError
from jupyter_mlops.serving.state import LOG_FILE

__all__ = ["DamagedDeployment", "Deployment", "DeploymentList"]


@dataclass
class Deployment:
    """A deployment as it is now: where it answers, what it serves, whether it is alive."""

    name: str
    status: str  # running, starting, dead, stopped or failed
    host: str
    port: int
    pid: int | None
    workers: int
    primary: ModelRef
    canary: ModelRef | None
    canary_weight: float
    history: list[dict[str, Any]]
    started_at: float | None
    stopped_at: float | None
    token_required: bool
    folder: Path
    generation: int
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    predict_mode: str = "label"  # what /predict answers by default: "label" or "proba"
    strict_invocations: bool = False  # /invocations validates as /predict (else as MLflow)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def uptime(self) -> float | None:
        """Seconds since start while running, else None."""
        if self.status != "running" or self.started_at is None:
            return None
        return time.time() - self.started_at

    @property
    def traffic(self) -> dict[str, float]:
        """Percent of traffic per model label."""
        if self.canary is None or self.canary_weight <= 0:
            return {self.primary.label: 100.0}
        return {
            self.primary.label: 100.0 - self.canary_weight,
            self.canary.label: self.canary_weight,
        }

    def curl_example(self) -> str:
        """A ready-to-paste curl command for ``/predict``."""
        record = self.primary.example or {"feature": 1.0}
        auth = ' -H "Authorization: Bearer $MLOPS_TOKEN"' if self.token_required else ""
        return (
            f"curl -s {self.url}/predict -H 'Content-Type: application/json'{auth} "
            f"-d {shlex.quote(json.dumps(record))}"
        )

    def predict(
        self,
        data: Any,
        *,
        proba: bool | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """POST ``data`` (a record, a list of records or a DataFrame) to ``/predict``;
        ``proba`` True asks for class probabilities, False for labels, None for the default."""
        if hasattr(data, "to_dict") and hasattr(data, "columns"):
            data = json.loads(data.to_json(orient="records"))
        query = "" if proba is None else f"?predict={'proba' if proba else 'label'}"
        request = urllib.request.Request(
            f"{self.url}/predict{query}",
            data=json.dumps(data).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServingError(f"{self.name}: HTTP {exc.code}: {exc.read().decode()}") from exc

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """Conditional promotions, oldest first: each event (``promote`` or ``promotion
        refused``) with its ``decision`` (expression, reason, labels, p-values, window)."""
        return [e for e in self.events if isinstance(e.get("decision"), dict)]

    @property
    def unchecked_inputs(self) -> list[str]:
        """A warning per served model that has no signature: its inputs are not checked."""
        return [
            f"not checked for {ref.label} (the model has no signature)"
            for _, ref, _ in self._model_lines()
            if ref.signature is False
        ]

    def _model_lines(self) -> list[tuple[str, ModelRef, float]]:
        lines = [("primary", self.primary, 100.0 - (self.canary_weight if self.canary else 0))]
        if self.canary is not None:
            lines.append(("canary", self.canary, self.canary_weight))
        return lines

    def __str__(self) -> str:
        up = f", up {_duration(self.uptime)}" if self.uptime is not None else ""
        pid = f"pid {self.pid}" if self.pid else "no process"
        out = [f"Deployment {self.name}: {self.status} at {self.url} ({pid}{up})"]
        for role, ref, weight in self._model_lines():
            run = f"  run {ref.run_id}" if ref.run_id else ""
            out.append(f"  {role:<8} {ref.label:<24} {weight:5.1f}%{run}")
        if self.history:
            earlier = ", ".join(ModelRef.from_dict(h["model"]).label for h in self.history)
            out.append(f"  previous primaries: {earlier}")
        for event in self.decisions[-3:]:
            decision = event["decision"]
            verdict = "promoted" if decision.get("promoted") else "not promoted"
            out.append(
                f"  decision {_utc(event.get('at'))}: {verdict} "
                f"({decision.get('expression')}): {decision.get('reason')}"
            )
        if self.predict_mode == "proba":
            out.append("  answers: class probabilities (?predict=label for labels)")
        if self.strict_invocations:
            out.append("  /invocations: strict (validates as /predict does)")
        out.extend(f"  inputs:  {text}" for text in self.unchecked_inputs)
        if self.status in ("running", "starting"):
            out.append(f"  docs:    {self.url}/docs")
            out.append(f"  example: {self.curl_example()}")
        else:
            out.append(f"  log:     {self.log_file}")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = {"running": "#1a7f37", "starting": "#9a6700"}.get(self.status, "#cf222e")
        rows = "".join(
            f"<tr><td>{role}</td><td>{esc(ref.label)}</td><td>{weight:.1f}%</td>"
            f"<td><code>{esc(ref.run_id or '')}</code></td>"
            f"<td><code>{esc(ref.uri)}</code></td></tr>"
            for role, ref, weight in self._model_lines()
        )
        up = f" &middot; up {_duration(self.uptime)}" if self.uptime is not None else ""
        link = f'<a href="{esc(self.url)}/docs" target="_blank">{esc(self.url)}</a>'
        body = (
            f"<div><b>Deployment {esc(self.name)}</b> "
            f'<span style="color:{colour}">{esc(self.status)}</span> at {link}'
            f"{' (token required)' if self.token_required else ''}{up}"
            "<table><tr><th>role</th><th>model</th><th>traffic</th><th>run</th><th>uri</th></tr>"
            f"{rows}</table>"
        )
        body += "".join(f"<p>inputs: {esc(text)}</p>" for text in self.unchecked_inputs)
        body += "".join(
            f"<p>decision {_utc(e.get('at'))}: "
            f"{'promoted' if e['decision'].get('promoted') else 'not promoted'} "
            f"(<code>{esc(str(e['decision'].get('expression')))}</code>): "
            f"{esc(str(e['decision'].get('reason')))}</p>"
            for e in self.decisions[-3:]
        )
        if self.status in ("running", "starting"):
            body += f"<pre>{esc(self.curl_example())}</pre>"
        else:
            body += f"<p>log: <code>{esc(str(self.log_file))}</code></p>"
        return body + "</div>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for the CLI's ``--json`` and the server extension)."""
        return {
            **attributes(self, "name", "status", "url", "pid", "workers"),
            "primary": self.primary.to_dict(),
            "canary": self.canary.to_dict() if self.canary else None,
            **attributes(
                self,
                "canary_weight",
                "traffic",
                "history",
                "started_at",
                "stopped_at",
                "uptime",
                "token_required",
                "generation",
            ),
            "log_file": str(self.log_file),
            "predict": self.predict_mode,
            "strict_invocations": self.strict_invocations,
            "unchecked_inputs": self.unchecked_inputs,
            "decisions": self.decisions,
        }


@dataclass
class DamagedDeployment:
    """A deployment whose ``state.json`` cannot be read (truncated, mistyped): listed as
    ``corrupt`` with its path and the fix, never left out."""

    name: str
    path: Path
    problem: str
    pid: int | None = None  # its server, when one still runs (found from what is left)
    status: str = "corrupt"

    @property
    def fix(self) -> str:
        stop = f"`jupyter-mlops deploy stop {self.name}` stops its server (pid {self.pid}), then "
        return (
            (stop if self.pid else "")
            + f"`jupyter-mlops deploy start MODEL --name {self.name}` writes a new state "
            f"(or delete {self.path.parent} to forget it)"
        )

    def __str__(self) -> str:
        return f"{self.path} is damaged ({self.problem}); fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **attributes(self, "name", "status", "pid", "problem", "fix"),
            "path": str(self.path),
        }


class DeploymentList(list[Deployment]):
    """Deployments with a text and an HTML table; ``damaged`` lists those whose state
    cannot be read (shown as ``corrupt`` rows with their path and fix)."""

    def __init__(self, *args: Any, damaged: list[DamagedDeployment] | None = None) -> None:
        super().__init__(*args)
        self.damaged: list[DamagedDeployment] = list(damaged or [])

    def __str__(self) -> str:
        if not self and not self.damaged:
            return "No deployments."
        header = ("name", "status", "url", "models (traffic)", "uptime")
        rows = [
            (
                d.name,
                d.status,
                d.url,
                ", ".join(f"{label} {w:g}%" for label, w in d.traffic.items()),
                _duration(d.uptime) if d.uptime is not None else "-",
            )
            for d in self
        ]
        rows += [(d.name, d.status, "-", "-", "-") for d in self.damaged]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (header, *rows)
        ]
        lines += [f"{d.name}: {d}" for d in self.damaged]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self and not self.damaged:
            return "<p>No deployments.</p>"
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(d.name)}</td><td>{esc(d.status)}</td>"
            f'<td><a href="{esc(d.url)}/docs" target="_blank">{esc(d.url)}</a></td>'
            f"<td>{esc(', '.join(f'{k} {v:g}%' for k, v in d.traffic.items()))}</td>"
            f"<td>{_duration(d.uptime) if d.uptime is not None else '-'}</td></tr>"
            for d in self
        )
        rows += "".join(
            f"<tr><td>{esc(d.name)}</td><td>{esc(d.status)}</td>"
            f"<td colspan='3'>{esc(str(d))}</td></tr>"
            for d in self.damaged
        )
        return (
            "<table><tr><th>name</th><th>status</th><th>url</th><th>models (traffic)</th>"
            f"<th>uptime</th></tr>{rows}</table>"
        )


def _utc(epoch: Any) -> str:
    """``2026-12-03 14:02 UTC`` for an event's time."""
    if not isinstance(epoch, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"
