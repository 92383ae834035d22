"""Unchecked values (issue 17): each bad value is a one-line error before anything runs.

Command lines run as real processes (exit status 2 and argparse's one error line, no
traceback); magics run in the real IPython shell (IPython's UsageError); the Python API
raises the project's UsageError on the same values. The condition language is tried with
hypothesis: random text and generated expressions, deep nesting included, never fail with
anything but ConditionError. The sidebar's answers to the same values are in
tests/server/test_values_sidebar.py (they need jupyter_server's fixtures).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError as IPythonUsageError

from jupyter_mlops import monitoring, values
from jupyter_mlops.commands.settings import SETTINGS
from jupyter_mlops.conditions import MAX_DEPTH, Condition
from jupyter_mlops.errors import ConditionError, MlopsError, UsageError

REPO = Path(__file__).resolve().parents[1]


def _usage_error(*args: str, cwd: Path) -> str:
    """``jupyter-mlops ARGS`` as a process that must stop at the command line: exit status
    2, no traceback; its error line (argparse prints the usage line before it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlops.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and not done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert "error:" in last
    return last


# -- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "share=-1"], "drift threshold share must be in [0, 1], got -1.0"),
        (["--threshold", "ks_alpha=nan"], "drift threshold ks_alpha must be a finite number"),
        (["--threshold", "psi_drift=inf"], "drift threshold psi_drift must be a finite number"),
        (["--threshold", "bins=1"], "drift threshold bins must be from 2 to 1000"),
    ],
)
def test_drift_thresholds_out_of_range_are_usage_errors(
    project: Path, argv: list[str], message: str
) -> None:
    frame = pd.DataFrame({"a": np.arange(50.0)})
    frame.to_csv(project / "ref.csv", index=False)
    frame.to_csv(project / "cur.csv", index=False)
    line = _usage_error(
        "drift", "--reference", "ref.csv", "--current", "cur.csv", *argv, cwd=project
    )
    assert f"argument --threshold: {message}" in line
    # The API refuses the same values: no verdict decided by a share of -1 or a NaN.
    with pytest.raises(UsageError, match="share must be in"):
        monitoring.drift(frame, frame, share=-1)
    with pytest.raises(UsageError, match="finite"):
        monitoring.DriftThresholds(ks_alpha=math.nan)


def test_cli_values_refused_before_anything_runs(project: Path) -> None:
    (project / "data.csv").write_text("a,b\n1,2\n")
    (project / "context.txt").write_text("not a folder\n")
    cases = {
        ("runs", "-n", "0"): "argument -n/--limit: limit must be from 1 to 10000, got '0'",
        ("runs", "-n", "-1"): "limit must be from 1 to 10000, got '-1'",
        ("runs", "-n", "100000"): "limit must be from 1 to 10000, got '100000'",
        ("promote", "m/1", "champion", "--expect", "abc"): (
            "argument --expect: expected version must be a model version number"
        ),
        ("deploy", "start", "m/1", "--port", "70000"): (
            "argument --port: port must be from 1 to 65535, got '70000'"
        ),
        ("server", "start", "--port", "0"): "port must be from 1 to 65535, got '0'",
        ("server", "start", "--workers", "0"): "workers must be from 1 to 256, got '0'",
        ("pipeline", "run", "p.yaml", "--workers", "-2"): "workers must be from 1 to 256",
        ("pipeline", "history", "-n", "0"): "limit must be from 1 to 10000, got '0'",
        ("pipeline", "history", "-n", "many"): "limit must be a whole number from 1 to 10000",
        ("package", "m@champion", "--out", "context.txt"): (
            "argument --out: --out 'context.txt' is an existing file; give a folder path"
        ),
        ("execute", "data.csv"): "'data.csv' is not a notebook (.ipynb)",
        ("monitor", "rules", "dep", "--add", "p99_ms > 50", "--cooldown", "nan"): (
            "argument --cooldown: cooldown must be a finite number, got 'nan'"
        ),
        ("monitor", "rules", "dep", "--add", "p99_ms > 50", "--cooldown", "-5"): (
            "cooldown cannot be negative"
        ),
    }
    for argv, message in cases.items():
        assert message in _usage_error(*argv, cwd=project), argv
    # Nothing ran: no store, no deployment, no rules file was created.
    assert sorted(p.name for p in (project / ".mlops").iterdir()) == []
    assert not (project / "mlruns").exists()


def test_an_exec_action_is_refused_when_the_rule_is_defined(project: Path) -> None:
    line = _usage_error(
        "monitor", "rules", "dep", "--add", "p99_ms > 50", "--action", "exec:rm -rf /", cwd=project
    )
    assert "No alert action kind 'exec' (known: pipeline, webhook)" in line
    assert "there is no shell action" in line
    # The API refuses it, and malformed arguments of the built-in kinds, before storing.
    for action, why in [
        ("exec:rm -rf /", "No alert action kind 'exec'"),
        ("webhook:file:///etc/passwd", "must start with http:// or https://"),
        ("pipeline:retrain.sh", "names a .yaml file"),
        ("webhook:", "must read kind:argument"),
    ]:
        with pytest.raises(UsageError, match=why):
            monitoring.set_rules("dep", [monitoring.AlertRule("p99_ms > 50", action=action)])
    assert not (project / ".mlops" / "monitoring").exists()
    with pytest.raises(UsageError, match="cooldown_s must be a finite number"):
        monitoring.AlertRule("p99_ms > 50", cooldown_s=math.nan)
    # A NaN cooldown stored before values were checked: an error naming the file to fix.
    stored = project / ".mlops" / "monitoring" / "dep" / "rules.json"
    stored.parent.mkdir(parents=True)
    stored.write_text('{"rules": [{"expression": "p99_ms > 50", "cooldown_s": NaN}]}')
    with pytest.raises(MlopsError, match=r"rules.json: cooldown_s must be a finite number.*fix"):
        monitoring.get_rules("dep")


def test_api_refuses_ports_files_notebooks_and_versions(project: Path) -> None:
    """The Python functions behind the options refuse the same values, before any work."""
    from jupyter_mlops.errors import RegistryError
    from jupyter_mlops.packaging import package
    from jupyter_mlops.pipelines.execute import execute_notebook
    from jupyter_mlops.registry.refs import ModelRef, expectation
    from jupyter_mlops.serving import deploy

    with pytest.raises(UsageError, match="port must be from 1 to 65535, got 70000"):
        deploy("m/1", port=70000)
    (project / "context.txt").write_text("keep me\n")
    with pytest.raises(UsageError, match="is an existing file"):
        package("m/1", project / "context.txt", overwrite=True)
    assert (project / "context.txt").read_text() == "keep me\n"
    (project / "data.csv").write_text("a\n1\n")
    with pytest.raises(UsageError, match="is not a notebook"):
        execute_notebook(project / "data.csv")
    with pytest.raises(RegistryError, match="Invalid version"):
        ModelRef.parse("m/" + "1" * 23)
    with pytest.raises(UsageError, match="model version number"):
        expectation("abc")
    assert expectation("none") == {"expected": None} and expectation("3") == {"expected": "3"}
    from jupyter_mlops.pipelines import history, run

    with pytest.raises(UsageError, match="workers must be from 1 to 256, got 0"):
        run(project / "missing.yaml", workers=0)
    with pytest.raises(UsageError, match="limit must be from 1 to 10000, got -1"):
        history(limit=-1)


def test_a_23_digit_version_is_an_error_line_not_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_mlops.cli import main

    assert main(["promote", "m/" + "1" * 23, "champion"]) == 1  # was an MLflow traceback
    err = capsys.readouterr().err
    assert err.startswith("jupyter-mlops: error: Invalid version '11111111111111111111111'")
    assert err.count("\n") == 1


def test_values_module_checks() -> None:
    assert values.port("8080") == 8080
    assert values.version_number(" 12 ") == "12"
    for bad in ("abc", "1" * 23, "0", "-1", "1.5", ""):
        with pytest.raises(UsageError):
            values.version_number(bad)
    with pytest.raises(UsageError, match="whole number"):
        values.port(80.5)
    assert values.positive("0.5", "interval") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(UsageError):
            values.positive(bad, "interval")


# -- the magics ---------------------------------------------------------------------------


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf"])
def test_monitor_interval_must_be_positive(ip: Any, interval: str) -> None:
    with pytest.raises(IPythonUsageError, match="argument --interval: interval must be"):
        ip.run_line_magic("monitor", f"some-deployment --interval {interval}")


def test_monitor_on_an_unknown_deployment_raises(ip: Any, project: Path) -> None:
    with pytest.raises(IPythonUsageError, match="No deployment named 'nowhere'"):
        ip.run_line_magic("monitor", "nowhere")


def test_magic_settings_are_checked_like_the_options(ip: Any, project: Path) -> None:
    magics = ip.magics_manager.registry["MlopsMagics"]
    try:
        magics.runs_limit = 0
        with pytest.raises(IPythonUsageError, match="runs_limit must be from 1 to 10000"):
            ip.run_line_magic("mlops", "runs")
        magics.monitor_interval = 0.0
        with pytest.raises(IPythonUsageError, match="monitor_interval must be above 0"):
            ip.run_line_magic("monitor", "nowhere")
    finally:
        for setting in SETTINGS:
            setattr(magics, setting.name, None)
    (project / "pyproject.toml").write_text("[tool.jupyter-mlops]\nruns_limit = 100000\n")
    with pytest.raises(IPythonUsageError, match=r"\[tool.jupyter-mlops\] runs_limit must be"):
        ip.run_line_magic("mlops", "runs")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('-e ""', "experiment name cannot be empty"),
        ("-e " + "x" * 5000, "experiment name is 5000 characters; MLflow allows at most 256"),
        ("--tag mlops.models=x", "tag 'mlops.models' is reserved"),
        ("--tag mlflow.user=eve", "tag 'mlflow.user' is reserved"),
    ],
)
def test_track_refuses_bad_experiment_names_and_reserved_tags(
    ip: Any, project: Path, line: str, message: str
) -> None:
    with pytest.raises(IPythonUsageError, match=message):
        ip.run_cell_magic("track", line, "ran = True\n")
    assert "ran" not in ip.user_ns  # the cell did not run
    assert not (project / "mlruns").exists()
    assert not (project / ".mlops" / "mlflow.db").exists()


def test_track_api_refuses_the_same(project: Path) -> None:
    import jupyter_mlops

    for kwargs, message in [
        ({"experiment": ""}, "cannot be empty"),
        ({"experiment": "e" * 300}, "at most 256"),
        ({"tags": {"mlops.notebook": "x"}}, "reserved"),
        ({"tags": {"MLflow.source.name": "x"}}, "reserved"),
    ]:
        with pytest.raises(UsageError, match=message), jupyter_mlops.track(**kwargs):
            pytest.fail("the body must not run")
    assert not (project / "mlruns").exists()
    with pytest.raises(UsageError, match="limit must be"):
        jupyter_mlops.latest_runs(limit=0)


# -- infinite values ----------------------------------------------------------------------


def test_an_all_infinite_column_is_reported_as_infinite_not_missing() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    half = np.r_[rng.normal(size=100), np.full(100, -np.inf)]
    cur = pd.DataFrame({"a": np.full(200, np.inf), "b": half})
    report = monitoring.drift(ref, cur)
    a = next(f for f in report.features if f.name == "a")
    assert a.reason == "not computed: all 200 current values are infinite (non-finite)"
    assert (a.missing_cur, a.infinite_cur) == (1.0, 1.0)
    b = next(f for f in report.features if f.name == "b")
    assert "missing or infinite values 0% -> 50%" in (b.reason or "")
    assert b.to_dict()["infinite_cur"] == 0.5
    frame = report.to_frame().set_index("feature")
    assert frame.loc["a", "infinite_cur"] == 1.0 and frame.loc["b", "infinite_ref"] == 0.0
    back = monitoring.drift(cur, ref)  # the reference side says the same
    a = next(f for f in back.features if f.name == "a")
    assert a.reason == "not computed: all 200 reference values are infinite (non-finite)"
    nan = monitoring.drift(ref, cur.assign(a=np.nan))  # NaN stays "missing"
    assert next(f for f in nan.features if f.name == "a").reason.endswith("values are missing")


# -- the condition language ---------------------------------------------------------------

NAMES = st.sampled_from(
    [
        "accuracy",
        "f1",
        "metrics.auc",
        "x.y",
        "__import__",
        "os.system",
        "a.b.c",
        "_",
        "True",
        "challenger.accuracy",
        "primary.f1",
        "canary.a",
        "primary.metrics",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e400", "-1e400", "9" * 400, "0x10", "1_000", "1j", "'s'", "None"]),
)
OPS = st.sampled_from(
    [">", ">=", "<", "<=", "==", "!=", "+", "**", "in", "is", "not in", "@", "//", "<<"]
)


def _expressions() -> st.SearchStrategy[str]:
    leaf = st.one_of(NAMES, NUMBERS)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, OPS, inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"-{e}"),
            inner.map(lambda e: f"f({e})"),
            inner.map(lambda e: f"[{e}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]} if {t[1]} else 0"),
        ),
        max_leaves=12,
    )


def _deep() -> st.SearchStrategy[str]:
    wrap = st.sampled_from(["not {}", "({})", "-{}", "+{}", "not ({})", "{} and a > 1"])
    return st.tuples(wrap, st.integers(min_value=0, max_value=6000)).map(
        lambda t: _nest(t[0], t[1])
    )


def _nest(pattern: str, depth: int) -> str:
    text = "a > 1"
    if pattern == "({})":
        return "(" * depth + "a" + ")" * depth + " > 1"
    if pattern == "-{}" or pattern == "+{}":
        return f"a > {pattern[0] * depth}1"
    left, right = pattern.split("{}")
    return left * depth + text + right * depth


METRICS = st.dictionaries(
    st.sampled_from(["accuracy", "f1", "auc", "y", "c", "a", "challenger.accuracy", "canary.a"]),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.text(max_size=5),
        st.none(),
    ),
    max_size=6,
)


def _only_condition_errors(expression: str, metrics: dict[str, Any]) -> None:
    try:
        condition = Condition(expression)
    except ConditionError as exc:
        assert "\n" not in str(exc)
        return
    try:
        result = condition.evaluate(metrics)
    except ConditionError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(result.passed, bool)
    result.explain()


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.one_of(st.text(max_size=200), _expressions(), _deep()), METRICS)
def test_conditions_never_fail_with_anything_but_condition_error(
    expression: str, metrics: dict[str, Any]
) -> None:
    _only_condition_errors(expression, metrics)


def test_deep_nesting_is_a_clear_condition_error() -> None:
    for text in ("not " * 5000 + "a > 1", "-" * 1900 + "a > 1", "not " * (MAX_DEPTH + 5) + "a>1"):
        with pytest.raises(ConditionError, match=r"nested too deeply|characters long"):
            Condition(text)
    assert Condition("not " * 20 + "a > 1").evaluate({"a": 2}).passed
    with pytest.raises(ConditionError, match="too large a number"):
        Condition("a > " + "9" * 400).evaluate({"a": 1})
    with pytest.raises(ConditionError, match="is not a number"):
        Condition("a > 1").evaluate({"a": "high"})
    with pytest.raises(ConditionError, match="must be text"):
        Condition(None)  # type: ignore[arg-type]
