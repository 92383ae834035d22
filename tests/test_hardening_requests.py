"""One bad request never hurts another, and a client's mistake is a 4xx (issue #17).

One real deployment (a pyfunc model over a ``double`` column ``x`` and a ``string`` column
``s``, served by uvicorn on 127.0.0.1) is shared by the module. Against it: 24 concurrent
clients mixing good requests with poisoned ones (a lone surrogate, valid JSON), each poisoned
request refused alone and every good one answered and logged; each malformed kind the issue
found (a surrogate in a name, deep nesting, Infinity, 1e400, a 400-digit integer, a CSV field
over 128 KiB, a split index not fitting its rows, a CSV row wider than its header) answered
4xx with a message and ``X-Request-ID`` on ``/predict`` and ``/invocations``, the keep-alive
connection still serving the next request; the prediction journal failing only the record it
cannot write; and hypothesis sending arbitrary bodies and headers to the app in-process
(built from the same deployment folder) without one 5xx.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import LogWriter, SQLitePredictionStore
from jupyter_mlops.serving import Deployment, InputError, read_predictions
from jupyter_mlops.serving.validation import Column, InputSpec, csv_input, from_split
from tests.helpers import running

pytestmark = pytest.mark.slow

JSON = "application/json"
POISON = b'{"x": 0, "s": "\\ud800"}'
#: What the model answers for x = -7: an integer the prediction log's encoder cannot write.
UNLOGGABLE = 10**30


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project with ``textlen`` v1: predicts ``2 * x + len(s)`` (:data:`UNLOGGABLE` for
    x = -7)."""
    root = tmp_path_factory.mktemp("hardening") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        _register(cfg)
        yield cfg


def _register(config: Config) -> None:
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from jupyter_mlops.client import client

    client(config)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x"), ColSpec("string", "s")]),
        outputs=Schema([ColSpec("double")]),
    )
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TextLen(),
            signature=signature,
            pip_requirements=["pandas"],
        )
    mlflow.register_model(info.model_uri, "textlen")


class TextLen:  # a PythonModel, defined without importing MLflow at collection time
    def __new__(cls) -> Any:
        import mlflow.pyfunc

        class _TextLen(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return [
                    UNLOGGABLE if x == -7 else 2.0 * float(x) + len(str(s))
                    for x, s in zip(model_input["x"], model_input["s"], strict=True)
                ]

        return _TextLen()


@pytest.fixture(scope="module")
def server(config: Config) -> Iterator[Deployment]:
    with running("textlen/1", config, name="textlen") as dep:
        yield dep


# -- one poisoned request fails alone -----------------------------------------------------


def _good(i: int) -> dict[str, Any]:
    return {"x": float(i), "s": "ok" * (i % 3)}


async def _mixed_load(url: str, clients: int, per_client: int) -> list[tuple[str, str, int, str]]:
    """Each client posts, in turn on its own keep-alive connection and on both endpoints,
    good requests, poisoned ones (a lone surrogate) and unloggable ones (the model's answer
    cannot be journalled); (kind, endpoint, status, request id) of every answer."""

    async def client(c: int) -> list[tuple[str, str, int, str]]:
        seen = []
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for n in range(per_client):
                i = c * per_client + n
                kind = {1: "poisoned", 2: "poisoned", 5: "unloggable", 6: "unloggable"}.get(
                    i % 8, "good"
                )
                endpoint = "predict" if i % 2 == 0 else "invocations"
                record = POISON.decode() if kind == "poisoned" else json.dumps(_good(i))
                if kind == "unloggable":
                    record = json.dumps({"x": -7, "s": "x"})
                if endpoint == "invocations":
                    record = f'{{"dataframe_records": [{record}]}}'
                response = await http.post(
                    f"/{endpoint}", content=record.encode(), headers={"Content-Type": JSON}
                )
                seen.append(
                    (kind, endpoint, response.status_code, response.headers["x-request-id"])
                )
        return seen

    answers = await asyncio.gather(*(client(c) for c in range(clients)))
    return [a for per in answers for a in per]


def test_poisoned_requests_fail_alone_under_concurrency(server: Deployment, config: Config) -> None:
    answers = asyncio.run(_mixed_load(server.url, clients=24, per_client=20))
    kinds = {k: [a for a in answers if a[0] == k] for k in ("good", "poisoned", "unloggable")}
    good, poisoned, unloggable = kinds["good"], kinds["poisoned"], kinds["unloggable"]
    assert (len(good), len(poisoned), len(unloggable)) == (240, 120, 120)
    failed_good = [a for a in good if a[2] != 200]
    assert not failed_good, f"{len(failed_good)} good requests failed: {failed_good[:5]}"
    # the request's own content: a 4xx; its answer not journalled: a 503 for it alone
    assert all(400 <= a[2] < 500 for a in poisoned), {a[2] for a in poisoned}
    assert {a[2] for a in unloggable} == {503}
    for kind in (poisoned, unloggable):
        assert {a[1] for a in kind} == {"predict", "invocations"}

    logged = set(read_predictions("textlen", config=config)["request_id"])
    missing = {a[3] for a in good} - logged
    assert not missing, f"{len(missing)} answered requests not in the prediction log"
    assert not logged & {a[3] for a in poisoned + unloggable}


# -- each client mistake: a 4xx with a message, the connection kept -----------------------


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HEADER = "x,s"
BIG = b"1" + b"0" * 399  # a 400-digit integer
SPLIT = '{"dataframe_split": {"columns": ["x", "s"], "data": %s, "index": %s}}'
CSV_128K = f'{HEADER}\n1,"{"a" * 140_000}"\n1,{"9" * 140_000}\n'.encode()
CASES: list[tuple[str, str, str, bytes]] = [
    # (name, endpoint, content type, body)
    ("surrogate-name", "predict", JSON, b'{"x": 1, "s": "a", "\\udc00": 2}'),
    ("surrogate-name", "invocations", JSON, b'{"dataframe_records": [{"\\ud800x": 1}]}'),
    ("surrogate-value", "predict", JSON, POISON),
    ("deep", "predict", JSON, f'{{"x": {_deep(5000)}, "s": "a"}}'.encode()),
    ("deep", "invocations", JSON, f'{{"dataframe_records": {_deep(5000)}}}'.encode()),
    ("deep-orjson", "predict", JSON, f'{{"x": {_deep(1000)}, "s": "a"}}'.encode()),
    ("infinity", "predict", JSON, b'{"x": Infinity, "s": "a"}'),
    ("-infinity", "invocations", JSON, b'{"dataframe_records": [{"x": -Infinity, "s": "a"}]}'),
    ("1e400", "predict", JSON, b'{"x": 1e400, "s": "a"}'),
    ("1e400", "invocations", JSON, b'{"dataframe_records": [{"x": 1e400, "s": "a"}]}'),
    ("400-digits", "predict", JSON, b'{"x": ' + BIG + b', "s": "a"}'),
    ("400-digits", "invocations", JSON, b'{"inputs": {"x": [' + BIG + b'], "s": ["a"]}}'),
    ("csv-wide-row", "invocations", "text/csv", f"{HEADER}\n1,2,abc\n".encode()),  # pandas: index 1
    ("split-index", "invocations", JSON, (SPLIT % ('[[1, "a"]]', "[0, 1, 2]")).encode()),
    ("split-index-short", "invocations", JSON, (SPLIT % ('[[1, "a"], [2, "b"]]', "[7]")).encode()),
    ("no-content-type", "invocations", "", b'{"dataframe_records": [{"x": 1, "s": "a"}]}'),
]


def _exchange(
    sock: socket.socket, reader: Any, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP/1.1 request on ``sock`` and read its answer (Content-Length framed)."""
    sock.sendall(request)
    status_line = reader.readline()
    assert status_line, "the server closed the connection"
    status = int(status_line.split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return status, headers, body


def _request(endpoint: str, content_type: str, body: bytes) -> bytes:
    head = f"POST /{endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + body


@pytest.mark.parametrize(("name", "endpoint", "content_type", "body"), CASES)
def test_client_mistakes_are_4xx_on_a_kept_connection(
    server: Deployment, name: str, endpoint: str, content_type: str, body: bytes
) -> None:
    good = _request(endpoint, JSON, json.dumps(
        _good(3) if endpoint == "predict" else {"dataframe_records": [_good(3)]}
    ).encode())  # fmt: skip
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        reader = sock.makefile("rb")
        status, headers, answer = _exchange(sock, reader, _request(endpoint, content_type, body))
        assert 400 <= status < 500, (status, answer[:300])
        assert headers.get("x-request-id")
        assert headers["content-type"].startswith(JSON)
        error = json.loads(answer)
        assert error["message"] and "Traceback" not in error["message"]
        if endpoint == "invocations":  # MLflow's error shape
            assert error["error_code"] == "BAD_REQUEST"
        # the same connection serves the next request
        status, headers, answer = _exchange(sock, reader, good)
        assert status == 200, answer
        assert json.loads(answer)["predictions"] == [6.0]  # 2 * 3.0 + len("")


def test_csv_fields_over_128k_are_read(server: Deployment) -> None:
    """Python's csv module stops at 128 KiB fields; MLflow's parser (pandas) does not, and
    the body limit bounds them anyway: such a CSV is predicted."""
    response = httpx.post(
        f"{server.url}/invocations", content=CSV_128K, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"predictions": [140_002.0, 140_002.0]}


def test_strict_parsing_refuses_split_index_and_wide_csv() -> None:
    """The project's own parsing (``strict_invocations``) refuses what MLflow's path does."""
    spec = InputSpec((Column("x", "double"), Column("s", "string")))
    with pytest.raises(InputError, match="'index' has 3 labels for 1 rows") as split:
        from_split({"columns": ["x", "s"], "data": [[1.0, "a"]], "index": [0, 1, 2]}, spec)
    with pytest.raises(InputError, match="CSV row 1 has 3 values for the 2 columns") as wide:
        csv_input(b"x,s\n1,a,extra\n", spec)
    assert split.value.status == wide.value.status == 400
    big = csv_input(f'x,s\n1,"{"a" * 200_000}"\n'.encode(), spec)  # over csv's 128 KiB
    assert big.data["s"] == ["a" * 200_000]


def test_integers_beyond_their_column_are_refused_or_widened() -> None:
    """An integer beyond int64 (``long``) or int32 (``integer``) is refused naming the column
    (numpy could not cast it: a 500 before); in a double column it becomes a float, as MLflow
    casts it, so the prediction log (64-bit integers) can write it."""
    from jupyter_mlops.serving.validation import records_input

    spec = InputSpec((Column("n", "long"), Column("i", "integer"), Column("d", "double")))
    ok = records_input({"n": 2**63 - 1, "i": 2**31 - 1, "d": 2**64 + 1}, spec)
    assert ok.data["d"] == [float(2**64 + 1)] and type(ok.data["d"][0]) is float
    for record, column in (
        ({"n": 2**63, "i": 1, "d": 1.0}, "n"),
        ({"n": 1, "i": -(2**31) - 1, "d": 1.0}, "i"),
        ({"n": 1e30, "i": 1, "d": 1.0}, "n"),
    ):
        with pytest.raises(InputError, match=f"Column '{column}' expects an integer from") as big:
            records_input(record, spec)
        assert (big.value.status, big.value.code, big.value.column) == (422, "OUT_OF_RANGE", column)


def test_unchecked_models_refuse_what_orjson_reads_too_deep() -> None:
    """orjson reads 1024 levels; a model without a signature gets values unchecked, and the
    prediction log's encoder stops at 255: refused at 100, on /predict and /invocations."""
    from jupyter_mlops.serving.protocols import parse_request
    from jupyter_mlops.serving.scoring import refused

    body = f'{{"x": {_deep(300)}}}'.encode()
    for endpoint in ("predict", "invocations"):
        inner = body if endpoint == "predict" else b'{"inputs": ' + body + b"}"
        with pytest.raises(InputError, match="nested more than 100 levels") as deep:
            parse_request(endpoint, inner, JSON, InputSpec(columns=None))
        assert deep.value.status == 400
    assert "nested more than 100 levels" in (refused(b'{"inputs": ' + body + b"}", JSON) or "")
    shallow = parse_request("predict", f'{{"x": {_deep(20)}}}'.encode(), JSON, InputSpec(None))
    assert shallow[0].n_rows == 1


def test_answers_orjson_cannot_write_are_still_answered() -> None:
    """A message or a model's answer holding a lone surrogate or a huge integer: JSON all
    the same (the standard library escapes it), not an exception that resets the connection."""
    from jupyter_mlops.serving.protocols import error_response, json_response

    error = error_response(422, "WRONG_TYPE", "Column '\ud800' ...", "rid", column="\ud800")
    assert json.loads(bytes(error.body))["column"] == "\ud800"
    assert json.loads(bytes(json_response({"predictions": [10**30]}).body)) == {
        "predictions": [10**30]
    }


# -- the journal fails only what it cannot write ------------------------------------------


def _record(request_id: str, text: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "ts": 1.0,
        "deployment": "d",
        "n_rows": 1,
        "inputs": {"x": [1.0], "s": [text]},
        "outputs": [3.0],
    }


@pytest.mark.parametrize("durability", ["write", "fsync"])
def test_journal_fails_only_the_record_it_cannot_write(tmp_path: Path, durability: str) -> None:
    """A record the journal cannot encode (a lone surrogate that slipped past validation)
    fails alone; the rest of its micro-batch is journalled and reaches the store."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    writer = LogWriter(tmp_path / "journal", url, durability=durability, interval=3600)
    records = [_record("a", "ok"), _record("poison", "\ud800"), _record("b", "fine")]
    errors, durable = writer.append_each(records)
    if durable is not None:
        durable.result(timeout=10)
    assert [e is None for e in errors] == [True, False, True]
    assert "surrogates" in str(errors[1])
    writer.close()
    store = SQLitePredictionStore(tmp_path / "predictions.db")
    assert {row["request_id"] for row in store.read("d")} == {"a", "b"}
    store.close()


# -- hypothesis: arbitrary bodies and headers, never a 5xx --------------------------------

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_columns = st.sampled_from(["x", "s"]) | _text
_row = st.lists(_scalars, max_size=3)
_records = st.lists(st.dictionaries(_columns, _json, max_size=3), max_size=3)
_payloads = st.one_of(
    _json,
    _records,
    st.dictionaries(_columns, _scalars, max_size=3),
    st.fixed_dictionaries({"dataframe_records": _records | _json}),
    st.fixed_dictionaries(
        {"dataframe_split": st.fixed_dictionaries(
            {"columns": st.lists(_columns, max_size=3), "data": st.lists(_row, max_size=3)},
            optional={"index": st.lists(st.integers(0, 9), max_size=4) | _json},
        )}
    ),
    st.sampled_from(["inputs", "instances"]).flatmap(
        lambda key: st.fixed_dictionaries({key: _json}, optional={"params": _json})
    ),
)  # fmt: skip


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True, ensure_ascii=True).encode()


_bodies = st.one_of(
    _payloads.map(_dump),
    st.binary(max_size=64),
    st.lists(st.lists(_text | st.integers().map(str), max_size=4), max_size=4).map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
    ),
    st.sampled_from([b"[" * 3000, b'{"dataframe_records": ' + b"[" * 900 + b"]" * 900 + b"}"]),
)
_content_types = st.one_of(
    st.none(),
    st.sampled_from([JSON, "application/json; charset=utf-8", "text/csv", "text/plain",
                     "application/vnd.apache.parquet", "application/json; charset=latin-1"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)  # fmt: skip
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@pytest.fixture(scope="module")
def in_process(server: Deployment) -> Iterator[Any]:
    """The app of the deployment's folder, run in this process by Starlette's test client
    (its lifespan loads the model as the server does)."""
    from starlette.testclient import TestClient

    from jupyter_mlops.serving.app import create_app

    folder = server.folder
    assert (folder / "state.json").is_file()
    with TestClient(create_app(folder), raise_server_exceptions=True) as client:
        yield client


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    endpoint=st.sampled_from(["/predict", "/invocations"]),
    body=_bodies,
    content_type=_content_types,
    key=st.none() | _header_text,
    predict=st.none() | st.sampled_from(["label", "proba"]) | _header_text,
    strict=st.booleans(),
)
def test_arbitrary_requests_never_give_a_5xx(
    in_process: Any,
    endpoint: str,
    body: bytes,
    content_type: str | None,
    key: str | None,
    predict: str | None,
    strict: bool,
) -> None:
    # /invocations by MLflow's scoring code, or by the project's validation (strict)
    in_process.app.state.runtime.strict_invocations = strict
    headers = {} if content_type is None else {"Content-Type": content_type}
    if key is not None:
        headers["X-Request-Key"] = key
    params = {} if predict is None else {"predict": predict}
    response = in_process.post(endpoint, content=body, headers=headers, params=params)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers.get("x-request-id")
