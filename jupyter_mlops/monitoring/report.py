"""Drift results: per-feature statistics and status, the dataset verdict, and their views.

A :class:`DriftReport` is plain data (``to_dict``/``from_dict`` round-trip through JSON),
shows itself as text and as self-contained HTML (a summary, a table and a small SVG
histogram per feature, so a saved notebook shows it without a kernel), becomes a DataFrame
with :meth:`DriftReport.to_frame`, and can be kept with a model's history in MLflow
(:meth:`DriftReport.log_to_mlflow`).

Decision rules (all thresholds in :class:`DriftThresholds`), following common practice:

* PSI < 0.1 is stable, 0.1-0.25 a moderate shift, >= 0.25 a major shift.
* A KS (numeric) or chi-squared (categorical) p-value below 0.05 is a significant
  difference. With large samples tiny, harmless differences are significant too, so
  significance alone makes a *warning*; a feature *drifts* when its PSI is >= 0.25, or
  when the test is significant and the shift is material: PSI >= 0.1, or a Wasserstein
  distance of at least 0.1 reference standard deviations.
* Features with fewer than 30 values on a side are ``insufficient``: their statistics are
  shown but they do not vote. A change of more than 10 points in the share of missing
  values makes at least a warning.
* The dataset drifts when at least half of the features that could be computed drift
  (``share``, as Evidently's default). Features that could not be computed are listed with
  the reason and never count as "no drift": with none computed the verdict is "unknown".
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.records import attributes
from jupyter_mlops.monitoring.feature import FeatureDrift, json_safe
from jupyter_mlops.monitoring.stats import registry
from jupyter_mlops.monitoring.verdict import (
    DRIFT,
    INSUFFICIENT,
    NOT_COMPUTED,
    OK,
    STATUS_ORDER,
    WARNING,
    DriftThresholds,
)

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

STATUS_COLOURS = {
    DRIFT: "#cf222e",
    WARNING: "#bf8700",
    OK: "#1a7f37",
    INSUFFICIENT: "#8c959f",
    NOT_COMPUTED: "#8c959f",
}
REF_COLOUR, CUR_COLOUR = "#4c78a8", "#f58518"


def verdict_colour(dataset_drift: bool | None) -> str:
    """The colour of a dataset verdict: drift red, none green, unknown grey."""
    if dataset_drift is None:
        return STATUS_COLOURS[NOT_COMPUTED]
    return STATUS_COLOURS[DRIFT] if dataset_drift else STATUS_COLOURS[OK]


@dataclass
class DriftReport:
    """Per-feature drift of ``current`` against ``reference``, and the dataset verdict."""

    features: list[FeatureDrift]
    prediction: FeatureDrift | None = None
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    reference: dict[str, Any] = field(default_factory=dict)  # what the reference was
    current: dict[str, Any] = field(default_factory=dict)  # what the current data was
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: _now())
    elapsed_s: float | None = None

    def __post_init__(self) -> None:
        self.features.sort(key=lambda f: (STATUS_ORDER.get(f.status, 9), -f.score, f.name))

    # -- the verdict ------------------------------------------------------------------
    @property
    def computed(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.computed]

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted features, most drifted first."""
        return [f.name for f in self.features if f.status == DRIFT]

    @property
    def n_drifted(self) -> int:
        return len(self.drifted)

    @property
    def drift_share(self) -> float | None:
        """Drifted features / computed features (None when none could be computed)."""
        computed = self.computed
        return self.n_drifted / len(computed) if computed else None

    @property
    def dataset_drift(self) -> bool | None:
        """True when ``drift_share >= thresholds.share``; None when it is unknown."""
        share = self.drift_share
        return None if share is None else share >= self.thresholds.share

    @property
    def verdict(self) -> str:
        """One sentence: the dataset verdict and what it rests on."""
        computed, share = self.computed, self.drift_share
        skipped = [f for f in self.features if not f.computed]
        if share is None:
            why = skipped[0].reason if skipped else "no features"
            return f"Drift unknown: no feature could be computed ({why})."
        word = "DRIFT" if self.dataset_drift else "No dataset drift"
        text = (
            f"{word}: {self.n_drifted} of {len(computed)} features drifted "
            f"({share:.0%}; threshold {self.thresholds.share:.0%})"
        )
        if skipped:
            text += f"; {len(skipped)} not counted ({', '.join(f.name for f in skipped[:5])})"
        if self.prediction is not None and self.prediction.status in (DRIFT, WARNING):
            text += f"; prediction: {self.prediction.status}"
        return text + "."

    def feature(self, name: str) -> FeatureDrift:
        for item in [*self.features, *([self.prediction] if self.prediction else [])]:
            if item.name == name:
                return item
        raise KeyError(f"No feature {name!r} in this report")

    def figures(self) -> dict[str, float]:
        """The report's numbers for alert rules: drift_share, n_drifted, prediction_psi..."""
        out: dict[str, float] = {
            "n_drifted": float(self.n_drifted),
            "n_features": float(len(self.computed)),
        }
        if self.drift_share is not None:
            out["drift_share"] = float(self.drift_share)
            out["dataset_drift"] = float(bool(self.dataset_drift))
        pred = self.prediction
        if pred is not None and pred.computed and pred.psi is not None:
            out["prediction_psi"] = float(pred.psi)
            out["prediction_drift"] = float(pred.status == DRIFT)
        return out

    # -- data -------------------------------------------------------------------------
    def rows(self) -> list[FeatureDrift]:
        return [*self.features, *([self.prediction] if self.prediction else [])]

    def to_frame(self) -> pd.DataFrame:
        """One row per feature (and the prediction), most drifted first."""
        import pandas as pd

        stats = registry.table_fields()
        own = ["kind", "status", "reason", "n_ref", "n_cur", "missing_ref", "missing_cur"]
        own += ["infinite_ref", "infinite_cur", "exact"]
        columns = ["feature", "role", *own[:3], *stats, *own[3:]]
        records = []
        for item in self.rows():
            rec = {k: getattr(item, k) for k in own} | {k: item.stats.get(k) for k in stats}
            rec["feature"] = item.name
            rec["role"] = "prediction" if item is self.prediction else "feature"
            records.append(rec)
        return pd.DataFrame.from_records(records, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: everything, verdict included (read back with :meth:`from_dict`)."""
        return {
            **attributes(self, "verdict", "dataset_drift", "drift_share", "n_drifted"),
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "thresholds": asdict(self.thresholds),
            "reference": json_safe(self.reference),
            "current": json_safe(self.current),
            **attributes(self, "notes", "created", "elapsed_s"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        prediction = data.get("prediction")
        return cls(
            features=[FeatureDrift.from_dict(f) for f in data.get("features", [])],
            prediction=FeatureDrift.from_dict(prediction) if prediction else None,
            thresholds=DriftThresholds(**data.get("thresholds", {})),
            reference=dict(data.get("reference") or {}),
            current=dict(data.get("current") or {}),
            notes=list(data.get("notes") or []),
            created=str(data.get("created") or ""),
            elapsed_s=data.get("elapsed_s"),
        )

    # -- views ------------------------------------------------------------------------
    def __str__(self) -> str:
        lines = [f"Drift report: {self.verdict}"]
        if self.reference.get("description"):
            lines.append(f"  reference: {self.reference['description']}")
        if self.current.get("description"):
            lines.append(f"  current:   {self.current['description']}")
        header = f"  {'feature':<24} {'status':<13} {'PSI':>7} {'test p':>9} {'W/sd':>7}  why"
        lines.append(header)
        for item in self.rows():
            name = item.name if item is not self.prediction else f"{item.name} (prediction)"
            lines.append(
                f"  {_trim(name, 24):<24} {item.status:<13} {_num(item.psi):>7} "
                f"{_num(item.pvalue, '.2g'):>9} {_num(item.wasserstein_norm):>7}  "
                f"{item.reason or ''}"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<DriftReport {self.verdict}>"

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self, *, histograms: bool = True, header: bool = True) -> str:
        """Self-contained HTML: verdict, sources, and a table with an SVG histogram per row
        (``header=False``: the table alone)."""
        colour = verdict_colour(self.dataset_drift)
        parts = ["<div class='mlops-drift-report' style='font-size:12px'>"]
        if header:
            parts.append(
                f"<div style='font-size:14px;font-weight:600;color:{colour}'>"
                f"{escape(self.verdict)}</div>"
            )
            for label, info in (("reference", self.reference), ("current", self.current)):
                if info.get("description"):
                    parts.append(f"<div><b>{label}</b>: {escape(str(info['description']))}</div>")
        parts.append(
            "<table><thead><tr><th>feature</th><th>status</th>"
            + ("<th>distribution</th>" if histograms else "")
            + "<th>PSI</th><th>test</th><th>p-value</th><th>W / sd</th><th>n ref / cur</th>"
            "<th>why</th></tr></thead><tbody>"
        )
        for item in self.rows():
            name = escape(item.name) + (" <i>(prediction)</i>" if item is self.prediction else "")
            test = item.test
            label = test.short_label if test else ""
            stat = item.stats.get(test.statistic_field) if test and test.statistic_field else None
            badge = (
                f"<span style='color:#fff;background:{STATUS_COLOURS.get(item.status, '#888')};"
                f"padding:1px 6px;border-radius:8px'>{escape(item.status)}</span>"
            )
            parts.append(
                f"<tr><td>{name}</td><td>{badge}</td>"
                + (f"<td>{histogram_svg(item)}</td>" if histograms else "")
                + f"<td>{_num(item.psi)}</td><td>{label} {_num(stat)}</td>"
                f"<td>{_num(item.pvalue, '.2g')}</td><td>{_num(item.wasserstein_norm)}</td>"
                f"<td>{item.n_ref:,} / {item.n_cur:,}</td>"
                f"<td>{escape(item.reason or '')}{_notes_html(item)}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.extend(f"<div style='color:#666'>{escape(n)}</div>" for n in self.notes)
        parts.append("</div>")
        return "".join(parts)

    # -- MLflow -----------------------------------------------------------------------
    def log_to_mlflow(
        self,
        run_id: str | None = None,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        config: Config | None = None,
    ) -> str:
        """Keep this report in MLflow; returns the run id.

        Into ``run_id`` if given, else a new run of ``experiment`` (default
        ``monitoring-<deployment>``, or ``monitoring``). Artifacts ``drift/report.json``,
        ``drift/report.html`` and ``drift/features.csv``; metrics ``drift_share``,
        ``n_drifted`` and ``drift_psi.<feature>``; tags naming the deployment, model
        version and reference data, so the report sits beside the model's history.
        """
        from jupyter_mlops.client import client as project_client
        from jupyter_mlops.config import load_config
        from jupyter_mlops.tracking import store

        config = config or load_config()
        client = project_client(config)
        deployment = self.current.get("deployment")
        created = run_id is None
        if run_id is None:
            name = experiment or (f"monitoring-{deployment}" if deployment else "monitoring")
            exp_id = store.ensure_experiment(name, config)
            run = store.call(
                client.create_run,
                exp_id,
                run_name=run_name or f"drift {self.created}",
                tags={"mlops.kind": "drift-report"},
            )
            run_id = run.info.run_id
        try:
            metrics = {k: v for k, v in self.figures().items() if math.isfinite(v)}
            for item in self.rows():
                if item.psi is not None and math.isfinite(item.psi):
                    metrics[f"drift_psi.{_metric_name(item.name)}"] = float(item.psi)
            now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
            from mlflow.entities import Metric, RunTag

            run_tags = {
                "mlops.drift.verdict": self.verdict[:4900],
                **{f"mlops.drift.{k}": str(v) for k, v in self._lineage_tags().items()},
                **dict(tags or {}),
            }
            store.call(
                client.log_batch,
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, v) for k, v in run_tags.items()],
            )
            store.call(
                client.log_text, run_id, json.dumps(self.to_dict(), indent=2), "drift/report.json"
            )
            page = f"<html><meta charset='utf-8'><body>{self.to_html()}</body></html>"
            store.call(client.log_text, run_id, page, "drift/report.html")
            store.call(
                client.log_text, run_id, self.to_frame().to_csv(index=False), "drift/features.csv"
            )
        except BaseException:
            if created:
                store.call(client.set_terminated, run_id, "FAILED")
            raise
        if created:
            store.call(client.set_terminated, run_id, "FINISHED")
        return run_id

    def _lineage_tags(self) -> dict[str, Any]:
        out = {}
        for key in ("deployment", "model", "model_version", "window"):
            if self.current.get(key) is not None:
                out[key] = self.current[key]
        for key in ("md5", "path", "run_id"):
            if self.reference.get(key) is not None:
                out[f"reference.{key}"] = self.reference[key]
        return out


# -- helpers ------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _num(value: float | None, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _trim(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)[:200]


def _notes_html(item: FeatureDrift) -> str:
    if not item.notes:
        return ""
    return "".join(f"<div style='color:#666'>{escape(n)}</div>" for n in item.notes)


def histogram_svg(item: FeatureDrift, width: int = 160, height: int = 36) -> str:
    """Reference (blue) and current (orange) shares as a tiny inline SVG, or ''."""
    plot = item.plot or {}
    ref, cur = plot.get("ref") or [], plot.get("cur") or []
    if not ref or len(ref) != len(cur):
        return ""
    peak = max(max(ref), max(cur)) or 1.0
    step = width / len(ref)
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = i * step
        for share, colour, offset in ((r, REF_COLOUR, 0.0), (c, CUR_COLOUR, step / 2)):
            h = share / peak * (height - 2)
            if h > 0:
                bars.append(
                    f"<rect x='{x + offset:.1f}' y='{height - h:.1f}' "
                    f"width='{max(step / 2, 0.5):.1f}' height='{h:.1f}' fill='{colour}' "
                    "fill-opacity='0.8'/>"
                )
    title = escape(f"{item.name}: reference (blue) vs current (orange)")
    return (
        f"<svg width='{width}' height='{height}' role='img' aria-label='{title}'>"
        f"<title>{title}</title>{''.join(bars)}</svg>"
    )
