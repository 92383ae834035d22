"""The jupyter-mlops wheel a build context installs, so an image runs installed code rather
than sources put on ``PYTHONPATH``.

From a source checkout (an editable or development install) the wheel is built with
``pip wheel --no-deps``; the JupyterLab sidebar's build hook is skipped
(``SKIP_JUPYTER_BUILDER``, which hatch-jupyter-builder honours): a model server has no use
for the front end, and the build would need Node.js. Installed from a wheel, jupyter-mlops
has no source tree to build from: the same release is fetched from the package index.
The image installs the wheel with ``--no-deps``: the context's ``requirements.txt`` holds
what serving needs, not the notebook side's dependencies (MLflow's server, DVC, JupyterLab).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from jupyter_mlops._version import __version__
from jupyter_mlops.errors import MlopsError

DISTRIBUTION = "jupyter-mlops"


def source_tree() -> Path | None:
    """The project folder this package was loaded from, when it is a source checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            name = tomllib.load(fh).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if name == DISTRIBUTION else None


def build_wheel(dest: Path) -> Path:
    """Write the jupyter-mlops wheel into ``dest``; its path."""
    dest.mkdir(parents=True, exist_ok=True)
    source = source_tree()
    pip = [sys.executable, "-m", "pip"]
    if source is not None:
        command = [*pip, "wheel", "--no-deps", "--wheel-dir", str(dest), str(source)]
        what = f"build the jupyter-mlops wheel from {source}"
    else:
        command = [
            *pip, "download", "--no-deps", "--only-binary", ":all:", "--dest", str(dest),
            f"{DISTRIBUTION}=={__version__}",
        ]  # fmt: skip
        what = f"download {DISTRIBUTION}=={__version__} from the package index"
    env = {**os.environ, "SKIP_JUPYTER_BUILDER": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wheels = sorted(dest.glob("jupyter_mlops-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise MlopsError(f"Could not {what}:\n" + "\n".join(tail))
    return wheels[-1]
