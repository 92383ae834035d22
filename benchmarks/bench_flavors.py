"""What ``%%track`` adds to a training cell, per model flavour, beside MLflow's own flavour.

For each case (a framework and a training cell, see ``CASES``), through a real IPython
shell in a fresh process and project folder:

* (a) bare:      the training cell alone
* (b) ours:      the cell under ``%%track -e bench --quiet`` (params, metrics, step metrics,
  the model with its native flavour, signature, input example, pinned requirements, source
  and environment)
* (c) reference: the cell, then ``with mlflow.start_run(): mlflow.<flavour>.log_model(model,
  name="model")`` at MLflow's default settings (default store and experiment, requirement
  inference), the least a user writes to keep the model

(b) and (c) run in separate fresh processes (separate stores); in each, the first run of
(a) and of (b)/(c) is the cold run (MLflow import and store creation), reported apart, then
``--reps`` warm runs alternate (a) with (b)/(c). Reported per case: overhead (b)-(a) beside
(c)-(a), and the ratio (c-a)/(b-a) (how many times less ``%%track`` adds).

Training runs on one thread (``n_jobs=1``): on a shared machine, multithreaded boosting
varies by seconds from run to run and would drown the overhead being measured.

Adding a case (a framework with a flavour): one ``Case`` in ``CASES`` with the imports, the
training cell (which binds ``model``) and MLflow's own logging call for it. A case whose
framework is not installed is reported as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run_all import (
    format_table,
    machine,
    median,
    ok_seconds,
    row,
    timed_cell,
    verdict,
    write_json,
)

DATA = """\
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
X, y = make_classification(n_samples=4000, n_features=20, n_informative=8, random_state=0)
X = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
"""


@dataclass(frozen=True)
class Case:
    """One flavour's workload: what to import, the cell (binding ``model``), MLflow's call."""

    name: str
    library: str  # import name; the case is skipped when it is not installed
    setup: str  # imports, run once before timing
    cell: str  # the training cell, timed; binds ``model``
    reference: str  # MLflow's own logging of ``model``, at defaults
    note: str = ""  # why the reference departs from pure defaults, if it does


CASES: list[Case] = [
    Case(
        "sklearn",
        "sklearn",
        "from sklearn.ensemble import RandomForestClassifier\n"
        "from sklearn.metrics import accuracy_score\n",
        "model = RandomForestClassifier(n_estimators=100, random_state=0)\n"
        "model.fit(X_train, y_train)\n"
        "val_acc = accuracy_score(y_val, model.predict(X_val))\n",
        "import mlflow.sklearn\n"
        "mlflow.sklearn.log_model(model, name='model', serialization_format='cloudpickle')\n",
        "serialization_format='cloudpickle': MLflow's default (skops) refuses a RandomForest "
        "(see bench_track.py's probe)",
    ),
    Case(
        "xgboost",
        "xgboost",
        "import xgboost as xgb\nfrom sklearn.metrics import accuracy_score\n",
        "model = xgb.XGBClassifier(n_estimators=100, max_depth=4, early_stopping_rounds=10,\n"
        "                          n_jobs=1)\n"
        "model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)\n"
        "val_acc = accuracy_score(y_val, model.predict(X_val))\n",
        "import mlflow.xgboost\nmlflow.xgboost.log_model(model, name='model')\n",
    ),
    Case(
        "lightgbm",
        "lightgbm",
        "import lightgbm as lgb\nfrom sklearn.metrics import accuracy_score\n",
        "model = lgb.LGBMClassifier(n_estimators=100, num_leaves=15, n_jobs=1, verbose=-1)\n"
        "model.fit(X_train, y_train, eval_set=[(X_val, y_val)],\n"
        "          callbacks=[lgb.early_stopping(10, verbose=False)])\n"
        "val_acc = accuracy_score(y_val, model.predict(X_val))\n",
        "import mlflow.lightgbm\nmlflow.lightgbm.log_model(model, name='model')\n",
    ),
]


def reference_cell(case: Case) -> str:
    """The cell, then MLflow's own flavour logs its model in a run."""
    logged = "".join(f"    {line}\n" for line in case.reference.splitlines())
    return case.cell + "import mlflow\nwith mlflow.start_run():\n" + logged


# -- inside a worker process ----------------------------------------------------------------


def _recorded() -> dict[str, Any]:
    """What the newest run holds (to show what each side did)."""
    import mlflow

    client = mlflow.MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(exps, max_results=1, order_by=["attributes.start_time DESC"])[0]
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    flavors: list[str] = []
    for model in models[:1]:
        info = mlflow.models.get_model_info(f"models:/{model.model_id}")
        flavors = sorted(info.flavors)
    return {
        "params": len(run.data.params),
        "metrics": len(run.data.metrics),
        "models": len(models),
        "flavors": flavors,
    }


def worker(case_name: str, variant: str, reps: int) -> dict[str, Any]:
    """Measure one case and variant in this (fresh) process, in the project folder."""
    case = next(c for c in CASES if c.name == case_name)
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if variant == "ours":
        ip.run_line_magic("load_ext", "jupyter_mlops")
    ok_seconds(timed_cell(ip, "import pandas as pd\n" + case.setup))
    ok_seconds(timed_cell(ip, DATA))
    logged = f"%%track -e bench --quiet\n{case.cell}" if variant == "ours" else reference_cell(case)
    cells = {"bare": case.cell, variant: logged}
    first = {name: ok_seconds(timed_cell(ip, cell)) for name, cell in cells.items()}
    times: dict[str, list[float]] = {name: [] for name in cells}
    for i in range(reps):
        for name in list(cells)[:: 1 if i % 2 == 0 else -1]:
            times[name].append(ok_seconds(timed_cell(ip, cells[name])))
    return {"first": first, "times": times, "recorded": _recorded()}


# -- the parent -----------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    """A fresh kernel's environment: MLflow at its defaults, no notebook hints."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLFLOW_") and k not in ("JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK")
    }
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(root / "dvc-site-cache"),
        IPYTHONDIR=str(root / "ipython"),
    )
    return env


def spawn(case: Case, variant: str, root: Path, reps: int) -> dict[str, Any]:
    """Run ``worker(case, variant)`` in a fresh interpreter inside a fresh project folder."""
    folder = root / f"{case.name}-{variant}"
    project = folder / "project"
    (project / ".mlops").mkdir(parents=True)
    out, log = folder / "result.json", folder / "worker.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case.name, variant]
    cmd += ["--reps", str(reps), "--worker-json", str(out)]
    print(f"{case.name} / {variant}: running in {project} ...", flush=True)
    with log.open("w") as fh:
        proc = subprocess.run(
            cmd,
            cwd=project,
            env=_env(root),
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600 + 120 * reps,
            check=False,
        )
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{case.name}/{variant} worker failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


def summarise(case: Case, ours: dict[str, Any], ref: dict[str, Any], reps: int) -> list[dict]:
    a_ours, a_ref = median(ours["times"]["bare"]), median(ref["times"]["bare"])
    overhead = median(ours["times"]["ours"]) - a_ours
    ref_overhead = median(ref["times"]["reference"]) - a_ref
    ratio = ref_overhead / overhead if overhead > 0 else None
    note = (
        f"{case.name}: median of {reps} warm runs; bare cell {a_ours:.3f} s (ours) and "
        f"{a_ref:.3f} s (reference's process); reference = mlflow.start_run + "
        f"mlflow.{case.name}.log_model at defaults"
        + (f", {case.note}" if case.note else "")
        + f"; ours recorded {ours['recorded']}, the reference {ref['recorded']}"
    )
    return [
        row(
            f"%%track overhead, {case.name} (b-a vs c-a)",
            overhead,
            ref_overhead,
            ratio=ratio,
            target="ratio >= 1x",
            verdict=verdict(ratio is not None and ratio >= 1.0),
            note=note,
        ),
        row(
            f"first tracked cell, cold, {case.name} (b vs c)",
            ours["first"]["ours"],
            ref["first"]["reference"],
            ratio=ref["first"]["reference"] / ours["first"]["ours"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    names = [c.name for c in CASES]
    parser = argparse.ArgumentParser(
        description="%%track overhead per model flavour vs MLflow's own log_model for it "
        "(fresh processes and stores, medians of warm runs, cold first run apart)."
    )
    parser.add_argument("--reps", type=int, default=5, help="warm runs per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 warm runs (CI smoke)")
    parser.add_argument(
        "--case", action="append", choices=names, help="only this case (repeatable)"
    )
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    if reps < 1:
        parser.error("--reps must be at least 1")

    if args.worker:
        write_json(args.worker_json, worker(args.worker[0], args.worker[1], reps))
        return 0

    root = Path(tempfile.mkdtemp(prefix="bench-flavors-"))
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        for case in CASES:
            if args.case and case.name not in args.case:
                continue
            if importlib.util.find_spec(case.library) is None:
                rows.append(row(f"{case.name}", None, None, note=f"{case.library} not installed"))
                continue
            ours = spawn(case, "ours", root, reps)
            ref = spawn(case, "reference", root, reps)
            results[case.name] = {"ours": ours, "reference": ref}
            rows.extend(summarise(case, ours, ref, reps))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(root)

    print()
    print(format_table(rows))
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "flavors",
                "machine": machine(),
                "reps": reps,
                "rows": rows,
                "cases": results,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
