"""Project root discovery and tracking URI precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_mlops.config import find_project_root, load_config
from jupyter_mlops.errors import ConfigError


def test_root_is_nearest_marker(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == tmp_path.resolve()
    (tmp_path / "a" / ".mlops").mkdir()
    assert find_project_root(deep) == (tmp_path / "a").resolve()


def test_default_is_sqlite_under_mlops(project: Path) -> None:
    cfg = load_config()
    assert cfg.root == project.resolve()
    assert cfg.tracking_uri == f"sqlite:///{project.resolve()}/.mlops/mlflow.db"
    assert cfg.artifact_root == project.resolve() / ".mlops" / "artifacts"
    assert cfg.sources["tracking_uri"] == "default"


def test_pyproject_then_environment_override(project: Path, monkeypatch) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.jupyter-mlops]\ntracking_uri = "http://127.0.0.1:5999"\nexperiment = "team"\n'
    )
    cfg = load_config()
    assert cfg.tracking_uri == "http://127.0.0.1:5999"
    assert cfg.artifact_root is None  # the server decides where artifacts go
    assert cfg.experiment == "team"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/other.db")
    cfg = load_config()
    assert cfg.tracking_uri == "sqlite:////tmp/other.db"
    assert cfg.sources["tracking_uri"] == "MLFLOW_TRACKING_URI"


def test_bad_pyproject_is_config_error(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops]\ntracking_ur = 'x'\n")
    with pytest.raises(ConfigError, match="tracking_ur"):
        load_config()
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops\n")
    with pytest.raises(ConfigError, match="Cannot read"):
        load_config()


def test_using_a_store_does_not_pin_later_projects(tmp_path: Path, monkeypatch) -> None:
    import jupyter_mlops

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("one", "two"):
        root = tmp_path / name
        (root / ".mlops").mkdir(parents=True)
        monkeypatch.chdir(root)
        with jupyter_mlops.track(experiment="e") as run:
            run.log_metrics({"score": 1.0})
        cfg = load_config()
        assert cfg.sources["tracking_uri"] == "default"
        assert cfg.tracking_uri == f"sqlite:///{root.resolve()}/.mlops/mlflow.db"
        assert jupyter_mlops.get_run(run.run_id).info.run_id == run.run_id
