"""``pipeline.yaml``: notebooks as steps of a DAG, their parameters, inputs and outputs.

```yaml
name: iris
experiment: iris-pipeline     # MLflow experiment (default: the name)
model: iris-rf                # registered model the retraining loop feeds (optional)
metric: accuracy              # holdout metric it compares on (optional)
params: {data: data/iris.csv, seed: 0}      # defaults, given to every step that declares them
steps:
  validate-data:
    notebook: notebooks/pipeline/validate-data.ipynb
    inputs: ["${data}"]                      # ${name}: a parameter, ${run_dir}: this run's folder
    outputs: ["${run_dir}/train.csv", "${run_dir}/holdout.csv"]
  train:
    notebook: notebooks/pipeline/train.ipynb
    params: {n_estimators: 100}
    needs: [validate-data]                   # also implied when an input is another's output
```

A step parameter may name a pipeline parameter (``params: {alpha: "${alpha}"}``): it gets
the run's value of it, under ``pipeline run`` and ``dvc repro`` alike (see
:mod:`.placeholders`). ``steps`` may also be a list (each item with a ``name``): each step
then needs the one before it unless it says otherwise. Paths are relative to the folder of
``pipeline.yaml``, which is also the working directory of every step's kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines.dag import check_acyclic, topological
from jupyter_mlops.pipelines.placeholders import fill, names_in, resolve_params

_STEP_KEYS = {"name", "notebook", "params", "inputs", "outputs", "needs", "executor", "kernel",
              "timeout"}  # fmt: skip
_TOP_KEYS = {"name", "experiment", "model", "metric", "params", "steps", "executor", "register"}
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Step:
    """One notebook of a pipeline, as written in ``pipeline.yaml``."""

    name: str
    notebook: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    executor: str | None = None
    kernel: str | None = None
    timeout: float | None = None


@dataclass
class PlannedStep:
    """A step ready to execute: parameters and paths resolved, dependencies known."""

    name: str
    notebook: Path
    params: dict[str, Any]
    inputs: list[Path]
    outputs: list[Path]
    needs: list[str]
    executor: str
    kernel: str | None
    timeout: float | None
    external_inputs: list[Path] = field(default_factory=list)  # produced by no step here


def _as_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise PipelineError(f"{what} must be a path or a list of paths, got {value!r}")


@dataclass
class Pipeline:
    """A parsed and structurally checked ``pipeline.yaml``."""

    name: str
    base: Path  # folder paths are relative to; the steps' working directory
    steps: dict[str, Step]
    params: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    experiment: str | None = None
    model: str | None = None
    metric: str | None = None
    executor: str | None = None
    register: str | None = None  # the step whose model retraining registers
    _declared: dict[str, dict[str, Any] | None] = field(default_factory=dict, repr=False)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: Path, path: Path | None = None
    ) -> Pipeline:
        """Build and check a pipeline from its parsed YAML."""
        where = path.name if path else "pipeline"
        _check_keys(data, where, "'name' and 'steps'", _TOP_KEYS)
        raw_steps = data.get("steps")
        if not raw_steps:
            raise PipelineError(f"{where}: no steps")
        ordered = isinstance(raw_steps, list)
        items: list[tuple[str, Any]] = []
        if ordered:
            for i, item in enumerate(raw_steps):
                if not isinstance(item, Mapping) or not item.get("name"):
                    raise PipelineError(f"{where}: step {i + 1} of the list has no 'name'")
                items.append((str(item["name"]), item))
        elif isinstance(raw_steps, Mapping):
            items = [(str(k), v) for k, v in raw_steps.items()]
        else:
            raise PipelineError(f"{where}: 'steps' must be a mapping or a list")

        steps: dict[str, Step] = {}
        previous: str | None = None
        for name, raw in items:
            if name in steps:
                raise PipelineError(f"{where}: step {name!r} is defined twice")
            steps[name] = _step(name, raw or {}, previous if ordered else None)
            previous = name
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise PipelineError(f"{where}: 'params' must be a mapping of name: value")
        pipeline = cls(
            name=str(data.get("name") or (path.stem if path else "pipeline")),
            base=base.resolve(),
            steps=steps,
            params=dict(params),
            path=path.resolve() if path else None,
            experiment=data.get("experiment"),
            model=data.get("model"),
            metric=data.get("metric"),
            executor=data.get("executor"),
            register=data.get("register"),
        )
        pipeline._check_structure()
        return pipeline

    def _check_structure(self) -> None:
        for step in self.steps.values():
            for need in step.needs:
                if need not in self.steps:
                    raise PipelineError(
                        f"step {step.name!r} needs {need!r}, which is not a step "
                        f"(steps: {', '.join(self.steps)})"
                    )
        if self.register is not None and self.register not in self.steps:
            raise PipelineError(f"'register: {self.register}' names no step")
        check_acyclic({s.name: set(s.needs) for s in self.steps.values()})

    # -- parameters ------------------------------------------------------------------------
    def notebook_path(self, step: str) -> Path:
        return (self.base / self.steps[step].notebook).resolve()

    def declared(self, step: str) -> dict[str, Any] | None:
        """The parameters the step's notebook declares (None: no ``parameters`` cell)."""
        if step not in self._declared:
            from jupyter_mlops.pipelines.parameterize import notebook_parameters

            path = self.notebook_path(step)
            if not path.is_file():
                raise PipelineError(
                    f"step {step!r}: notebook {self.steps[step].notebook} does not exist"
                )
            self._declared[step] = notebook_parameters(path)
        return self._declared[step]

    def parameter_names(self) -> set[str]:
        """Every name a run can be given: pipeline params and what any notebook declares."""
        names = set(self.params)
        for step in self.steps:
            names |= set(self.declared(step) or {})
        return names

    # -- planning --------------------------------------------------------------------------
    def plan(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        run_dir: Path,
        run_id: str = "",
        steps: Iterable[str] | None = None,
        executor: str | None = None,
    ) -> list[PlannedStep]:
        """Resolve parameters and paths for one run and check everything that can be checked.

        ``overrides`` are ``name=value`` (every step declaring ``name``, and ``${name}``) or
        ``step.name=value`` (that step only). Raises :class:`PipelineError` naming the step
        for an unknown parameter, a notebook without a parameters cell, a missing input,
        a cycle or an unknown executor. Steps come back in an executable order.
        """
        from jupyter_mlops.pipelines.executors import known_executors

        overrides = dict(overrides or {})
        scoped: dict[str, dict[str, Any]] = {}
        plain: dict[str, Any] = {}
        for key, value in overrides.items():
            step_name, dot, param = key.partition(".")
            if dot and step_name in self.steps:
                scoped.setdefault(step_name, {})[param] = value
            else:
                plain[key] = value
        for step_name, values in scoped.items():
            declared = self.declared(step_name) or {}
            for param in values:
                if param not in declared:
                    raise PipelineError(_unknown(step_name, param, declared, self.steps))
        all_names = self.parameter_names()
        for key in plain:
            if key not in all_names:
                raise PipelineError(
                    f"unknown parameter {key!r}: neither a pipeline parameter nor declared by "
                    f"any step's notebook (known: {', '.join(sorted(all_names)) or 'none'})"
                )
        used_globals: set[str] = set()
        for step in self.steps.values():
            cell = self.declared(step.name)
            for key in step.params:
                if cell is None:
                    raise PipelineError(_no_cell(step))
                if key not in cell:
                    raise PipelineError(_unknown(step.name, key, cell, self.steps))
            used_globals |= set(cell or {})
            texts = [str(v) for v in step.params.values()] + step.inputs + step.outputs
            used_globals |= names_in(texts)
        unused = set(self.params) - used_globals
        if unused:
            raise PipelineError(
                f"pipeline parameter(s) {sorted(unused)} are declared by no step's notebook "
                "and used in no ${...} of a path"
            )

        names = set(steps) if steps is not None else set(self.steps)
        for name in names - set(self.steps):
            raise PipelineError(f"no step {name!r} (steps: {', '.join(self.steps)})")
        run_dir_text = relative_path(run_dir, self.base)
        context = {**self.params, **{k: v for k, v in plain.items() if k in self.params}}
        context.update({"run_dir": run_dir_text, "run_id": run_id})
        executors = known_executors()

        planned: dict[str, PlannedStep] = {}
        for step in self.steps.values():
            declared = self.declared(step.name) or {}
            params = {k: v for k, v in self.params.items() if k in declared}
            params.update(step.params)
            params.update({k: v for k, v in plain.items() if k in declared})
            params.update(scoped.get(step.name, {}))
            if "run_dir" in declared and "run_dir" not in params:
                params["run_dir"] = run_dir_text
            params = resolve_params(params, context, step.name)
            local = {**context, **params}
            chosen = step.executor or executor or self.executor or "local"
            if chosen not in executors:
                raise PipelineError(
                    f"step {step.name!r}: unknown executor {chosen!r} "
                    f"(known: {', '.join(sorted(executors))})"
                )
            planned[step.name] = PlannedStep(
                name=step.name,
                notebook=self.notebook_path(step.name),
                params=params,
                inputs=[self._path(fill(p, local, step.name)) for p in step.inputs],
                outputs=[self._path(fill(p, local, step.name)) for p in step.outputs],
                needs=list(step.needs),
                executor=chosen,
                kernel=step.kernel,
                timeout=step.timeout,
            )

        producers: dict[Path, str] = {}
        for p in planned.values():
            for out in p.outputs:
                if out in producers:
                    where = relative_path(out, self.base)
                    first = producers[out]
                    raise PipelineError(f"steps {first!r} and {p.name!r} both write {where}")
                producers[out] = p.name
        for p in planned.values():
            # A parameter naming another step's output is read as an input: data flow
            # implies the dependency, whether or not `inputs` or `needs` say so.
            named = [self._path(v) for v in p.params.values() if isinstance(v, str) and v]
            for path in [*p.inputs, *named]:
                producer = producers.get(path)
                if producer is not None and producer != p.name and producer not in p.needs:
                    p.needs.append(producer)
        check_acyclic({p.name: set(p.needs) for p in planned.values()})

        selected = [p for p in topological(planned) if p.name in names]
        for p in selected:
            missing = []
            for path in p.inputs:
                producer = producers.get(path)
                if producer is not None and producer in names and producer != p.name:
                    continue
                if producer is None:
                    p.external_inputs.append(path)
                if not path.exists():
                    missing.append(relative_path(path, self.base))
            if missing:
                made = [m for m in missing if self._path(m) in producers]
                hint = (
                    f" (written by step {producers[self._path(made[0])]!r}, which this run "
                    "does not include)"
                    if made
                    else " and no step writes it"
                )
                raise PipelineError(
                    f"step {p.name!r}: input {', '.join(missing)} does not exist{hint}"
                )
            p.needs = [n for n in p.needs if n in names]
        return selected

    def _path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()


def relative_path(path: Path | str, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form, or as given when it lies outside."""
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except ValueError:
        return str(path)


def is_yaml_value(value: Any) -> bool:
    """Whether ``value`` survives a YAML round trip (scalars, lists, dicts keyed by text)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(is_yaml_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_yaml_value(v) for k, v in value.items())
    return False


def _step(name: str, raw: Any, previous: str | None) -> Step:
    if not _STEP_NAME.match(name):
        raise PipelineError(f"step {name!r}: use letters, digits, '-', '_' or '.' in step names")
    if isinstance(raw, str):
        raw = {"notebook": raw}
    _check_keys(raw, f"step {name!r}", "'notebook'", _STEP_KEYS)
    if not raw.get("notebook"):
        raise PipelineError(f"step {name!r}: no 'notebook'")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise PipelineError(f"step {name!r}: 'params' must be a mapping of name: value")
    if "needs" in raw:
        needs = _as_list(raw.get("needs"), f"step {name!r}: 'needs'")
    else:
        needs = [previous] if previous else []
    timeout = raw.get("timeout")
    return Step(
        name=name,
        notebook=str(raw["notebook"]),
        params=dict(params),
        inputs=_as_list(raw.get("inputs"), f"step {name!r}: 'inputs'"),
        outputs=_as_list(raw.get("outputs"), f"step {name!r}: 'outputs'"),
        needs=needs,
        executor=raw.get("executor"),
        kernel=raw.get("kernel"),
        timeout=float(timeout) if timeout is not None else None,
    )


def _check_keys(raw: Any, where: str, expected: str, known: set[str]) -> None:
    """``raw`` must be a mapping whose keys are all ``known``."""
    if not isinstance(raw, Mapping):
        raise PipelineError(f"{where}: expected a mapping with {expected}")
    unknown = set(raw) - known
    if unknown:
        raise PipelineError(f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(known)})")


def _unknown(step: str, param: str, declared: Mapping[str, Any], steps: Mapping[str, Step]) -> str:
    notebook = steps[step].notebook
    return (
        f"step {step!r}: unknown parameter {param!r}: {notebook} declares "
        f"{', '.join(declared) or 'no parameters'}"
    )


def _no_cell(step: Step) -> str:
    return (
        f"step {step.name!r}: {step.notebook} has no cell tagged 'parameters'; run "
        f"`jupyter-mlops pipeline parameterize {step.notebook}` (or %pipeline parameterize)"
    )


def load_pipeline(source: str | os.PathLike[str] | Pipeline) -> Pipeline:
    """Read and check ``pipeline.yaml`` (or pass a :class:`Pipeline` through)."""
    if isinstance(source, Pipeline):
        return source
    import yaml

    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"Pipeline file {source} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path.name} is not valid YAML: {exc}") from None
    return Pipeline.from_dict(data or {}, base=path.parent, path=path)
