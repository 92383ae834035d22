"""The sidebar's REST API against a real MLflow store, through jupyter_server (jp_fetch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.server.conftest import SWEEP_RUNS, XSS_NAME

API = ("jupyter-mlops", "api")


async def get(jp_fetch: Any, *parts: str, **params: Any) -> Any:
    response = await jp_fetch(*API, *parts, params=params or None)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def post(jp_fetch: Any, *parts: str, body: Any = None) -> Any:
    response = await jp_fetch(*API, *parts, method="POST", body=json.dumps(body or {}))
    return json.loads(response.body)


async def error(
    jp_fetch: Any, *parts: str, method: str = "GET", body: Any = None, **params: Any
) -> tuple[int, dict[str, Any]]:
    kwargs: dict[str, Any] = {"method": method, "params": params or None}
    if method == "POST":
        kwargs["body"] = body if isinstance(body, str) else json.dumps(body or {})
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*API, *parts, **kwargs)
    response = info.value.response
    assert response is not None
    return info.value.code, json.loads(response.body)


async def test_routes_respect_base_url(jp_fetch, jp_base_url, jp_serverapp) -> None:
    assert jp_base_url == "/a%40b/"
    status = await get(jp_fetch, "status")
    assert Path(status["project_root"]) == Path(jp_serverapp.root_dir).resolve()
    assert status["features"]["serving"] is True
    assert status["stamp"]


async def test_experiments_with_counts(jp_fetch) -> None:
    exps = {e["name"]: e for e in (await get(jp_fetch, "experiments"))["data"]}
    assert exps["iris"]["runs"] == 3
    assert exps["sweep"]["runs"] == SWEEP_RUNS


async def test_runs_paged_newest_first(jp_fetch, sidebar_project, warm_views) -> None:
    _, ids = sidebar_project
    total = 3 + SWEEP_RUNS
    seen: list[dict[str, Any]] = []
    token = None
    pages = 0
    while True:
        params = {"limit": 4, **({"page_token": token} if token else {})}
        page = await get(jp_fetch, "runs", **params)
        assert page["total"] == total
        seen += page["runs"]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert pages == 3
    assert len(seen) == total
    assert len({r["run_id"] for r in seen}) == total
    starts = [r["start_time"] for r in seen]
    assert starts == sorted(starts, reverse=True)
    assert seen[0]["run_id"] == ids["sweep"][-1]
    better = next(r for r in seen if r["run_id"] == ids["better"])
    assert better["metrics"]["accuracy"] == pytest.approx(0.95)
    assert better["data"].startswith("data/iris.csv@01234567")
    assert better["notebook"] == "nb/train.ipynb"
    assert better["models"] == ["model"]
    assert better["status"] == "FINISHED"


async def test_newest_page_after_a_store_write_comes_first(
    jp_fetch, sidebar_project, warm_views
) -> None:
    import asyncio

    import jupyter_mlops
    from jupyter_mlops.config import load_config

    root, _ = sidebar_project
    before = await get(jp_fetch, "runs", limit=5)
    assert before["total"] == 3 + SWEEP_RUNS
    with jupyter_mlops.track("sweep", name="fresh", config=load_config(root)) as run:
        run.log_metrics({"loss": 0.01})
    # Stale cache: the newest page straight from MLflow, no total yet, same row format.
    fast = await get(jp_fetch, "runs", limit=5)
    assert fast["total"] is None and fast["stamp"] is None
    assert [r["run_id"] for r in fast["runs"]] == [
        run.run_id,
        *[r["run_id"] for r in before["runs"][:4]],
    ]
    assert fast["runs"][1:] == before["runs"][:4]
    # Its page token leads on into the full read, as any other token.
    rest = await get(jp_fetch, "runs", limit=50, page_token=fast["next_page_token"])
    assert len(rest["runs"]) == 3 + SWEEP_RUNS + 1 - 5
    for _ in range(100):  # the full read went on in the background
        full = await get(jp_fetch, "runs", limit=5)
        if full["total"] is not None:
            break
        await asyncio.sleep(0.1)
    assert full["total"] == 3 + SWEEP_RUNS + 1
    assert full["runs"] == fast["runs"]


async def test_runs_filters(jp_fetch, sidebar_project) -> None:
    _, ids = sidebar_project
    iris = await get(jp_fetch, "runs", experiment="iris")
    assert iris["total"] == 3
    text = await get(jp_fetch, "runs", text="BETTER")
    assert [r["run_id"] for r in text["runs"]] == [ids["better"]]
    by_param = await get(jp_fetch, "runs", text="bold")  # params are searched too
    assert [r["run_id"] for r in by_param["runs"]] == [ids["xss"]]
    metric = await get(jp_fetch, "runs", where="metrics.accuracy >= 0.9")
    assert [r["run_id"] for r in metric["runs"]] == [ids["better"]]
    both = await get(jp_fetch, "runs", where="metrics.loss < 0.3", text="sweep")
    assert both["total"] == 4  # loss = 1/(i+1) < 0.3 for i = 3..6


async def test_runs_bad_input(jp_fetch) -> None:
    code, body = await error(jp_fetch, "runs", where="metrics.accuracy >>> 1")
    assert code == 400 and "not valid" in body["message"]
    code, body = await error(jp_fetch, "runs", limit="0")
    assert code == 400 and "limit" in body["message"]
    code, body = await error(jp_fetch, "runs", limit="ten")
    assert code == 400
    code, body = await error(jp_fetch, "runs", page_token="@@@")
    assert code == 400 and "page_token" in body["message"]
    code, body = await error(jp_fetch, "runs", experiment="nope")
    assert code == 404 and "nope" in body["message"]


async def test_run_detail(jp_fetch, sidebar_project) -> None:
    _, ids = sidebar_project
    run = await get(jp_fetch, "runs", ids["better"])
    assert run["run_name"] == "better"
    assert run["experiment"] == "iris"
    assert run["params"] == {"C": "1.0"}
    assert run["metrics"]["accuracy"] == pytest.approx(0.95)
    assert run["models"][0]["name"] == "model"
    assert run["registered_versions"] == [{"name": "iris-clf", "version": "2"}]
    assert run["data"][0]["path"] == "data/iris.csv"
    assert run["datasets"] and run["datasets"][0]["name"] == "model-training"
    assert "LogisticRegression(C=1.0)" in run["source"]
    assert len(run["source_sha256"]) == 64
    assert run["notebook"] == "nb/train.ipynb"
    assert run["notebook_path"] == "nb/train.ipynb"
    by_prefix = await get(jp_fetch, "runs", ids["better"][:8])
    assert by_prefix["run_id"] == ids["better"]


async def test_run_detail_keeps_markup_as_data(jp_fetch, sidebar_project) -> None:
    _, ids = sidebar_project
    run = await get(jp_fetch, "runs", ids["xss"])
    assert run["run_name"] == XSS_NAME
    assert run["params"] == {"html": "<b>bold</b>"}
    assert run["tags"]["note"] == "<script>alert(2)</script>"
    assert run["notebook_path"] is None


async def test_unknown_ids_are_404_with_message(jp_fetch) -> None:
    for parts in (
        ("runs", "f" * 32),
        ("runs", "not-a-run"),
        ("models", "no-such-model"),
        ("pipelines", "no-such-run"),
        ("pipelines", "..%2F..%2Fetc"),
        ("no", "such", "endpoint"),
    ):
        code, body = await error(jp_fetch, *parts)
        assert code == 404, parts
        assert body["message"], parts
    code, body = await error(jp_fetch, "deployments", "ghost", "stop", method="POST")
    assert code == 404 and "ghost" in body["message"]


async def test_models_versions_aliases_history(jp_fetch) -> None:
    models = (await get(jp_fetch, "models"))["data"]
    assert [m["name"] for m in models] == ["iris-clf"]
    model = models[0]
    assert model["aliases"] == {"champion": "1", "challenger": "2"}
    assert [v["version"] for v in model["versions"]] == ["2", "1"]
    assert model["versions"][0]["aliases"] == ["challenger"]
    assert {(e["alias"], e["action"]) for e in model["history"]} == {
        ("champion", "register"),
        ("challenger", "register"),
    }
    one = await get(jp_fetch, "models", "iris-clf")
    assert one["name"] == "iris-clf"


async def test_promote_with_gate_and_rollback(jp_fetch, sidebar_project) -> None:
    root, _ = sidebar_project
    code, body = await error(
        jp_fetch,
        "models",
        "iris-clf",
        "promote",
        method="POST",
        body={"version": "2", "alias": "champion", "gate": "accuracy >= 0.99"},
    )
    assert code == 400
    assert body["reason"] == "gate" and body["gate"]["passed"] is False
    assert "Not promoted" in body["message"]

    event = await post(
        jp_fetch,
        "models",
        "iris-clf",
        "promote",
        body={"version": "2", "alias": "champion", "gate": "accuracy >= 0.9"},
    )
    assert (event["version"], event["previous"], event["action"]) == ("2", "1", "promote")
    from jupyter_mlops.client import client as project_client
    from jupyter_mlops.config import load_config

    client = project_client(load_config(root))
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "2"

    event = await post(jp_fetch, "models", "iris-clf", "rollback", body={"alias": "champion"})
    assert (event["version"], event["action"]) == ("1", "rollback")
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "1"
    history = (await get(jp_fetch, "models", "iris-clf"))["history"]
    assert [e["action"] for e in history[:2]] == ["rollback", "promote"]


async def test_promote_against_a_moved_alias_is_a_409(jp_fetch, sidebar_project) -> None:
    root, _ = sidebar_project
    from jupyter_mlops.client import client as project_client
    from jupyter_mlops.config import load_config

    client = project_client(load_config(root))
    # The sidebar showed champion = 1; another user moved it to 2 before the click.
    code, body = await error(
        jp_fetch,
        "models",
        "iris-clf",
        "promote",
        method="POST",
        body={"version": "2", "alias": "challenger", "expected": "1"},
    )
    assert code == 409 and body["reason"] == "conflict" and body["current"] == "2"
    assert "moved from version 1 to 2" in body["message"]
    assert str(client.get_model_version_by_alias("iris-clf", "challenger").version) == "2"
    code, body = await error(
        jp_fetch,
        "models",
        "iris-clf",
        "promote",
        method="POST",
        body={"version": "1", "alias": "fresh", "expected": "1"},
    )
    assert code == 409 and body["current"] is None  # expected a holder, the alias is unset
    event = await post(
        jp_fetch,
        "models",
        "iris-clf",
        "promote",
        body={"version": "1", "alias": "fresh", "expected": None},
    )
    assert (event["version"], event["previous"]) == ("1", None)
    client.delete_registered_model_alias("iris-clf", "fresh")  # the module shares the store


async def test_promote_bad_bodies(jp_fetch) -> None:
    cases = [
        ("not json", "not JSON"),
        (json.dumps([1]), "JSON object"),
        (json.dumps({"alias": "champion"}), "version"),
        (json.dumps({"version": "x", "alias": "champion"}), "version"),
        (json.dumps({"version": "1", "alias": "latest"}), "reserved"),
    ]
    for body, expected in cases:
        code, reply = await error(
            jp_fetch, "models", "iris-clf", "promote", method="POST", body=body
        )
        assert code == 400, body
        assert expected in reply["message"], (body, reply)
    code, reply = await error(
        jp_fetch, "models", "iris-clf", "rollback", method="POST", body={"alias": "challenger"}
    )
    assert code == 400 and "Nothing to roll back" in reply["message"]
    code, reply = await error(
        jp_fetch,
        "models",
        "ghost",
        "promote",
        method="POST",
        body={"version": "1", "alias": "champion"},
    )
    assert code == 404


async def test_pipelines_with_step_links_inside_the_project(jp_fetch) -> None:
    reply = await get(jp_fetch, "pipelines")
    assert reply["available"] is True
    (run,) = reply["runs"]
    assert (run["run_id"], run["pipeline"], run["status"]) == (
        "20250101-retrain",
        "retrain",
        "FAILED",
    )
    assert run["started"] == 1735689600000.0
    steps = {s["name"]: s for s in run["steps"]}
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("prepare", "SUCCEEDED"),
        ("train", "FAILED"),
        ("report", "SKIPPED"),
    ]
    assert steps["prepare"]["executed_path"] == "runs/prepare.ipynb"
    # Under .mlops/ (hidden from Jupyter's contents API by default): a path, no link.
    assert steps["train"]["executed_path"] is None and steps["train"]["executed_hidden"]
    assert steps["train"]["error"] == "<b>boom</b>"
    assert steps["report"]["executed_path"] is None  # /etc/passwd is outside the project
    one = await get(jp_fetch, "pipelines", "20250101")  # a unique prefix
    assert one["status"] == "FAILED"
    for bad in ("*", "2025*"):
        code, _ = await error(jp_fetch, "pipelines", bad)
        assert code == 404


def _fake_deployment(root: Path, name: str) -> None:
    from jupyter_mlops._util.layout import deployments_root
    from jupyter_mlops.config import load_config
    from jupyter_mlops.registry.refs import ModelRef
    from jupyter_mlops.serving.manager import new_state
    from jupyter_mlops.serving.state import write_state

    config = load_config(root)
    ref = ModelRef(
        uri="models:/iris-clf/1",
        target="iris-clf@champion",
        name="iris-clf",
        version="1",
        alias="champion",
    )
    state = new_state(
        ref, name=name, host="127.0.0.1", port=1, workers=1, config=config, prediction_log=False
    )
    folder = deployments_root(config.mlops_dir) / name
    folder.mkdir(parents=True)
    write_state(folder, state)


async def test_deployments_listing_figures_and_stop(jp_fetch, sidebar_project, monkeypatch):
    root, _ = sidebar_project
    listing = await get(jp_fetch, "deployments")
    assert listing["available"] is True and listing["deployments"] == []
    _fake_deployment(root, "iris")
    import jupyter_mlops.monitoring.live as live
    from jupyter_mlops.monitoring import Figures
    from jupyter_mlops.serving import listing as serving_listing

    calls: list[dict[str, Any]] = []

    def figures(
        deployment: str,
        *,
        last: Any = "1h",
        config: Any = None,
        drift: bool = True,
        performance: bool = True,
    ):
        calls.append({"deployment": deployment, "last": last, "drift": drift})
        values = {"rps": 12.5, "p99_ms": 41.0, "error_rate": 0.01, "requests": 3750.0}
        if drift:
            values["drift_share"] = 0.5
        return Figures(
            values, deployment=deployment, window=f"last {last}", notes={"p50_ms": "ignored"}
        )

    monkeypatch.setattr(serving_listing, "deployment_status", lambda state, **_: "running")
    monkeypatch.setattr(live, "figures", figures)
    for _ in range(2):
        listing = await get(jp_fetch, "deployments")
    (dep,) = listing["deployments"]
    assert dep["name"] == "iris" and dep["status"] == "running"
    assert dep["traffic"] == {"iris-clf v1": 100.0}
    assert dep["figures"] == {
        "rps": 12.5,
        "p99_ms": 41.0,
        "error_rate": 0.01,
        "requests": 3750.0,
        "drift_share": 0.5,  # computed on the first call, kept on the second
        "notes": {},
        "window": "last 5m",
    }
    assert [c["drift"] for c in calls] == [True, False]
    assert {c["last"] for c in calls} == {"5m"}
    assert "log_file" not in dep
    stopped = await post(jp_fetch, "deployments", "iris", "stop")
    assert stopped["status"] == "stopped"
    monkeypatch.undo()
    listing = await get(jp_fetch, "deployments")
    assert listing["deployments"][0]["status"] == "stopped"
    assert listing["deployments"][0]["figures"] is None


async def test_blocking_calls_leave_the_server_responsive(jp_fetch, monkeypatch) -> None:
    import asyncio
    import threading

    from jupyter_mlops.server import views

    release = threading.Event()
    original = views.SidebarViews.models

    def slow_models(self: Any) -> Any:
        release.wait(10)
        return original(self)

    monkeypatch.setattr(views.SidebarViews, "models", slow_models)
    slow = asyncio.ensure_future(jp_fetch(*API, "models"))
    status = await get(jp_fetch, "status")  # answered while models is still blocked
    assert status["version"]
    assert not slow.done()
    release.set()
    assert (await slow).code == 200


def test_openapi_describes_every_route() -> None:
    import re

    import yaml

    import jupyter_mlops.server
    from jupyter_mlops.server.handlers import ROUTES

    spec_file = Path(jupyter_mlops.server.__file__).with_name("openapi.yaml")
    spec = yaml.safe_load(spec_file.read_text())
    described = {
        (path, verb)
        for path, ops in spec["paths"].items()
        for verb in ops
        if verb in ("get", "post")
    }
    served = set()
    for route, handler in ROUTES:
        path = "/" + re.sub(r"\(\[\^/\]\+\)", "{}", route)
        for verb in ("get", "post"):
            if verb in vars(handler):
                served.add((path, verb))
    assert {(re.sub(r"\{[a-z_]+\}", "{}", p), v) for p, v in described} == served
