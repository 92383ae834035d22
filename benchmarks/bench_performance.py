"""The ``--performance`` view over 1M predictions and 1M outcomes: ours beside scikit-learn.

Data: a deployment's SQLite prediction log (``.mlops/predictions.db`` of a temporary
project) holding N predicted rows of a binary classifier (requests of 100 rows, with their
class probabilities) from two model versions (primary 80%, canary 20%), and N outcomes
recorded for them through ``record_outcomes`` (label, arrival time, an ``order_value``
field), built once before anything is timed.

* ours: ``monitoring.performance(DEP, last=None, business=[...])``: the outcome store read
  (``read_outcomes`` + ``prediction_counts``) and everything scored per model version and
  role, pooled per role, per version and overall (accuracy, F1, precision, recall, ROC AUC,
  log loss, label coverage, delay, one business metric over confusion counts, one over an
  outcome column) - what ``%monitor DEP --performance`` shows.
* reference: scikit-learn on the same labelled rows already in memory (the frame
  ``read_outcomes`` gave): ``accuracy_score``, ``f1_score(average="macro")``,
  ``precision_score``, ``recall_score``, ``roc_auc_score``, ``log_loss`` and
  ``confusion_matrix`` per model version, and once more over all rows (as ours gives
  overall figures too) - the scoring alone, no reading.
* also: ours scoring alone (``score_outcomes`` on the same frame), and the read alone.

Each timing is the median of ``--reps`` after one warm-up run (imports done). Target: the
whole view (read + score) over 1M + 1M in under 2 s. ``--quick``: 100,000 rows, 1 rep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_all import format_table, machine, row, verdict, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_1M_S = 2.0
ROWS_PER_REQUEST = 100
DEP = "bench-dep"
BUSINESS = ["revenue = 12*tp - 3*fp", "basket = mean(order_value)"]


def build(root: Path, n: int) -> Any:
    """A project whose deployment DEP logged ``n`` rows and got ``n`` outcomes."""
    import numpy as np
    import pandas as pd

    from jupyter_mlops import record_outcomes
    from jupyter_mlops._util.layout import deployments_root
    from jupyter_mlops.config import load_config
    from jupyter_mlops.predlog import SQLitePredictionStore

    (root / ".mlops").mkdir(parents=True)
    config = load_config(root)
    deployments_root(config.mlops_dir).joinpath(DEP).mkdir(parents=True)
    store = SQLitePredictionStore(config.mlops_dir / "predictions.db")
    rng = np.random.default_rng(0)
    n_requests = n // ROWS_PER_REQUEST
    t0 = time.time() - 3600.0
    p1 = rng.beta(2, 2, size=n).round(3)
    labels = (p1 > 0.5).astype(int)
    truth = np.where(rng.random(n) < 0.85, labels, 1 - labels)
    canary = rng.random(n_requests) < 0.2
    records = []
    for i in range(n_requests):
        part = slice(i * ROWS_PER_REQUEST, (i + 1) * ROWS_PER_REQUEST)
        records.append(
            {
                "request_id": f"q{i:07d}",
                "ts": t0 + i * 3000.0 / n_requests,
                "deployment": DEP,
                "model_name": "bench",
                "model_version": "2" if canary[i] else "1",
                "run_id": "run",
                "role": "canary" if canary[i] else "primary",
                "endpoint": "predict",
                "n_rows": ROWS_PER_REQUEST,
                "latency_ms": 1.0,
                "inputs": {"x": p1[part].tolist()},
                "outputs": labels[part].tolist(),
                "proba": [{"0": round(1 - p, 3), "1": p} for p in p1[part].tolist()],
            }
        )
        if len(records) == 1000:
            store.write(records)
            records = []
    if records:
        store.write(records)
    store.close()
    ids = np.repeat([f"q{i:07d}" for i in range(n_requests)], ROWS_PER_REQUEST)
    outcomes = pd.DataFrame(
        {
            "request_id": ids,
            "row": np.tile(np.arange(ROWS_PER_REQUEST), n_requests),
            "outcome": truth,
            "arrived": time.time() - rng.uniform(0, 500, n),
            "order_value": rng.uniform(10, 100, n).round(2),
        }
    )
    step = 200_000
    for start in range(0, n, step):
        record_outcomes(DEP, outcomes.iloc[start : start + step], config=config)
    return config


CPU: dict[str, float] = {}  # median CPU seconds of each timing, by its name


def timed(fn: Any, reps: int, name: str = "") -> tuple[float, Any]:
    """Median wall seconds of ``reps`` calls (after a warm-up) and the last result; the
    median CPU seconds go to ``CPU[name]`` (on a busy machine, the closer to an idle one)."""
    fn()  # warm-up: imports, caches
    times, cpu, result = [], [], None
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[name] = statistics.median(cpu)
    return statistics.median(times), result


def sklearn_scores(frame: Any) -> dict[str, Any]:
    from sklearn import metrics

    out = {}
    groups = [("all", frame), *frame.groupby("model_version")]
    for key, part in groups:
        y, p, proba = part["outcome"], part["prediction"], part["proba_1"]
        out[str(key)] = {
            "accuracy": metrics.accuracy_score(y, p),
            "f1": metrics.f1_score(y, p, average="macro"),
            "precision": metrics.precision_score(y, p, average="macro"),
            "recall": metrics.recall_score(y, p, average="macro"),
            "roc_auc": metrics.roc_auc_score(y, proba),
            "log_loss": metrics.log_loss(y, part[["proba_0", "proba_1"]]),
            "confusion": metrics.confusion_matrix(y, p).ravel().tolist(),
        }
    return out


def measure(n: int, reps: int, keep: str | None = None) -> dict[str, Any]:
    from jupyter_mlops import monitoring, predlog
    from jupyter_mlops.config import load_config
    from jupyter_mlops.monitoring import BusinessMetric

    with tempfile.TemporaryDirectory(prefix="bench-performance-") as tmp:
        root = Path(keep) / f"proj-{n}" if keep else Path(tmp) / "proj"
        start = time.perf_counter()
        config = load_config(root) if (root / ".mlops").is_dir() else build(root, n)
        setup = time.perf_counter() - start
        os.chdir(root)

        def view() -> Any:
            return monitoring.performance(DEP, last=None, business=BUSINESS, config=config)

        def read() -> Any:
            frame = predlog.read_outcomes(DEP, config=config)
            predlog.prediction_counts(DEP, config=config)
            return frame

        total, report = timed(view, reps, "view")
        reading, frame = timed(read, reps, "read")
        counts = predlog.prediction_counts(DEP, config=config)
        metrics_ = [BusinessMetric(b) for b in BUSINESS]
        scoring, _ = timed(lambda: monitoring.score_outcomes(frame, counts, business=metrics_),
                           reps, "score")  # fmt: skip
        reference, expected = timed(lambda: sklearn_scores(frame), reps, "sklearn")
        os.chdir(ROOT)
    figures = report.figures()
    agree = all(
        abs(figures[f"{name}{suffix}"] - expected[key][name]) < 1e-9
        for key, suffix in (("all", ""), ("1", "_v1"), ("2", "_v2"))
        for name in ("accuracy", "f1", "roc_auc", "log_loss")
    )
    return {
        "n": n,
        "setup_s": setup,
        "view_s": total,
        "read_s": reading,
        "score_s": scoring,
        "sklearn_s": reference,
        "labelled": int(report.overall["n_labelled"]),
        "cpu_s": dict(CPU),
        "load_average": os.getloadavg()[0],
        "agree": agree,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="100,000 rows only, 1 rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--keep", metavar="DIR", help="build the project under DIR once and reuse it after"
    )
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.rows
    reps = 1 if args.quick else args.reps
    found = measure(n, reps, args.keep)
    label = f"{n:,} predictions + {found['labelled']:,} outcomes"
    ok = found["view_s"] < TARGET_1M_S if n >= 1_000_000 else None
    rows = [
        row(
            f"{label}: --performance view (read + score) vs sklearn (score only)",
            round(found["view_s"], 3),
            round(found["sklearn_s"], 3),
            ratio=round(found["sklearn_s"] / found["view_s"], 2),
            target=f"< {TARGET_1M_S:g} s" if ok is not None else "-",
            verdict=verdict(ok) if ok is not None else "INFO",
            note="reference: scikit-learn metrics on the joined rows already in memory, per "
            "version and overall; same values: "
            + ("yes" if found["agree"] else "NO")
            + f"; CPU {found['cpu_s']['view']:.2f} s vs {found['cpu_s']['sklearn']:.2f} s, "
            f"load average {found['load_average']:.1f}",
        ),
        row(
            f"{label}: scoring only, ours vs sklearn",
            round(found["score_s"], 3),
            round(found["sklearn_s"], 3),
            ratio=round(found["sklearn_s"] / found["score_s"], 2),
            note="ours also gives coverage, delay, per-role figures and 2 business metrics; "
            f"CPU {found['cpu_s']['score']:.2f} s",
        ),
        row(
            f"{label}: reading the outcome store",
            round(found["read_s"], 3),
            None,
            note=f"read_outcomes + prediction_counts, CPU {found['cpu_s']['read']:.2f} s; "
            f"setup {found['setup_s']:.0f} s untimed",
        ),
    ]
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"machine": machine(), "results": found, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
