"""The README's main job: run the quickstart in a fresh project and say where the run is."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jupyter_mlops._util.urls import redact
from jupyter_mlops.errors import MlopsError

QUICKSTART = "01-quickstart.ipynb"


def _find_quickstart() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base / "notebooks" / QUICKSTART
        if candidate.is_file():
            return candidate
    raise MlopsError(f"Cannot find notebooks/{QUICKSTART}; run from the jupyter-mlops checkout")


def run_demo(folder: Path) -> None:
    """Create a git project in ``folder``, execute the quickstart there and report the run."""
    from jupyter_mlops.config import load_config
    from jupyter_mlops.pipelines.execute import execute_notebook
    from jupyter_mlops.tracking import latest_runs

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".mlops").mkdir(exist_ok=True)
    notebook = folder / QUICKSTART
    shutil.copyfile(_find_quickstart(), notebook)
    if not (folder / ".git").exists():
        # Its own repository, so the run can record a commit and DVC can use git.
        subprocess.run(["git", "init", "-q", str(folder)], check=True)
        for args in (["add", QUICKSTART], ["commit", "-q", "-m", "quickstart"]):
            subprocess.run(
                ["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost", *args],
                cwd=folder,
                check=True,
            )
    print(f"Executing {QUICKSTART} in {folder} ...", flush=True)
    out = execute_notebook(notebook, folder / "01-quickstart.out.ipynb", cwd=folder)
    config = load_config(folder)
    # The quickstart's own run: not its reproduction, which is newer and has its own notebook.
    runs = latest_runs(config=config, notebook=QUICKSTART, limit=1)
    if not runs:
        raise MlopsError("The quickstart ran but recorded no run")
    run = runs[0]
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run["metrics"].items()))
    print(f"Executed notebook: {out}")
    print(f"Run {run['run_id']} ({run['run_name']}) in {run['experiment']}: {run['status']}")
    print(f"  metrics: {metrics}")
    print(f"  tracking store: {redact(config.tracking_uri)}")
    print(f"  browse it: mlflow ui --backend-store-uri {redact(config.tracking_uri)}")
