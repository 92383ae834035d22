"""`import jupyter_mlops` and `%load_ext jupyter_mlops` must not load the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "mlflow",
    "dvc",
    "pandas",
    "sklearn",
    "papermill",
    "plotly",
    "fastapi",
    "scipy",
    "sqlalchemy",
]

PROBE = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
before = set(sys.modules)
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "jupyter_mlops")
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def test_load_ext_imports_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "jupyter_mlops" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_track_help_lists_options(ip) -> None:
    doc = ip.find_cell_magic("track").__doc__
    for option in (
        "--experiment",
        "--data",
        "--params",
        "--metrics",
        "--model",
        "--no-model",
        "--tag",
        "--quiet",
    ):
        assert option in doc
