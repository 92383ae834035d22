"""What ``%%track`` adds to a training cell, beside logging the same cell with MLflow itself.

The workload is the iris cell of the tests (read a CSV, split, fit a 100-tree random
forest, score it), run through a real IPython shell three ways:

* (a) bare:      the cell alone
* (b) ours:      the cell under ``%%track -e bench --quiet``
* (c) reference: the cell inside ``mlflow.start_run()``, then ``mlflow.log_param`` for each
  param %%track logs, ``mlflow.log_metric("acc", acc)`` and
  ``mlflow.sklearn.log_model(model, name="model")``, all at MLflow's default settings
  (default store, default experiment, requirement inference, no input example)

MLflow 3's default serialisation (skops) refuses a RandomForest. A probe first runs (c) at
pure defaults in its own fresh process; if it raises, the error is reported and (c) is
measured with ``serialization_format="cloudpickle"``, everything else still default.

Each of (b) and (c) runs in its own fresh process and project folder (a ``.mlops/`` folder
as working directory, no ``MLFLOW_*`` variables, so separate stores): first the cold run
(first (a), then the first (b) or (c): import of MLflow and creation of the SQLite store
included), reported on its own, then ``--reps`` warm runs alternating (a) with (b) or (c).
Reported: overhead = median(b) - median(a) against median(c) - median(a), and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import textwrap
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

TARGET_OVERHEAD_S = 0.25
TARGET_RATIO = 15.0

# A copy of IRIS_CELL in tests/conftest.py, kept here so that the benchmark's workload only
# changes on purpose and numbers stay comparable over time.
IRIS_CELL = """\
df = pd.read_csv("data/iris.csv")
X_train, X_test, y_train, y_test = train_test_split(df.drop(columns="target"), df.target, test_size=0.2, random_state=0)
n_estimators = 100
model = RandomForestClassifier(n_estimators=n_estimators, random_state=42)
model.fit(X_train, y_train)
acc = accuracy_score(y_test, model.predict(X_test))
"""  # noqa: E501
SETUP_CELL = """\
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
"""
TRACK_CELL = "%%track -e bench --quiet\n" + IRIS_CELL


def reference_cell(serialization_format: str | None) -> str:
    """The cell logged by hand with MLflow's fluent API: the same params, metric and model."""
    fmt = "" if serialization_format is None else f", serialization_format={serialization_format!r}"
    return (
        "import mlflow\n"
        "import mlflow.sklearn\n"
        "with mlflow.start_run():\n"
        + textwrap.indent(IRIS_CELL, "    ")
        + "    for key, value in {'n_estimators': n_estimators, **model.get_params()}.items():\n"
        "        mlflow.log_param(key, value)\n"
        "    mlflow.log_metric('acc', acc)\n"
        f"    mlflow.sklearn.log_model(model, name='model'{fmt})\n"
    )


# -- inside a worker process ----------------------------------------------------------------


def _recorded() -> dict[str, Any]:
    """What the newest run of the active store holds (to show both sides did the same work)."""
    import mlflow

    client = mlflow.MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(exps, max_results=1, order_by=["attributes.start_time DESC"])[0]
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    files: list[str] = []
    for model in models[:1]:
        files = sorted(
            Path(a.path).name
            for a in mlflow.artifacts.list_artifacts(artifact_uri=model.artifact_location)
        )
    return {
        "tracking_uri": mlflow.get_tracking_uri(),
        "status": run.info.status,
        "params": len(run.data.params),
        "metrics": sorted(run.data.metrics),
        "run_artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        "models": len(models),
        "model_files": files,
    }


def _profile_text(prof: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    out.write("jupyter_mlops functions by cumulative time:\n")
    stats.print_stats(r"jupyter_mlops/", top)
    out.write("\nall functions by own time:\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def worker(variant: str, reps: int, fmt: str | None, profile: str | None) -> dict[str, Any]:
    """Measure one variant in this (fresh) process; the working directory is the project."""
    from sklearn.datasets import load_iris

    Path("data").mkdir(exist_ok=True)
    load_iris(as_frame=True).frame.to_csv("data/iris.csv", index=False)

    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if variant == "ours":
        ip.run_line_magic("load_ext", "jupyter_mlops")
    ok_seconds(timed_cell(ip, SETUP_CELL))
    if variant == "probe":
        seconds, error = timed_cell(ip, reference_cell(None))
        return {"seconds": seconds, "error": error}

    cells = {"bare": IRIS_CELL, variant: TRACK_CELL if variant == "ours" else reference_cell(fmt)}
    first = {name: ok_seconds(timed_cell(ip, cell)) for name, cell in cells.items()}
    times: dict[str, list[float]] = {name: [] for name in cells}
    for i in range(reps):
        for name in list(cells)[:: 1 if i % 2 == 0 else -1]:
            times[name].append(ok_seconds(timed_cell(ip, cells[name])))
    result: dict[str, Any] = {"first": first, "times": times, "recorded": _recorded()}
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        ok_seconds(timed_cell(ip, cells[variant]))
        prof.disable()
        prof.dump_stats(profile)
        result["profile"] = _profile_text(prof, 25)
    return result


# -- the parent -----------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    """The environment of a fresh kernel: MLflow at its defaults, no notebook hints."""
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


def spawn(
    variant: str,
    root: Path,
    reps: int,
    *,
    fmt: str | None = None,
    profile: str | None = None,
    env: dict[str, str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Run ``worker(variant)`` in a fresh interpreter inside a fresh project folder.

    ``env`` is added to the clean environment (e.g. ``MLFLOW_TRACKING_URI`` of a server);
    ``label`` names the folder when one variant runs against several stores.
    """
    folder = root / (label or variant)
    project = folder / "project"
    (project / ".mlops").mkdir(parents=True)
    out, log = folder / "result.json", folder / "worker.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--reps",
        str(reps),
        "--worker-json",
        str(out),
    ]
    if fmt:
        cmd += ["--format", fmt]
    if profile:
        cmd += ["--profile", str(Path(profile).resolve())]
    print(f"{variant}: running in {project} ...", flush=True)
    with log.open("w") as fh:
        proc = subprocess.run(
            cmd,
            cwd=project,
            env={**_env(root), **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600 + 120 * reps,
            check=False,
        )
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{variant} worker failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


def summarise(probe: dict, ours: dict, ref: dict, fmt: str | None, reps: int) -> list[dict]:
    a_ours, a_ref = median(ours["times"]["bare"]), median(ref["times"]["bare"])
    b, c = median(ours["times"]["ours"]), median(ref["times"]["reference"])
    overhead, ref_overhead = b - a_ours, c - a_ref
    ratio = ref_overhead / overhead if overhead > 0 else None
    how = (
        "pure defaults"
        if fmt is None
        else f"defaults except serialization_format={fmt!r}, because the default (skops) "
        f"raised {probe['error']}"
    )
    note = (
        f"median of {reps} warm runs; a = bare cell, {a_ours:.3f} s in our process, "
        f"{a_ref:.3f} s in the reference's; reference = mlflow.start_run + "
        f"{ref['recorded']['params']} log_param + log_metric + mlflow.sklearn.log_model, "
        f"{how}"
    )
    first_note = (
        "first cell in a fresh kernel and a new store: import of MLflow and creation of the "
        f"SQLite store included; the bare cell's first run took {ours['first']['bare']:.2f} s "
        f"(ours) and {ref['first']['bare']:.2f} s (reference)"
    )
    return [
        row(
            "%%track overhead per cell (b-a vs c-a)",
            overhead,
            ref_overhead,
            ratio=ratio,
            target=f"<= {TARGET_OVERHEAD_S} s",
            verdict=verdict(overhead <= TARGET_OVERHEAD_S),
            note=note,
        ),
        row(
            "logging speed-up vs MLflow (c-a)/(b-a)",
            overhead,
            ref_overhead,
            ratio=ratio,
            target=f">= {TARGET_RATIO:.0f}x",
            verdict=verdict(ratio is not None and ratio >= TARGET_RATIO),
        ),
        row(
            "first tracked cell, cold (b vs c)",
            ours["first"]["ours"],
            ref["first"]["reference"],
            ratio=ref["first"]["reference"] / ours["first"]["ours"],
            note=first_note,
        ),
    ]


def _spread(values: list[float]) -> str:
    return f"median {median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="%%track overhead on the iris cell vs logging it with MLflow at defaults "
        "(fresh processes and stores, medians of warm runs, cold first run reported apart)."
    )
    parser.add_argument("--reps", type=int, default=5, help="warm runs per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 warm runs (CI smoke)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument(
        "--profile",
        metavar="PROF",
        help="cProfile one extra warm %%track run into PROF and print its top",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary project folders (stores, logs) and print where",
    )
    parser.add_argument("--worker", choices=["probe", "ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    parser.add_argument("--format", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    if reps < 1:
        parser.error("--reps must be at least 1")

    if args.worker:
        result = worker(args.worker, reps, args.format, args.profile)
        write_json(args.worker_json, result)
        return 0

    root = Path(tempfile.mkdtemp(prefix="bench-track-"))
    try:
        probe = spawn("probe", root, reps)
        fmt = None if probe["error"] is None else "cloudpickle"
        if fmt:
            print(
                f"reference at pure defaults raised after {probe['seconds']:.1f} s: "
                f"{probe['error']}\n"
                f"  -> measuring the reference with serialization_format={fmt!r}",
                flush=True,
            )
        ours = spawn("ours", root, reps, profile=args.profile)
        ref = spawn("reference", root, reps, fmt=fmt)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(root)

    rows = summarise(probe, ours, ref, fmt, reps)
    print()
    print(format_table(rows))
    print(f"\n(a) bare, our process:       {_spread(ours['times']['bare'])}")
    print(f"(b) %%track:                  {_spread(ours['times']['ours'])}")
    print(f"(a) bare, reference process: {_spread(ref['times']['bare'])}")
    print(f"(c) MLflow by hand:          {_spread(ref['times']['reference'])}")
    for name, side in (("ours", ours), ("reference", ref)):
        rec = side["recorded"]
        print(
            f"{name} recorded: {rec['status']}, {rec['params']} params, metrics "
            f"{rec['metrics']}, {rec['models']} model(s) with {rec['model_files']}, "
            f"run artifacts {rec['run_artifacts']}"
        )
    if "profile" in ours:
        print(f"\nprofile of one warm %%track run (written to {args.profile}):\n")
        print(ours["profile"])
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "track",
                "machine": machine(),
                "reps": reps,
                "rows": rows,
                "reference_format": fmt or "default",
                "probe": probe,
                "ours": {k: v for k, v in ours.items() if k != "profile"},
                "reference": ref,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
