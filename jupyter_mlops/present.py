"""Text and HTML tables shared by the magics and the command line.

The project's configuration and store (``%mlops``, ``jupyter-mlops info``), runs, buffered
runs, registered models and alias history, stored alert rules, tracking servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.tracking.environment import git_state, notebook_path


@dataclass
class Table:
    """Rows of text with a title, shown as HTML in notebooks and as text elsewhere."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)  # one line each, below the rows

    def __str__(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [self.title, fmt.format(*self.columns)]
        lines += [fmt.format(*row) for row in self.rows]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{escape(v)}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        notes = "".join(f"<p>note: {escape(note)}</p>" for note in self.notes)
        return f"<b>{escape(self.title)}</b><table><tr>{head}</tr>{body}</table>{notes}"


@dataclass
class ProjectState:
    """What ``%mlops`` / ``jupyter-mlops info`` report, before it is shown as text or JSON."""

    config: Config
    store: Any  # tracking.server.Reachability
    git: Any  # tracking.environment.GitState | None
    dvc: bool
    buffered: int
    notebook: str | None


def project_state(config: Config | None = None) -> ProjectState:
    """Whether the store answers, the git and DVC state, buffered runs, this notebook."""
    from jupyter_mlops.tracking.buffer import pending
    from jupyter_mlops.tracking.server import probe

    config = config or load_config()
    return ProjectState(
        config=config,
        store=probe(config.tracking_uri),
        git=git_state(config.root),
        dvc=(config.root / ".dvc").is_dir(),
        buffered=len(pending(config)),
        notebook=notebook_path(None, config.root),
    )


def describe(config: Config | None = None) -> Table:
    """Project root, tracking store (and where that setting came from), artifacts, DVC, git."""
    from jupyter_mlops._util.urls import redact

    state = project_state(config)
    config, git = state.config, state.git
    rows = [
        ["project root", str(config.root)],
        [
            "tracking URI",
            f"{redact(config.tracking_uri)} ({config.sources.get('tracking_uri')})",
        ],
        ["store", str(state.store)],
        ["artifact root", str(config.artifact_root or "set by the tracking server")],
        ["DVC", "initialised" if state.dvc else "not initialised (first --data)"],
        ["git", f"{git.commit[:10]}{' (dirty)' if git.dirty else ''}" if git else "no repository"],
    ]
    if config.experiment:
        rows.append(["experiment", config.experiment])
    if config.dvc_remote:
        rows.append(["DVC remote", config.dvc_remote])
    if config.prediction_log:
        rows.append(["prediction log", redact(config.prediction_log)])
    if state.buffered:
        rows.append(
            ["buffered runs", f"{state.buffered} waiting for the store: `%mlops retry` logs them"]
        )
    if state.notebook:
        rows.append(["notebook", state.notebook])
    return Table("jupyter-mlops", ["setting", "value"], rows)


def runs_table(
    *,
    limit: int = 10,
    all_notebooks: bool = False,
    namespace: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> Table:
    """The latest runs of the current notebook (or of all, outside a notebook)."""
    from jupyter_mlops.tracking import latest_runs

    config = config or load_config()
    nb = None if all_notebooks else notebook_path(namespace, config.root)
    runs = latest_runs(config=config, notebook=nb, limit=limit)
    rows = []
    for r in runs:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())[:4])
        rows.append([r["run_id"][:12], r["run_name"] or "", r["experiment"], r["status"], metrics])
    title = f"Latest runs of {nb}" if nb else "Latest runs"
    if not rows:
        title += ": none yet (use %%track)"
    return Table(title, ["run", "name", "experiment", "status", "metrics"], rows)


def pending_table(config: Config | None = None) -> Table:
    """Runs buffered because their tracking store was unreachable."""
    from jupyter_mlops._util.urls import redact_text
    from jupyter_mlops.tracking.buffer import pending

    rows = []
    damaged: list[Any] = []  # listed below the rows with their path and the fix
    for item in pending(config, damaged):
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(item.metrics.items())[:4])
        reason = redact_text(item.reason)  # an error message may quote the store's URL
        rows.append([item.id, item.run_name, item.experiment, item.status, metrics, reason[:80]])
    rows += [[d.path.name, "", "", "corrupt", "", d.problem[:80]] for d in damaged]
    title = "Buffered runs" + ("" if rows else ": none")
    columns = ["id", "name", "experiment", "status", "metrics", "why"]
    return Table(title, columns, rows, [str(d) for d in damaged])


def retry_table(config: Config | None = None) -> Table:
    """Log the buffered runs to the store (``%mlops retry``) and say where each went."""
    from jupyter_mlops.tracking.buffer import pending, retry

    done = retry(config=config)
    rows = [[d.pending_id, d.run_id, d.orphan_run_id or ""] for d in done]
    left = pending(config)
    title = f"Logged {len(done)} buffered run(s)"
    if left:
        title += f"; {len(left)} still buffered (for another store)"
    return Table(title, ["buffered as", "run", "replaces half-written run"], rows)


def models_table(config: Config | None = None) -> Table:
    """Registered models, one row per version, with aliases and key metrics."""
    from jupyter_mlops.registry import list_models

    rows, notes = [], []
    for model in list_models(config=config):
        if model.problem:
            notes.append(f"{model.name}: {model.problem}")
        if not model.versions:  # listed all the same: a model is never left out
            rows.append([model.name, "-", ", ".join(sorted(model.aliases)), "", ""])
        for v in model.versions:
            metrics = ", ".join(f"{k}={val:.4g}" for k, val in v["metrics"].items())
            rows.append(
                [
                    model.name,
                    v["version"],
                    ", ".join(v["aliases"]),
                    (v["run_id"] or "")[:12],
                    metrics,
                ]
            )
    title = "Registered models" + ("" if rows else ": none yet (use %register)")
    return Table(title, ["model", "version", "aliases", "run", "metrics"], rows, notes)


def history_table(name: str, config: Config | None = None) -> Table:
    """Who moved which alias of ``name`` to which version, when, and with what gate."""
    from jupyter_mlops.registry import history

    rows: list[list[str]] = []
    skipped: list[str] = []  # damaged entries: left out, one note each
    for e in history(name, config=config, skipped=skipped):
        gate = ""
        if e.gate:
            gate = f"{e.gate.get('expression')}: {'passed' if e.gate.get('passed') else 'failed'}"
        if e.comparison:
            gate = (gate + "; " if gate else "") + e.comparison.get("summary", "")
        rows.append(
            [
                e.time[:19].replace("T", " "),
                e.user,
                e.action,
                e.alias,
                e.previous or "-",
                e.version or "-",
                e.notebook or "",
                gate,
            ]
        )
    return Table(
        f"Alias history of {name}",
        ["time (UTC)", "user", "action", "alias", "from", "to", "notebook", "gate"],
        rows,
        skipped,
    )


def event_text(event: Any) -> Table:
    """One alias change, for display after --promote/--rollback."""
    return Table(
        f"{event.model}@{event.alias}: version {event.previous or '-'} -> {event.version}",
        ["action", "user", "time (UTC)"],
        [[event.action, event.user, event.time[:19].replace("T", " ")]],
    )


def rules_text(stored: Any) -> str:
    """A deployment's stored alert rules (with their actions) and its webhook."""
    lines = [f"{r.expression}{f'  -> {r.action}' if r.action else ''}" for r in stored.rules]
    lines.append(f"webhook: {stored.webhook or 'none'}")
    return "\n".join(lines)


def servers_text() -> str:
    """The tracking servers started from this project, each with its health."""
    from jupyter_mlops._util.urls import redact
    from jupyter_mlops.tracking import server

    known = server.servers()
    if not known:
        return "No tracking server started from this project (`jupyter-mlops server start`)."
    lines = []
    for info, alive in known:
        state = server.probe(info.url) if alive else "process gone"
        lines.append(
            f"{info.url}  pid {info.pid}  {state}  backend {redact(info.backend_store_uri)}"
        )
    return "\n".join(lines)


def performance_text(report: Any) -> Table:
    """A performance report (``monitor performance``): one line per model version, role and
    window, with its coverage, delay, scores, business metrics and estimates; notes below."""
    import math

    frame = report.rows if len(report.rows) > len(report.totals) else report.totals
    fixed = ["model_version", "role", "window_start", "n_predictions", "n_labelled", "coverage",
             "delay_s_median"]  # fmt: skip
    scores = ["accuracy", "f1", "roc_auc", "log_loss"] if report.task == "classification" else [
        "rmse", "mae", "r2"]  # fmt: skip
    extra = [c for c in frame.columns if c not in fixed and c not in ("precision", "recall")]
    shown = [*scores, *(c for c in extra if c not in scores)]

    def cell(value: Any, digits: int = 4) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)

    rows = []
    for rec in frame.to_dict("records"):
        start = rec.get("window_start")
        when = f"{start:%Y-%m-%d %H:%M}" if hasattr(start, "strftime") else "all"
        coverage = rec.get("coverage")
        rows.append(
            [str(rec["model_version"]), str(rec["role"]), when, cell(rec.get("n_predictions")),
             cell(rec.get("n_labelled")),
             "-" if cell(coverage) == "-" else f"{100 * coverage:.1f}%",
             cell(rec.get("delay_s_median"), 3),
             *(cell(rec.get(c), 4 if c in scores else 6) for c in shown)]
        )  # fmt: skip
    columns = ["version", "role", "window (UTC)", "predicted", "labelled", "coverage", "delay_s",
               *shown]  # fmt: skip
    notes = [f"{k}: {v}" for k, v in sorted(report.notes.items())]
    title = f"Performance of {report.deployment} ({report.window}, {report.task})"
    return Table(title, columns, rows, notes)
