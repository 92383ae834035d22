"""Run every benchmark in a fresh process and print one combined table.

Each benchmark script is run as ``python benchmarks/<script> --json OUT [quick args]``; its
JSON holds ``rows`` (see ``row()`` below), which are gathered into one table and written to
``benchmarks/results.json``. A MISS is a measurement, not a failure: the exit code is 0 unless
a benchmark crashes (non-zero exit, no JSON) or its script is missing.

This module also holds the few helpers the benchmark scripts share (row format, table,
machine description), so that they all report the same way. Importing it is cheap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# (name, script, extra args for --quick if the script has no --quick option of its own)
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("import", "bench_import.py", ["--reps", "2"]),
    ("track", "bench_track.py", ["--reps", "2"]),
    ("flavors", "bench_flavors.py", ["--reps", "2"]),
    ("torch", "bench_torch.py", ["--quick"]),
    ("loop", "bench_loop.py", ["--quick"]),
    ("data", "bench_data.py", ["--size-mib", "64"]),
    ("drift", "bench_drift.py", ["--quick"]),
    ("estimation", "bench_estimation.py", ["--quick"]),
    ("pipelines", "bench_pipelines.py", ["--quick"]),
    ("compare", "bench_compare.py", ["--quick"]),
    ("serving", "bench_serving.py", []),
    ("outcomes", "bench_outcomes.py", ["--quick"]),
    ("team", "bench_team.py", ["--quick"]),
    ("performance", "bench_performance.py", ["--quick"]),
    ("reproduce", "bench_reproduce.py", ["--quick"]),
]
VERDICTS = ("PASS", "MISS", "INFO", "CRASH", "MISSING")
PACKAGES = ("jupyter-mlops", "mlflow", "ipython", "scikit-learn", "pandas", "dvc")


# -- shared by the benchmark scripts ------------------------------------------------------


def row(
    name: str,
    ours: float | str | None,
    reference: float | str | None,
    *,
    unit: str = "s",
    ratio: float | None = None,
    target: str = "-",
    verdict: str = "INFO",
    note: str = "",
) -> dict[str, Any]:
    """One line of a benchmark's result: what we measured beside the reference tool.

    ``ratio`` is printed as ``<ratio>x``; ``note`` says what the ratio and the reference
    are when the name alone does not. ``verdict`` is PASS/MISS against ``target``, or INFO.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {
        "name": name,
        "ours": ours,
        "reference": reference,
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "verdict": verdict,
        "note": note,
    }


def timed_cell(ip: Any, cell: str) -> tuple[float, str | None]:
    """Run ``cell`` in IPython shell ``ip`` as a notebook does: (seconds, error or None)."""
    start = time.perf_counter()
    result = ip.run_cell(cell, store_history=True)
    elapsed = time.perf_counter() - start
    error = result.error_before_exec or result.error_in_exec
    if error is None:
        return elapsed, None
    first_line = (str(error).strip().splitlines() or [""])[0]
    return elapsed, f"{type(error).__name__}: {first_line[:300]}"


def ok_seconds(timed: tuple[float, str | None]) -> float:
    """The seconds of a ``timed_cell`` result; raises with the cell's error if it failed."""
    seconds, error = timed
    if error is not None:
        raise RuntimeError(error)
    return seconds


def reference_python(
    venv: Path, pins: Sequence[str], module: str, label: str, python: Path | None = None
) -> tuple[str | None, str]:
    """The interpreter of a reference tool kept in a venv of its own (``venv``, created with
    ``pins`` on first use; or ``python`` when given), with ``module`` and pandas importable;
    or None and why not. The note names the tool's and pandas' versions."""
    python = python or venv / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", *pins],
                check=True,
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            return None, f"cannot install {' '.join(pins)}: {detail.strip()[-300:]}"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            f"import {module}, pandas; print({module}.__version__, pandas.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return None, f"{label} does not import: {probe.stderr.strip().splitlines()[-1:]}"
    version, pandas = probe.stdout.split()[:2]
    return str(python), f"{label} {version} with pandas {pandas}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine() -> dict[str, Any]:
    """Where the numbers were measured (without importing the measured packages)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    versions = {}
    for dist in PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s" and abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:.3g} {unit}".strip()


def format_table(rows: Sequence[dict[str, Any]], *, with_benchmark: bool = False) -> str:
    """Rows as an aligned text table (notes under it, numbered)."""
    header = ["name", "ours", "reference", "ratio", "target", "verdict"]
    if with_benchmark:
        header.insert(0, "benchmark")
    lines, notes = [], []
    for r in rows:
        unit = r.get("unit") or ""
        ratio = r.get("ratio")
        cells = [
            str(r.get("name", "?")),
            _cell(r.get("ours"), unit),
            _cell(r.get("reference"), unit),
            "-" if ratio is None else f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x",
            str(r.get("target") or "-"),
            str(r.get("verdict") or "INFO"),
        ]
        if with_benchmark:
            cells.insert(0, str(r.get("benchmark", "")))
        if r.get("note"):
            notes.append(str(r["note"]))
            cells[header.index("name")] += f" [{len(notes)}]"
        lines.append(cells)
    widths = [max(len(c) for c in col) for col in zip(header, *lines, strict=False)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *lines]
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    return "\n".join(out)


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


# -- running them -------------------------------------------------------------------------


def _quick_args(script: Path, fallback: list[str]) -> list[str]:
    """``--quick`` if the script offers it, else the fallback options it does offer."""
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    if "--quick" in shown:
        return ["--quick"]
    if fallback and fallback[0] in shown:
        return fallback
    print(
        f"warning: {script.name} has neither --quick nor {fallback[0]}: running it in full",
        file=sys.stderr,
    )
    return []


def _rows_of(payload: Any) -> list[dict[str, Any]]:
    """The rows of a benchmark's JSON; a JSON without ``rows`` shows its numbers as INFO."""
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
        return [dict(r) for r in payload["rows"] if isinstance(r, dict)]
    if isinstance(payload, dict):
        return [
            row(str(k), v, None, unit="", note="reported without a `rows` list")
            for k, v in payload.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
    return []


def run_benchmark(
    name: str, script: Path, extra: list[str], timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one script; returns (its record for results.json, its table rows)."""
    record: dict[str, Any] = {"script": script.name, "args": extra}
    if not script.is_file():
        record.update(status="missing", error=f"{script} does not exist")
        return record, [row(name, None, None, verdict="MISSING", note=record["error"])]
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--json", str(out), *extra]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, timeout=timeout, check=False)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
        record["seconds"] = round(time.perf_counter() - start, 1)
        record["returncode"] = rc
        payload = None
        if out.is_file():
            try:
                payload = json.loads(out.read_text())
            except json.JSONDecodeError as exc:
                record["error"] = f"unreadable JSON: {exc}"
    if rc != 0 or payload is None:
        why = f"timed out after {timeout:.0f} s" if rc is None else f"exit code {rc}"
        if payload is None and rc == 0:
            why = record.get("error", "wrote no JSON")
        record.update(status="crashed", error=why)
        return record, [row(name, None, None, verdict="CRASH", note=f"{script.name}: {why}")]
    record.update(status="ok", result=payload)
    return record, _rows_of(payload)


def main(argv: Sequence[str] | None = None) -> int:
    names = [n for n, _, _ in BENCHMARKS]
    parser = argparse.ArgumentParser(
        description="Run the jupyter-mlops benchmarks (each in its own process) and print one "
        "table of ours vs the reference tool. MISS does not fail the run; a crash does."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small runs for CI smoke tests (2 repetitions, 64 MiB data file)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this benchmark (repeatable; one of {', '.join(names)})",
    )
    parser.add_argument(
        "--no-save", action="store_true", help="do not write benchmarks/results.json"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the combined results to OUT")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds before a benchmark counts as crashed (default 3600)",
    )
    args = parser.parse_args(argv)

    records: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name, script_name, quick_fallback in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        script = HERE / script_name
        extra = _quick_args(script, quick_fallback) if args.quick and script.is_file() else []
        record, bench_rows = run_benchmark(name, script, extra, args.timeout)
        records[name] = record
        rows.extend({"benchmark": name, **r} for r in bench_rows)

    print("\n" + format_table(rows, with_benchmark=True))
    counts = {v: sum(r.get("verdict") == v for r in rows) for v in VERDICTS}
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    payload = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "rows": rows,
        "benchmarks": records,
    }
    targets = [] if args.no_save else [HERE / "results.json"]
    if args.json:
        targets.append(Path(args.json))
    for target in targets:
        write_json(target, payload)
        print(f"results written to {target}")
    crashed = [n for n, rec in records.items() if rec.get("status") != "ok"]
    if crashed:
        print(f"crashed or missing: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
