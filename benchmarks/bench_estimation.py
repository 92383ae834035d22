"""Estimated performance without labels: ours beside NannyML 0.13's CBPE, same data, one run.

Data (``estimation_scenarios.scenario``): a reference of N labelled rows and an analysis
window of N unlabelled rows under covariate shift, from an over-confident classifier (so
both tools calibrate), binary and 3-class. Both sides get the same arrays: NannyML as the
DataFrames its CBPE takes (built before timing), ours as numpy arrays.

* ours: ``fit_estimator(reference) + estimate(analysis)`` in this process, after a warm-up
  on 2,000 rows (imports done); median of ``--reps``.
* NannyML 0.13.1: ``CBPE(..., chunk_number=1).fit(reference)`` + ``.estimate(analysis)``
  in its own virtual environment (``NANNYML_PYTHON``, else ``build/bench-venvs/nannyml``,
  created on first use: NannyML 0.13 wants pandas < 2.3), after the same warm-up; one run
  (it is the slow side).

Rows: fit + estimate in process CPU seconds and their ratio (target >= 10x at 1,000,000
rows; both sides run single-threaded, and CPU time does not swell with the load of a shared
machine as the wall clock does: wall seconds and their ratio are in the notes), with the
metric set ``accuracy`` (the target) and ``accuracy, f1, roc_auc``; the agreement of the
estimated accuracy (target: within 0.01) and of its band. ``--quick``: 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from estimation_scenarios import save, scenario
from run_all import format_table, machine, reference_python, row, verdict, write_json

ROOT = Path(__file__).resolve().parent.parent
NANNYML_VENV = ROOT / "build" / "bench-venvs" / "nannyml"
NANNYML_PINS = ["nannyml==0.13.1", "statsmodels", "pandas<2.3"]
TARGET_RATIO = 10.0
TARGET_ROWS = 1_000_000  # the speed target is at this size (smaller: INFO)
TOLERANCE = 0.01
SHIFT = 0.5


def nannyml_python() -> tuple[str | None, str]:
    """NannyML's interpreter (its venv created on first use), or None and why not."""
    named = os.environ.get("NANNYML_PYTHON")
    if named and not Path(named).exists():
        return None, f"NANNYML_PYTHON={named} does not exist"
    return reference_python(
        NANNYML_VENV, NANNYML_PINS, "nannyml", "NannyML", Path(named) if named else None
    )


def ours(data: dict[str, Any], metrics: list[str], reps: int) -> dict[str, Any]:
    """Our fit + estimate on the scenario (labels as NannyML gets them), median of reps."""
    sys.path.insert(0, str(ROOT))
    from jupyter_mlops.monitoring.estimation import fit_estimator

    names = data["classes"]
    binary = len(names) == 2
    label = (lambda codes: codes) if binary else (lambda codes: names[codes])
    classes = [0, 1] if binary else list(names)
    ref_y, ref_pred, ana_pred = (
        label(data["ref_y"]),
        label(data["ref_pred"]),
        label(data["ana_pred"]),
    )
    wanted = None if "roc_auc" in metrics else ("accuracy",)

    def work(n: int | None = None) -> tuple[float, float, dict[str, float], Any]:
        cut = slice(None, n)
        started, started_cpu = time.perf_counter(), time.process_time()
        estimator = fit_estimator(
            data["ref_proba"][cut], ref_y[cut], classes, reference_pred=ref_pred[cut]
        )
        result = estimator.estimate(data["ana_proba"][cut], ana_pred[cut], metrics=wanted)
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        return wall, cpu, result, estimator

    work(2000)
    runs = [work() for _ in range(reps)]
    _, _, result, estimator = runs[0]
    return {
        "seconds": statistics.median(r[0] for r in runs),
        "cpu_seconds": statistics.median(r[1] for r in runs),
        **result,
        "calibrated": estimator.calibrated,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1 rep")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.rows
    reps = 1 if args.quick else args.reps
    python, note = nannyml_python()
    rows, results = [], {}
    cases = [
        ("binary", 2, ["accuracy"]),
        ("multiclass", 3, ["accuracy"]),
        ("binary", 2, ["accuracy", "f1", "roc_auc"]),
        ("multiclass", 3, ["accuracy", "f1", "roc_auc"]),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-estimation-") as tmp:
        for kind, classes, metrics in cases:
            data = scenario(n, n, classes=classes, shift=SHIFT, seed=classes)
            key = f"{kind}-{'+'.join(metrics)}"
            mine = ours(data, metrics, reps)
            theirs: dict[str, Any] = {"error": note}
            if python is not None:
                path = save(Path(tmp) / f"{key}.npz", data, metrics)
                proc = subprocess.run(
                    [
                        python,
                        str(Path(__file__).with_name("estimation_scenarios.py")),
                        "--warm-up",
                        str(path),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=3600,
                )
                if proc.returncode == 0:
                    theirs = json.loads(proc.stdout.strip().splitlines()[-1])[key]
                else:
                    theirs = {"error": proc.stderr.strip().splitlines()[-1:]}
            realised = float((data["ana_pred"] == data["ana_y"]).mean())
            results[key] = {"ours": mine, "nannyml": theirs, "realised_accuracy": realised}
            label = f"{kind} {n:,}+{n:,} rows, {', '.join(metrics)}"
            if "error" in theirs:
                rows.append(
                    row(
                        f"{label}: fit + estimate",
                        round(mine["seconds"], 3),
                        None,
                        note=str(theirs["error"]),
                    )
                )
                continue
            nannyml_cpu = theirs["fit_cpu_s"] + theirs["estimate_cpu_s"]
            nannyml_wall = theirs["fit_s"] + theirs["estimate_s"]
            ratio = nannyml_cpu / mine["cpu_seconds"]
            rows.append(
                row(
                    f"{label}: fit + estimate CPU vs NannyML CBPE",
                    round(mine["cpu_seconds"], 3),
                    round(nannyml_cpu, 3),
                    ratio=round(ratio, 1),
                    target=f">= {TARGET_RATIO:g}x" if n >= TARGET_ROWS else "-",
                    verdict=verdict(ratio >= TARGET_RATIO) if n >= TARGET_ROWS else "INFO",
                    note=f"process CPU seconds (both single-threaded; the wall clock of a "
                    f"shared machine varies with its load): NannyML fit "
                    f"{theirs['fit_cpu_s']:.2f} + estimate {theirs['estimate_cpu_s']:.2f}; "
                    f"wall: ours {mine['seconds']:.2f} s, NannyML {nannyml_wall:.2f} s "
                    f"({nannyml_wall / mine['seconds']:.1f}x)",
                )
            )
            gap = abs(mine["estimated_accuracy"] - theirs["accuracy"])
            # The same classes calibrated (NannyML names binary classes 0/1 here, as we do).
            same = list(mine["calibrated"].values()) == list(theirs["calibrated"].values())
            band = max(
                abs(mine["estimated_accuracy_low"] - theirs["accuracy_low"]),
                abs(mine["estimated_accuracy_high"] - theirs["accuracy_high"]),
            )
            rows.append(
                row(
                    f"{label}: |estimated accuracy - NannyML's|",
                    f"{gap:.2g}",
                    None,
                    unit="",
                    target=f"<= {TOLERANCE:g}",
                    verdict=verdict(gap <= TOLERANCE and same),
                    note=f"ours {mine['estimated_accuracy']:.4f}, NannyML "
                    f"{theirs['accuracy']:.4f}, realised {realised:.4f}; band gap {band:.2g}; "
                    f"same calibration decisions: {same}",
                )
            )
    print(format_table(rows))
    print(f"NannyML: {note}")
    if args.json:
        write_json(
            args.json, {"rows": rows, "results": results, "machine": machine(), "nannyml": note}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
