"""How fast ``%compare`` appears over many runs, beside ``mlflow.search_runs`` of the same runs.

A temporary SQLite store (the embedded default) is filled with ``--runs`` runs (default
10,000) of 20 params and 10 metrics each, plus the tags ``%%track`` sets and one metric
logged at 5 steps. Generation goes through ``MlflowClient.log_batch`` (one call per run,
``--workers`` processes in parallel), so the store holds exactly what MLflow writes; it
is not what is measured. Then, in this one warm process (imports done, one discarded
warm-up call each, then the repetitions interleaved), medians of ``--reps``:

* reference: ``mlflow.search_runs(experiment_ids=[exp])``, MLflow's DataFrame of the runs
* ours:      ``jupyter_mlops.runs(exp)``, the same runs as a DataFrame (checked equal)
* ours:      ``jupyter_mlops.compare(exp)``, the widget object built headless (query,
             table page, parallel coordinates, scatter, history) plus the display bundle
             IPython asks it for (which renders the static HTML copy)
* a ``where`` filter both can evaluate (``metrics.m00 > 0.5``), each in its own syntax

Target: the widget in under 2 s for 10,000 runs. A fresh-process ("cold") line times the
first ``compare()`` in a new interpreter, imports included, beside ``import mlflow`` +
``search_runs``; shown as INFO.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from run_all import format_table, machine, median, row, verdict, write_json

TARGET_WIDGET_S = 2.0
N_PARAMS = 20
N_METRICS = 10
STEPS = 5
EXPERIMENT = "bench-compare"


def _params(i: int, rng: random.Random) -> dict[str, str]:
    """20 params as a sweep would log them: numbers, choices, a few constants."""
    out = {
        "n_estimators": str(rng.choice([10, 50, 100, 200, 400])),
        "max_depth": str(rng.randint(2, 32)),
        "learning_rate": f"{10 ** rng.uniform(-4, -1):.5f}",
        "subsample": f"{rng.uniform(0.5, 1.0):.3f}",
        "min_samples_leaf": str(rng.randint(1, 20)),
        "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
        "criterion": rng.choice(["gini", "entropy"]),
        "seed": str(i),
        "batch_size": str(rng.choice([16, 32, 64, 128])),
        "dropout": f"{rng.uniform(0, 0.5):.2f}",
    }
    out.update({f"p{j:02d}": str(rng.randint(0, 9)) for j in range(len(out), N_PARAMS - 3)})
    out.update({"dataset": "iris-v3", "framework": "sklearn", "cv_folds": "5"})
    return out


def _generate(args: tuple[str, str, int, int, int]) -> int:
    """Worker: log runs [start, stop) of the experiment through MLflow's client."""
    uri, exp_id, start, stop, seed = args
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    rng = random.Random(seed)
    for i in range(start, stop):
        run = client.create_run(exp_id, run_name=f"run-{i:05d}")
        now = int(time.time() * 1000)
        metrics = [Metric(f"m{j:02d}", rng.random(), now, 0) for j in range(N_METRICS - 1)]
        metrics += [
            Metric("loss", 1.0 / (s + 1) + rng.random() / 10, now + s, s) for s in range(STEPS)
        ]
        tags = [
            RunTag("mlops.notebook", "sweep.ipynb"),
            RunTag("mlops.source.sha256", f"{rng.getrandbits(256):064x}"),
            RunTag("mlops.models", json.dumps({"model": f"models:/m-{i:032x}"})),
            RunTag(
                "mlops.data",
                json.dumps(
                    [{"path": "data/train.csv", "md5": f"{i % 3:032x}", "size": 1, "nfiles": 1}]
                ),
            ),
        ]
        params = [Param(k, v) for k, v in _params(i, rng).items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run.info.run_id)
    return stop - start


def generate(root: Path, runs: int, workers: int) -> tuple[str, float]:
    """A project at ``root`` whose store holds ``runs`` runs; returns (experiment id, seconds)."""
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking import store

    (root / ".mlops").mkdir(parents=True, exist_ok=True)
    config = load_config(root)
    exp_id = store.ensure_experiment(EXPERIMENT, config)  # creates the schema once
    start = time.perf_counter()
    chunk = -(-runs // workers)
    jobs = [
        (config.tracking_uri, exp_id, lo, min(lo + chunk, runs), lo) for lo in range(0, runs, chunk)
    ]
    import multiprocessing

    # spawn, not fork: a forked child would share the parent's SQLAlchemy connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        done = sum(pool.map(_generate, jobs))
    assert done == runs
    return exp_id, time.perf_counter() - start


def _timed(variants: dict[str, Any], reps: int) -> dict[str, tuple[float, list[float], Any]]:
    """Median times of each variant; one discarded warm-up each, then the repetitions
    interleaved (A B C, A B C, ...) so that a busy moment of the machine hits all alike."""
    results: dict[str, Any] = {name: fn() for name, fn in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (median(times[name]), times[name], results[name]) for name in variants}


def _displayed(widget: Any) -> Any:
    """What showing the widget in a notebook costs on top of building it."""
    widget._repr_mimebundle_()
    return widget


def frames_equal(ours: Any, ref: Any) -> tuple[bool, str]:
    """Whether our frame holds MLflow's columns with MLflow's values for the same runs."""
    missing = set(ref.columns) - set(ours.columns)
    if missing:
        return False, f"missing columns {sorted(missing)[:5]}"
    if len(ours) != len(ref):
        return False, f"{len(ours)} rows against {len(ref)}"
    aligned = ours.set_index("run_id").loc[ref["run_id"]].reset_index()
    for column in ref.columns:
        a = ref[column].astype(object).where(ref[column].notna(), None).tolist()
        b = aligned[column].astype(object).where(aligned[column].notna(), None).tolist()
        if a != b:
            return False, f"column {column} differs"
    return True, f"{len(ref)} runs x {len(ref.columns)} columns equal"


COLD = """
import json, sys, time
start = time.perf_counter()
{body}
print(json.dumps(time.perf_counter() - start))
"""
COLD_OURS = "import jupyter_mlops\njupyter_mlops.compare({exp!r})._repr_mimebundle_()"
COLD_REF = (
    "import mlflow\nmlflow.set_tracking_uri({uri!r})\n"
    "mlflow.search_runs(experiment_ids=[{exp_id!r}])"
)


def cold(body: str, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-c", COLD.format(body=body)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs to generate (10000)")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 1,000 runs, 2 reps")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (3)")
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--store", metavar="DIR", help="keep (or reuse) the generated project here")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.reps = min(args.runs, 1000), 2
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

    tmp = None
    if args.store:
        root = Path(args.store).resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="bench-compare-")
        root = Path(tmp) / "proj"
    try:
        return _run(args, root)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, root: Path) -> int:
    from jupyter_mlops.config import load_config

    marker = root / ".mlops" / f"bench-{args.runs}.done"
    if marker.is_file():
        exp_id, gen_s = marker.read_text().split()[0], float("nan")
        print(f"reusing {args.runs} runs in {root}")
    else:
        if root.exists():
            shutil.rmtree(root)
        print(f"generating {args.runs} runs x {N_PARAMS} params x {N_METRICS} metrics ...")
        exp_id, gen_s = generate(root, args.runs, args.workers)
        marker.write_text(f"{exp_id}\n")
        print(f"  {gen_s:.1f} s ({gen_s / args.runs * 1000:.1f} ms per run, not measured)")
    os.chdir(root)
    config = load_config(root)

    import mlflow

    import jupyter_mlops

    mlflow.set_tracking_uri(config.tracking_uri)
    timed = _timed(
        {
            "search_runs": lambda: mlflow.search_runs(experiment_ids=[exp_id]),
            "runs": lambda: jupyter_mlops.runs(EXPERIMENT),
            "compare": lambda: _displayed(jupyter_mlops.compare(EXPERIMENT)),
            "search_runs where": lambda: mlflow.search_runs(
                experiment_ids=[exp_id], filter_string="metrics.m00 > 0.5"
            ),
            "runs where": lambda: jupyter_mlops.runs(EXPERIMENT, where="metrics.m00 > 0.5"),
        },
        args.reps,
    )
    ref_s, _, ref = timed["search_runs"]
    runs_s, _, ours = timed["runs"]
    widget_s, _, widget = timed["compare"]
    flt_ref_s, _, flt_ref = timed["search_runs where"]
    flt_s, _, flt = timed["runs where"]
    same, same_note = frames_equal(ours, ref)
    flt_same = sorted(flt["run_id"]) == sorted(flt_ref["run_id"])
    table_rows = len(widget.table.rows)
    cold_ours = cold(COLD_OURS.format(exp=EXPERIMENT), root)
    cold_ref = cold(COLD_REF.format(uri=config.tracking_uri, exp_id=exp_id), root)

    n = args.runs
    rows = [
        row(
            f"compare() widget, {n:,} runs",
            widget_s,
            ref_s,
            ratio=ref_s / widget_s,
            target=f"< {TARGET_WIDGET_S:.0f} s",
            verdict=verdict(widget_s < TARGET_WIDGET_S) if n >= 10_000 else "INFO",
            note="reference: mlflow.search_runs of the same runs; ratio = reference / ours",
        ),
        row(
            f"runs() DataFrame, {n:,} runs",
            runs_s,
            ref_s,
            ratio=ref_s / runs_s,
            note="ratio = mlflow.search_runs / jupyter_mlops.runs",
        ),
        row(
            "runs() equals mlflow.search_runs",
            "yes" if same else "NO",
            same_note,
            unit="",
            target="equal",
            verdict=verdict(same),
        ),
        row(
            "where metrics.m00 > 0.5",
            flt_s,
            flt_ref_s,
            ratio=flt_ref_s / flt_s,
            verdict=verdict(flt_same),
            target="same runs",
            note=f"{len(flt):,} runs match; reference: search_runs(filter_string=...)",
        ),
        row(
            "first compare() in a fresh process",
            cold_ours,
            cold_ref,
            ratio=cold_ref / cold_ours,
            note="imports included; reference: import mlflow + search_runs in a fresh process",
        ),
        row("table rows sent to the browser", str(table_rows), f"of {n:,}", unit=""),
    ]
    print()
    print(format_table(rows))
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "compare",
                "machine": machine(),
                "runs": n,
                "params": N_PARAMS,
                "metrics": N_METRICS,
                "generation_s": gen_s,
                "times": {name: t[1] for name, t in timed.items()},
                "load_average": os.getloadavg(),
                "rows": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
