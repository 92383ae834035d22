"""Estimated performance agrees with NannyML's CBPE on the same data (issue #18).

NannyML 0.13 runs in its own virtual environment (it wants pandas < 2.3), as a subprocess:
``NANNYML_PYTHON`` names its interpreter, else ``build/bench-venvs/nannyml`` (which
``.ci/run`` builds in the background, and ``benchmarks/bench_estimation.py`` creates on
first use). Outside CI a missing environment skips this file; in CI (``CI=true``, or
``NANNYML_READY`` set by .ci/run) it fails: the agreement is a promise of the issue, not an
optional extra.

One subprocess scores every scenario: binary and multiclass, with and without covariate
shift, over-confident and calibrated models. Estimated accuracy must agree within 0.01 (it
agrees to float precision: the same calibration decision, the same isotonic map), and so
must the band, the calibration decisions, ROC AUC and the multiclass macro F1. (NannyML's
binary F1 is the F1 of the positive class; ours is the macro F1 that ``predlog.scores``
realises, so binary F1 is not compared.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlops.monitoring.estimation import fit_estimator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimation_scenarios import save, scenario  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "estimation_scenarios.py"
TOLERANCE = 0.01
SCENARIOS: dict[str, dict[str, Any]] = {
    "binary": {"classes": 2},
    "binary_shifted": {"classes": 2, "shift": 1.0},
    "binary_calibrated_model": {"classes": 2, "temper": 1.0, "bias": 0.0},
    "multiclass": {"classes": 3},
    "multiclass_shifted": {"classes": 3, "shift": 1.0},
    "multiclass_calibrated_model": {"classes": 3, "temper": 1.0, "bias": 0.0},
}


def nannyml_python() -> Path | None:
    """NannyML's interpreter: ``NANNYML_PYTHON``, else the one .ci/run builds. When
    ``NANNYML_READY`` is set (.ci/run builds the environment in the background and touches
    that file when done, or ``<venv>.failed``), wait for it, at most ``NANNYML_WAIT_S``."""
    named = os.environ.get("NANNYML_PYTHON")
    python = Path(named) if named else ROOT / "build" / "bench-venvs" / "nannyml" / "bin" / "python"
    ready = os.environ.get("NANNYML_READY")
    if ready:
        failed = Path(ready).parent.with_name(Path(ready).parent.name + ".failed")
        deadline = time.monotonic() + float(os.environ.get("NANNYML_WAIT_S", "900"))
        while not Path(ready).exists() and not failed.exists() and time.monotonic() < deadline:
            time.sleep(1)
        return python if Path(ready).exists() else None
    return python if python.exists() else None


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], ...]]:
    python = nannyml_python()
    if python is None:
        message = (
            "NannyML's virtual environment is missing: set NANNYML_PYTHON or build "
            "build/bench-venvs/nannyml (nannyml==0.13.1 statsmodels 'pandas<2.3'); "
            "in CI see build/nannyml-venv.log"
        )
        if os.environ.get("CI") == "true" or os.environ.get("NANNYML_READY"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("cbpe")
    ours, paths = {}, []
    for name, options in SCENARIOS.items():
        data = scenario(10_000, 10_000, seed=7, **options)
        names = data["classes"]
        estimator = fit_estimator(
            data["ref_proba"],
            names[data["ref_y"]],
            list(names),
            reference_pred=names[data["ref_pred"]],
        )
        result = estimator.estimate(data["ana_proba"], names[data["ana_pred"]])
        ours[name] = {**result, "calibrated": estimator.calibrated}
        paths.append(str(save(folder / f"{name}.npz", data, ["accuracy", "f1", "roc_auc"])))
    proc = subprocess.run(
        [str(python), str(SCRIPT), *paths], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (ours[name], theirs[name]) for name in SCENARIOS}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_estimated_accuracy_agrees_with_nannyml(
    both: dict[str, tuple[dict[str, Any], ...]], name: str
) -> None:
    ours, theirs = both[name]
    assert ours["calibrated"] == theirs["calibrated"]
    assert abs(ours["estimated_accuracy"] - theirs["accuracy"]) <= TOLERANCE
    assert abs(ours["estimated_accuracy_low"] - theirs["accuracy_low"]) <= TOLERANCE
    assert abs(ours["estimated_accuracy_high"] - theirs["accuracy_high"]) <= TOLERANCE
    assert abs(ours["estimated_roc_auc"] - theirs["roc_auc"]) <= TOLERANCE
    if not name.startswith("binary"):
        assert abs(ours["estimated_f1"] - theirs["f1"]) <= TOLERANCE


@pytest.mark.slow
def test_the_scenarios_are_not_trivial(both: dict[str, tuple[dict[str, Any], ...]]) -> None:
    """Covariate shift moves the estimate (of both tools) by more than the tolerance, and
    the over-confident model is recalibrated: agreement is not agreement on a constant."""
    for kind in ("binary", "multiclass"):
        still, shifted = both[kind][1]["accuracy"], both[f"{kind}_shifted"][1]["accuracy"]
        assert still - shifted > 5 * TOLERANCE
        assert all(both[kind][0]["calibrated"].values())
