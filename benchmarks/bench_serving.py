"""The model server beside ``mlflow models serve``, on the same model in the same run.

Model: an iris ``RandomForestClassifier(n_estimators=100)`` logged with
``mlflow.sklearn.log_model`` (cloudpickle, signature) and registered as ``iris-rf`` v1 in a
temporary project. Servers, all on loopback:

* reference: ``mlflow models serve -m models:/iris-rf/1 --env-manager local`` (uvicorn,
  one worker, MLflow's defaults)
* ours: ``deploy("iris-rf@champion")`` (one worker, micro-batching and prediction log on,
  ``durability="write"``); for the log's cost the same without the log and with
  ``durability="fsync"``; for micro-batching's share the same with ``batching=False``
* baselines: in-process ``model.predict`` of one row, and an empty FastAPI endpoint served by
  uvicorn (the HTTP round trip every server pays)

Both servers get the same MLflow payload on ``/invocations`` (``dataframe_records``). The load
generator is a small asyncio HTTP/1.1 client (keep-alive connections, one request in flight
per connection) in this process: concurrency 1, 8, 32 and 64 for single rows, then 1,000-row
batches; a fixed number of requests per level after a warm-up. The servers run side by side
and take turns, one at a time, for ``--rounds`` rounds (medians reported), so that changes in
a shared machine's background load weigh on all of them alike. Start-up is the time from
launching the server (``deploy()`` call / ``mlflow models serve`` process) to its first
successful prediction, median of ``--reps`` alternating starts (``deploy()`` is called from a
process that has already resolved the model once, as a notebook that trained it has).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_all import HERE, REPO, format_table, machine, median, row, verdict, write_json

sys.path.insert(0, str(REPO))  # tests.helpers
from tests.helpers import free_port

TARGET_THROUGHPUT_C32 = 10.0  # ours / MLflow, at least
TARGET_P99_C32 = 0.2  # ours / MLflow, at most
TARGET_C1 = 1.5  # our p50 / (in-process predict + empty HTTP round trip), at most
TARGET_START = 0.5  # our start-up / MLflow's, at most
CONCURRENCY = (1, 8, 32, 64)
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ONE_ROW = {"dataframe_records": [dict(zip(FEATURES, (5.1, 3.5, 1.4, 0.2), strict=True))]}

EMPTY_APP = """
import sys, uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
app = FastAPI()
@app.post("/empty")
async def empty():
    return Response(b'{"predictions": [0]}', media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


# -- load generation ----------------------------------------------------------------------


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    port: int, request: bytes, todo: list[int], latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while todo:
            todo.pop()
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{status}: {body[:200]!r}")
    finally:
        writer.close()


async def _load(port: int, path: str, body: bytes, concurrency: int, total: int) -> dict[str, Any]:
    request = _request(path, body)
    todo = list(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(port, request, todo, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000.0

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": elapsed,
        "throughput": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def load(port: int, path: str, payload: Any, concurrency: int, total: int) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    asyncio.run(_load(port, path, body, concurrency, max(concurrency, total // 10)))  # warm-up
    return asyncio.run(_load(port, path, body, concurrency, total))


# -- servers ------------------------------------------------------------------------------


def first_answer(port: int, path: str, deadline_s: float = 120.0) -> None:
    """Poll until ``path`` answers a prediction with 200 (new connection per try)."""
    request = _request(path, json.dumps(ONE_ROW).encode())
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"no answer on port {port} within {deadline_s} s")


def kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def start_mlflow(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/iris-rf/1",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        first_answer(port, "/invocations")
    except Exception:
        kill(proc)
        raise
    return proc, port, time.perf_counter() - start


def start_ours(name: str, **options: Any) -> tuple[Any, float]:
    from jupyter_mlops.serving import deploy

    start = time.perf_counter()
    deployment = deploy("iris-rf@champion", name=name, wait=False, **options)
    first_answer(deployment.port, "/invocations")
    return deployment, time.perf_counter() - start


def stop_ours(name: str) -> None:
    from jupyter_mlops.serving import stop

    stop(name)


# -- the run ------------------------------------------------------------------------------


def setup_project(root: Path) -> Any:
    """A project with iris-rf v1 (alias champion) registered; returns the loaded pyfunc."""
    (root / ".mlops").mkdir(parents=True)
    os.chdir(root)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    import mlflow.pyfunc

    from jupyter_mlops.config import load_config
    from tests.helpers import register_iris

    register_iris(load_config(), 100, 42, "champion")
    return mlflow.pyfunc.load_model("models:/iris-rf/1")


def in_process(model: Any, reps: int) -> dict[str, Any]:
    """``model.predict`` of one row in this process, reported like a load run."""
    import pandas as pd

    frame = pd.DataFrame(ONE_ROW["dataframe_records"])
    for _ in range(20):
        model.predict(frame)
    times = []
    start = time.perf_counter()
    for _ in range(reps):
        begin = time.perf_counter()
        model.predict(frame)
        times.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - start
    times.sort()
    return {
        "concurrency": 1,
        "requests": reps,
        "errors": 0,
        "first_error": None,
        "seconds": elapsed,
        "throughput": reps / elapsed,
        "p50_ms": statistics.median(times) * 1000.0,
        "p99_ms": times[min(reps - 1, int(0.99 * reps))] * 1000.0,
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one measurement: medians of throughput and percentiles, all errors."""
    return {
        "concurrency": runs[0]["concurrency"],
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
        "throughput": median(r["throughput"] for r in runs),
        "p50_ms": median(r["p50_ms"] for r in runs),
        "p99_ms": median(r["p99_ms"] for r in runs),
        "rounds": runs,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    rounds = 1 if quick else args.rounds
    # Requests per round: MLflow answers about 100 req/s, ours over 1,000 under load.
    single = {1: 150, 8: 400, 32: 800, 64: 800} if quick else {1: 300, 8: 1500, 32: 3000, 64: 3000}
    single_mlflow = (
        {1: 150, 8: 200, 32: 300, 64: 300} if quick else {1: 300, 8: 500, 32: 600, 64: 600}
    )
    batch_requests = 20 if quick else 50
    reps = 1 if quick else args.reps
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    model = setup_project(tmp / "proj")
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'proj' / '.mlops' / 'mlflow.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    mlflow_log = tmp / "mlflow-serve.log"
    results: dict[str, Any] = {"tmp": str(tmp), "quick": quick, "rounds": rounds}
    rows_1000 = {"dataframe_records": ONE_ROW["dataframe_records"] * 1000}

    # A notebook that deploys has used MLflow already: resolve once so that deploy() is timed
    # as it runs there, not with this process's first MLflow queries and imports.
    from jupyter_mlops.serving import resolve_target

    resolve_target("iris-rf@champion")

    # Start-up, alternating; the last start of each is kept for the load runs.
    starts: dict[str, list[float]] = {"mlflow": [], "ours": []}
    procs: list[subprocess.Popen[bytes]] = []
    names: list[str] = []
    ports: dict[str, int] = {}
    try:
        for i in range(reps):
            keep = i == reps - 1
            proc, port, seconds = start_mlflow(env, mlflow_log)
            starts["mlflow"].append(seconds)
            if keep:
                procs.append(proc)
                ports["mlflow"] = port
            else:
                kill(proc)
            deployment, seconds = start_ours(f"bench-{i}")
            starts["ours"].append(seconds)
            if keep:
                names.append(deployment.name)
                ports["ours"] = deployment.port
            else:
                stop_ours(deployment.name)
            print(
                f"start {i}: mlflow {starts['mlflow'][-1]:.2f} s, ours {seconds:.2f} s", flush=True
            )
        results["start"] = starts

        # The variants and the empty endpoint run beside them (idle servers cost nothing).
        variants: dict[str, dict[str, Any]] = {
            "no_log": {"prediction_log": False},  # the prediction log's cost
            "fsync": {"durability": "fsync"},
            "no_batching": {"batching": False},  # what micro-batching brings
        }
        for label, options in variants.items():
            deployment, _ = start_ours(f"bench-{label}", **options)
            names.append(deployment.name)
            ports[label] = deployment.port
        ports["empty"] = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", EMPTY_APP, str(ports["empty"])], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        first_answer(ports["empty"], "/empty")

        # Load: the servers take turns, round after round, so that a change in the
        # machine's background load hits all of them alike; medians over rounds.
        def turns(key: str, sides: dict[str, tuple[str, Any, int, int]]) -> None:
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            for _ in range(rounds):
                for side, (path, payload, c, n) in sides.items():
                    if side == "in_process":
                        runs[side].append(in_process(model, n))
                    else:
                        runs[side].append(load(ports[side], path, payload, c, n))
            for side, side_runs in runs.items():
                results.setdefault(side, {})[key] = combined = combine(side_runs)
                print(
                    f"  {key:>14} {side:>12}: {combined['throughput']:8.1f} req/s, "
                    f"p50 {combined['p50_ms']:7.1f} ms, p99 {combined['p99_ms']:7.1f} ms, "
                    f"errors {combined['errors']}",
                    flush=True,
                )

        inv = "/invocations"
        for c in CONCURRENCY:
            sides = {
                "mlflow": (inv, ONE_ROW, c, single_mlflow[c]),
                "ours": (inv, ONE_ROW, c, single[c]),
            }
            if c in (1, 32):
                sides.update({v: (inv, ONE_ROW, c, single[c]) for v in variants})
            if c == 1:  # the baselines of concurrency 1, in the same turns
                sides["empty"] = ("/empty", ONE_ROW, 1, single[1])
                sides["in_process"] = ("", None, 1, single[1])
            turns(f"c{c}", sides)
        for c in (1, 8):
            turns(
                f"batch1000_c{c}",
                {side: (inv, rows_1000, c, batch_requests) for side in ("mlflow", "ours")},
            )
        record = ONE_ROW["dataframe_records"][0]
        turns("predict_c32", {"ours": ("/predict", record, 32, single[32])})
        results["empty_http"] = results.pop("empty")["c1"]
        results["predict_ms"] = results.pop("in_process")["c1"]["p50_ms"]
    finally:
        for proc in procs:
            kill(proc)
        for name in names:
            stop_ours(name)
    return results


def table_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    ours_start, mlflow_start = median(r["start"]["ours"]), median(r["start"]["mlflow"])
    ratio = ours_start / mlflow_start
    rows.append(
        row(
            "start to first answer",
            ours_start,
            mlflow_start,
            ratio=ratio,
            target=f"<= {TARGET_START}x",
            verdict=verdict(ratio <= TARGET_START),
            note="ours: deploy() call until the first 200 from /invocations; MLflow: "
            "`mlflow models serve` launch until the same",
        )
    )
    for c in CONCURRENCY:
        o, m = r["ours"][f"c{c}"], r["mlflow"][f"c{c}"]
        ratio = o["throughput"] / m["throughput"]
        target, ok = ("-", None)
        if c == 32:
            target, ok = f">= {TARGET_THROUGHPUT_C32:g}x", ratio >= TARGET_THROUGHPUT_C32
        rows.append(
            row(
                f"throughput c={c}",
                o["throughput"],
                m["throughput"],
                unit="req/s",
                ratio=ratio,
                target=target,
                verdict="INFO" if ok is None else verdict(ok),
            )
        )
        rows.append(
            row(f"p50 c={c}", o["p50_ms"], m["p50_ms"], unit="ms", ratio=o["p50_ms"] / m["p50_ms"])
        )
        ratio = o["p99_ms"] / m["p99_ms"]
        target, ok = ("-", None)
        if c == 32:
            target, ok = f"<= {TARGET_P99_C32:g}x", ratio <= TARGET_P99_C32
        rows.append(
            row(
                f"p99 c={c}",
                o["p99_ms"],
                m["p99_ms"],
                unit="ms",
                ratio=ratio,
                target=target,
                verdict="INFO" if ok is None else verdict(ok),
            )
        )
    for c in (1, 8):
        o, m = r["ours"][f"batch1000_c{c}"], r["mlflow"][f"batch1000_c{c}"]
        rows.append(
            row(
                f"1000-row batch c={c} rows/s",
                o["throughput"] * 1000,
                m["throughput"] * 1000,
                unit="rows/s",
                ratio=o["throughput"] / m["throughput"],
            )
        )
        rows.append(
            row(
                f"1000-row batch c={c} p99",
                o["p99_ms"],
                m["p99_ms"],
                unit="ms",
                ratio=o["p99_ms"] / m["p99_ms"],
            )
        )
    base = r["predict_ms"] + r["empty_http"]["p50_ms"]
    ours_c1 = r["ours"]["c1"]["p50_ms"]
    rows.append(
        row(
            "c=1 p50 vs predict + empty HTTP",
            ours_c1,
            base,
            unit="ms",
            ratio=ours_c1 / base,
            target=f"<= {TARGET_C1}x",
            verdict=verdict(ours_c1 / base <= TARGET_C1),
            note=f"reference: in-process predict of one row ({r['predict_ms']:.2f} ms) + "
            f"p50 of an empty FastAPI endpoint at c=1 ({r['empty_http']['p50_ms']:.2f} ms)",
        )
    )
    for label, what in (("no_log", "without the prediction log"), ("fsync", "with fsync")):
        for c in (1, 32):
            with_log, other = r["ours"][f"c{c}"], r[label][f"c{c}"]
            rows.append(
                row(
                    f"log cost c={c}: req/s vs {what}",
                    with_log["throughput"],
                    other["throughput"],
                    unit="req/s",
                    ratio=with_log["throughput"] / other["throughput"],
                )
            )
    for c in (1, 32):
        o, nb = r["ours"][f"c{c}"], r["no_batching"][f"c{c}"]
        rows.append(
            row(
                f"micro-batching c={c}: req/s on vs off",
                o["throughput"],
                nb["throughput"],
                unit="req/s",
                ratio=o["throughput"] / nb["throughput"],
                note=""
                if c == 1
                else "off: batching=False (one request per model call), "
                "the rest of the server unchanged",
            )
        )
    p = r["ours"]["predict_c32"]
    rows.append(
        row(
            "/predict c=32 (our JSON records)",
            p["throughput"],
            None,
            unit="req/s",
            note=f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms",
        )
    )
    errors = sum(
        v["errors"]
        for side in ("ours", "mlflow", "no_log", "fsync", "no_batching")
        for v in r[side].values()
        if isinstance(v, dict) and "errors" in v
    )
    rows.append(
        row(
            "failed requests (all runs)",
            float(errors),
            None,
            unit="",
            target="0",
            verdict=verdict(errors == 0),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller counts, one start each")
    parser.add_argument("--reps", type=int, default=3, help="start-ups per server (default 3)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="load rounds per server and level, taken in turns (default 3)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary project (stores, server logs)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    results = run(args)
    if not args.keep:
        os.chdir(HERE)
        shutil.rmtree(results["tmp"], ignore_errors=True)
    rows = table_rows(results)
    print()
    print(format_table(rows))
    if args.json:
        write_json(
            args.json, {"benchmark": "serving", "machine": machine(), "rows": rows, **results}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
