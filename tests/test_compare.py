"""``runs()``, the ``--where`` language, the comparison figures and widget, and ``%compare``.

Runs are written through ``jupyter_mlops.track`` (or MLflow's client, for what %%track
would not write), read back with ``runs()`` and checked against ``mlflow.search_runs``.
"""

from __future__ import annotations

import http.server
import json
import shutil
import sqlite3
import threading
import time
import types
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.config import load_config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.tracking import runs as query
from jupyter_mlops.tracking.runs import QueryError, Where
from jupyter_mlops.widgets import figures
from jupyter_mlops.widgets.comparison import CompareWidget

CELL_A = "n_estimators = 50\nmodel = fit(n_estimators)\n"
CELL_B = "n_estimators = 200\nmodel = fit(n_estimators, deep=True)\n"


def _log(
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    *,
    experiment: str = "cmp",
    steps: list[float] | None = None,
    source: str | None = None,
    model: bool = False,
) -> str:
    with jupyter_mlops.track(experiment=experiment, name=name) as run:
        run.log_params(params)
        run.log_metrics(metrics)
        for step, value in enumerate(steps or []):
            run.log_metrics({"loss": value}, step=step)
        if source is not None:
            run.log_source(source)
        if model:
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression

            X, y = load_iris(return_X_y=True, as_frame=True)
            run.log_model(LogisticRegression(max_iter=300).fit(X, y), "model", X=X)
        time.sleep(0.002)  # distinct start times, so "newest first" is well defined
    return run.run_id


def _make_sweep() -> dict[str, str]:
    """Four runs in ``cmp`` (one in ``other``): numeric and text params, a disjoint param,
    a NaN metric, a step-logged loss, two cell sources."""
    return {
        "small": _log(
            "small",
            {"n_estimators": 50, "optimizer": "adam"},
            {"acc": 0.81},
            steps=[0.9, 0.5, 0.4],
            source=CELL_A,
        ),
        "big": _log(
            "big",
            {"n_estimators": 200, "optimizer": "sgd"},
            {"acc": 0.93},
            steps=[0.8, 0.3, 0.1],
            source=CELL_B,
        ),
        "huge": _log("huge", {"n_estimators": 1000, "optimizer": "adam"}, {"acc": 0.90}),
        "odd": _log("odd", {"kernel": "rbf"}, {"acc": float("nan"), "f1": 0.5}),
        "elsewhere": _log("elsewhere", {"n_estimators": 10}, {"acc": 0.1}, experiment="other"),
    }


@pytest.fixture(scope="module")
def _stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Template stores made once per module: a new store costs seconds of MLflow's schema
    migrations, a copy milliseconds. ``empty.db`` has no run, ``sweep.db`` the sweep."""
    root = tmp_path_factory.mktemp("cmp-template") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
            mp.delenv(var, raising=False)
        config = load_config()
        from jupyter_mlops.client import client

        client(config)  # creates the schema
        _snapshot(root, "empty.db")
        ids = _make_sweep()
        _snapshot(root, "sweep.db")
    return root, ids


def _snapshot(root: Path, name: str) -> None:
    db = root / ".mlops" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(db, root.parent / name)


def _use(project: Path, template: Path, name: str) -> None:
    shutil.copy(template.parent / name, project / ".mlops" / "mlflow.db")


@pytest.fixture
def store(project: Path, _stores: tuple[Path, dict[str, str]]) -> Path:
    """``project`` with a ready, empty MLflow store."""
    _use(project, _stores[0], "empty.db")
    return project


@pytest.fixture
def sweep(project: Path, _stores: tuple[Path, dict[str, str]]) -> dict[str, str]:
    """``project`` with its own copy of the sweep's store; the run ids by name."""
    _use(project, _stores[0], "sweep.db")
    return dict(_stores[1])


def _as_objects(series: pd.Series) -> list[Any]:
    return series.astype(object).where(series.notna(), None).tolist()


def _assert_same_as_mlflow(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert set(ref.columns) <= set(ours.columns), set(ref.columns) - set(ours.columns)
    assert sorted(ours["run_id"]) == sorted(ref["run_id"])
    aligned = ours.set_index("run_id").loc[ref["run_id"]].reset_index()
    for column in ref.columns:
        assert _as_objects(aligned[column]) == _as_objects(ref[column]), column


# -- runs() -----------------------------------------------------------------------------
@pytest.mark.parametrize("reader", ["sqlite", "mlflow"])
def test_runs_equal_mlflow_search_runs(sweep: dict[str, str], reader: str) -> None:
    config = load_config()
    client = MlflowClient(config.tracking_uri)
    client.delete_run(sweep["huge"])  # deleted runs are left out, as MLflow does
    exp = client.get_experiment_by_name("cmp").experiment_id
    mlflow.set_tracking_uri(config.tracking_uri)
    ref = mlflow.search_runs(experiment_ids=[exp])

    ours = jupyter_mlops.runs("cmp", reader=reader)  # type: ignore[arg-type]
    _assert_same_as_mlflow(ours, ref)
    assert list(ours["run_name"]) == ["odd", "big", "small"]  # newest first
    assert ours["experiment"].unique().tolist() == ["cmp"]
    assert ours["duration"].between(0, 60).all()
    odd = ours.set_index("run_name").loc["odd"]
    assert np.isnan(odd["metrics.acc"]) and odd["params.kernel"] == "rbf"
    assert pd.isna(odd["params.n_estimators"])
    # Runs of every experiment when none is named and no notebook says which.
    assert len(jupyter_mlops.runs(reader=reader)) == 4  # type: ignore[arg-type]


def test_runs_of_the_notebooks_experiment(sweep: dict[str, str]) -> None:
    client = MlflowClient(load_config().tracking_uri)
    client.set_tag(sweep["elsewhere"], "mlops.notebook", "work/nb.ipynb")
    frame = jupyter_mlops.runs(notebook="work/nb.ipynb")
    assert frame["run_name"].tolist() == ["elsewhere"]
    assert jupyter_mlops.runs(notebook="new.ipynb").empty  # no experiment "new" yet


def test_runs_in_an_empty_or_missing_store(project: Path) -> None:
    assert jupyter_mlops.runs().empty
    assert not (project / ".mlops" / "mlflow.db").exists()  # reading made no store
    with pytest.raises(NotFoundError, match="No experiment 'nope'"):
        jupyter_mlops.runs("nope")
    _log("one", {"a": 1}, {"acc": 1.0})
    with pytest.raises(NotFoundError, match=r"No experiment 'nope' \(experiments: .*cmp"):
        jupyter_mlops.runs("nope")


def test_runs_by_reference_metric_and_top(sweep: dict[str, str]) -> None:
    picked = jupyter_mlops.runs(run_ids=[sweep["big"][:4], "small", sweep["elsewhere"]])
    assert picked["run_name"].tolist() == ["big", "small", "elsewhere"]
    for reader in ("sqlite", "mlflow"):
        full = jupyter_mlops.runs(run_ids=[sweep["big"]], reader=reader)  # type: ignore[arg-type]
        assert full["run_name"].tolist() == ["big"]
    with pytest.raises(NotFoundError, match="No run 'nosuchrun'"):
        jupyter_mlops.runs(run_ids=["nosuchrun"])

    best = jupyter_mlops.runs("cmp", metric="acc", top=2)
    assert best["run_name"].tolist() == ["big", "huge"]
    # A missing (or NaN) metric sorts last; loss-like names rank smallest first.
    assert jupyter_mlops.runs("cmp", metric="acc")["run_name"].iloc[-1] == "odd"
    lowest = jupyter_mlops.runs("cmp", metric="loss")["run_name"].tolist()
    assert lowest[:2] == ["big", "small"]
    with pytest.raises(QueryError, match="No run has metric 'nope'"):
        jupyter_mlops.runs("cmp", metric="nope")
    with pytest.raises(QueryError, match="at least 1"):
        jupyter_mlops.runs("cmp", top=0)
    _log("big", {}, {}, experiment="other")  # a second run named "big"
    with pytest.raises(QueryError, match="'big' is ambiguous"):
        jupyter_mlops.runs(run_ids=["big"])
    assert len(jupyter_mlops.runs("cmp", run_ids=["big"])) == 1  # within one experiment


def test_sort_runs_is_numeric_for_numeric_params(sweep: dict[str, str]) -> None:
    frame = jupyter_mlops.runs("cmp")
    ordered = query.sort_runs(frame, "params.n_estimators", ascending=True)
    assert ordered["params.n_estimators"].tolist()[:3] == ["50", "200", "1000"]
    assert pd.isna(ordered["params.n_estimators"].iloc[-1])


# -- the where language -----------------------------------------------------------------
FRAME = pd.DataFrame(
    {
        "run_id": ["a" * 32, "b" * 32, "c" * 32, "d" * 32],
        "run_name": ["r1", "r2", "r3", "r4"],
        "status": ["FINISHED", "FINISHED", "FAILED", "FINISHED"],
        "start_time": pd.to_datetime(
            ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"], utc=True
        ),
        "duration": [1.0, 20.0, 3.0, np.nan],
        "params.n_estimators": ["50", "100", "1e3", None],
        "params.optimizer": ["adam", "sgd", "adam", "adam"],
        "params.lr": ["0.1", "0.10", "abc", "0.01"],
        "metrics.accuracy": [0.8, 0.95, np.nan, 0.91],
        "metrics.val-loss": [0.3, 0.1, 0.5, 0.2],
        "tags.mlops.notebook": ["a.ipynb", "b.ipynb", None, "a.ipynb"],
    }
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("params.n_estimators >= 100", ["r2", "r3"]),  # numbers, not text ("50" > "100")
        ("params.n_estimators >= 100 and metrics.accuracy > 0.9", ["r2"]),
        ("params.n_estimators < 100 or metrics.accuracy > 0.9", ["r1", "r2", "r4"]),
        ("not params.n_estimators >= 100", ["r1", "r4"]),
        ("params.optimizer == 'adam'", ["r1", "r3", "r4"]),
        ("params.optimizer = 'adam' AND metrics.accuracy > 0.85", ["r4"]),  # MLflow's syntax
        ("params.lr == 0.1", ["r1", "r2"]),  # "0.10" reads as the number 0.1
        ("params.lr == '0.1'", ["r1", "r2"]),
        ("params.lr != 0.1", ["r3", "r4"]),  # text "abc" differs from a number
        ("params.lr > 0", ["r1", "r2", "r4"]),  # "abc" has no order against numbers
        ("params.lr == 'abc'", ["r3"]),
        ("params.optimizer in ['sgd', 'rmsprop']", ["r2"]),
        ("params.optimizer not in ('sgd',)", ["r1", "r3", "r4"]),
        ("0.85 < metrics.accuracy <= 0.95", ["r2", "r4"]),
        ("metrics.`val-loss` < 0.25", ["r2", "r4"]),
        ("metrics['val-loss'] < 0.25", ["r2", "r4"]),
        ("tags.`mlops.notebook` = 'a.ipynb'", ["r1", "r4"]),
        ("tags.mlops.notebook == 'a.ipynb'", ["r1", "r4"]),
        ("status == 'FAILED'", ["r3"]),
        ("attributes.status != 'FAILED' and duration > 2", ["r2"]),
        ("start_time >= '2026-03-01'", ["r3", "r4"]),
        ("metrics.accuracy > metrics.`val-loss` * 1", None),  # arithmetic is refused
        ("metrics.accuracy > metrics.`val-loss`", ["r1", "r2", "r4"]),
        ("params.missing == 1", []),
        ("params.n_estimators > -1", ["r1", "r2", "r3"]),
    ],
)
def test_where_selects(expression: str, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(QueryError):
            Where(expression)
        return
    assert Where(expression).apply(FRAME)["run_name"].tolist() == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "Empty filter"),
        ("params.n >= ", "not valid"),
        ("__import__('os').system('true')", "not a comparison"),
        ("os.system('x') == 1", "neither a name"),
        ("exec.x == 1", "not one of params, metrics, tags or attributes"),
        ("accuracy > 0.9", "unknown name 'accuracy'.*metrics.accuracy"),
        ("metrics.a + 1 > 2", "neither a name"),
        ("metrics.a is None", "not allowed"),
        ("1 == 1", "both constants"),
        ("params.x in params.y", "needs a list"),
        ("params.x in [params.y]", "only hold numbers and strings"),
        ("metrics.a > [1]", "neither a name"),
        ("attributes.secret == 1", "unknown attribute"),
        ("params.x == 'open", "not valid"),
        ("start_time > 'yesterday-ish'", None),  # valid syntax, refused when applied
    ],
)
def test_invalid_where_is_a_clear_error(expression: str, message: str | None) -> None:
    if message is None:
        with pytest.raises(QueryError, match="not a time"):
            Where(expression).apply(FRAME)
        return
    with pytest.raises(QueryError, match=message) as info:
        Where(expression)
    assert "params.n_estimators >= 100" in str(info.value)  # every error shows an example


def test_where_passes_what_mlflow_can_do_to_mlflow() -> None:
    where = Where(
        "params.n >= 100 and metrics.acc > 0.9 and params.opt = 'adam' "
        "and tags.`mlops.notebook` == 'a.ipynb' and status == 'FINISHED' and params.k == '5'"
    )
    assert where.mlflow_filter() == (
        "metrics.`acc` > 0.9 and params.`opt` = 'adam' and "
        "tags.`mlops.notebook` = 'a.ipynb' and attributes.status = 'FINISHED'"
    )
    assert Where("metrics.a > 1 or metrics.b > 1").mlflow_filter() == ""
    assert Where("0.5 < metrics.a").mlflow_filter() == "metrics.`a` > 0.5"


@pytest.mark.parametrize("reader", ["sqlite", "mlflow"])
def test_where_through_runs(sweep: dict[str, str], reader: str) -> None:
    frame = jupyter_mlops.runs(
        "cmp",
        where="params.n_estimators >= 100 and metrics.acc > 0.85",
        metric="acc",
        reader=reader,  # type: ignore[arg-type]
    )
    assert frame["run_name"].tolist() == ["big", "huge"]
    with pytest.raises(QueryError, match="not valid"):
        jupyter_mlops.runs("cmp", where="params.n_estimators >=")


# -- figures ----------------------------------------------------------------------------
def test_parcoords_has_params_then_metric_with_categories_and_gaps(sweep: dict) -> None:
    frame = jupyter_mlops.runs("cmp", metric="acc")  # big, huge, small, odd
    params = ["params.n_estimators", "params.optimizer", "params.kernel"]
    trace, notes = figures.parcoords(frame, params, "metrics.acc")
    assert notes == []
    dims = {d["label"]: d for d in trace["dimensions"]}
    assert [d["label"] for d in trace["dimensions"]] == [
        "n_estimators",
        "optimizer",
        "kernel",
        "acc",
    ]
    n = dims["n_estimators"]
    assert n["values"][:3].tolist() == [200.0, 1000.0, 50.0]
    assert n["values"][3] < 50 and n["ticktext"][0] == "n/a"  # "odd" has no n_estimators
    opt = dims["optimizer"]
    assert opt["ticktext"] == ["n/a", "adam", "sgd"]
    assert opt["values"].tolist() == [1.0, 0.0, 0.0, -1.0]
    acc = dims["acc"]["values"]
    assert acc[:3].tolist() == pytest.approx([0.93, 0.90, 0.81])
    assert np.isfinite(acc).all()  # NaN drawn at the "n/a" tick, not handed to plotly
    assert trace["line"]["color"].tolist() == acc.tolist()

    picked, _ = figures.parcoords(frame, params, "metrics.acc", [sweep["huge"]])
    assert picked["line"]["color"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert picked["line"]["colorscale"][1][1] == figures.SELECTED


def test_parcoords_leaves_out_unreadable_params() -> None:
    frame = pd.DataFrame(
        {
            "run_id": [f"{i:032x}" for i in range(60)],
            "params.seed_text": [f"s{i}" for i in range(60)],
            "params.depth": [str(i // 20) for i in range(60)],
            "metrics.acc": np.linspace(0, 1, 60),
        }
    )
    trace, notes = figures.parcoords(frame, ["params.seed_text", "params.depth"], "metrics.acc")
    assert [d["label"] for d in trace["dimensions"]] == ["depth", "acc"]
    assert notes == ["seed_text has too many distinct values to plot"]
    ranked = figures.rank_params(
        frame.assign(**{"params.noise": "1"}), ["params.noise", "params.depth"], "metrics.acc"
    )
    assert ranked == ["params.depth", "params.noise"]


def test_scatter_points_and_selection(sweep: dict[str, str]) -> None:
    frame = jupyter_mlops.runs("cmp", metric="acc")
    trace, ids = figures.scatter(frame, "params.n_estimators", "metrics.acc", [sweep["small"]])
    assert trace["type"] == "scatter"
    assert ids == [sweep["big"], sweep["huge"], sweep["small"]]  # "odd" lacks both
    assert trace["x"].tolist() == [200, 1000, 50]
    assert trace["y"].tolist() == pytest.approx([0.93, 0.90, 0.81])
    assert [t.split()[0] for t in trace["text"]] == ["big", "huge", "small"]
    assert trace["selectedpoints"] == [2]
    text, _ = figures.scatter(frame, "params.optimizer", "metrics.acc")
    assert text["x"] == ["sgd", "adam", "adam"]


def test_history_lines_for_step_metrics(sweep: dict[str, str]) -> None:
    ids = [sweep["small"], sweep["big"], sweep["huge"]]
    hist = query.metric_history(ids)
    assert query.stepped_metrics(hist) == ["loss"]
    assert hist.equals(query.metric_history(ids, reader="mlflow"))
    traces = figures.history(hist, "metrics.loss", {sweep["small"]: "small", sweep["big"]: "big"})
    lines = {t["name"]: (t["x"].tolist(), t["y"].tolist()) for t in traces}
    assert lines == {"small": ([0, 1, 2], [0.9, 0.5, 0.4]), "big": ([0, 1, 2], [0.8, 0.3, 0.1])}


# -- the widget -------------------------------------------------------------------------
def test_widget_table_plots_selection_and_static_copy(sweep: dict[str, str]) -> None:
    w = jupyter_mlops.compare("cmp", metric="acc", page_size=2, ui_probe=())
    assert isinstance(w, CompareWidget)
    assert w.metric == "metrics.acc"
    # The table: one page at a time, best first, varying params as columns.
    assert [r[0] for r in w.table.rows] == ["big", "huge"]
    labels = [c["label"] for c in w.table.columns]
    assert labels[:6] == ["run", "id", "status", "started (UTC)", "duration (s)", "acc"]
    assert {"n_estimators", "optimizer", "kernel", "f1", "loss", "data", "models"} <= set(labels)
    assert w.page_label.value == "runs 1–2 of 4" and w.prev_button.disabled
    w.next_button.click()
    assert [r[0] for r in w.table.rows] == ["small", "odd"] and w.next_button.disabled
    # Plots: parallel coordinates of params then the metric, scatter, loss history.
    assert w.parcoords.data[0].type == "parcoords"
    assert w.parcoords.data[0].dimensions[-1].label == "acc"
    assert w.scatter.data[0].type == "scatter" and len(w.scatter.data[0].y) == 3
    assert w.history_box.value == "metrics.loss"
    assert sorted(t.name for t in w.history.data) == ["big", "small"]

    # Selecting in the table (as a click in the browser does) highlights everywhere.
    w.table.selected = [sweep["small"], sweep["big"]]
    assert w.selected == [sweep["small"], sweep["big"]]
    assert sorted(w.scatter.data[0].selectedpoints) == [0, 2]
    assert w.parcoords.data[0].line.color.tolist() == [1.0, 0.0, 1.0, 0.0]
    html = w.selection_html.value
    assert "params that differ" in html and "n_estimators" in html and "sgd" in html
    assert "cell source" in html and "deep=True" in html  # the cell-source diff
    assert w.register_button.disabled  # two runs: register needs exactly one

    # Selecting points in the scatter does the same the other way round.
    points = types.SimpleNamespace(point_inds=[1])  # what plotly passes to the callback
    w._on_point_selection(w.scatter.data[0], points, None)
    assert w.selected == [sweep["huge"]] and w.table.selected == [sweep["huge"]]
    w.clear_button.click()
    assert w.selected == [] and w.scatter.data[0].selectedpoints is None

    # Sorting from a header click; another metric.
    w.table.sort = {"column": "params.n_estimators", "ascending": True}
    assert [r[0] for r in w.table.rows] == ["small", "big"]
    w.metric_box.value = "metrics.f1"
    assert w.metric == "metrics.f1" and w.y_box.value == "metrics.f1"
    assert w.parcoords.data[0].dimensions[-1].label == "f1"
    assert w.message.value == ""

    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    static = bundle["text/html"]
    for name in ("big", "huge", "small", "odd", "<svg", "Static copy"):
        assert name in static


def test_parcoords_brush_selects_runs(sweep: dict[str, str]) -> None:
    w = jupyter_mlops.compare("cmp", metric="acc", ui_probe=())
    # The table is re-sorted; the plot keeps the row order it was drawn in.
    w.sort_by("params.n_estimators", ascending=True)
    assert [r[0] for r in w.table.rows] == ["small", "big", "huge", "odd"]
    acc = w.parcoords.data[0].dimensions[-1]
    acc.constraintrange = [0.85, 1.0]
    assert sorted(w.selected) == sorted([sweep["big"], sweep["huge"]])
    w.select([sweep["small"]])  # big, huge, small, odd as drawn
    assert w.parcoords.data[0].line.color.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_register_the_selected_run_and_open_it_in_mlflow(store: Path) -> None:
    with_model = _log("with-model", {"C": 1}, {"acc": 0.97}, model=True)
    _log("without", {"C": 2}, {"acc": 0.5})

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        w = jupyter_mlops.compare("cmp", ui_probe=("http://127.0.0.1:9", base))
    finally:
        server.shutdown()
    assert w.ui_url == base
    w.select([with_model[:6]])
    assert f"{base}/#/experiments/" in w.ui_link.value and with_model in w.ui_link.value
    assert not w.register_button.disabled
    w.register_button.click()
    assert "Type the registered model" in w.message.value
    w.model_name.value = "iris-cmp"
    w.register_button.click()
    assert "Registered iris-cmp version 1" in w.message.value
    version = MlflowClient(load_config().tracking_uri).get_model_version("iris-cmp", "1")
    assert version.run_id == with_model
    w.select([w.frame["run_id"][w.frame["run_name"] == "without"].iloc[0]])
    assert w.register_button.disabled
    assert "not running" in jupyter_mlops.compare("cmp", ui_probe=()).ui_link.value


def test_no_runs_and_nothing_matching_say_so(sweep: dict[str, str], project: Path) -> None:
    w = jupyter_mlops.compare("cmp", where="params.n_estimatorz > 1", ui_probe=())
    assert w.frame.empty and len(w.children) == 2
    assert "No runs to compare" in w.header.value
    assert "no run has params.n_estimatorz" in w.header.value
    assert "No runs" in w._repr_mimebundle_()["text/html"]
    with pytest.raises(QueryError, match="not valid"):
        jupyter_mlops.compare("cmp", where="params.n >")


def test_disjoint_and_text_params_and_missing_metrics_plot(store: Path) -> None:
    _log("a", {"alpha": "0.1", "solver": "lbfgs"}, {"acc": 0.7})
    _log("b", {"beta": "x", "solver": "saga"}, {"rmse": 3.0})
    _log("c", {"gamma": "on"}, {})
    w = jupyter_mlops.compare("cmp", ui_probe=())
    assert w.message.value == ""
    labels = [d.label for d in w.parcoords.data[0].dimensions]
    assert set(labels) >= {"alpha", "beta", "solver", "gamma"}
    for dim in w.parcoords.data[0].dimensions:
        assert np.isfinite(np.asarray(dim.values, dtype=float)).all()
    assert len(w.scatter.data[0].x) == 1  # only one run has the plotted metric
    # Only constant params: metrics are drawn instead, and nothing breaks.
    same = jupyter_mlops.compare("cmp", run_ids=["a"], ui_probe=())
    assert same.parcoords.data and same.message.value == ""


def test_one_selected_run_lists_its_params(sweep: dict[str, str]) -> None:
    w = jupyter_mlops.compare("cmp", ui_probe=())
    w.select([sweep["small"]])
    assert "optimizer" in w.selection_html.value and "adam" in w.selection_html.value
    diff = query.diff_runs(w.frame, [sweep["small"], sweep["big"]])
    assert diff.params == {"n_estimators": ["50", "200"], "optimizer": ["adam", "sgd"]}
    assert diff.source_diff()[-1] == "+model = fit(n_estimators, deep=True)"


def test_data_snapshots_that_differ(sweep: dict[str, str]) -> None:
    client = MlflowClient(load_config().tracking_uri)
    for name, md5 in (("small", "a" * 32), ("big", "b" * 32), ("huge", "a" * 32)):
        snap = [{"path": "data/iris.csv", "md5": md5, "size": 10, "nfiles": 1}]
        client.set_tag(sweep[name], "mlops.data", json.dumps(snap))
    frame = jupyter_mlops.runs("cmp")
    data = dict(zip(frame["run_name"], frame["data"], strict=True))
    assert data["small"] == "data/iris.csv@aaaaaaaa" and data["big"] == "data/iris.csv@bbbbbbbb"
    diff = query.diff_runs(frame, [sweep["small"], sweep["big"]], with_source=False)
    assert diff.data == {"data/iris.csv": ["a" * 32, "b" * 32]}
    assert query.diff_runs(frame, [sweep["small"], sweep["huge"]]).data == {}
    w = jupyter_mlops.compare("cmp", ui_probe=())
    w.select([sweep["small"], sweep["big"]])
    assert "data that differs" in w.selection_html.value and "b" * 32 in w.selection_html.value


# -- the magic --------------------------------------------------------------------------
def test_compare_magic(ip, sweep: dict[str, str]) -> None:
    w = ip.run_line_magic("compare", "-e cmp --metric acc --top 2")
    assert isinstance(w, CompareWidget) and w.frame["run_name"].tolist() == ["big", "huge"]
    w = ip.run_line_magic(
        "compare", '-e cmp --where "params.n_estimators >= 100 and metrics.acc > 0.85"'
    )
    assert sorted(w.frame["run_name"]) == ["big", "huge"]
    w = ip.run_line_magic("compare", f"{sweep['small'][:4]} {sweep['elsewhere'][:6]}")
    assert w.frame["run_name"].tolist() == ["small", "elsewhere"]
    w = ip.run_line_magic("compare", "-e cmp --params n_estimators,optimizer")
    assert [d.label for d in w.parcoords.data[0].dimensions][:2] == ["n_estimators", "optimizer"]
    with pytest.raises(UsageError, match="is not valid"):
        ip.run_line_magic("compare", '-e cmp --where "params.n >="')
    with pytest.raises(UsageError, match="No experiment 'nope'"):
        ip.run_line_magic("compare", "-e nope")
    assert "--where" in ip.find_line_magic("compare").__doc__


def test_runs_and_compare_are_public(project: Path) -> None:
    assert jupyter_mlops.runs is query.runs
    assert callable(jupyter_mlops.compare)
    assert {"runs", "compare"} <= set(jupyter_mlops.__all__)
    json.dumps(query.ATTRIBUTES)  # documented attribute names are plain strings
