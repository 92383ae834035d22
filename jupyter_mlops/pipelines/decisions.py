"""Retraining decisions on disk: one JSON record per check, including "not triggered".

Each check of the retraining loop writes ``<project>/.mlops/pipelines/retrain/<id>.json``
saying why it ran, what ran, what was compared and what changed, so the history of a
model's champions can be read without MLflow (``%pipeline history``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyter_mlops._util.reprs import shown_as_text
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.pipelines.records import new_run_id, runs_root

RETRAIN_DIR = "retrain"


@shown_as_text
@dataclass
class RetrainDecision:
    """One check of the retraining loop: why, what ran, what was compared, what changed."""

    decision_id: str
    time: str
    model: str
    pipeline: str
    when: str | None
    deployment: str | None
    forced: bool
    figures: dict[str, float] = field(default_factory=dict)
    condition: dict[str, Any] | None = None
    triggered: bool = False
    # not-triggered | pipeline-failed | no-model | kept-champion | promoted | canary
    # | lost-race | error
    action: str = "error"
    reason: str = ""
    pipeline_run: str | None = None
    pipeline_status: str | None = None
    source_run: str | None = None  # the MLflow run whose model was offered
    metric: str | None = None
    candidate: float | None = None
    incumbent: float | None = None
    incumbent_version: str | None = None
    same_holdout: bool = False
    version: str | None = None
    promoted: bool = False
    canary: dict[str, Any] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, **fields: Any) -> RetrainDecision:
        """A decision stamped now, with a new sortable id."""
        return cls(
            decision_id=new_run_id(),
            time=datetime.now(UTC).isoformat(timespec="seconds"),
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, config: Config) -> Path:
        folder = runs_root(config) / RETRAIN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.decision_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        tmp.replace(path)
        return path

    def __str__(self) -> str:
        lines = [f"Retrain {self.model} [{self.decision_id}]: {self.action}"]
        if self.reason:
            lines.append(f"  why: {self.reason}")
        if self.figures:
            figs = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.figures.items()))
            lines.append(f"  figures: {figs}")
        if self.pipeline_run:
            lines.append(f"  pipeline run: {self.pipeline_run} ({self.pipeline_status})")
        if self.metric and self.candidate is not None:
            vs = (
                f" vs champion {self.incumbent:.6g}"
                + (f" (version {self.incumbent_version})" if self.incumbent_version else "")
                if self.incumbent is not None
                else " (no champion yet)"
            )
            where = ", same holdout" if self.same_holdout else ""
            lines.append(f"  {self.metric}: challenger {self.candidate:.6g}{vs}{where}")
        if self.version:
            lines.append(f"  registered {self.model} version {self.version}")
        if self.canary:
            lines.append(f"  canary: {self.canary}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def list_decisions(
    *, config: Config | None = None, model: str | None = None, limit: int | None = None
) -> list[RetrainDecision]:
    """Recorded retraining decisions, newest first (of one model, if named)."""
    config = config or load_config()
    folder = runs_root(config) / RETRAIN_DIR
    out: list[RetrainDecision] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            decision = RetrainDecision(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if model is None or decision.model == model:
            out.append(decision)
        if limit is not None and len(out) >= limit:
            break
    return out
