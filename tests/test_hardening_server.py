"""Issue 17, the model server: a per-request timeout, an OpenAPI document that matches the
server, and a deployment token stored as a salted slow hash in private files.

One real deployment (uvicorn on 127.0.0.1, started by ``deploy()``) serves a pyfunc model
logged from code in a temporary project: it doubles ``x``, and sleeps ``sleep`` seconds
first when a row asks it to. It is protected by a token and answers within a short timeout,
so the slow request gets 504 while the others are answered.
"""

from __future__ import annotations

import gc
import hashlib
import json
import stat
import textwrap
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.serving import Deployment
from jupyter_mlops.serving.state import hash_token, token_matches
from tests.helpers import running

pytestmark = pytest.mark.slow

TOKEN = "hardening-token-17"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The deployment's request timeout, and how long the slow request's model call sleeps.
#: ``SLEEP``, the value of ``sleep`` that makes the call take 4 s, is no literal (here or in
#: the model's code, which MLflow imports here): hypothesis draws the literals of local
#: modules, and schemathesis' requests must not sleep.
TIMEOUT_S, SLEEP = 1.5, 17 / 4

SLEEPY_MODEL = '''
import time
import warnings
from pathlib import Path

import mlflow.pyfunc
import pandas as pd


class Sleepy(mlflow.pyfunc.PythonModel):
    """Doubles ``x``; sleeps 4 s first when a row says ``sleep`` 17/4 (a slow model call on
    demand, which generated requests will not hit), leaving a marker in the working
    directory (the project) while it sleeps."""

    def predict(self, context, model_input, params=None):
        if (model_input["sleep"] == 17 / 4).any():
            Path("sleeping.marker").touch()
            time.sleep(4.0)
        return (model_input["x"] * 2.0).to_numpy()


mlflow.models.set_model(Sleepy())
'''


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project holding ``sleepy`` v1 (alias champion), a pyfunc model logged from code."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from jupyter_mlops.client import client

    root = tmp_path_factory.mktemp("hardening") / "proj"
    (root / ".mlops").mkdir(parents=True)
    code = root / "sleepy_model.py"
    code.write_text(textwrap.dedent(SLEEPY_MODEL))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        mlflow_client = client(cfg)
        example = pd.DataFrame({"x": [1.0, 2.0], "sleep": [0.0, 0.0]})
        with mlflow.start_run(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow asks for type hints
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                signature=infer_signature(example, pd.Series([2.0, 4.0])),
                input_example=example,
                pip_requirements=["pandas"],
            )
        version = mlflow.register_model(info.model_uri, "sleepy")
        mlflow_client.set_registered_model_alias("sleepy", "champion", version.version)
        yield cfg


@pytest.fixture(scope="module")
def server(config: Config) -> Iterator[Deployment]:
    with running(
        "sleepy@champion", config, name="sleepy", token=TOKEN, request_timeout=TIMEOUT_S
    ) as dep:
        yield dep


@pytest.fixture
def http(server: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as client:
        yield client


# -- the deployment token -------------------------------------------------------------------


def test_token_is_a_salted_slow_hash_in_private_files(server: Deployment) -> None:
    text = (server.folder / "state.json").read_text()
    state = json.loads(text)
    assert TOKEN not in text
    assert hashlib.sha256(TOKEN.encode()).hexdigest() not in text  # not the unsalted digest
    assert "token_sha256" not in state
    record = state["token_hash"]
    assert record["scheme"] == "scrypt" and record["n"] >= 2**14 and len(record["salt"]) >= 32
    assert token_matches(state, TOKEN) and not token_matches(state, TOKEN + "x")
    # Two records of one token differ (random salt): a table of digests recovers nothing.
    assert hash_token(TOKEN)["hash"] != hash_token(TOKEN)["hash"]

    assert stat.S_IMODE(server.folder.stat().st_mode) == 0o700
    written = [p for p in server.folder.rglob("*") if p.is_file() and "journal" not in p.parts]
    names = {p.name for p in written}
    assert {"state.json", "state.lock", "server.log"} <= names
    assert any(p.parent.name == "acks" for p in written)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((server.folder / "acks").stat().st_mode) == 0o700


def test_token_checked_on_every_request(server: Deployment, http: httpx.Client) -> None:
    row = {"x": 1.0, "sleep": 0.0}
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.post("/predict", json=row).status_code == 401
        wrong = anonymous.post("/predict", json=row, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert wrong.json()["error_code"] == "FORBIDDEN" and "x-request-id" in wrong.headers
    for _ in range(3):  # the first pays scrypt, the others the cached digest
        answer = http.post("/predict", json=row)
        assert answer.status_code == 200
        assert answer.json()["predictions"] == [2.0]


def test_old_unsalted_token_records_still_authenticate() -> None:
    """A state written before the scrypt record (``token_sha256``) keeps its token."""
    import asyncio

    from jupyter_mlops.serving.auth import TokenAuth
    from jupyter_mlops.serving.metrics import Metrics

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    legacy = {"token_sha256": hashlib.sha256(b"old-token").hexdigest()}
    app = TokenAuth(inner, state=legacy, metrics=Metrics("legacy"))

    async def statuses() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            out = []
            for token in ("old-token", "other", None, "old-token"):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                out.append((await client.get("/info", headers=headers)).status_code)
            return out

    assert asyncio.run(statuses()) == [200, 403, 401, 200]
    assert token_matches(legacy, "old-token") and not token_matches(legacy, "old-tokens")
    assert not token_matches({"token_hash": {"scheme": "scrypt", "salt": "zz"}}, "old-token")


# -- the request timeout --------------------------------------------------------------------


def sleeping(server: Deployment) -> None:
    """Wait until the model's slow call has begun (its marker in the project folder)."""
    marker = Path(server.folder).parents[2] / "sleeping.marker"
    for _ in range(600):
        if marker.exists():
            marker.unlink()
            return
        time.sleep(0.01)
    raise AssertionError("the slow model call never started")


def test_slow_call_answered_504_while_others_are_served(
    server: Deployment, http: httpx.Client
) -> None:
    """A call sleeping past the timeout gets 504 with the error body and X-Request-ID;
    requests sent while it runs are answered (200), and /health answers meanwhile."""
    with ThreadPoolExecutor(8) as pool:
        slow_predict = pool.submit(http.post, "/predict", json={"x": 1.0, "sleep": SLEEP})
        sleeping(server)  # the slow call runs: what follows is not in its batch
        fast = [
            pool.submit(http.post, "/predict", json={"x": float(i), "sleep": 0.0}) for i in range(6)
        ]
        health = pool.submit(http.get, "/health")
        answers = [f.result() for f in fast]
        late = slow_predict.result()
    assert health.result().status_code == 200
    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["predictions"] for a in answers] == [[2.0 * i] for i in range(6)]
    assert late.status_code == 504
    body = late.json()
    assert body["error_code"] == "PREDICTION_TIMEOUT"
    assert f"{TIMEOUT_S:g} s" in body["message"]
    assert body["request_id"] == late.headers["x-request-id"]


def test_slow_invocations_answered_504(http: httpx.Client) -> None:
    """/invocations (MLflow's answers otherwise) times out the same way, fast path or not."""
    for body in (
        {"dataframe_records": [{"x": 1.0, "sleep": SLEEP}]},  # the fast path
        {"inputs": {"x": [1.0], "sleep": [SLEEP]}},  # MLflow's scoring code
    ):
        late = http.post("/invocations", json=body)
        assert late.status_code == 504, late.text
        assert late.json()["error_code"] == "PREDICTION_TIMEOUT"
        assert late.json()["request_id"] == late.headers["x-request-id"]
    ok = http.post("/invocations", json={"inputs": {"x": [3.0], "sleep": [0.0]}})
    assert ok.status_code == 200 and ok.json() == {"predictions": [6.0]}


def test_timeout_option_is_checked_and_persisted(server: Deployment, config: Config) -> None:
    from jupyter_mlops.errors import UsageError
    from jupyter_mlops.serving import deploy

    assert json.loads((server.folder / "state.json").read_text())["request_timeout_s"] == 1.5
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="timeout"):
            deploy("sleepy@champion", config=config, name="never", request_timeout=bad)
    assert not (Path(config.mlops_dir) / "deployments" / "never").exists()


# -- the OpenAPI document -------------------------------------------------------------------


def test_openapi_examples_are_accepted_and_errors_declared(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    for path in ("/predict", "/invocations"):
        operation = document["paths"][path]["post"]
        assert {"400", "401", "403", "413", "415", "422", "504"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
        example = operation["requestBody"]["content"]["application/json"]["example"]
        answer = http.post(path, json=example)
        assert answer.status_code == 200, (path, example, answer.text)
        assert answer.json()["predictions"] == [2.0]  # the logged example's first row: x = 1
    assert "security" not in document["paths"]["/health"]["get"]
    record = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert record["schema"]["oneOf"][0]["required"] == ["x", "sleep"]
    # In a list, a record may leave out a float column another record has (null there).
    listed = record["schema"]["oneOf"][1]
    assert listed["items"]["required"] == []
    assert listed["allOf"] == [{"contains": {"required": [c]}} for c in ("x", "sleep")]
    pair = http.post("/predict", json=[{"x": 1.0, "sleep": 0.0}, {"x": 2.0}])
    assert pair.status_code == 200 and pair.json()["predictions"][1] == 4.0
    alone = http.post("/predict", json=[{"x": 1.0}, {"x": 2.0}])
    assert alone.status_code == 422 and alone.json()["error_code"] == "MISSING_COLUMN"


def test_schemathesis_conformance(server: Deployment) -> None:
    """Generated requests (valid and invalid, bounded) against every operation: statuses,
    content types, headers and bodies as the document declares; valid bodies accepted,
    invalid ones refused; no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import negative_data_rejection

    # Unknown query parameters are ignored (as MLflow's server ignores them), not refused.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"generation": {"allow-extra-parameters": False}}
    )
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=config, headers=AUTH
    )
    # /version answers as MLflow's server does: a bare version string typed application/json
    # (not JSON); the drop-in parity wins over the check there.
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path != "/version"]
    assert {op.path for op in operations} >= {
        "/predict", "/invocations", "/feedback", "/info", "/health",
    }  # fmt: skip
    # /invocations converts values as MLflow's server does (a true in a double column is
    # 1.0, and whether MLflow takes it depends on the other records): every body the
    # document calls valid must be accepted there, but which invalid values MLflow takes is
    # MLflow's decision. /predict, the project's own validation, must refuse them all.
    lenient = [negative_data_rejection]
    checked = []
    for operation in operations:
        post = operation.method.upper() == "POST"
        modes = [schemathesis.GenerationMode.POSITIVE]
        if post:  # the GET routes take nothing to make invalid
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            examples = 25 if post else 3  # 50 per POST route

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def conforms(case: Any) -> None:
                excluded = lenient if case.operation.path == "/invocations" else []
                case.call_and_validate(base_url=server.url, headers=AUTH, excluded_checks=excluded)

            conforms()
            checked.append((operation.path, mode))
    assert len(checked) == len(operations) + 3  # both modes for the POST routes


# -- the container entry point's options ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "70000", "port must be from 1 to 65535, got '70000'"),
        ("--port", "0", "port must be from 1 to 65535"),
        ("--timeout", "0", "timeout must be above 0"),
        ("--timeout", "nan", "timeout must be a finite number"),
    ],
)
def test_entry_point_checks_port_and_timeout(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from jupyter_mlops.serving.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--deployment-dir", str(tmp_path), option, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f"error: argument {option}: {message}") or message in error
    assert not (tmp_path / "state.json").exists()
    assert gc.isenabled()  # refused before start-up turns the collector off


def test_openapi_example_is_json_for_any_logged_example() -> None:
    """A logged example with NaN (real data) becomes nulls the server reads as missing; an
    integer column cannot be null, so an example from the signature replaces it."""
    from jupyter_mlops.serving.contract import example_record, openapi_contract
    from jupyter_mlops.serving.validation import Column, InputSpec

    spec = InputSpec(
        columns=(
            Column("age", "double"),
            Column("city", "string", required=False),
            Column("visits", "long"),
        )
    )
    nan = float("nan")
    assert example_record(spec, {"age": nan, "city": "north", "visits": 3}) == {
        "age": None,
        "city": "north",
        "visits": 3,
    }
    assert example_record(spec, {"age": 1.5, "visits": nan}) == {"age": 1.0, "visits": 1}
    assert example_record(spec, None) == {"age": 1.0, "visits": 1}
    assert example_record(InputSpec(columns=None), {"t": float("inf")}) == {"t": None}
    base = {"paths": {"/predict": {"post": {"requestBody": {"content": {}}, "parameters": []}}}}
    document = openapi_contract(
        base, spec, {"age": None, "visits": 3}, proba=False, token=False, strict=False
    )
    json.dumps(document, allow_nan=False)  # what FastAPI's JSON response requires
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][0]["required"] == ["age", "visits"]
    assert body["schema"]["oneOf"][0]["properties"]["visits"]["maximum"] == 2**63 - 1


def test_cli_refuses_a_bad_timeout(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlops.cli", "deploy", "start", "m/1", "--timeout", "-3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith("argument --timeout: timeout must be above 0 seconds, got '-3'")
    assert "Traceback" not in done.stderr
