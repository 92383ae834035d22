"""What ``%load_ext jupyter_mlops`` and ``import jupyter_mlops`` cost a fresh kernel.

Measured in fresh subprocesses, alternating the variants, median of ``--reps``:

* bare:      start an IPython ``InteractiveShell`` (the reference: what every kernel pays)
* extension: the same, then ``%load_ext jupyter_mlops``

The wall time of the whole process is compared, so interpreter start-up and exit cancel
out. Also checked: which heavy libraries ``import jupyter_mlops`` and ``%load_ext`` pull
into ``sys.modules`` (none should load before the first ``%%track``), and, for scale, how
long ``import jupyter_mlops`` takes beside ``import mlflow``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run_all import format_table, machine, median, row, verdict, write_json

TARGET_LOAD_EXT_MS = 150.0
# Must not be imported by `import jupyter_mlops` or `%load_ext jupyter_mlops`.
HEAVY = ("mlflow", "dvc", "pandas", "sklearn", "plotly", "fastapi")
# Reported for information: what else a light import might drag in.
WATCH = ("numpy", "scipy", "sqlalchemy", "papermill", "git", "ipywidgets", "uvicorn", "dask")

_PRELUDE = "import json, sys, time\nt0 = time.perf_counter()\n"
_SHELL = (
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "t1 = time.perf_counter()\n"
)
_MODULES = f"mods = sorted(m for m in {HEAVY + WATCH!r} if m in sys.modules)\n"
CHILD = {
    "bare": _PRELUDE + _SHELL + "t2 = t1\n" + _MODULES,
    "extension": _PRELUDE
    + _SHELL
    + "ip.run_line_magic('load_ext', 'jupyter_mlops')\n"
    + "assert 'track' in ip.magics_manager.magics['cell']\n"
    + "t2 = time.perf_counter()\n"
    + _MODULES,
    "import jupyter_mlops": _PRELUDE
    + "import jupyter_mlops\nt1 = t2 = time.perf_counter()\n"
    + _MODULES,
    "import mlflow": _PRELUDE + "import mlflow\nt1 = t2 = time.perf_counter()\n" + _MODULES,
}
_REPORT = "print(json.dumps({'shell': t1 - t0, 'ext': t2 - t1, 'modules': mods}))\n"


def _env(ipython_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["IPYTHONDIR"] = str(ipython_dir)  # a throwaway profile, same for every variant
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run_child(variant: str, env: dict[str, str]) -> dict[str, Any]:
    """One fresh interpreter: wall time in the parent, phase times and modules inside."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD[variant] + _REPORT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} child failed:\n{proc.stderr}")
    return {"wall": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def measure(variants: list[str], reps: int, env: dict[str, str]) -> dict[str, list[dict]]:
    """``reps`` runs of each variant after one discarded warm-up, round-robin."""
    for variant in variants:
        run_child(variant, env)  # page cache, .pyc files, the IPython profile folder
    samples: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(reps):
        order = variants if i % 2 == 0 else variants[::-1]
        for variant in order:
            samples[variant].append(run_child(variant, env))
    return samples


def import_profile(env: dict[str, str], top: int = 8) -> dict[str, Any]:
    """``python -X importtime -c 'import jupyter_mlops'``: total and the slowest modules."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import jupyter_mlops"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    entries = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            entries.append((int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)))
    total = next((cum for _, cum, _, name in entries if name == "jupyter_mlops"), None)
    slow = sorted(entries, reverse=True)[:top]
    return {
        "jupyter_mlops_cumulative_ms": None if total is None else total / 1000,
        "slowest_self_ms": {name: self_us / 1000 for self_us, _, _, name in slow},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of `%load_ext jupyter_mlops` on top of a bare IPython start, and "
        "the heavy modules `import jupyter_mlops` loads (fresh subprocesses, medians)."
    )
    parser.add_argument("--reps", type=int, default=7, help="runs per variant (default 7)")
    parser.add_argument("--quick", action="store_true", help="2 runs per variant (CI smoke)")
    parser.add_argument(
        "--skip-mlflow",
        action="store_true",
        help="do not time `import mlflow` (saves ~3 s per run)",
    )
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    if reps < 1:
        parser.error("--reps must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        env = _env(Path(tmp) / "ipython")
        variants = ["bare", "extension", "import jupyter_mlops"]
        if not args.skip_mlflow:
            variants.append("import mlflow")
        print(f"timing {', '.join(variants)}: {reps} fresh processes each ...", flush=True)
        samples = measure(variants, reps, env)
        profile = import_profile(env)

    wall = {v: median(s["wall"] for s in samples[v]) for v in variants}
    inside = {v: median(s["shell"] + s["ext"] for s in samples[v]) for v in variants}
    added_ms = (wall["extension"] - wall["bare"]) * 1000
    load_ext_ms = median(s["ext"] for s in samples["extension"]) * 1000
    modules = {v: samples[v][-1]["modules"] for v in variants}
    heavy = {
        v: [m for m in modules[v] if m in HEAVY] for v in ("import jupyter_mlops", "extension")
    }
    heavy_any = sorted(set(heavy["import jupyter_mlops"]) | set(heavy["extension"]))

    rows = [
        row(
            "%load_ext added to IPython start",
            added_ms,
            wall["bare"] * 1000,
            unit="ms",
            ratio=wall["extension"] / wall["bare"],
            target=f"<= {TARGET_LOAD_EXT_MS:.0f} ms",
            verdict=verdict(added_ms <= TARGET_LOAD_EXT_MS),
            note=f"ours = median wall time of a fresh process with the extension minus "
            f"without (the load_ext call itself: {load_ext_ms:.0f} ms); reference = a bare "
            "InteractiveShell start in a fresh process; ratio = with / without",
        ),
        row(
            "heavy modules after import + %load_ext",
            ", ".join(heavy_any) or "none",
            None,
            unit="",
            target="none",
            verdict=verdict(not heavy_any),
            note=f"heavy = {', '.join(HEAVY)}; also watched and loaded: "
            + (", ".join(sorted(set(modules["extension"]) - set(heavy_any))) or "none")
            + f" (of {', '.join(WATCH)})",
        ),
    ]
    if not args.skip_mlflow:
        rows.append(
            row(
                "import jupyter_mlops vs import mlflow",
                inside["import jupyter_mlops"],
                inside["import mlflow"],
                ratio=inside["import mlflow"] / inside["import jupyter_mlops"],
                note="time of the import statement in a fresh process; ratio = mlflow / ours",
            )
        )
    print(format_table(rows))
    total = profile["jupyter_mlops_cumulative_ms"]
    print(
        f"\n`import jupyter_mlops` under -X importtime: {total:.0f} ms cumulative; slowest "
        "modules by self time (ms): "
        + ", ".join(f"{k} {v:.1f}" for k, v in profile["slowest_self_ms"].items())
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "import",
                "machine": machine(),
                "reps": reps,
                "rows": rows,
                "wall_median_s": wall,
                "in_process_median_s": inside,
                "modules": modules,
                "importtime": profile,
                "samples": samples,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
