"""Several users promoting at once against one tracking server on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
import jupyter_mlops.registry as registry

X, Y = load_iris(return_X_y=True, as_frame=True)


def _promote_at(args: tuple[str, str, str, str, float]) -> str:
    """One user's kernel: promote ``name/version`` over version 1 at time ``start``."""
    uri, root, name, version, start = args
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(root)
    import jupyter_mlops.registry as registry

    time.sleep(max(0.0, start - time.time()))
    try:
        registry.promote(f"{name}/{version}", "champion", expected="1")
    except registry.PromotionConflict as exc:
        return f"conflict:{exc.current}"
    return "won"


def test_concurrent_promotions_one_wins_the_rest_are_told(
    team_project: Path, tracking_server: str, model_name: str
) -> None:
    for c in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        with jupyter_mlops.track() as run:
            run.log_model(LogisticRegression(C=c, max_iter=300).fit(X, Y), "model", X=X)
        jupyter_mlops.register(run.run_id, name=model_name)
    registry.promote(f"{model_name}/1", "champion")

    contenders = ["2", "3", "4", "5", "6"]
    start = time.time() + 8  # all five kernels are up and past their imports by then
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(contenders)) as pool:
        outcomes = pool.map(
            _promote_at,
            [(tracking_server, str(team_project), model_name, v, start) for v in contenders],
        )
    winners = [v for v, o in zip(contenders, outcomes, strict=True) if o == "won"]
    assert len(winners) == 1, outcomes
    # Every loser was told who holds the alias now, and changed nothing.
    assert sorted(outcomes) == sorted(["won"] + [f"conflict:{winners[0]}"] * 4)
    client = MlflowClient(tracking_server)
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == winners[0]
    promotions = [(e.previous, e.version) for e in registry.history(model_name)]
    assert promotions == [(None, "1"), ("1", winners[0])]
    assert [m.name for m in registry.list_models() if m.name.startswith(model_name)] == [model_name]


REGISTER_WORKER = """
import os, sys
os.environ["MLFLOW_TRACKING_URI"] = sys.argv[1]
os.chdir(sys.argv[2])
import jupyter_mlops
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, Y = load_iris(return_X_y=True, as_frame=True)
name, worker = sys.argv[3], int(sys.argv[4])
for i in range(5):
    with jupyter_mlops.track(name=f"w{worker}-{i}") as run:
        run.log_metrics({"worker": worker, "i": i})
        run.log_model(LogisticRegression(max_iter=200).fit(X, Y), "model", X=X)
    reg = jupyter_mlops.register(run.run_id, name=name)
    print(reg.version, run.run_id, flush=True)
"""


def test_four_kernels_registering_at_once_get_distinct_versions(
    team_project: Path, tracking_server: str, model_name: str
) -> None:
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_WORKER, tracking_server, str(team_project),
             model_name, str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]  # fmt: skip
    said = {}
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        said.update(dict(line.split() for line in out.splitlines()))
    assert sorted(map(int, said)) == list(range(1, 21))  # 20 versions, none lost or doubled
    client = MlflowClient(tracking_server)
    versions = client.search_model_versions(f"name = '{model_name}'")
    assert {str(v.version): v.run_id for v in versions} == said
    for v in versions:
        assert v.tags["mlops.run_id"] == v.run_id
