"""Step metrics (issue 15, item 4): loops and lists of numbers become metric histories.

Through a real IPython shell and a real MLflow store: a metric-like scalar updated in a
loop is logged per step, a list the cell builds is a history rather than a long param,
the user's own ``mlflow.log_metric`` calls are never duplicated, and a live chart of the
steps is shown under the cell while it runs.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.tracking.capture import capture
from jupyter_mlops.tracking.livechart import StepChart
from jupyter_mlops.tracking.recorder import scalar
from jupyter_mlops.tracking.steps import series, singular


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _run(experiment: str):  # type: ignore[no-untyped-def]
    client = _client()
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def _history(run, key: str) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    got = _client().get_metric_history(run.info.run_id, key)
    return sorted((m.step, m.value) for m in got)


def test_loop_scalars_are_logged_per_step_final_once(ip) -> None:
    cell = (
        "import numpy as np\n"
        "lr = 0.1\n"
        "loss = float('inf')\n"  # set before the loop: not a step
        "for epoch in range(5):\n"
        "    loss = 1.0 / (epoch + 1)\n"
        "    if epoch % 2 == 0:\n"
        "        val_acc = np.float32(0.5 + epoch / 10)\n"
        "    for batch in range(3):\n"
        "        batch_loss = epoch + batch / 10\n"
        "    if epoch == 3:\n"
        "        continue\n"
        "rmse = 0.25\n"
    )
    ip.run_cell_magic("track", "-e steps --quiet", cell)
    run = _run("steps")
    assert _history(run, "loss") == [(i, 1.0 / (i + 1)) for i in range(5)]  # no extra step 0
    val_acc = _history(run, "val_acc")
    assert [s for s, _ in val_acc] == [0, 1, 2]
    assert [v for _, v in val_acc] == pytest.approx([0.5, 0.7, 0.9])
    # the innermost loop that assigns it: 15 steps, one per inner iteration
    assert [s for s, _ in _history(run, "batch_loss")] == list(range(15))
    assert _history(run, "batch_loss")[-1] == (14, 4.2)
    assert _history(run, "rmse") == [(0, 0.25)]
    assert run.data.metrics["loss"] == 0.2 and run.data.params == {"lr": "0.1"}


def test_lists_of_numbers_are_histories_not_params(ip) -> None:
    cell = (
        "import numpy as np\n"
        "hidden = [64, 32]\n"
        "train_losses, val_accs = [], []\n"
        "for epoch in range(40):\n"
        "    train_losses.append(1 / (epoch + 1))\n"
        "    val_accs.append(0.5 + epoch / 100)\n"
        "accuracies = np.linspace(0.1, 0.9, 9)\n"
        "losses = (0.3, 0.2)\n"
        "test_sizes = [0.1, 0.2]\n"
    )
    ip.run_cell_magic("track", "-e lists --quiet", cell)
    run = _run("lists")
    assert run.data.params == {"hidden": "[64, 32]", "test_sizes": "[0.1, 0.2]"}
    assert len(_history(run, "train_losses")) == 40
    assert _history(run, "val_accs")[-1] == (39, 0.5 + 39 / 100)
    assert [v for _, v in _history(run, "accuracies")] == pytest.approx(
        [0.1 * i for i in range(1, 10)]
    )
    assert _history(run, "losses") == [(0, 0.3), (1, 0.2)]


def test_users_own_metric_logging_is_not_duplicated(ip) -> None:
    ip.run_cell("import mlflow")
    cell = (
        "for epoch in range(4):\n"
        "    loss = 1.0 / (epoch + 1)\n"
        "    acc = epoch / 4\n"
        "    mlflow.log_metric('loss', loss, step=epoch)\n"
    )
    ip.run_cell_magic("track", "-e own --quiet", cell)
    run = _run("own")
    assert _history(run, "loss") == [(i, 1.0 / (i + 1)) for i in range(4)]  # theirs alone
    assert _history(run, "acc") == [(i, i / 4) for i in range(4)]  # ours, for the rest


def test_live_chart_updates_in_place_while_the_loop_runs(ip, capsys) -> None:
    published: list[tuple[dict, bool]] = []
    pub = ip.display_pub
    original = pub.publish

    def keep(data, metadata=None, source=None, *, transient=None, update=False, **kw):  # type: ignore[no-untyped-def]
        published.append(({**data, "display_id": (transient or {}).get("display_id")}, update))
        return original(data, metadata, source, transient=transient, update=update, **kw)

    pub.publish = keep
    try:
        cell = (
            "import time\nfor step in range(30):\n    loss = 1 / (step + 1)\n    time.sleep(0.05)\n"
        )
        ip.run_cell_magic("track", "-e live --quiet", cell)
    finally:
        del pub.publish
    charts = [(d, u) for d, u in published if "step metrics" in d.get("text/plain", "")]
    assert len(charts) >= 3  # shown, updated at least once while running, final
    assert not charts[0][1] and all(u for _, u in charts[1:])
    assert len({d["display_id"] for d, _ in charts}) == 1 and charts[0][0]["display_id"]
    final = charts[-1][0]
    assert "loss=0.03333 (step 29)" in final["text/plain"]
    # (a terminal shell computes text/plain only; the kernel test sees the SVG)
    # at most every 0.5 s: 1.5 s of loop gives a handful of draws, not one per iteration
    assert len(charts) <= 6


def test_no_chart_for_plain_track_api(project, capsys) -> None:
    import jupyter_mlops

    ns: dict = {}

    def execute(transform):  # type: ignore[no-untyped-def]
        import ast

        tree = transform(ast.parse("for i in range(3):\n    loss = i\n"))
        exec(compile(tree, "<cell>", "exec"), ns)

    result = jupyter_mlops.track_code(
        "for i in range(3):\n    loss = i\n", ns, execute, experiment="api"
    )
    assert capsys.readouterr().out == ""
    assert result.run.metrics["loss"] == 2
    assert len(_history(_run("api"), "loss")) == 3


def test_step_helpers() -> None:
    import numpy as np

    assert [singular(n) for n in ("losses", "val_accs", "accuracies", "loss", "f1s")] == [
        "loss",
        "val_acc",
        "accuracy",
        None,
        "f1",
    ]
    assert series([1, 2.5, np.float32(3)]) == [1.0, 2.5, 3.0]
    assert series(["a"]) is None and series([]) is None and series(np.zeros((2, 2))) is None
    assert scalar(np.float32(0.5)) == 0.5 and scalar(np.array(2.0)) == 2.0 and scalar("x") is None
    chart = StepChart({"loss": [float(i) for i in range(10_000)], "acc": [0.5]})
    html = chart._repr_html_()
    assert html.count("<svg") == 2 and html.count(",") < 2_000  # thinned to a few hundred
    # the final value of a captured scalar is the history's last step, not a new metric
    from jupyter_mlops.tracking.capture import CellFacts

    got = capture(CellFacts(assigned=["loss"]), {"loss": 0.1}, histories={"loss": [0.3, 0.2]})
    assert got.metrics == {} and got.histories == {"loss": [0.3, 0.2, 0.1]}
    got = capture(CellFacts(assigned=["loss"]), {"loss": 0.2}, histories={"loss": [0.3, 0.2]})
    assert got.histories == {"loss": [0.3, 0.2]}
    got = capture(
        CellFacts(assigned=["loss"]),
        {"loss": 0.2},
        histories={"loss": [0.2]},
        skip_metrics={"loss"},
    )
    assert got.metrics == {} and got.histories == {}


def test_plain_execute_without_transform_records_only_rebound_names(project) -> None:
    import jupyter_mlops

    ns: dict = {"acc": 0.99, "lr": 0.5}
    source = "if False:\n    acc = 0.1\nlr = 0.01\n"
    result = jupyter_mlops.track_code(source, ns, lambda: exec(source, ns), experiment="legacy")
    assert result.run.metrics == {} and result.run.params == {"lr": "0.01"}
