"""The comparison's selection panel: what differs between the selected runs, a link to them
in the MLflow UI, and registering the one selected run's model.

Kept apart from the table and plots, which only say which runs are selected: this is
where the selection is acted on, through the core API (``diff_runs``, ``registry.register``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.tracking.runs import diff_runs
from jupyter_mlops.widgets import compare_html
from jupyter_mlops.widgets.compare_html import as_text, note_html

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

MAX_DIFF_RUNS = 6  # runs shown side by side


class SelectionPanel:
    """The differences (``html``) and the action row (``actions``: model name and choice,
    register, clear, MLflow link); outcomes of actions go to ``message``."""

    def __init__(self, message: widgets.HTML, *, ui_url: str | None, config: Config | None) -> None:
        self.message = message
        self.ui_url = ui_url
        self.config = config
        self.html = widgets.HTML()
        self.model_name = widgets.Text(
            placeholder="registered model name", layout={"width": "220px"}
        )
        self.model_choice = widgets.Dropdown(layout={"width": "160px", "display": "none"})
        self.register_button = widgets.Button(
            description="Register model",
            icon="archive",
            disabled=True,
            tooltip="Register the selected run's model (select exactly one run with a model)",
        )
        self.clear_button = widgets.Button(description="Clear selection", disabled=True)
        self.ui_link = widgets.HTML()
        self.actions = widgets.HBox(
            [
                self.model_name,
                self.model_choice,
                self.register_button,
                self.clear_button,
                self.ui_link,
            ],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
        )

    def show(self, frame: pd.DataFrame, selected: Sequence[str], metric: str | None) -> None:
        """Show the ``selected`` runs of ``frame`` (``metric`` first among the metrics)."""
        count = len(selected)
        self.clear_button.disabled = count == 0
        models = []
        row = None  # the one selected run
        experiment = frame["experiment_id"].iloc[0]
        if count == 1:
            row = frame[frame["run_id"] == selected[0]].iloc[0]
            models = [m.strip() for m in as_text(row["models"]).split(",") if m.strip()]
            experiment = row["experiment_id"]
        self.register_button.disabled = not models
        self.model_choice.options = models
        self.model_choice.layout.display = None if len(models) > 1 else "none"
        self.ui_link.value = compare_html.mlflow_link_html(self.ui_url, str(experiment), row)
        if count == 0:
            self.html.value = compare_html.SELECTION_HINT
            return
        shown = list(selected[:MAX_DIFF_RUNS])
        diff = diff_runs(frame, shown, config=self.config)
        self.html.value = compare_html.diff_html(diff, metric, more=count - len(shown))

    def register(self, selected: Sequence[str]) -> Any:
        """Register the model of the one run in ``selected`` under the name typed in; the
        registry's answer, or None (the message says why)."""
        import jupyter_mlops.registry as registry

        if len(selected) != 1:
            self.message.value = note_html("Select exactly one run to register its model.", True)
            return None
        name = self.model_name.value.strip()
        if not name:
            self.message.value = note_html("Type the registered model's name first.", True)
            return None
        model = self.model_choice.value if len(self.model_choice.options) > 1 else None
        try:
            result = registry.register(selected[0], name=name, model=model, config=self.config)
        except MlopsError as exc:
            self.message.value = note_html(str(exc), error=True)
            return None
        self.message.value = f"<pre style='font-size:12px'>{escape(str(result))}</pre>"
        return result
