"""``%%track`` against a team's tracking server (``mlflow server`` on PostgreSQL).

Three fresh kernels run the iris cell of ``bench_track.py`` (bare, then tracked):

* ours, server:    ``%%track`` with ``MLFLOW_TRACKING_URI`` = the server
* reference:       the same cell logged with MLflow's fluent API against the same server
                   (``mlflow.start_run`` + ``log_param``/``log_metric`` +
                   ``mlflow.sklearn.log_model`` at MLflow's defaults, as in bench_track)
* ours, embedded:  ``%%track`` on the project's SQLite store

Reported: the per-cell overhead (tracked minus bare, medians of warm runs) of ours against
the server versus the reference against the same server, and versus ours on the embedded
store. The server is started with ``jupyter-mlops server start``'s API on a throw-away
PostgreSQL cluster (tests/team/pg.py; needs Debian's ``postgresql``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench_track import spawn
from run_all import REPO, format_table, machine, median, row, verdict, write_json

sys.path.insert(0, str(REPO))

TARGET_VS_EMBEDDED = 3.0  # a server costs round trips; at most 3x the embedded overhead
TARGET_VS_MLFLOW = 5.0  # and still 5x less than logging the same cell with MLflow


def _overhead(result: dict, variant: str) -> float:
    return median(result["times"][variant]) - median(result["times"]["bare"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="warm runs per variant")
    parser.add_argument("--quick", action="store_true", help="2 warm runs")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps

    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.server import start_server, stop_server
    from tests.helpers import free_port
    from tests.team.pg import new_cluster

    root = Path(tempfile.mkdtemp(prefix="bench-team-"))
    cluster = new_cluster()
    server_dir = root / "server"
    (server_dir / ".mlops").mkdir(parents=True)
    port = free_port()
    try:
        print("starting PostgreSQL and mlflow server ...", flush=True)
        info = start_server(
            backend_store_uri=cluster.create_database("mlflow"),
            artifacts_destination=str(server_dir / "artifacts"),
            port=port,
            workers=1,
            config=load_config(server_dir),
        )
        env = {"MLFLOW_TRACKING_URI": info.url}
        server = spawn("ours", root, reps, env=env, label="ours-server")
        reference = spawn("reference", root, reps, fmt="cloudpickle", env=env)
        embedded = spawn("ours", root, reps, label="ours-embedded")
    finally:
        stop_server(port, load_config(server_dir))
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)

    ours_server = _overhead(server, "ours")
    ref_server = _overhead(reference, "reference")
    ours_embedded = _overhead(embedded, "ours")
    vs_mlflow = ref_server / ours_server if ours_server > 0 else None
    vs_embedded = ours_server / ours_embedded if ours_embedded > 0 else None
    note = (
        f"median of {reps} warm runs minus the bare cell; the reference logs the same "
        "params, metric and model with MLflow's fluent API (cloudpickle, as skops refuses "
        "a RandomForest), requirement inference at its default"
    )
    rows = [
        row(
            "%%track overhead vs MLflow, both on the server",
            ours_server,
            ref_server,
            ratio=vs_mlflow,
            target=f">= {TARGET_VS_MLFLOW:.0f}x",
            verdict=verdict(vs_mlflow is not None and vs_mlflow >= TARGET_VS_MLFLOW),
            note=note,
        ),
        row(
            "%%track overhead: server vs embedded store",
            ours_server,
            ours_embedded,
            ratio=vs_embedded,
            target=f"<= {TARGET_VS_EMBEDDED:.0f}x",
            verdict=verdict(vs_embedded is not None and vs_embedded <= TARGET_VS_EMBEDDED),
            note="the same %%track cell; ratio = server overhead / embedded overhead",
        ),
    ]
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"benchmark": "team", "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
