"""Drift statistics on wide numeric data: ours beside scipy and Evidently 0.7.

Data: a reference and a current matrix of N rows x 20 float64 columns (standard normals;
5 current columns shifted by 0.1 sd), written once to a temporary folder as ``.npy``
(ours, scipy) and Parquet (Evidently). Each measurement runs in its own fresh process, so
peak memory is the process's own: the wall time of the computation only (data loaded and
imports done, one warm-up on a small slice first; median of ``--reps``), the peak of
Python allocations during it (``tracemalloc``, which numpy reports to), and the process's
maximum resident set size (``ru_maxrss``, data included).

* ours, cached reference: ``drift(profile, current)`` with the reference summarised
  beforehand, as monitoring does (the profile is cached under the data snapshot's hash):
  KS, PSI, Wasserstein for every column, status and verdict.
* ours, cold: ``profile(reference)`` + ``drift`` (sorting the reference included).
* scipy: ``ks_2samp`` + ``wasserstein_distance`` column by column (no PSI, no verdict).
* Evidently 0.7.23: ``Report([DataDriftPreset()]).run(current, reference)`` in its own
  virtual environment (``build/bench-venvs/evidently``, pandas 2.x: Evidently 0.7.23 fails
  to import beside pandas 3), created on first use; skipped with a note when it cannot be.

Targets: 1,000,000 x 20 in under 2 s (ours, cached reference); at least 10x faster than
Evidently's data-drift preset at 100,000 x 20. ``--quick``: 100,000 rows only, 1 rep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from run_all import format_table, machine, reference_python, row, verdict, write_json

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_VENV = ROOT / "build" / "bench-venvs" / "evidently"
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
COLUMNS = 20
SHIFTED = 5
TARGET_1M_S = 2.0
TARGET_VS_EVIDENTLY = 10.0

CHILD = textwrap.dedent(
    r"""
    import json, resource, statistics, sys, time, tracemalloc
    import numpy as np
    mode, folder, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {"mode": mode}
    if mode == "evidently":
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
        ref = pd.read_parquet(f"{folder}/ref.parquet")
        cur = pd.read_parquet(f"{folder}/cur.parquet")
        Report([DataDriftPreset()]).run(cur.head(2000), ref.head(2000))  # warm-up
        def work():
            result = Report([DataDriftPreset()]).run(cur, ref).dict()
            return result["metrics"][0]["value"]["count"]
    else:
        ref = np.load(f"{folder}/ref.npy")
        cur = np.load(f"{folder}/cur.npy")
        if mode == "scipy":
            from scipy import stats
            def work():
                n = 0
                for j in range(ref.shape[1]):
                    p = stats.ks_2samp(ref[:, j], cur[:, j]).pvalue
                    stats.wasserstein_distance(ref[:, j], cur[:, j])
                    n += p < 0.05
                return n
            stats.ks_2samp(ref[:1000, 0], cur[:1000, 0])
        else:
            import pandas as pd
            from jupyter_mlops.monitoring import drift, profile
            names = [f"f{j:02d}" for j in range(ref.shape[1])]
            ref_df = pd.DataFrame(ref, columns=names)
            cur_df = pd.DataFrame(cur, columns=names)
            drift(profile(ref_df.head(5000)), cur_df.head(5000))  # warm-up: imports
            if mode == "ours_cached":
                prof = profile(ref_df)
                def work():
                    return drift(prof, cur_df).n_drifted
            else:
                def work():
                    return drift(profile(ref_df), cur_df).n_drifted
    times = []
    tracemalloc.start()
    peak = 0
    for _ in range(reps):
        tracemalloc.reset_peak()
        start = time.perf_counter()
        out["drifted"] = float(work())
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    out["seconds"] = statistics.median(times)
    out["all_seconds"] = times
    out["peak_alloc_mib"] = peak / 2**20
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    """
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _measure(python: str, mode: str, folder: Path, reps: int) -> dict[str, Any]:
    proc = subprocess.run(
        [python, "-c", CHILD, mode, str(folder), str(reps)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=3600,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"mode": mode, "error": tail or f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _evidently_python() -> tuple[str | None, str]:
    """The Evidently venv's python (created on first use), or None and why not."""
    return reference_python(EVIDENTLY_VENV, EVIDENTLY_PINS, "evidently", "Evidently")


def _write_data(folder: Path, n: int, parquet: bool) -> None:
    import numpy as np

    rng = np.random.default_rng(n)
    ref = rng.standard_normal((n, COLUMNS))
    cur = rng.standard_normal((n, COLUMNS))
    cur[:, :SHIFTED] += 0.1
    np.save(folder / "ref.npy", ref)
    np.save(folder / "cur.npy", cur)
    if parquet:
        import pandas as pd

        names = [f"f{j:02d}" for j in range(COLUMNS)]
        pd.DataFrame(ref, columns=names).to_parquet(folder / "ref.parquet")
        pd.DataFrame(cur, columns=names).to_parquet(folder / "cur.parquet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="100,000 rows only, 1 rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000", help="row counts, comma-separated")
    parser.add_argument(
        "--evidently-sizes", default="100000", help="row counts Evidently also runs on"
    )
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args(argv)
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 1 if args.quick else args.reps
    ev_sizes = set() if args.no_evidently else {int(s) for s in args.evidently_sizes.split(",")}
    ev_python, ev_note = (None, "skipped (--no-evidently)")
    if ev_sizes & set(sizes):
        ev_python, ev_note = _evidently_python()

    results: dict[str, dict[str, Any]] = {}
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
            folder = Path(tmp)
            with_ev = ev_python is not None and n in ev_sizes
            _write_data(folder, n, parquet=with_ev)
            found = {
                mode: _measure(sys.executable, mode, folder, reps)
                for mode in ("ours_cached", "ours_cold", "scipy")
            }
            if with_ev:
                assert ev_python is not None
                found["evidently"] = _measure(ev_python, "evidently", folder, 1)
            results[str(n)] = found
        label = f"{n:,} x {COLUMNS}"
        ours = found["ours_cached"]
        for mode, name in (("scipy", "scipy ks_2samp+wasserstein"), ("evidently", "Evidently")):
            ref = found.get(mode)
            if ref is None:
                continue
            if "error" in ref or "error" in ours:
                rows.append(row(f"{label} vs {name}", None, None, note=str(ref.get("error"))))
                continue
            ratio = ref["seconds"] / ours["seconds"]
            target, ok = "-", None
            if mode == "evidently" and n == 100_000:
                target, ok = f">= {TARGET_VS_EVIDENTLY:g}x", ratio >= TARGET_VS_EVIDENTLY
            rows.append(
                row(
                    f"{label}: ours (cached ref) vs {name}",
                    round(ours["seconds"], 3),
                    round(ref["seconds"], 3),
                    ratio=round(ratio, 1),
                    target=target,
                    verdict=verdict(ok) if ok is not None else "INFO",
                    note=f"peak alloc {ours['peak_alloc_mib']:.0f} vs "
                    f"{ref['peak_alloc_mib']:.0f} MiB; max RSS {ours['max_rss_mib']:.0f} vs "
                    f"{ref['max_rss_mib']:.0f} MiB",
                )
            )
        if "error" not in ours:
            if n == 1_000_000:
                rows.append(
                    row(
                        f"{label}: ours, cached reference",
                        round(ours["seconds"], 3),
                        None,
                        target=f"< {TARGET_1M_S:g} s",
                        verdict=verdict(ours["seconds"] < TARGET_1M_S),
                    )
                )
            cold = found["ours_cold"]
            if "error" not in cold:
                rows.append(
                    row(
                        f"{label}: ours, cold (profile + drift)",
                        round(cold["seconds"], 3),
                        None,
                        note=f"peak alloc {cold['peak_alloc_mib']:.0f} MiB",
                    )
                )
    print(format_table(rows))
    if ev_python is None:
        print(f"Evidently: {ev_note}")
    else:
        print(f"Evidently: {ev_note}")
    payload = {
        "benchmark": "drift",
        "machine": machine(),
        "rows": rows,
        "results": results,
        "evidently": ev_note,
        "reps": reps,
        "median_note": f"median of {reps} timed runs after a warm-up",
    }
    if args.json:
        write_json(args.json, payload)
    return 0 if all("error" not in m for r in results.values() for m in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
