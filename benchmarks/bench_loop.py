"""What ``%%track``'s step metrics cost inside a training loop.

``%%track`` instruments the cell so that a metric-like scalar updated in a loop (``loss``)
is recorded per step and drawn live under the cell. The per-iteration hook must not slow
the loop: the workload is a 10,000-iteration loop whose body is one numpy SGD step of a
linear model on a 64x8 batch (slice, matmul, gradient, update, loss), run through a real
IPython shell two ways, in the same process, alternated:

* (a) bare:  the cell alone
* (b) ours:  the same cell under ``%%track -e bench --quiet`` (instrumented, 10,000 steps
  of ``loss`` recorded, the live chart drawn every 0.5 s, the history logged to MLflow)

The loop itself is timed inside the cell (``time.perf_counter()`` around it), so the ratio
(b)/(a) is the cost of the per-iteration hook alone; target at most 1.05. The whole cell's
extra time (run start, logging 10,000 steps, the card) is reported beside it as INFO.
One warm-up of each, then ``--reps`` alternating pairs (default 15); medians compared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import format_table, machine, median, row, verdict, write_json

SETUP = """\
import time
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=(4096, 8))
y = X @ rng.normal(size=8) + rng.normal(scale=0.1, size=4096)
"""

LOOP = """\
w = np.zeros(8)
lr = 0.05
t0 = time.perf_counter()
for it in range({iterations}):
    start = (it * 64) % 4096
    xb = X[start:start + 64]
    yb = y[start:start + 64]
    err = xb @ w - yb
    w -= lr * (xb.T @ err) / 64
    loss = float(err @ err) / 64
loop_seconds = time.perf_counter() - t0
"""


def _timed(ip: Any, cell: str) -> tuple[float, float]:
    """(whole cell, loop only) seconds; a cell that raises stops the benchmark."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):  # the card and the chart's text form
        result = ip.run_cell(cell)
    wall = time.perf_counter() - start
    if not result.success:
        raise SystemExit(f"cell failed: {result.error_in_exec or result.error_before_exec}")
    return wall, float(ip.user_ns["loop_seconds"])


def measure(iterations: int, reps: int) -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_mlops")
    ip.run_cell(SETUP)
    cell = LOOP.format(iterations=iterations)
    tracked = "%%track -e bench --quiet\n" + cell
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "ours": []}
    _timed(ip, cell), _timed(ip, tracked)  # warm-up: imports, the store's first run
    for _ in range(reps):
        times["bare"].append(_timed(ip, cell))
        times["ours"].append(_timed(ip, tracked))
    from mlflow import MlflowClient

    from jupyter_mlops.config import load_config

    client = MlflowClient(load_config().tracking_uri)
    exp = client.get_experiment_by_name("bench")
    last = client.search_runs([exp.experiment_id], order_by=["start_time DESC"], max_results=1)[0]
    steps = len(client.get_metric_history(last.info.run_id, "loss"))
    return {"times": times, "steps_logged": steps}


def summarise(result: dict[str, Any], iterations: int) -> list[dict[str, Any]]:
    bare = result["times"]["bare"]
    ours = result["times"]["ours"]
    loop_bare, loop_ours = median(t for _, t in bare), median(t for _, t in ours)
    ratio = loop_ours / loop_bare
    extra = median(w for w, _ in ours) - median(w for w, _ in bare)
    return [
        row(
            f"{iterations:,}-iteration SGD loop",
            loop_ours,
            loop_bare,
            ratio=ratio,
            target="<= 1.05x",
            verdict=verdict(ratio <= 1.05),
            note="the loop alone, timed inside the cell: %%track (per-step metric hook and "
            "live chart) against the bare cell",
        ),
        row(
            "whole cell, extra time",
            extra,
            None,
            note=f"run start, {result['steps_logged']:,} steps of `loss` logged to MLflow, "
            "environment and source, card (INFO)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument("--reps", type=int, default=15, help="alternating pairs (default 15)")
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="5 pairs (CI smoke run)")
    args = parser.parse_args(argv)
    reps = 5 if args.quick else args.reps

    root = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    (root / ".mlops").mkdir()
    cwd = Path.cwd()
    os.environ["DVC_NO_ANALYTICS"] = "1"
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    try:
        os.chdir(root)
        result = measure(args.iterations, reps)
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)

    rows = summarise(result, args.iterations)
    print(format_table(rows))
    for name, pairs in result["times"].items():
        loops = ", ".join(f"{t * 1000:.0f}" for _, t in pairs)
        print(f"{name}: loop ms {loops}")
    if args.json:
        write_json(
            args.json,
            {"benchmark": "loop", "machine": machine(), "reps": reps, "rows": rows, **result},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
