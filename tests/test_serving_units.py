"""Serving pieces that need no server: target shorthands, requirement checks, light
imports, errors for unknown deployments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_mlops.config import load_config
from jupyter_mlops.serving import (
    DeploymentNotFoundError,
    ServingError,
    get_deployment,
    list_deployments,
    model_uri,
    promote,
    read_predictions,
    stop,
)


def test_target_shorthands() -> None:
    assert model_uri("iris-rf@champion") == "models:/iris-rf@champion"
    assert model_uri("iris-rf/3") == "models:/iris-rf/3"
    assert model_uri("runs:/abc/model") == "runs:/abc/model"
    assert model_uri("models:/x@y") == "models:/x@y"


def test_requirement_mismatches_are_named(tmp_path: Path) -> None:
    from importlib.metadata import version

    from jupyter_mlops.serving.targets import requirement_mismatches

    (tmp_path / "requirements.txt").write_text(
        f"scikit-learn=={version('scikit-learn')}\nscikit-learn<0.1\nno-such-dist-xyz==1.0\n"
    )
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 2.7.18\n")
    problems = requirement_mismatches(str(tmp_path))
    assert len(problems) == 3, problems
    assert "scikit-learn<0.1 is required but" in problems[0]
    assert "no-such-dist-xyz==1.0 is required but not installed" in problems[1]
    assert "Python 2.7.18" in problems[2]


def test_import_is_light_and_server_needs_no_ipython() -> None:
    probe = (
        "import sys, json\n"
        "import jupyter_mlops.serving\n"
        "light = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'uvicorn', 'mlflow', 'pandas', 'IPython', 'starlette', 'sklearn'})\n"
        "import jupyter_mlops.serving.app, jupyter_mlops.serving.__main__\n"
        "print(json.dumps([light, 'IPython' in sys.modules, 'ipykernel' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    light, ipython, ipykernel = json.loads(out.strip().splitlines()[-1])
    assert light == []
    assert not ipython and not ipykernel


def test_unknown_deployment_is_not_found(project: Path) -> None:
    config = load_config(project)
    assert list(list_deployments(config)) == []
    with pytest.raises(DeploymentNotFoundError):
        get_deployment("nope", config=config)
    with pytest.raises(DeploymentNotFoundError):
        promote("nope", config=config)
    with pytest.raises(DeploymentNotFoundError):
        read_predictions("nope", config=config)
    with pytest.raises(ServingError, match="Invalid deployment name"):
        stop("../etc", config=config)


_SPEC_COLUMNS = ("a", "double"), ("n", "long")
_FAST = [
    {"dataframe_records": [{"a": 1.5, "n": 2}, {"n": 3, "a": 2}]},
    {"dataframe_records": [{"a": 1, "n": -4}]},  # integers only in a double column
    {"dataframe_split": {"columns": ["n", "a"], "data": [[2, 1.5], [3, 2.0]]}},
]
_SLOW = [
    {"dataframe_records": [{"a": 1.5, "n": 2, "extra": 1}]},  # MLflow drops it
    {"dataframe_records": [{"a": None, "n": 2}]},  # null
    {"dataframe_records": [{"a": True, "n": 2}]},  # bool
    {"dataframe_records": [{"a": 1.5, "n": 2.0}]},  # float in long
    {"dataframe_records": [{"a": 1.5, "n": 2**63}]},  # beyond int64
    {"dataframe_records": [{"a": 1.5, "n": 2}], "params": {"k": 1}},
    {"dataframe_split": {"columns": ["a", "n"], "data": [[1.5, 2]], "index": [7]}},
    {"dataframe_split": {"data": [[1.5, 2]]}},
    {"instances": [{"a": 1.5, "n": 2}]},
    {"dataframe_records": []},
]


def test_fast_invocations_path_builds_mlflows_frame() -> None:
    """The fast path takes only requests whose frame is the one MLflow's scoring server
    builds (``infer_and_parse_data`` with the signature); everything else goes to MLflow."""
    import pandas as pd
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types import ColSpec, Schema

    from jupyter_mlops.serving.frames import to_frame
    from jupyter_mlops.serving.scoring import fast_input
    from jupyter_mlops.serving.validation import Column, InputSpec

    spec = InputSpec(columns=tuple(Column(n, t) for n, t in _SPEC_COLUMNS))
    schema = Schema([ColSpec(t, n) for n, t in _SPEC_COLUMNS])
    for payload in _FAST:
        body = json.dumps(payload).encode()
        for content_type in ("application/json", "application/json; charset=UTF-8"):
            table = fast_input(body, content_type, spec)
            assert table is not None, payload
        theirs = infer_and_parse_data(payload, schema)[["a", "n"]]
        pd.testing.assert_frame_equal(to_frame(table.data, spec), theirs)
        for content_type in (None, "text/csv", "application/json; charset=latin-1"):
            assert fast_input(body, content_type, spec) is None
    for payload in _SLOW:
        assert fast_input(json.dumps(payload).encode(), "application/json", spec) is None
    assert (
        fast_input(b'{"dataframe_records": [{"a": NaN, "n": 1}]}', "application/json", spec) is None
    )


def test_a_slow_batch_does_not_hold_the_next_one() -> None:
    """A batch still running after ``stall_s`` lets the next start in the other thread: the
    fast request is answered while the slow call is still blocked (it is released only after
    the fast answer arrives, so without the rule the fast request would wait forever)."""
    import asyncio
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from jupyter_mlops.serving.batching import Batcher, Pending
    from jupyter_mlops.serving.validation import RawInput

    release = threading.Event()

    def run_batch(batch):  # type: ignore[no-untyped-def]
        if any(p.input.value == "slow" for p in batch):
            assert release.wait(30), "the slow call was never released"
        return [p.input.value for p in batch], None

    def pending(value: str) -> Pending:
        return Pending(RawInput(value), None, value, time.perf_counter(), time.time(), "t", "p")

    async def scenario() -> list[str]:
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(run_batch, pool, stall_s=0.05)
            slow = asyncio.ensure_future(batcher.submit(pending("slow")))
            await asyncio.sleep(0.01)
            fast = await asyncio.wait_for(batcher.submit(pending("fast")), 20)
            done_before = slow.done()
            release.set()
            answers = [fast, await slow, str(done_before)]
            await batcher.aclose()
            return answers

    assert asyncio.run(scenario()) == ["fast", "slow", "False"]
