"""The current side of a deployment: its prediction log over a time window.

Monitoring reads the prediction log from :mod:`jupyter_mlops.predlog`, where serving
writes it; windows are written as ``"30m"``, ``"1h"``, ``"2d"`` (None or ``"all"``: all).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.predlog import REQUEST_COLUMNS
from jupyter_mlops.predlog.reader import is_output_column

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config


def parse_window(last: str | float | None) -> float | None:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` or seconds -> seconds; None = all."""
    if last is None:
        return None
    if isinstance(last, int | float):
        seconds = float(last)
    else:
        text = str(last).strip().lower()
        if text in ("", "all"):
            return None
        units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :] or "s"
        try:
            seconds = float(number) * units[unit]
        except (ValueError, KeyError):
            raise MonitoringError(
                f"Cannot read the window {last!r}: write e.g. 90s, 30m, 1h, 2d or 1w"
            ) from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise MonitoringError(f"The window must be positive, not {last!r}")
    return seconds


def predictions_window(
    deployment: str, last: str | float | None, config: Config | None = None
) -> pd.DataFrame:
    """The deployment's logged predictions of the last window (clear errors when none)."""
    from jupyter_mlops.predlog import read_predictions

    seconds = parse_window(last)
    since = time.time() - seconds if seconds is not None else None
    frame = read_predictions(deployment, since=since, config=config)
    if frame.empty:
        window = f"in the last {last}" if seconds is not None else "yet"
        everything = read_predictions(deployment, limit=1, config=config) if seconds else frame
        hint = ""
        if not everything.empty:
            latest = everything["timestamp"].iloc[-1]
            hint = f" (the latest was logged at {latest:%Y-%m-%d %H:%M:%S} UTC)"
        elif not _log_enabled(deployment, config):
            hint = " (its prediction log is switched off: deploy with prediction_log=True)"
        raise MonitoringError(
            f"Deployment {deployment!r} has logged no predictions {window}{hint}."
        )
    return frame


def _log_enabled(deployment: str, config: Config | None) -> bool:
    from jupyter_mlops._util.layout import DamagedState, deployments_root, read_state
    from jupyter_mlops.config import load_config

    config = config or load_config()
    try:
        state = read_state(deployments_root(config.mlops_dir) / deployment) or {}
    except DamagedState:  # its predictions may still be logged: look for them
        return True
    return bool(state.get("prediction_log", True))


def input_columns(frame: pd.DataFrame) -> list[str]:
    """The model-input columns of a ``read_predictions`` frame (not the request columns, the
    predictions, or the logged class probabilities ``proba_<class>``)."""
    return [
        str(c) for c in frame.columns if c not in REQUEST_COLUMNS and not is_output_column(str(c))
    ]
