"""Outcome ingestion and the reads of the performance view, on the default SQLite store.

A temporary project whose deployment ``dep`` has logged N single-row predictions of a
3-class model (with probabilities, half primary v1, half canary v2) in
``.mlops/predictions.db``. Then:

* ingestion: ``record_outcomes`` of one outcome per prediction (plus one business field) in
  batches of ``--batch`` rows (a DataFrame each), every prediction looked up, type-checked,
  stored and readable when the call returns; outcomes/s over all batches, and the slowest
  batch (the time from sending an outcome to ``read_outcomes`` seeing it, "joined").
  Reference: the same rows inserted by one bare ``executemany`` into a table of the same
  shape (what SQLite alone takes: the floor under any ingestion).
* reading: ``read_outcomes`` + ``prediction_counts`` over all N predictions and N outcomes
  (what ``%monitor --performance`` reads before it scores), median of ``--reps``; reference:
  ``pandas.read_sql`` of the ``outcomes`` table (one row per outcome, JSON decoded per row),
  the obvious way to read it.

Targets (issue #18): >= 20,000 outcomes/s joined within 1 s; both reads over 1M + 1M well
under 2 s (the view's whole budget, scoring included): here <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_all import REPO, format_table, machine, median, row, verdict, write_json

sys.path.insert(0, str(REPO))

TARGET_RATE = 20_000.0  # outcomes/s, at least
TARGET_JOINED_S = 1.0  # slowest batch, at most
TARGET_READ_S = 1.0  # read_outcomes + prediction_counts over 1M + 1M, at most
T0 = 1_700_000_000.0


def _log_predictions(db: Path, n: int) -> None:
    """N single-row prediction records straight into the store (as the ingester writes)."""
    import numpy as np

    from jupyter_mlops.predlog import SQLitePredictionStore

    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1.0, 1.0, 1.0], n)
    labels = proba.argmax(axis=1).tolist()
    rows = proba.round(4).tolist()
    store = SQLitePredictionStore(db)
    for start in range(0, n, 50_000):
        store.write(
            [
                {
                    "request_id": f"{i:032x}",
                    "ts": T0 + i * 0.01,
                    "deployment": "dep",
                    "model_name": "m",
                    "model_version": "1" if i % 2 else "2",
                    "run_id": "r" * 32,
                    "role": "primary" if i % 2 else "canary",
                    "endpoint": "predict",
                    "n_rows": 1,
                    "latency_ms": 1.0,
                    "inputs": {"x": [float(i)]},
                    "outputs": [labels[i]],
                    "proba": [dict(zip(("0", "1", "2"), rows[i], strict=True))],
                }
                for i in range(start, min(n, start + 50_000))
            ]
        )
    store.close()


def _outcomes(n: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "request_id": [f"{i:032x}" for i in range(n)],
            "outcome": rng.integers(0, 3, n),
            "arrived": T0 + np.arange(n) * 0.01 + 3600.0,
            "order_value": rng.gamma(2.0, 20.0, n).round(2),
        }
    )


def _ingest(config: Any, frame: Any, batch: int) -> dict[str, float]:
    from jupyter_mlops import record_outcomes

    batches = []
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(frame), batch):
        t = time.perf_counter()
        receipt = record_outcomes("dep", frame.iloc[start : start + batch], config=config)
        batches.append(time.perf_counter() - t)
        assert receipt.accepted == min(batch, len(frame) - start), receipt.rejected[:3]
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "rate": len(frame) / total,
        "cpu_rate": len(frame) / cpu,
        "slowest_batch_s": max(batches),
        "seconds": total,
    }


def _bare_insert(db: Path, frame: Any) -> float:
    """The reference: the same rows by one executemany into a table of the same shape."""
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "CREATE TABLE bare (request_id TEXT NOT NULL, row INTEGER NOT NULL, deployment TEXT,"
        " arrived REAL, outcome TEXT, ts REAL, model_name TEXT, model_version TEXT, run_id TEXT,"
        " role TEXT, prediction TEXT, proba TEXT, extra TEXT, PRIMARY KEY (request_id, row))"
    )
    values = [
        (r, 0, "dep", a, str(o), T0, "m", "1", "r" * 32, "primary", "0",
         '{"0":0.2,"1":0.3,"2":0.5}', f'{{"order_value":{v}}}')
        for r, o, a, v in zip(
            frame.request_id, frame.outcome, frame.arrived, frame.order_value, strict=True
        )
    ]  # fmt: skip
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO bare VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE bare")
    conn.close()
    return len(frame) / seconds


def _read(config: Any, n: int, reps: int) -> dict[str, float]:
    from jupyter_mlops import prediction_counts, read_outcomes

    times, outcome_times, count_times, cpus = [], [], [], []
    for _ in range(reps):
        started, cpu = time.perf_counter(), time.process_time()
        frame = read_outcomes("dep", config=config)
        middle = time.perf_counter()
        counts = prediction_counts("dep", config=config)
        done = time.perf_counter()
        cpus.append(time.process_time() - cpu)
        assert len(frame) == n and int(counts.n_predictions.sum()) == n
        times.append(done - started)
        outcome_times.append(middle - started)
        count_times.append(done - middle)
    bucketed = []
    for _ in range(reps):
        started = time.perf_counter()
        prediction_counts("dep", bucket_s=600, config=config)
        bucketed.append(time.perf_counter() - started)
    return {
        "bucketed_counts_s": median(bucketed),
        "seconds": median(times),
        "cpu_seconds": median(cpus),
        "read_outcomes_s": median(outcome_times),
        "prediction_counts_s": median(count_times),
    }


def _naive_read(db: Path) -> float:
    import json
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    conn = sqlite3.connect(db)
    frame = pd.read_sql("SELECT * FROM outcomes WHERE deployment = 'dep'", conn)
    for column in ("outcome", "prediction", "proba", "extra"):
        frame[column] = [json.loads(v) if v else None for v in frame[column]]
    conn.close()
    return time.perf_counter() - started


def run(n: int, batch: int, reps: int) -> dict[str, Any]:
    from jupyter_mlops.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-outcomes-"))
    try:
        (tmp / ".mlops" / "deployments" / "dep").mkdir(parents=True)
        config = load_config(tmp)
        db = tmp / ".mlops" / "predictions.db"
        _log_predictions(db, n)
        frame = _outcomes(n)
        bare = _bare_insert(db, frame.iloc[: min(n, 100_000)])
        ingest = _ingest(config, frame, batch)
        read = _read(config, n, reps)
        naive = _naive_read(db) if n <= 1_000_000 else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"n": n, "batch": batch, "ingest": ingest, "bare_rate": bare, "read": read,
            "naive_read_s": naive}  # fmt: skip


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    n, ingest, read = results["n"], results["ingest"], results["read"]
    naive = results["naive_read_s"]
    label = f"{n:,} + {n:,}"
    return [
        row(
            f"ingestion, batches of {results['batch']:,} (outcomes/s)",
            round(ingest["rate"]),
            round(results["bare_rate"]),
            unit="outcomes/s",
            ratio=round(ingest["rate"] / results["bare_rate"], 2),
            target=f">= {TARGET_RATE:,.0f}/s",
            verdict=verdict(ingest["rate"] >= TARGET_RATE),
            note="reference: one bare executemany of the same rows",
        ),
        row(
            "ingestion per CPU second of this process (outcomes/s)",
            round(ingest["cpu_rate"]),
            None,
            unit="outcomes/s",
            note="what an idle machine gives: other processes' load left out",
        ),
        row(
            "slowest batch: sent to readable (joined)",
            round(ingest["slowest_batch_s"], 3),
            None,
            target=f"<= {TARGET_JOINED_S:g} s",
            verdict=verdict(ingest["slowest_batch_s"] <= TARGET_JOINED_S),
        ),
        row(
            f"read_outcomes + prediction_counts, {label}",
            round(read["seconds"], 3),
            round(naive, 3) if naive is not None else None,
            ratio=round(naive / read["seconds"], 1) if naive is not None else None,
            target=f"<= {TARGET_READ_S:g} s" if n >= 1_000_000 else "-",
            verdict=verdict(read["seconds"] <= TARGET_READ_S) if n >= 1_000_000 else "INFO",
            note="reference: pandas.read_sql of the outcomes table + json.loads per cell",
        ),
        row("  the same in CPU seconds of this process", round(read["cpu_seconds"], 3), None),
        row(f"  of which read_outcomes, {label}", round(read["read_outcomes_s"], 3), None),
        row(f"  of which prediction_counts, {n:,}", round(read["prediction_counts_s"], 3), None),
        row(f"prediction_counts per 10 min, {n:,}", round(read["bucketed_counts_s"], 3), None),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="100,000 predictions, 1 rep")
    parser.add_argument("--n", type=int, default=1_000_000, help="predictions (= outcomes)")
    parser.add_argument("--batch", type=int, default=10_000, help="outcomes per call")
    parser.add_argument("--reps", type=int, default=3, help="reads (median reported)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    n, reps = (100_000, 1) if args.quick else (args.n, args.reps)
    results = run(n, args.batch, reps)
    rows = table_rows(results)
    print(format_table(rows))
    print(
        f"{results['ingest']['seconds']:.1f} s for {n:,} outcomes: lookup of each "
        "prediction, type check, rows + column blocks in one transaction per batch; reads: "
        "median, one frame row per outcome with proba_<class>"
    )
    if args.json:
        write_json(args.json, {"benchmark": "outcomes", "machine": machine(), "rows": rows,
                               **results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
