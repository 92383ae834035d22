"""The run card: what ``%%track`` shows under a cell, as HTML with a plain-text fallback.

Rich display works through ``_repr_html_``/``__str__`` so this module needs no IPython.
Every value is escaped: run names, params and paths are user text.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from jupyter_mlops._util.urls import redact, redact_text

if TYPE_CHECKING:
    from jupyter_mlops.tracking.run import TrackedRun

MAX_PARAMS_SHOWN = 12
# What ``%reproduce`` records on a run (``reproduce.result``, a layer above this one).
_TAG_VERDICT, _TAG_BY, _TAG_AT = "mlops.reproduced", "mlops.reproduced.by", "mlops.reproduced.at"
_STATUS_COLOURS = {
    "FINISHED": "#2e7d32",
    "FAILED": "#c62828",
    "KILLED": "#ef6c00",
    "BUFFERED": "#ef6c00",
}


def _fmt_metric(value: float) -> str:
    return f"{value:.6g}"


def _fmt_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _reproduction_rows(tags: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``reproduced: VERDICT by RUN at TIME`` for a run ``%reproduce`` checked, and
    ``reproduces: run ID`` for a reproduction."""
    from jupyter_mlops.tracking.lifecycle import TAG_REPRODUCES

    rows: list[tuple[str, list[str]]] = []
    if tags.get(_TAG_VERDICT):
        by = f" by {tags[_TAG_BY]}" if tags.get(_TAG_BY) else ""
        at = f" at {tags[_TAG_AT]}" if tags.get(_TAG_AT) else ""
        rows.append(("reproduced", [f"{tags[_TAG_VERDICT]}{by}{at}"]))
    if tags.get(TAG_REPRODUCES):
        rows.append(("reproduces", [f"run {tags[TAG_REPRODUCES]}"]))
    return rows


class RunCard:
    """A read-only view of a tracked run for display."""

    def __init__(self, run: TrackedRun) -> None:
        self.run = run

    def _rows(self) -> list[tuple[str, list[str]]]:
        run = self.run
        rows: list[tuple[str, list[str]]] = []
        # Insertion order puts the cell's own params before the models' hyperparameters.
        params = [f"{k}={v}" for k, v in run.params.items()]
        if len(params) > MAX_PARAMS_SHOWN:
            hidden = len(params) - MAX_PARAMS_SHOWN
            params = [*params[:MAX_PARAMS_SHOWN], f"... {hidden} more in MLflow"]
        rows.append(("params", params))
        rows.append(("metrics", [f"{k}={_fmt_metric(v)}" for k, v in sorted(run.metrics.items())]))
        models = []
        for rec in run.models.values():
            if not rec.ok:
                models.append(f"{rec.name}: NOT LOGGED ({rec.error})")
            else:
                by = " (logged by the cell's own MLflow code)" if rec.by_user else ""
                models.append(f"{rec.name}: {rec.model_uri}{by}")
        rows.append(("models", models))
        # Fitted objects that are not the cell's models (a scaler, a pipeline's own step)
        rows.append(("skipped", [f"{name}: {why}" for name, why in run.skipped.items()]))
        rows.append(
            (
                "data",
                [
                    f"{s.path} md5={s.md5} {_fmt_size(s.size)}"
                    + (f" ({s.nfiles} files)" if s.is_dir else "")
                    for s in run.data
                ]
                + [
                    f"{d.name}: shape={'x'.join(map(str, d.shape))} sha256={d.content_hash[:12]}"
                    for d in run.datasets
                ],
            )
        )
        source = []
        if run.notebook:
            source.append(f"notebook {run.notebook}")
        if run.git_commit:
            source.append(f"git {run.git_commit[:10]}{' (dirty)' if run.git_dirty else ''}")
        rows.append(("source", source))
        rows += _reproduction_rows(run.tags)
        if run.notes:  # error texts: they may quote the store's URL or a token
            rows.append(("notes", [redact_text(note) for note in run.notes]))
        return rows

    def _title(self) -> str:
        run = self.run
        duration = f" in {run.duration:.2f}s" if run.duration is not None else ""
        return (
            f"Run {run.run_name} ({run.run_id}) in experiment {run.experiment_name}: "
            f"{run.status}{duration}"
        )

    def __str__(self) -> str:
        lines = [self._title()]
        for label, items in self._rows():
            if items:  # notes are sentences: one a line
                glue = "\n    " if label == "notes" and len(items) > 1 else ", "
                lines.append(f"  {label}: " + glue.join(items))
        lines.append(f"  store: {redact(self.run.config.tracking_uri)}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        run = self.run
        colour = _STATUS_COLOURS.get(run.status, "#555")
        duration = f" &middot; {run.duration:.2f}s" if run.duration is not None else ""
        head = (
            f'<div class="jp-mlops-run-card" style="border-left:4px solid {colour};'
            f'padding:4px 8px;font-size:12px">'
            f"<b>{escape(run.run_name)}</b> "
            f'<code title="run id">{escape(run.run_id)}</code> in '
            f"<b>{escape(run.experiment_name)}</b> &middot; "
            f'<span style="color:{colour}">{escape(run.status)}</span>{duration}'
        )
        body = []
        for label, items in self._rows():
            if not items:
                continue
            cells = "<br>".join(escape(item) for item in items)
            body.append(
                f'<tr><th style="text-align:left;vertical-align:top;padding-right:8px">'
                f"{escape(label)}</th><td style='text-align:left'>{cells}</td></tr>"
            )
        table = f"<table>{''.join(body)}</table>" if body else ""
        foot = f"<div style='color:#777'>store: {escape(redact(run.config.tracking_uri))}</div>"
        return f"{head}{table}{foot}</div>"
