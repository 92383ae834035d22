"""Inside a step's kernel: make every ``%%track`` cell log into the step's MLflow run.

The runner starts each step's kernel with ``MLFLOW_RUN_ID`` set to the step's run, which
MLflow's ``start_run`` (and so ``track()``) resumes instead of creating a run. MLflow
clears that variable when the run ends, so a second ``%%track`` cell would start a run of
its own; :func:`attach`, run at kernel start, sets it again before every cell.
"""

from __future__ import annotations

import os
from typing import Any

STEP_RUN_ENV = "JUPYTER_MLOPS_STEP_RUN_ID"
PIPELINE_RUN_ENV = "JUPYTER_MLOPS_PIPELINE_RUN"
MLFLOW_RUN_ENV = "MLFLOW_RUN_ID"


def attach(shell: Any = None) -> None:
    """Re-arm ``MLFLOW_RUN_ID`` with the step's run before each cell (no-op outside steps)."""
    run_id = os.environ.get(STEP_RUN_ENV)
    if not run_id:
        return
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return

    def arm(*_: Any) -> None:
        os.environ.setdefault(MLFLOW_RUN_ENV, run_id)

    shell.events.register("pre_run_cell", arm)
