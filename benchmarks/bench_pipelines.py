"""What a pipeline adds to papermill, and what a parallel sweep saves.

1. Overhead per step. A chain of three small notebooks (a parameters cell, one line of
   work) runs (a) with ``papermill.execute_notebook`` one after the other, same parameters,
   in this process, and (b) as a three-step ``pipeline.yaml`` through
   ``jupyter_mlops.pipelines.run`` (DVC snapshot of the input, parent + child MLflow runs,
   run records, executed notebooks kept). After one warm-up of each (MLflow store creation,
   imports), ``--reps`` runs alternate; overhead per step = (median(b) - median(a)) / 3.
   Target: under 0.5 s.
2. Sweep speed-up. A one-step pipeline swept over three values of a parameter, on one
   worker (serial: each variant after the other, same code path) and on two workers
   (local process pool; ``--dask`` also a Dask LocalCluster of two process workers).
   Target: parallel under 0.7x serial. Two workloads: the step sleeps ``--work`` seconds
   (waiting on I/O or an accelerator), or keeps a CPU busy that long (``cpu``). Three
   variants on two workers need two rounds, so 0.67x is the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_all import format_table, machine, median, row, verdict, write_json

TARGET_OVERHEAD_S = 0.5
TARGET_SWEEP_RATIO = 0.7
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
WORK = {
    "sleep": "import time\ntime.sleep(work)\nresult = work * n",
    "cpu": "import time\nend = time.perf_counter() + work\nwhile time.perf_counter() < end:\n"
    "    pass\nresult = work * n",
}


def notebook(path: Path, params: str, code: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def setup(root: Path) -> None:
    import yaml

    (root / ".mlops").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("1\n2\n3\n")
    copy = "open(dst, 'w').write(open(src).read())"
    for i in range(3):
        notebook(root / f"step{i}.ipynb", "src = 'in.txt'\ndst = 'out.txt'", copy)
    chain = {
        "name": "chain",
        "steps": {
            f"s{i}": {
                "notebook": f"step{i}.ipynb",
                "params": {"src": src, "dst": f"${{run_dir}}/out{i}.txt"},
                "inputs": [src],
                "outputs": [f"${{run_dir}}/out{i}.txt"],
            }
            for i, src in enumerate(["data/in.txt", "${run_dir}/out0.txt", "${run_dir}/out1.txt"])
        },
    }
    (root / "chain.yaml").write_text(yaml.safe_dump(chain))
    for kind, code in WORK.items():
        notebook(root / f"{kind}.ipynb", "work = 1.0\nn = 1", code)
        spec = {"name": f"sweep-{kind}", "steps": {"work": {"notebook": f"{kind}.ipynb"}}}
        (root / f"{kind}.yaml").write_text(yaml.safe_dump(spec))


def papermill_chain(root: Path, out: Path) -> float:
    import papermill

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    src = root / "data" / "in.txt"
    for i in range(3):
        dst = out / f"out{i}.txt"
        papermill.execute_notebook(
            str(root / f"step{i}.ipynb"),
            str(out / f"step{i}.ipynb"),
            parameters={"src": str(src), "dst": str(dst)},
            cwd=str(root),
            progress_bar=False,
        )
        src = dst
    return time.perf_counter() - started


def pipeline_chain(root: Path) -> float:
    from jupyter_mlops import pipelines

    started = time.perf_counter()
    record = pipelines.run(root / "chain.yaml")
    elapsed = time.perf_counter() - started
    if not record.ok:
        raise SystemExit(f"pipeline failed: {record}")
    return elapsed


def sweep_time(root: Path, kind: str, work: float, workers: int, executor: str, **kw: Any) -> float:
    from jupyter_mlops import pipelines

    started = time.perf_counter()
    result = pipelines.sweep(
        root / f"{kind}.yaml",
        {"n": [1, 2, 3]},
        {"work": work},
        workers=workers,
        executor=executor,
        **kw,
    )
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"sweep failed: {result}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="CI smoke size")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=float, default=3.0, help="seconds of work per variant")
    parser.add_argument("--dask", action="store_true", help="also sweep on a Dask LocalCluster")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    reps, work = (1, 1.5) if args.quick else (args.reps, args.work)

    tmp = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    root = tmp / "proj"
    os.environ["DVC_NO_ANALYTICS"] = "1"
    os.environ["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    setup(root)
    os.chdir(root)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"reps": reps, "work_s": work}
    try:
        cold = pipeline_chain(root)  # store creation and imports land here
        papermill_chain(root, tmp / "pm-warm")
        ours, ref = [], []
        for i in range(reps):
            ref.append(papermill_chain(root, tmp / f"pm{i}"))
            ours.append(pipeline_chain(root))
        per_step = (median(ours) - median(ref)) / 3
        details.update(chain_ours=ours, chain_papermill=ref, chain_cold=cold)
        rows.append(
            row(
                "overhead per step (3-step chain)",
                per_step,
                median(ref) / 3,
                ratio=median(ours) / median(ref),
                target=f"<= {TARGET_OVERHEAD_S} s",
                verdict=verdict(per_step <= TARGET_OVERHEAD_S),
                note="reference: papermill's own time per step; ratio: whole chain",
            )
        )
        rows.append(row("first pipeline run, cold (3 steps)", cold, None, note="store creation"))

        for kind in WORK:
            sweep_time(root, kind, 0.1, 2, "local")  # warm the pool's code path
            serial, parallel = [], []
            for _ in range(reps):
                serial.append(sweep_time(root, kind, work, 1, "local"))
                parallel.append(sweep_time(root, kind, work, 2, "local"))
            ratio = median(parallel) / median(serial)
            details[f"sweep_{kind}"] = {"serial": serial, "parallel": parallel}
            rows.append(
                row(
                    f"3-variant sweep, 2 local workers vs 1 ({kind} {work:g} s)",
                    median(parallel),
                    median(serial),
                    ratio=ratio,
                    target=f"< {TARGET_SWEEP_RATIO}x",
                    verdict=verdict(ratio < TARGET_SWEEP_RATIO),
                )
            )
        if args.dask:
            import distributed

            with distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            ) as cluster:
                address = cluster.scheduler_address
                sweep_time(root, "sleep", 0.1, 2, "dask", scheduler=address)
                times = [
                    sweep_time(root, "sleep", work, 2, "dask", scheduler=address)
                    for _ in range(reps)
                ]
            serial = median(details["sweep_sleep"]["serial"])
            details["sweep_dask_sleep"] = times
            rows.append(
                row(
                    f"3-variant sweep, Dask 2 workers vs 1 local (sleep {work:g} s)",
                    median(times),
                    serial,
                    ratio=median(times) / serial,
                    target=f"< {TARGET_SWEEP_RATIO}x",
                    verdict=verdict(median(times) / serial < TARGET_SWEEP_RATIO),
                )
            )
    finally:
        os.chdir(tmp)
        if not args.keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    print(format_table(rows))
    if args.json:
        write_json(
            args.json,
            {"benchmark": "pipelines", "machine": machine(), "rows": rows, **details},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
