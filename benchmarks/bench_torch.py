"""What ``%%track`` adds to a PyTorch training cell, beside logging it with ``mlflow.pytorch``.

The workload: a small MLP (4 -> 32 -> 3) trained full-batch for 30 epochs with SGD on
synthetic data (2,000 rows, ``torch.manual_seed(0)``), run through a real IPython shell:

* (a) bare:      the cell alone
* (b) ours:      the cell under ``%%track -e bench --quiet`` (params from the optimizer and
  the module, the final loss, the model in MLflow's pytorch flavour with a signature)
* (c) reference: the cell inside ``mlflow.start_run()``, then ``mlflow.log_params`` of the
  optimizer's settings and the epochs, ``mlflow.log_metric("loss", loss)`` and
  ``mlflow.pytorch.log_model(model, name="model")`` at MLflow's defaults (default store and
  experiment, requirement inference, pt2 format)

MLflow's default format (pt2, ``torch.export``) needs an input example: a probe first runs
(c) at pure defaults in its own fresh process; if it raises, the error is reported and (c)
is measured with ``input_example=X_train[:5].numpy()``, everything else still default
(which is what ``%%track`` passes too: five rows of the training tensor).

Each of (b) and (c) runs in its own fresh process and project folder (so separate stores):
a cold run first (imports and store creation included, reported apart), then ``--reps``
warm runs alternating (a) with (b) or (c). Reported: overhead = median(b) - median(a)
against median(c) - median(a), and their ratio (reference / ours).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

TARGET_RATIO = 1.0  # %%track must not cost more than logging the model with MLflow by hand

SETUP_CELL = """\
import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
rng = np.random.default_rng(0)
X_np = rng.normal(size=(2000, 4)).astype("float32")
y_np = (X_np[:, 0] + 0.5 * X_np[:, 1] > 0).astype("int64") + (X_np[:, 2] > 1).astype("int64")
X_train, y_train = torch.from_numpy(X_np), torch.from_numpy(y_np)
"""
TRAIN_CELL = """\
epochs = 30
model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(epochs):
    optimizer.zero_grad()
    loss = loss_fn(model(X_train), y_train)
    loss.backward()
    optimizer.step()
loss = loss.item()
"""
TRACK_CELL = "%%track -e bench --quiet\n" + TRAIN_CELL


def reference_cell(with_example: bool) -> str:
    """The cell logged by hand with MLflow's fluent API: params, the loss, the model."""
    example = ", input_example=X_train[:5].numpy()" if with_example else ""
    return (
        "import mlflow\n"
        "import mlflow.pytorch\n"
        "with mlflow.start_run():\n"
        + textwrap.indent(TRAIN_CELL, "    ")
        + "    group = {k: v for k, v in optimizer.param_groups[0].items() if k != 'params'}\n"
        "    mlflow.log_params({'epochs': epochs, 'optimizer': 'SGD', **group})\n"
        "    mlflow.log_metric('loss', loss)\n"
        f"    mlflow.pytorch.log_model(model, name='model'{example})\n"
    )


# -- inside a worker process ----------------------------------------------------------------


def _recorded() -> dict[str, Any]:
    """What the newest run holds, to show that both sides did the same work."""
    import mlflow

    client = mlflow.MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(exps, max_results=1, order_by=["attributes.start_time DESC"])[0]
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )
    return {
        "status": run.info.status,
        "params": len(run.data.params),
        "metrics": sorted(run.data.metrics),
        "models": len(models),
    }


def worker(variant: str, reps: int, with_example: bool) -> dict[str, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if variant == "ours":
        ip.run_line_magic("load_ext", "jupyter_mlops")
    ok_seconds(timed_cell(ip, SETUP_CELL))
    if variant == "probe":
        seconds, error = timed_cell(ip, reference_cell(False))
        return {"seconds": seconds, "error": error}
    cells = {
        "bare": TRAIN_CELL,
        variant: TRACK_CELL if variant == "ours" else reference_cell(with_example),
    }
    first = {name: ok_seconds(timed_cell(ip, cell)) for name, cell in cells.items()}
    times: dict[str, list[float]] = {name: [] for name in cells}
    for i in range(reps):
        for name in list(cells)[:: 1 if i % 2 == 0 else -1]:
            times[name].append(ok_seconds(timed_cell(ip, cells[name])))
    return {"first": first, "times": times, "recorded": _recorded()}


# -- the parent -----------------------------------------------------------------------------


def spawn(variant: str, root: Path, reps: int, with_example: bool = False) -> dict[str, Any]:
    """``worker(variant)`` in a fresh interpreter, in a fresh project folder."""
    folder = root / variant
    project = folder / "project"
    (project / ".mlops").mkdir(parents=True)
    out, log = folder / "result.json", folder / "worker.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant]
    cmd += ["--reps", str(reps), "--worker-json", str(out)]
    if with_example:
        cmd.append("--with-example")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(DVC_NO_ANALYTICS="1", IPYTHONDIR=str(root / "ipython"))
    print(f"{variant}: running in {project} ...", flush=True)
    with log.open("w") as fh:
        proc = subprocess.run(
            cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT,
            timeout=600 + 120 * reps, check=False,
        )  # fmt: skip
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{variant} worker failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(out.read_text()))


def summarise(probe: dict, ours: dict, ref: dict, with_example: bool, reps: int) -> list[dict]:
    a_ours, a_ref = median(ours["times"]["bare"]), median(ref["times"]["bare"])
    b, c = median(ours["times"]["ours"]), median(ref["times"]["reference"])
    overhead, ref_overhead = b - a_ours, c - a_ref
    ratio = ref_overhead / overhead if overhead > 0 else None
    how = (
        "pure defaults"
        if not with_example
        else f"defaults plus input_example (the default pt2 format raised {probe['error']})"
    )
    note = (
        f"median of {reps} warm runs; a = bare cell, {a_ours:.3f} s in our process, "
        f"{a_ref:.3f} s in the reference's; reference = mlflow.start_run + log_params + "
        f"log_metric + mlflow.pytorch.log_model, {how}"
    )
    return [
        row(
            "%%track overhead, PyTorch cell (b-a vs c-a)",
            overhead,
            ref_overhead,
            ratio=ratio,
            target=f">= {TARGET_RATIO:.0f}x",
            verdict=verdict(ratio is not None and ratio >= TARGET_RATIO),
            note=note,
        ),
        row(
            "first tracked PyTorch cell, cold (b vs c)",
            ours["first"]["ours"],
            ref["first"]["reference"],
            ratio=ref["first"]["reference"] / ours["first"]["ours"],
            note="first cell in a fresh kernel and a new store (MLflow import included)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="%%track overhead on a PyTorch training cell vs mlflow.pytorch.log_model "
        "at defaults (fresh processes and stores, medians of warm runs)."
    )
    parser.add_argument("--reps", type=int, default=5, help="warm runs per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 warm runs (CI smoke)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument("--worker", choices=["probe", "ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    parser.add_argument("--with-example", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    if reps < 1:
        parser.error("--reps must be at least 1")
    if args.worker:
        write_json(args.worker_json, worker(args.worker, reps, args.with_example))
        return 0

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed (pip install 'jupyter-mlops[torch]'): nothing to measure")
        rows = [row("%%track overhead, PyTorch cell", None, None, note="torch not installed")]
        if args.json:
            write_json(args.json, {"benchmark": "torch", "machine": machine(), "rows": rows})
        return 0

    root = Path(tempfile.mkdtemp(prefix="bench-torch-"))
    try:
        probe = spawn("probe", root, reps)
        with_example = probe["error"] is not None
        if with_example:
            print(f"reference at pure defaults raised: {probe['error']}\n  -> with input_example")
        ours = spawn("ours", root, reps)
        ref = spawn("reference", root, reps, with_example)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)

    rows = summarise(probe, ours, ref, with_example, reps)
    print()
    print(format_table(rows))
    for name, side in (("ours", ours), ("reference", ref)):
        rec = side["recorded"]
        print(
            f"{name} recorded: {rec['status']}, {rec['params']} params, metrics "
            f"{rec['metrics']}, {rec['models']} model(s)"
        )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "torch",
                "machine": machine(),
                "reps": reps,
                "rows": rows,
                "probe": probe,
                "ours": ours,
                "reference": ref,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
