"""The PyTorch flavour: an nn.Module trained in a %%track cell, registered, served, monitored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import httpx  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from jupyter_mlops.config import load_config  # noqa: E402
from jupyter_mlops.tracking import flavors  # noqa: E402
from jupyter_mlops.tracking.capture import analyse_cell, capture  # noqa: E402

from .helpers import running  # noqa: E402

SETUP = """\
import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
rng = np.random.default_rng(0)
X_np = rng.normal(size=(400, 4)).astype("float32")
y_np = (X_np[:, 0] + 0.5 * X_np[:, 1] > 0).astype("int64") + (X_np[:, 2] > 1).astype("int64")
X_train, y_train = torch.from_numpy(X_np[:300]), torch.from_numpy(y_np[:300])
X_test = torch.from_numpy(X_np[300:])


class MLP(nn.Module):
    def __init__(self, n_in, hidden, n_out, dropout=0.1):
        super().__init__()
        self.hidden = hidden
        self.dropout = dropout
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
        )

    def forward(self, x):
        return self.net(x)
"""

TRAIN_CELL = """\
epochs = 30
model = MLP(4, 16, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(epochs):
    optimizer.zero_grad()
    loss = loss_fn(model(X_train), y_train)
    loss.backward()
    optimizer.step()
loss = loss.item()
"""

FEATURES = ["x0", "x1", "x2", "x3"]


def _only_run() -> Any:
    client = MlflowClient(load_config().tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(exps)
    return run


def test_flavour_detects_modules_with_parameters_only() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    flavor = flavors.flavor_for(model)
    assert flavor is not None and flavor.name == "pytorch"
    assert flavors.flavor_for(torch.nn.CrossEntropyLoss()) is None  # no parameters
    assert flavors.flavor_for(torch.nn.ReLU()) is None
    assert flavors.flavor_for(torch.nn.Linear) is None  # a class
    assert flavor.params(model)["linear_sizes"] == "[(3, 5), (5, 2)]"
    assert flavor.params(model)["n_parameters"] == str(3 * 5 + 5 + 5 * 2 + 2)
    reqs = flavor.requirements(model)
    assert f"torch=={torch.__version__.split('+')[0]}" in reqs  # no local label (+cpu)
    assert not any(r.startswith("scikit-learn") for r in reqs)
    assert {r.split("==")[0] for r in reqs} == {"mlflow", "numpy", "torch"}


def test_sample_input_rule() -> None:
    """The widest-matching float tensor the cell mentions; the model's argument on a tie;
    with a first layer that is not Linear, only what the model was called with."""
    facts = analyse_cell(
        "for xb in batches:\n    out = model(xb)\nX_all = X_all\nidx = idx\nX_wide = X_wide\n"
    )
    assert facts.called_with == {"model": ["xb"]}
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    ns = {
        "model": model,
        "batches": None,
        "xb": torch.zeros(8, 3),
        "X_all": np.ones((50, 3)),  # float64 numpy: converted to float32
        "idx": torch.zeros(90, 3, dtype=torch.int64),  # not float
        "X_wide": torch.zeros(90, 7),  # not the model's width
    }
    got = capture(facts, ns, model_names=["model"])
    (X, y) = got.training_data["model"]
    assert X.dtype == np.float32 and X.shape == (50, 3) and y is None

    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten())
    facts = analyse_cell("out = net.forward(signal)\nother = other\n")
    ns = {"net": conv, "signal": torch.zeros(4, 1, 10), "other": torch.zeros(100, 1, 10)}
    (X, _) = capture(facts, ns, model_names=["net"]).training_data["net"]
    assert X.shape == (4, 1, 10)  # only what the module was called with

    got = capture(analyse_cell("model = model\n"), {"model": model})
    assert got.training_data["model"] == (None, None)  # nothing to trace: no signature


def test_tracked_training_loop_registers_serves_and_drifts(ip: Any) -> None:
    from jupyter_mlops.monitoring import drift_for_deployment
    from jupyter_mlops.registry import register

    ip.run_cell(SETUP).raise_error()
    ip.run_cell_magic("track", "--experiment torch -n mlp", TRAIN_CELL)
    ns = ip.user_ns
    run = _only_run()
    assert run.info.status == "FINISHED"
    params = run.data.params
    # the optimizer's settings, the module's hyperparameters, the cell's own literal
    assert params["optimizer"] == "SGD"
    assert params["lr"] == "0.1" and params["momentum"] == "0.9"
    assert params["weight_decay"] == "0.0001"
    assert params["loss_function"] == "CrossEntropyLoss"
    assert params["module_class"] == "MLP"
    assert params["hidden"] == "16" and params["dropout"] == "0.1"
    assert params["linear_sizes"] == "[(4, 16), (16, 3)]"
    assert params["epochs"] == "30"
    assert "params" not in params and "foreach" not in params
    if "loss" in run.data.metrics:  # the final loss, or its per-epoch history
        assert run.data.metrics["loss"] == pytest.approx(ns["loss"], rel=1e-6)
    assert ns["model"].training  # logging exported it in eval mode and put it back

    # MLflow's pytorch flavour, a tensor signature from X_train, torch pinned, no sklearn
    uri = json.loads(run.data.tags["mlops.models"])["model"]
    local = Path(mlflow.artifacts.download_artifacts(uri))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert "pytorch" in mlmodel["flavors"]
    inputs = mlflow.models.get_model_info(uri).signature.inputs
    assert inputs.is_tensor_spec()
    (spec,) = inputs.inputs
    assert spec.type == np.dtype("float32") and spec.shape == (-1, 4)
    reqs = (local / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in reqs
    assert not any(r.startswith("scikit-learn") for r in reqs)
    client = MlflowClient(load_config().tracking_uri)
    (dataset,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "model-training"

    model = ns["model"].eval()
    with torch.no_grad():
        expected = model(ns["X_test"]).numpy()
    loaded = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(loaded.predict(ns["X_test"].numpy()), expected, rtol=1e-5)

    config = load_config()
    registration = register("last", name="torch-mlp", config=config)
    assert registration.version == "1"
    X_test = pd.DataFrame(ns["X_test"].numpy(), columns=FEATURES)
    body = json.loads(X_test.to_json(orient="records"))
    with running("torch-mlp/1", config, name="torch-mlp") as dep, httpx.Client(timeout=60) as http:
        response = http.post(f"{dep.url}/predict", json=body)
        assert response.status_code == 200, response.text
        served = np.array(response.json()["predictions"], dtype=np.float32)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
        # MLflow's tensor format, cast from JSON's float64 to the signature's float32
        response = http.post(
            f"{dep.url}/invocations", json={"inputs": ns["X_test"].numpy().tolist()}
        )
        assert response.status_code == 200, response.text
        served = np.array(response.json()["predictions"], dtype=np.float32)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
        bad = http.post(f"{dep.url}/predict", json=[{**body[0], "x1": "tall"}])
        assert bad.status_code == 422 and "float32" in bad.text
        # drift of the served inputs against the training tensor (as x0..x3, like its
        # dataset record): shifted inputs drift, the rest does not
        shifted = X_test.assign(x0=X_test.x0 + 3)
        response = http.post(
            f"{dep.url}/predict", json=json.loads(shifted.to_json(orient="records"))
        )
        assert response.status_code == 200, response.text
        reference = pd.DataFrame(ns["X_train"].numpy(), columns=FEATURES)
        report = drift_for_deployment("torch-mlp", reference=reference, config=config)
        status = {f.name: f.status for f in report.features}
        assert status["x0"] == "drift"
        assert status["x3"] != "drift"


def test_module_without_sample_input_is_pickled_and_the_card_says_so(ip: Any) -> None:
    """No float tensor of the module's width in the cell: no signature, a pickled model."""
    from IPython.utils.capture import capture_output

    ip.run_cell("import torch").raise_error()
    with capture_output() as shown:
        ip.run_cell_magic(
            "track", "--experiment torch -n nodata", "net = torch.nn.Linear(6, 2)\nsteps = 3\n"
        )
    run = _only_run()
    assert run.data.params["linear_sizes"] == "[(6, 2)]"
    uri = json.loads(run.data.tags["mlops.models"])["net"]
    assert mlflow.models.get_model_info(uri).signature is None
    local = Path(mlflow.artifacts.download_artifacts(uri))
    assert (local / "data" / "model.pth").is_file()  # pickled: pt2 needs an input to trace
    card = shown.stdout + "".join(str(o.data) for o in shown.outputs)
    assert "training data unknown, no signature" in card


def test_served_tensor_inputs_are_cast_to_a_float_dtype_only() -> None:
    """JSON numbers become float64: cast to a float32 signature; never truncated to ints."""
    from types import SimpleNamespace

    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    from jupyter_mlops.serving.errors import InputError
    from jupyter_mlops.serving.frames import to_frame
    from jupyter_mlops.serving.validation import InputSpec

    def spec(dtype: str) -> InputSpec:
        sig = ModelSignature(inputs=Schema([TensorSpec(np.dtype(dtype), (-1, 2))]))
        return InputSpec.from_model(SimpleNamespace(metadata=Model(signature=sig)))

    frame = to_frame({"a": [1, 2], "b": [0.5, None]}, spec("float32"))
    assert frame.dtypes.tolist() == [np.float32, np.float32] and np.isnan(frame.b[1])
    assert to_frame({"a": [1], "b": [1.5]}, spec("int64"))["b"].tolist() == [1.5]
    with pytest.raises(InputError, match="float32"):
        to_frame({"a": ["x"], "b": [1.0]}, spec("float32"))


def test_layers_of_a_captured_network_are_not_models_of_their_own(ip: Any) -> None:
    """``layer`` inside ``model = nn.Sequential(layer, ...)`` is logged inside the model."""
    ip.run_cell(SETUP).raise_error()
    cell = """\
first = nn.Linear(4, 8)
model = nn.Sequential(first, nn.ReLU(), nn.Linear(8, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for epoch in range(3):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(X_train), y_train)
    loss.backward()
    optimizer.step()
"""
    ip.run_cell_magic("track", "--experiment layers --quiet", cell)
    run = _only_run()
    assert list(json.loads(run.data.tags["mlops.models"])) == ["model"]
