"""What the pipelines did: runs and retraining decisions, newest first (``%pipeline history``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from jupyter_mlops import values
from jupyter_mlops._util.damage import Damaged
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.pipelines.decisions import RetrainDecision, list_decisions
from jupyter_mlops.pipelines.records import PipelineRun, list_pipeline_runs


@dataclass
class History:
    """Pipeline runs and retraining decisions, merged by time (newest first)."""

    runs: list[PipelineRun] = field(default_factory=list)
    decisions: list[RetrainDecision] = field(default_factory=list)
    limit: int = 20
    damaged: list[Damaged] = field(default_factory=list)  # records that cannot be read

    def rows(self) -> list[dict[str, Any]]:
        """One dict per entry: when, what, id, status and a one-line summary. A damaged
        record is a ``corrupt`` row (when its file last changed; its path and the fix)."""
        rows: list[dict[str, Any]] = [
            {
                "time": d.mtime,
                "kind": "record",
                "id": d.path.parent.name,
                "pipeline": None,
                "status": "corrupt",
                "summary": str(d),
            }
            for d in self.damaged
        ]
        for run in self.runs:
            steps = ", ".join(f"{s.name}:{s.status}" for s in run.steps.values())
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:3])
            what = "sweep run" if run.sweep else "run"
            rows.append(
                {
                    "time": run.started,
                    "kind": what,
                    "id": run.run_id,
                    "pipeline": run.pipeline,
                    "status": run.status,
                    "summary": "; ".join(x for x in (steps, metrics) if x),
                }
            )
        for d in self.decisions:
            stamp = datetime.fromisoformat(d.time).timestamp()
            rows.append(
                {
                    "time": stamp,
                    "kind": "retrain",
                    "id": d.decision_id,
                    "pipeline": d.pipeline,
                    "status": d.action,
                    "summary": f"{d.model}: {d.reason}",
                }
            )
        rows.sort(key=lambda r: r["time"], reverse=True)
        return rows[: self.limit]

    def __str__(self) -> str:
        rows = self.rows()
        if not rows:
            return "No pipeline runs or retraining decisions yet."
        lines = []
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
            lines.append(f"{when}  {r['kind']:<9} {r['id']}  {r['status']:<14} {r['summary']}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = self.rows()
        if not rows:
            return "<p>No pipeline runs or retraining decisions yet.</p>"
        head = "".join(f"<th>{h}</th>" for h in ("time", "kind", "id", "status", "summary"))
        body = "".join(
            "<tr>"
            + f"<td>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['time']))}</td>"
            + "".join(f"<td>{escape(str(r[k]))}</td>" for k in ("kind", "id", "status", "summary"))
            + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def history(
    *,
    pipeline: str | None = None,
    model: str | None = None,
    limit: int = 20,
    config: Config | None = None,
) -> History:
    """Recent pipeline runs (of ``pipeline``) and retraining decisions (of ``model``)."""
    limit = values.history_limit(limit)
    config = config or load_config()
    damaged: list[Damaged] = []
    runs = (
        []
        if model
        else list_pipeline_runs(config=config, pipeline=pipeline, limit=limit, damaged=damaged)
    )
    decisions = list_decisions(config=config, model=model, limit=limit)
    if pipeline:
        decisions = [d for d in decisions if pipeline in d.pipeline]
    return History(runs, decisions, limit, damaged)
