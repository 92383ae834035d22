"""The verdict, its likely causes in order, and its record on the original run.

Causes come from what the runs recorded (``mlops.risks``: an estimator without a fixed
random state, a file read without a snapshot), from the environment (packages that
differ or could not be had) and from the code put back (another commit, a context rebuilt
from the notebook copy). They are ordered by how likely each explains the differences
found, and each says how to fix it in one line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jupyter_mlops.client import client as project_client
from jupyter_mlops.config import Config
from jupyter_mlops.reproduction.result import (
    DIFFERENT,
    FAILED,
    REPRODUCED,
    TAG_AT,
    TAG_BY,
    TAG_VERDICT,
    Cause,
    Difference,
    EnvironmentReport,
    Reproduction,
)
from jupyter_mlops.reproduction.source import Recorded
from jupyter_mlops.tracking import store

ARTIFACT_DIR = "mlops/reproductions"
_SHOWN_PACKAGES = 5


def verdict_of(differences: Sequence[Difference], failed: bool) -> str:
    if failed:
        return FAILED
    return DIFFERENT if differences else REPRODUCED


def unseeded(
    original: Recorded, new: Recorded | None, predictions: Mapping[str, Any] | None
) -> list[Cause]:
    """Estimators fitted without a fixed random state: the record-time risks of either
    run, else (older runs) a logged ``random_state`` param that is ``None``."""
    risks = original.risks or (new.risks if new is not None else [])
    causes = [
        Cause("unseeded", r["subject"], _unseeded_message(r["subject"]))
        for r in risks
        if r["kind"] == "unseeded"
    ]
    if causes:
        return causes
    params = new.params if new is not None else original.params
    models: Mapping[str, Any] = (predictions or {}).get("models") or {}
    classes = [str(m["class"]) for m in models.values() if m.get("class")]
    for key, value in params.items():
        if key.split(".")[-1] in ("random_state", "seed") and value == "None":
            subject = classes[0] if len(classes) == 1 else key
            causes.append(Cause("unseeded", subject, _unseeded_message(subject)))
    return causes


def _unseeded_message(subject: str) -> str:
    return (
        f"{subject} ran without a fixed random_state, so each run gives another result: "
        f"pass random_state=<int> to {subject} and track the cell again."
    )


def package_causes(environment: EnvironmentReport) -> list[Cause]:
    """The packages of the reproduction's interpreter that differ from the run's."""
    causes: list[Cause] = []
    changes = environment.changes
    if changes:
        shown = ", ".join(str(c) for c in changes[:_SHOWN_PACKAGES])
        more = f" and {len(changes) - _SHOWN_PACKAGES} more" if len(changes) > 5 else ""
        fix = (
            "reproduce with env='fresh' to use the recorded versions"
            if environment.mode == "current"
            else "pin them in the project's requirements"
        )
        subject = changes[0].name if len(changes) == 1 else f"{len(changes)} packages"
        causes.append(
            Cause(
                "package",
                subject,
                f"Package versions differ from the run's ({shown}{more}): {fix}.",
            )
        )
    if environment.unavailable:
        listed = ", ".join(environment.unavailable[:_SHOWN_PACKAGES])
        causes.append(
            Cause(
                "package",
                environment.unavailable[0],
                f"Recorded packages could not be installed ({listed}): the reproduction used "
                "other versions; make them installable (index, wheel) and reproduce again.",
            )
        )
    return causes


def order_causes(
    differences: Sequence[Difference],
    *,
    unseeded: Iterable[Cause] = (),
    packages: Iterable[Cause] = (),
    reads: Iterable[Cause] = (),
    code: Iterable[Cause] = (),
    first: Iterable[Cause] = (),
) -> list[Cause]:
    """The causes, most likely first: ``first`` (data missing, the execution's error),
    then an unseeded estimator (results differ, params the same), packages, unsnapshotted
    reads and code; code comes before the rest when params differ (another cell ran).
    Duplicates are dropped."""
    groups = [list(unseeded), list(packages), list(reads), list(code)]
    if any(d.kind == "param" for d in differences):
        groups = [groups[3], *groups[:3]]
    ordered = [*first, *(c for group in groups for c in group)]
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for cause in ordered:
        key = (cause.kind, cause.subject, cause.message)
        if key not in seen:
            seen.add(key)
            unique.append(cause)
    return unique


def record(reproduction: Reproduction, config: Config) -> None:
    """The verdict on the original run: tags ``mlops.reproduced`` (= verdict),
    ``.by`` (the reproduction's run id, or "") and ``.at`` (ISO UTC), and the whole
    comparison as ``mlops/reproductions/<run id or time>.json``."""
    from mlflow.entities import RunTag

    client = project_client(config)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tags = [
        RunTag(TAG_VERDICT, reproduction.verdict),
        RunTag(TAG_BY, reproduction.run_id or ""),
        RunTag(TAG_AT, now),
    ]
    run_id = reproduction.original_run_id
    store.call(client.log_batch, run_id, tags=tags)
    name = reproduction.run_id or now.replace(":", "")
    text = json.dumps(reproduction.to_dict(), indent=2)
    store.call(client.log_text, run_id, text, f"{ARTIFACT_DIR}/{name}.json")
