"""Pipelines: parameterize notebooks, validate pipeline.yaml, run steps in real kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from mlflow import MlflowClient

from jupyter_mlops import pipelines
from jupyter_mlops.config import load_config
from jupyter_mlops.pipelines import ParameterError, PipelineError

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(path: Path, *cells: str, params: str | None = None) -> Path:
    """A notebook of code cells; ``params`` becomes a first cell tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_pipeline(root: Path, spec: dict, name: str = "pipeline.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def mlflow_client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


# -- parameterize ---------------------------------------------------------------------------
def test_parameterize_tags_the_literal_cell_once(project: Path) -> None:
    nb = notebook(
        project / "train.ipynb",
        "import math",
        "n_estimators = 100\ndata: str = 'data/iris.csv'\nrate = 0.1",
        "model = n_estimators * rate",
    )
    found = pipelines.parameterize(nb)
    assert found.changed and found.cell == 1
    assert found.parameters == {"n_estimators": 100, "data": "data/iris.csv", "rate": 0.1}
    assert "n_estimators = 100" in str(found)
    cells = nbformat.read(nb, as_version=4).cells
    assert cells[1].metadata["tags"] == ["parameters"]
    assert "parameters" not in cells[0].get("metadata", {}).get("tags", [])

    again = pipelines.parameterize(nb)  # idempotent: same cell, nothing written
    assert not again.changed and again.cell == 1
    assert pipelines.notebook_parameters(nb) == found.parameters


def test_parameterize_honours_a_marked_cell_and_explains_when_none(project: Path) -> None:
    marked = notebook(
        project / "marked.ipynb",
        "alpha = 1",
        "# parameters\nfrom pathlib import Path\nroot = Path('.')\nepochs = 3",
    )
    found = pipelines.parameterize(marked)
    assert found.cell == 1
    assert found.parameters == {"epochs": 3} and found.computed == ["root"]

    none = notebook(project / "none.ipynb", "%matplotlib inline", "x = compute()\nprint(x)")
    with pytest.raises(ParameterError, match=r"none.ipynb: no parameters cell.*# parameters"):
        pipelines.parameterize(none)
    with pytest.raises(ParameterError, match="cell 5 is not a code cell"):
        pipelines.parameterize(none, cell=5)


def test_new_pipeline_starts_from_a_notebook(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "iris.csv").write_text("a,target\n1,0\n")
    nb = notebook(
        project / "nb" / "train.ipynb",
        "import os",
        "data = '../data/iris.csv'\nn_estimators = 100",
        "x = 1",
    )
    path = pipelines.new_pipeline(nb, project / "pipeline.yaml")
    spec = yaml.safe_load(path.read_text())
    assert spec == {
        "name": "train",
        "params": {"data": "data/iris.csv", "n_estimators": 100},  # from the pipeline's folder
        "steps": {"train": {"notebook": "nb/train.ipynb", "inputs": ["${data}"], "outputs": []}},
    }
    assert "parameters" in nbformat.read(nb, as_version=4).cells[1].metadata["tags"]
    with pytest.raises(PipelineError, match="exists"):
        pipelines.new_pipeline(nb, path)


# -- validation -----------------------------------------------------------------------------
@pytest.fixture
def two_steps(project: Path) -> Path:
    (project / "data").mkdir()
    (project / "data" / "raw.txt").write_text("1\n2\n")
    notebook(project / "prep.ipynb", "pass", params="data = 'data/raw.txt'\nscale = 1")
    notebook(project / "fit.ipynb", "pass", params="source = 'prepared.txt'\nalpha = 0.5")
    notebook(project / "plain.ipynb", "x = compute()")
    return project


def _spec(**step_changes: dict) -> dict:
    spec = {
        "name": "demo",
        "params": {"data": "data/raw.txt"},
        "steps": {
            "prep": {
                "notebook": "prep.ipynb",
                "inputs": ["${data}"],
                "outputs": ["${run_dir}/prepared.txt"],
            },
            "fit": {
                "notebook": "fit.ipynb",
                "params": {"source": "${run_dir}/prepared.txt"},
                "inputs": ["${run_dir}/prepared.txt"],
            },
        },
    }
    for name, change in step_changes.items():
        spec["steps"].setdefault(name, {}).update(change)
    return spec


def _plan(root: Path, spec: dict, **overrides: object) -> list:
    pipeline = pipelines.load_pipeline(write_pipeline(root, spec))
    return pipeline.plan(overrides, run_dir=root / ".mlops" / "pipelines" / "x")


def test_plan_resolves_params_paths_and_data_flow(two_steps: Path) -> None:
    prep, fit = _plan(two_steps, _spec(), scale=3, **{"fit.alpha": 0.9})
    assert prep.params == {"data": "data/raw.txt", "scale": 3}
    assert fit.params == {"source": ".mlops/pipelines/x/prepared.txt", "alpha": 0.9}
    assert fit.needs == ["prep"]  # from the data flow, no `needs` written
    # A parameter naming another step's output is a dependency even without `inputs`.
    _, fit = _plan(two_steps, _spec(fit={"inputs": []}))
    assert fit.needs == ["prep"]
    assert prep.external_inputs == [two_steps / "data" / "raw.txt"]
    assert fit.external_inputs == []


def test_a_step_param_naming_a_pipeline_param_gets_its_value(two_steps: Path) -> None:
    # `alpha: "${alpha}"`: the pipeline's alpha, resolved alike by `pipeline run` and by a
    # DVC stage (whose params.yaml gives the same placeholder as a step override).
    spec = {**_spec(fit={"params": {"alpha": "${alpha}", "source": "${run_dir}/p.txt"}})}
    spec["params"] = {**spec["params"], "alpha": 0.25}
    spec["steps"]["fit"]["inputs"] = []
    for overrides in ({}, {"fit.alpha": "${alpha}"}):
        _, fit = _plan(two_steps, spec, **overrides)
        assert fit.params["alpha"] == 0.25
    _, fit = _plan(two_steps, spec, alpha=0.75, **{"fit.alpha": "${alpha}"})
    assert fit.params == {"alpha": 0.75, "source": ".mlops/pipelines/x/p.txt"}
    spec["steps"]["fit"]["params"] = {"alpha": "${source}", "source": "${alpha}"}
    with pytest.raises(PipelineError, match=r"cycle: (alpha -> source -> alpha|source -> al)"):
        _plan(two_steps, spec)


@pytest.mark.parametrize(
    ("change", "overrides", "message"),
    [
        ({"fit": {"params": {"alpah": 1}}}, {}, r"step 'fit': unknown parameter 'alpah': "
         r"fit.ipynb declares source, alpha"),
        ({}, {"n_trees": 5}, r"unknown parameter 'n_trees'.*known: alpha, data, scale, source"),
        ({}, {"fit.nope": 5}, r"step 'fit': unknown parameter 'nope'"),
        ({"prep": {"inputs": ["data/missing.csv"]}}, {},
         r"step 'prep': input data/missing.csv does not exist and no step writes it"),
        ({"prep": {"needs": ["fit"]}}, {}, r"cycle: (prep -> fit -> prep|fit -> prep -> fit)"),
        ({"fit": {"executor": "slurm"}}, {},
         r"step 'fit': unknown executor 'slurm' \(known: dask, local, threads\)"),
        ({"plain": {"notebook": "plain.ipynb", "params": {"x": 1}}}, {},
         r"step 'plain': plain.ipynb has no cell tagged 'parameters'.*parameterize plain.ipynb"),
        ({"fit": {"needs": ["trian"]}}, {}, r"step 'fit' needs 'trian', which is not a step"),
        ({"fit": {"params": {"source": "${nowhere}"}}}, {}, r"step 'fit': \$\{nowhere\} names"),
        ({"fit": {"notebook": "gone.ipynb"}}, {}, r"step 'fit': notebook gone.ipynb does not"),
    ],
)  # fmt: skip
def test_bad_definitions_name_the_step(
    two_steps: Path, change: dict, overrides: dict, message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        _plan(two_steps, _spec(**change), **overrides)


def test_overrides_split_single_values_from_sweeps(tmp_path: Path) -> None:
    fixed, swept = pipelines.parse_overrides(
        ["n=50,100,200", "data=data/new.csv", "layers=[1,2]", "name=a,b", "train.depth=3"]
    )
    assert fixed == {"data": "data/new.csv", "layers": [1, 2], "train.depth": 3}
    assert swept == {"n": [50, 100, 200], "name": ["a", "b"]}
    grid = tmp_path / "grid.yaml"
    grid.write_text("n: [1, 2]\nk: [a, b]\n")
    assert pipelines.load_grid(grid) == [
        {"n": 1, "k": "a"},
        {"n": 1, "k": "b"},
        {"n": 2, "k": "a"},
        {"n": 2, "k": "b"},
    ]
    with pytest.raises(PipelineError, match="name=value"):
        pipelines.parse_overrides(["oops"])


# -- running in real kernels --------------------------------------------------------------------
PREP = """\
values = [float(v) * scale for v in open(data).read().split()]
with open(out_path, "w") as fh:
    fh.write("\\n".join(str(v) for v in values))
"""
SCORE = """\
%%track --quiet
values = [float(v) for v in open(prepared).read().split()]
mean_score = sum(values) / len(values)
"""
SCORE_2 = """\
%%track --quiet
above_score = sum(v > threshold for v in values) / len(values)
"""


@pytest.fixture
def scored(project: Path) -> Path:
    (project / "data").mkdir()
    (project / "data" / "points.txt").write_text("1\n2\n3\n4\n")
    notebook(
        project / "nb" / "prep.ipynb",
        "data = 'data/points.txt'\nscale = 1.0\nout_path = 'prepared.txt'",
        PREP,
    )
    notebook(
        project / "nb" / "score.ipynb",
        "%load_ext jupyter_mlops",
        SCORE,
        SCORE_2,
        params="prepared = 'prepared.txt'\nthreshold = 0.5",
    )
    return write_pipeline(
        project,
        {
            "name": "scores",
            "params": {"data": "data/points.txt", "scale": 1.0},
            "steps": {
                "prep": {
                    "notebook": "nb/prep.ipynb",
                    "params": {"out_path": "${run_dir}/prepared.txt"},
                    "inputs": ["${data}"],
                    "outputs": ["${run_dir}/prepared.txt"],
                },
                "score": {
                    "notebook": "nb/score.ipynb",
                    "params": {"prepared": "${run_dir}/prepared.txt"},
                    "inputs": ["${run_dir}/prepared.txt"],
                },
            },
        },
    )


@pytest.mark.slow
def test_parameterize_then_run_with_overrides_tracks_and_reproduces(
    project: Path, scored: Path
) -> None:
    assert pipelines.parameterize(project / "nb" / "prep.ipynb").changed
    record = pipelines.run(scored, {"scale": 2.0, "score.threshold": 4.5})
    assert record.ok, record
    assert list(record.steps) == ["prep", "score"]
    folder = Path(record.folder)
    assert folder == project / ".mlops" / "pipelines" / record.run_id
    stored = json.loads((folder / "run.json").read_text())
    assert stored["status"] == "SUCCEEDED"
    assert stored["steps"]["score"]["params"]["threshold"] == 4.5
    for step in record.steps.values():
        executed = nbformat.read(project / step.executed_notebook, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    client = mlflow_client()
    parent = client.get_run(record.mlflow_run_id)
    assert parent.data.params["scale"] == "2.0"
    assert parent.data.tags["mlops.pipeline.run"] == record.run_id
    (snap,) = json.loads(parent.data.tags["mlops.data"])
    assert snap["path"] == "data/points.txt" and snap["md5"]
    prep_run = client.get_run(record.steps["prep"].mlflow_run_id)
    assert prep_run.data.params["scale"] == "2.0"
    score_run = client.get_run(record.steps["score"].mlflow_run_id)
    assert score_run.data.tags["mlflow.parentRunId"] == record.mlflow_run_id
    assert score_run.data.params["threshold"] == "4.5"
    # Both %%track cells of the step logged into the step's own run.
    assert score_run.data.metrics == {"mean_score": 5.0, "above_score": 0.5}
    assert score_run.data.tags["mlops.notebook"] == "nb/score.ipynb"
    assert score_run.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string="tags.`mlops.pipeline.step` = 'score'"
    )
    assert [r.info.run_id for r in children] == [score_run.info.run_id]
    assert parent.data.metrics == {"mean_score": 5.0, "above_score": 0.5}

    again = pipelines.run(scored, {"scale": 2.0, "score.threshold": 4.5}, executor="threads")
    assert again.ok and again.run_id != record.run_id
    assert again.metrics == record.metrics
    assert again.data == record.data

    shown = str(pipelines.history())
    assert record.run_id in shown and again.run_id in shown


BOOM = "raise RuntimeError(f'boom {x}')"


@pytest.mark.slow
def test_failing_step_stops_dependants_and_keeps_its_notebook(project: Path) -> None:
    notebook(project / "boom.ipynb", "y = x + 1", BOOM, params="x = 1")
    notebook(project / "ok.ipynb", "y = x + 1", params="x = 1")
    notebook(project / "die.ipynb", "import os\nos._exit(1)")
    spec = write_pipeline(
        project,
        {
            "name": "fragile",
            "steps": {
                "a": {"notebook": "boom.ipynb", "params": {"x": 7}},
                "b": {"notebook": "ok.ipynb", "needs": ["a"]},
                "c": {"notebook": "die.ipynb"},
                "d": {"notebook": "ok.ipynb"},
            },
        },
    )
    record = pipelines.run(spec, workers=2)  # three steps can start: a pool of processes
    steps = record.steps
    assert record.status == "FAILED"
    assert steps["a"].status == "FAILED"
    assert "step 'a'" in steps["a"].error and "RuntimeError: boom 7" in steps["a"].error
    assert steps["b"].status == "SKIPPED" and "needs 'a', which failed" in steps["b"].error
    assert steps["c"].status == "FAILED" and "kernel died" in steps["c"].error
    assert steps["d"].status == "SUCCEEDED"
    kept = nbformat.read(project / steps["a"].executed_notebook, as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in kept.cells for o in c.get("outputs", []))
    assert (project / steps["c"].executed_notebook).is_file()
    assert steps["b"].mlflow_run_id is None

    client = mlflow_client()
    assert client.get_run(record.mlflow_run_id).info.status == "FAILED"
    assert client.get_run(steps["a"].mlflow_run_id).info.status == "FAILED"
    assert client.get_run(steps["d"].mlflow_run_id).info.status == "FINISHED"
    with pytest.raises(PipelineError, match=r"step 'a'.*boom 7.*step 'c'.*kernel died"):
        record.raise_for_status()
    assert "FAILED" in str(pipelines.get_pipeline_run(record.run_id[:17]))


# -- DVC ----------------------------------------------------------------------------------------
COPY = "open(out_path, 'w').write(open(src).read().upper())"


def _dvc(project: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _executions(project: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in pipelines.list_pipeline_runs():
        for name, step in run.steps.items():
            assert step.status == "SUCCEEDED", step.error
            counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.slow
def test_dvc_export_reruns_only_what_changed(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "a.txt").write_text("alpha\n")
    (project / "data" / "b.txt").write_text("beta\n")
    params = "src = 'in.txt'\nout_path = 'out.txt'"
    notebook(project / "copy.ipynb", COPY, params=params)
    spec = write_pipeline(
        project,
        {
            "name": "copies",
            "params": {"first": "data/a.txt"},
            "steps": {
                "upper": {
                    "notebook": "copy.ipynb",
                    "params": {"src": "${first}", "out_path": "${run_dir}/a.txt"},
                    "inputs": ["${first}"],
                    "outputs": ["${run_dir}/a.txt"],
                },
                "again": {
                    "notebook": "copy.ipynb",
                    "params": {"src": "${run_dir}/a.txt", "out_path": "${run_dir}/a2.txt"},
                    "inputs": ["${run_dir}/a.txt"],
                    "outputs": ["${run_dir}/a2.txt"],
                },
                "other": {
                    "notebook": "copy.ipynb",
                    "params": {"src": "data/b.txt", "out_path": "${run_dir}/b.txt"},
                    "inputs": ["data/b.txt"],
                    "outputs": ["${run_dir}/b.txt"],
                },
            },
        },
    )
    dvc_yaml = pipelines.export_dvc(spec)
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert stages["again"]["deps"] == ["copy.ipynb", "build/pipelines/copies/a.txt"]
    assert stages["upper"]["params"] == ["first", "upper.src", "upper.out_path"]
    assert stages["other"]["outs"] == ["build/pipelines/copies/b.txt"]
    assert yaml.safe_load((project / "params.yaml").read_text())["first"] == "data/a.txt"

    _dvc(project, "init", "--no-scm", "-q")
    _dvc(project, "repro")
    assert _executions(project) == {"upper": 1, "again": 1, "other": 1}
    assert (project / "build/pipelines/copies/a2.txt").read_text() == "ALPHA\n"

    out = _dvc(project, "repro")
    assert "didn't change" in out or "up to date" in out
    assert _executions(project) == {"upper": 1, "again": 1, "other": 1}

    (project / "data" / "b.txt").write_text("gamma\n")
    _dvc(project, "repro")
    assert _executions(project) == {"upper": 1, "again": 1, "other": 2}
    assert (project / "build/pipelines/copies/b.txt").read_text() == "GAMMA\n"

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["upper"]["src"] = "data/b.txt"  # a parameter change: its stage and dependants
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = _dvc(project, "status")
    assert "upper:" in status and "other:" not in status


def test_exporters_are_a_registry_by_engine_name(two_steps: Path) -> None:
    assert pipelines.known_exporters() == ["dvc"]
    spec = write_pipeline(two_steps, _spec())
    path = pipelines.export_pipeline(spec, "dvc", run_dir="build/demo")
    assert path.resolve() == (two_steps / "dvc.yaml").resolve()
    assert list(yaml.safe_load(path.read_text())["stages"]) == ["prep", "fit"]
    with pytest.raises(PipelineError, match=r"Unknown exporter 'airflow' \(known: dvc\)"):
        pipelines.export_pipeline(spec, "airflow")


# -- sweeps on Dask -----------------------------------------------------------------------------
SQUARE = """\
%%track --quiet
square_score = float(n) ** 2 + offset
"""


@pytest.mark.slow
def test_sweep_on_a_real_dask_cluster(project: Path) -> None:
    distributed = pytest.importorskip("distributed")
    notebook(
        project / "square.ipynb", "%load_ext jupyter_mlops", SQUARE, params="n = 1\noffset = 0"
    )
    spec = write_pipeline(
        project,
        {"name": "squares", "steps": {"square": {"notebook": "square.ipynb"}}},
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        result = pipelines.launch(
            spec,
            ["n=1,2,3", "offset=0.5"],
            executor="dask",
            scheduler=cluster.scheduler_address,
        )
        with distributed.Client(cluster) as client:
            ran_on = client.run(os.getpid)  # the workers are other processes
    assert isinstance(result, pipelines.Sweep)
    assert result.ok, result
    assert [r.metrics["square_score"] for r in result.runs] == [1.5, 4.5, 9.5]
    assert result.best("square_score").sweep == {
        "id": result.sweep_id,
        "variant": 2,
        "params": {"n": 3},
    }
    assert os.getpid() not in ran_on.values()
    client = mlflow_client()
    parents = client.search_runs(
        [client.get_experiment_by_name("squares").experiment_id],
        filter_string=f"tags.`mlops.sweep.id` = '{result.sweep_id}' and run_name = 'squares'",
    )
    assert sorted(r.data.params["n"] for r in parents) == ["1", "2", "3"]
    assert {r.data.params["offset"] for r in parents} == {"0.5"}
    assert all(r.data.metrics["square_score"] for r in parents)
    assert "compare: %compare -e squares" in str(result)
