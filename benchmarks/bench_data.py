"""Data snapshots (``jupyter_mlops.data.snapshot``) beside ``md5sum`` and ``dvc add``.

One file of N MiB of random data (default 1024), in two fresh git projects (A for us, B
for DVC), measured warm (the file is in the page cache; ``md5sum`` reads it once first):

* ``md5sum``: the floor for anything that must read and hash the file
* ours, first snapshot: ``snapshot(["data.bin"])`` in a fresh process with
  ``jupyter_mlops.data`` imported (as in a kernel with the extension loaded) but not DVC;
  the DVC import is part of the measured time. DVC is already initialised (timed apart).
* ours, unchanged: ``snapshot`` again on the unchanged file, in a fresh process, and the
  median of 5 further calls in that same process
* ``dvc add``: ``Repo(B).add("data.bin")`` at DVC's defaults in a fresh process, DVC import
  included
* ``cp``: a plain copy of the file, to show what writing 1 GiB costs on this machine

Before each first-snapshot/``dvc add`` repetition the projects are reset (``.dvc`` file,
cache, DVC's site cache, our state file removed), then ``sync`` and a 1 s pause so that
write-back of the previous repetition does not land on the next one.

Targets (from the issue): first snapshot <= 1.5x ``md5sum`` for 1 GiB; unchanged < 0.1 s.
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
import time
from pathlib import Path
from typing import Any

from run_all import format_table, machine, median, row, verdict, write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_FIRST_RATIO = 1.5
TARGET_UNCHANGED_S = 0.1
TARGET_SIZE_MIB = 1024

WORKER = r"""
import json, os, sys, time
from pathlib import Path
mode, root = sys.argv[1], Path(sys.argv[2])
out = {}
if mode == "dvc-add":
    t0 = time.perf_counter()
    from dvc.repo import Repo
    repo = Repo(os.fspath(root))
    (stage,) = repo.add(os.fspath(root / "data.bin"))
    repo.close()
    out["seconds"] = time.perf_counter() - t0
    out["md5"] = stage.outs[0].hash_info.value
else:
    import jupyter_mlops.data as data
    from jupyter_mlops.data.snapshotting import route_counts
    t0 = time.perf_counter()
    (snap,) = data.snapshot(["data.bin"], root)
    out["seconds"] = time.perf_counter() - t0
    out["md5"] = snap.md5
    out["paths"] = dict(route_counts)
    if mode == "ours-again":
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            data.snapshot(["data.bin"], root)
            times.append(time.perf_counter() - t0)
        out["in_process"] = sorted(times)[len(times) // 2]
        out["paths"] = dict(route_counts)
    out["dvc_imported"] = "dvc.repo" in sys.modules
print("RESULT " + json.dumps(out))
"""


def run_worker(mode: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, mode, os.fspath(root)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {mode} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, out


def settle() -> None:
    os.sync()
    time.sleep(1.0)


def make_data(path: Path, size_mib: int) -> None:
    chunk = 1 << 20
    with path.open("wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(chunk))


def git_init(root: Path) -> None:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


def reset(root: Path, site_cache: Path) -> None:
    """Forget every trace of an earlier snapshot of data.bin (keep DVC initialised)."""
    for name in ("data.bin.dvc", ".gitignore", ".mlops/data-state.json"):
        (root / name).unlink(missing_ok=True)
    for folder in (root / ".dvc" / "cache", site_cache):
        shutil.rmtree(folder, ignore_errors=True)


def spread(values: list[float]) -> str:
    return f"median {median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="First and unchanged data snapshots vs md5sum and `dvc add` on one "
        "file of random data (warm page cache, fresh processes)."
    )
    parser.add_argument(
        "--size-mib",
        "--size-mb",
        dest="size_mib",
        type=int,
        default=TARGET_SIZE_MIB,
        help="file size in MiB (default 1024)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="repetitions of each timed step (default 3; medians reported)",
    )
    parser.add_argument("--quick", action="store_true", help="64 MiB, 2 repetitions (CI smoke)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    parser.add_argument(
        "--dir",
        help="where to create the temporary projects (default: "
        "the system temp dir; it needs about 4x the file size free)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    size_mib, reps = (64, 2) if args.quick else (args.size_mib, args.reps)
    if reps < 1 or size_mib < 1:
        parser.error("--reps and --size-mib must be at least 1")
    if shutil.which("md5sum") is None:
        parser.error("md5sum is needed as the reference (GNU coreutils)")

    base = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.dir))
    ours_root, dvc_root, site_cache = base / "ours", base / "dvc", base / "dvc-site-cache"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": os.fspath(site_cache)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.fspath(REPO), env.get("PYTHONPATH")]))
    os.environ.update({k: env[k] for k in ("DVC_NO_ANALYTICS", "DVC_SITE_CACHE_DIR")})
    sys.path.insert(0, os.fspath(REPO))
    from jupyter_mlops.data import ensure_dvc

    times: dict[str, list[float]] = {
        "md5sum": [],
        "cp": [],
        "first": [],
        "dvc_add": [],
        "again": [],
        "again_in_process": [],
    }
    checks: dict[str, Any] = {}
    try:
        git_init(ours_root)
        git_init(dvc_root)
        print(f"creating {size_mib} MiB of random data in {base} ...", flush=True)
        make_data(ours_root / "data.bin", size_mib)
        shutil.copyfile(ours_root / "data.bin", dvc_root / "data.bin")
        t0 = time.perf_counter()
        ensure_dvc(ours_root)
        init_s = time.perf_counter() - t0
        ensure_dvc(dvc_root)
        settle()
        expected = timed(["md5sum", os.fspath(ours_root / "data.bin")])[1].split()[0]
        timed(["md5sum", os.fspath(dvc_root / "data.bin")])  # warm the copy too

        for rep in range(reps):
            print(f"repetition {rep + 1}/{reps}", flush=True)
            settle()
            times["md5sum"].append(timed(["md5sum", os.fspath(ours_root / "data.bin")])[0])
            settle()
            copy = base / "cp-copy.bin"
            times["cp"].append(timed(["cp", os.fspath(ours_root / "data.bin"), os.fspath(copy)])[0])
            copy.unlink()
            for root in (ours_root, dvc_root):
                reset(root, site_cache)
            settle()
            first = run_worker("ours-first", ours_root, env)
            times["first"].append(first["seconds"])
            settle()
            added = run_worker("dvc-add", dvc_root, env)
            times["dvc_add"].append(added["seconds"])
            checks.setdefault("first_paths", []).append(first["paths"])
            checks.setdefault("md5_ok", []).append(first["md5"] == added["md5"] == expected)

        os.utime(ours_root / "data.bin")  # leave the file "changed" for a last first run
        settle()
        first = run_worker("ours-first", ours_root, env)  # rehash of a touched file
        checks["rehash_after_touch_s"] = first["seconds"]
        time.sleep(0.05)
        for _ in range(reps):
            again = run_worker("ours-again", ours_root, env)
            times["again"].append(again["seconds"])
            times["again_in_process"].append(again["in_process"])
            checks["again_paths"] = again["paths"]
            checks["again_imported_dvc"] = again["dvc_imported"]

        from dvc.repo import Repo

        repo = Repo(os.fspath(ours_root))
        checks["dvc_status_after_ours"] = repo.status()
        repo.close()
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(base)

    md5s = median(times["md5sum"])
    first_s, dvc_s = median(times["first"]), median(times["dvc_add"])
    again_s = median(times["again"])
    full_size = size_mib >= TARGET_SIZE_MIB
    size_note = "" if full_size else f" (target is set for {TARGET_SIZE_MIB} MiB: INFO only)"
    rows = [
        row(f"md5sum {size_mib} MiB", md5s, None, note="the reference: read + hash only"),
        row(
            f"first snapshot {size_mib} MiB",
            first_s,
            md5s,
            ratio=first_s / md5s,
            target=f"<= {TARGET_FIRST_RATIO}x md5sum",
            verdict=verdict(first_s / md5s <= TARGET_FIRST_RATIO) if full_size else "INFO",
            note="fresh process, DVC import included, vs md5sum" + size_note,
        ),
        row(
            "unchanged re-snapshot",
            again_s * 1e6,
            None,
            unit="µs",
            target=f"< {TARGET_UNCHANGED_S} s",
            verdict=verdict(again_s < TARGET_UNCHANGED_S),
            note="fresh process (jupyter_mlops imported, DVC not); in-process: "
            f"{median(times['again_in_process']) * 1e6:.0f} µs",
        ),
        row(
            f"dvc add {size_mib} MiB",
            dvc_s,
            md5s,
            ratio=dvc_s / md5s,
            note="Repo.add at DVC defaults, fresh process, vs md5sum",
        ),
        row(
            "first snapshot vs dvc add",
            first_s,
            dvc_s,
            ratio=first_s / dvc_s,
            note="ours / dvc add",
        ),
        row(
            f"cp {size_mib} MiB",
            median(times["cp"]),
            md5s,
            ratio=median(times["cp"]) / md5s,
            note="plain page-cache copy on this machine, vs md5sum",
        ),
        row("DVC init (once per project)", init_s, None),
    ]
    print()
    print(format_table(rows))
    for name, values in times.items():
        print(f"{name:>17}: {spread(values)}")
    print(f"\nchecks: {json.dumps(checks, default=str)}")
    problems = []
    if not all(checks["md5_ok"]):
        problems.append("md5 of ours, dvc add and md5sum differ")
    if checks["dvc_status_after_ours"] != {}:
        problems.append(f"dvc status not clean: {checks['dvc_status_after_ours']}")
    if checks["again_imported_dvc"]:
        problems.append("the unchanged re-snapshot imported DVC (fast path missed)")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "data",
                "machine": machine(),
                "size_mib": size_mib,
                "reps": reps,
                "rows": rows,
                "times": times,
                "checks": checks,
                "problems": problems,
            },
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
