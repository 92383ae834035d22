"""PyTorch: an ``nn.Module`` trained in a loop in the cell, logged with ``mlflow.pytorch``.

A PyTorch model is never ``fit``: the cell builds a module and an optimizer and loops. So
besides the module itself this flavour reads the cell around it (docs/flavors.md,
"PyTorch"):

- **detection**: an ``nn.Module`` instance with parameters (a loss or an activation module
  has none), recognised by the names in its class's MRO before anything is imported;
- **hyperparameters**: the module's class, its parameter count, the sizes of its
  ``nn.Linear`` layers and the simple public attributes its ``__init__`` set
  (``self.hidden = hidden``); from the cell, the optimizer that updates this module's
  parameters (its class and ``param_groups[0]``: ``lr``, ``momentum``, ``betas``...), the
  learning-rate scheduler driving it and the loss module, by class name;
- **sample input**: a float tensor or array the cell mentions (``X_train``): 2-D with as
  many columns as the module's first layer (an ``nn.Linear``) takes, the one with most rows;
  when the first layer is not an ``nn.Linear``, one the cell passed to the module
  (``model(X)``). It becomes a float32 array: the training dataset record, the input
  example and a tensor signature ``float32 (-1, n)``;
- **logging**: ``mlflow.pytorch.log_model`` in the ``pt2`` format (``torch.export``: a
  traced graph, no pickle, the model's class need not be importable where it is loaded),
  exported in eval mode on the CPU. Without a sample input it cannot be traced, so it is
  pickled instead, and loading it then needs ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, pinned
from jupyter_mlops.tracking.values import as_param_value

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

# Optimizer options that say how the update is computed, not what it is.
_IMPLEMENTATION_FLAGS = frozenset({"params", "foreach", "capturable", "differentiable", "fused"})
MAX_ATTRIBUTES = 20  # of the module's own simple attributes recorded as params
MAX_LINEAR_LAYERS = 20


def is_torch_module(obj: Any) -> bool:
    """An instance of ``torch.nn.Module``, told from its class's MRO without importing torch."""
    if isinstance(obj, type):
        return False
    return any(
        cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
        for cls in type(obj).__mro__
    )


def input_width(module: Any) -> int | None:
    """The number of input features: ``in_features`` of the first layer that has parameters
    of its own, when it is an ``nn.Linear``; None for other first layers (conv, embedding)."""
    import torch

    for sub in module.modules():
        if next(sub.parameters(recurse=False), None) is not None:
            if isinstance(sub, torch.nn.Linear) and sub.in_features > 0:  # LazyLinear: 0
                return int(sub.in_features)
            return None
    return None


def _as_float_array(value: Any) -> Any:
    """A float tensor or ndarray as a float32 numpy array on the CPU; None for other values."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            return None
        return value.detach().cpu().to(torch.float32).numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(np.float32, copy=False)
    return None


def _updates(optimizer: Any, module: Any) -> bool:
    """True when ``optimizer`` updates (some of) ``module``'s parameters."""
    mine = {id(p) for p in module.parameters()}
    return any(id(p) in mine for group in optimizer.param_groups for p in group["params"])


class PyTorchFlavor(Flavor):
    """``torch.nn.Module`` models, through ``mlflow.pytorch`` (``pt2`` format)."""

    name: ClassVar[str] = "pytorch"
    library: ClassVar[str] = "torch"

    def parts(self, obj: Any) -> list[Any]:
        """The layers and sub-networks of a module (``nn.Sequential(layer, ...)``)."""
        return list(obj.modules())[1:]

    def detects(self, obj: Any) -> bool:
        if not is_torch_module(obj):
            return False
        return next(obj.parameters(), None) is not None

    def params(self, obj: Any) -> dict[str, str]:
        import torch

        out = {
            "module_class": type(obj).__name__,
            "n_parameters": str(sum(p.numel() for p in obj.parameters() if p.requires_grad)),
        }
        attributes = [
            (k, v)
            for k, v in vars(obj).items()
            if not k.startswith("_") and k != "training" and isinstance(v, bool | int | float | str)
        ]
        for key, value in attributes[:MAX_ATTRIBUTES]:
            text = as_param_value(value)
            if text is not None:
                out[key] = text
        linears = [m for m in obj.modules() if isinstance(m, torch.nn.Linear)]
        if 0 < len(linears) <= MAX_LINEAR_LAYERS:
            out["linear_sizes"] = repr([(m.in_features, m.out_features) for m in linears])
        return out

    def cell_params(self, obj: Any, values: Mapping[str, Any]) -> dict[str, str]:
        """The optimizer updating ``obj``, its scheduler and the loss module, from the cell."""
        import torch

        out: dict[str, str] = {}
        optimizer = next(
            (
                v
                for v in values.values()
                if isinstance(v, torch.optim.Optimizer) and _updates(v, obj)
            ),
            None,
        )
        if optimizer is not None:
            out["optimizer"] = type(optimizer).__name__
            group = dict(optimizer.param_groups[0])
            # A scheduler rewrites lr as it goes; the configured one is kept as initial_lr.
            if "initial_lr" in group:
                group["lr"] = group.pop("initial_lr")
            for key, value in group.items():
                if key in _IMPLEMENTATION_FLAGS or value is None:
                    continue
                text = as_param_value(value)
                if text is not None:
                    out[key] = text
            scheduler = next(
                (
                    v
                    for v in values.values()
                    if isinstance(v, torch.optim.lr_scheduler.LRScheduler)
                    and v.optimizer is optimizer
                ),
                None,
            )
            if scheduler is not None:
                out["lr_scheduler"] = type(scheduler).__name__
        loss = next(
            (
                v
                for v in values.values()
                if isinstance(v, torch.nn.Module) and type(v).__module__ == "torch.nn.modules.loss"
            ),
            None,
        )
        if loss is not None:
            out["loss_function"] = type(loss).__name__
        return out

    def sample_input(self, obj: Any, values: Mapping[str, Any], passed: Sequence[str]) -> Any:
        """The float tensor/array the model trained on (see the module docstring for the rule)."""
        width = input_width(obj)
        best: tuple[int, int, Any] | None = None  # (rows, passed to the model, array)
        for name, value in values.items():
            if width is None and name not in passed:
                continue
            if not hasattr(value, "shape") or len(value.shape) < 2:
                continue
            if width is not None and (len(value.shape) != 2 or value.shape[-1] != width):
                continue
            array = _as_float_array(value)
            if array is None:
                continue
            key = (int(array.shape[0]), int(name in passed))
            if best is None or key > best[:2]:  # ties keep the first mentioned
                best = (*key, array)
        return None if best is None else best[2]

    def outputs(self, obj: Any, example: Any) -> Any:
        """The module's output on ``example`` in eval mode, without gradients, as numpy."""
        import torch

        device = next(obj.parameters()).device
        was_training = obj.training
        obj.eval()
        try:
            with torch.no_grad():
                out = obj(torch.as_tensor(example, device=device))
        finally:
            obj.train(was_training)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the module returns {type(out).__name__}, not one tensor: MLflow's pytorch "
                "flavour serves modules with a single tensor output"
            )
        return out.detach().cpu().numpy()

    def requirements(self, obj: Any) -> list[str]:
        """mlflow, numpy and torch, pinned; torch without a local label (``+cpu``), which
        no public index serves, so the pin installs anywhere."""
        reqs = pinned(["mlflow", "numpy", "torch"])
        return [r.split("+", 1)[0] if r.startswith("torch==") else r for r in reqs]

    def log(self, obj: Any, args: LogArgs) -> ModelInfo:
        import mlflow.pytorch

        if args.input_example is None:
            # torch.export needs an input to trace: pickled, loadable only where
            # MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true (docs/flavors.md).
            fmt = "pickle"
            model = obj
        else:
            fmt = "pt2"
            # Exported as served: eval mode (dropout off, batch-norm statistics frozen), on
            # the CPU; a copy when the module lives elsewhere, so the cell's model is untouched.
            model = obj if next(obj.parameters()).device.type == "cpu" else copy.deepcopy(obj).cpu()
        was_training = obj.training
        model.eval()
        try:
            info: ModelInfo = mlflow.pytorch.log_model(
                model, **args.as_kwargs(), serialization_format=fmt
            )
        finally:
            obj.train(was_training)
        return info
