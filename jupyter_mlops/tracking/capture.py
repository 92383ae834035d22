"""What a cell produced: parameters, metrics, step histories, models and training data.

``analyse_cell`` reads what a cell's source could assign (used to parameterise notebooks,
and as a fallback for code that runs uninstrumented); what an execution actually bound,
stepped and fitted comes from :mod:`jupyter_mlops.tracking.recorder`. ``capture`` combines
those names with what the namespace holds after the cell ran. Nothing here imports MLflow
or a model framework: the flavour registry recognises trained models (by duck typing, for
scikit-learn style estimators) so that inspecting a cell stays cheap.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.tracking import flavors, models, steps
from jupyter_mlops.tracking.values import MAX_PARAM_LENGTH, as_metric_value, as_param_value

_METRIC_WORDS = (
    "acc|accuracy|f1|precision|recall|auc|roc_auc|pr_auc|rmse|mse|mae|mape|r2|loss|score|"
    "logloss|log_loss|balanced_accuracy|kappa|mcc"
)
# Names that are metrics whatever their value: the bare words, *_score, *_loss, and the
# words with a qualifier on either side (f1_macro, test_acc).
METRIC_NAME = re.compile(
    rf"^(?:(?:{_METRIC_WORDS})|\w+_(?:score|loss)|(?:{_METRIC_WORDS})_\w+|\w+_(?:{_METRIC_WORDS}))$",
    re.IGNORECASE,
)
# Split-prefixed names (val_*, test_*) are metrics only when computed: `test_size = 0.2`
# is a parameter.
COMPUTED_METRIC_NAME = re.compile(r"^(?:val|valid|test|train|eval)_\w+$", re.IGNORECASE)


@dataclass
class CellFacts:
    """What the cell's source says, before it runs."""

    assigned: list[str] = field(default_factory=list)  # in order of first assignment
    literals: dict[str, Any] = field(default_factory=dict)  # name -> literal value
    fitted: list[str] = field(default_factory=list)  # names whose .fit(...) was called
    fit_data: dict[str, tuple[ast.expr | None, ast.expr | None]] = field(default_factory=dict)
    tree: ast.Module | None = field(default=None, repr=False)  # for tracking/models.py
    # For models trained without ``fit`` (a PyTorch loop): every name the cell mentions, and
    # the names passed as first argument to a call of a name (``model(X)`` -> model: [X]).
    mentioned: list[str] = field(default_factory=list)
    called_with: dict[str, list[str]] = field(default_factory=dict)


def _target_names(target: ast.expr) -> Iterable[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _fit_receiver(call: ast.Call) -> str | None:
    """``model.fit(...)`` -> "model"; ``make_pipeline(...).fit(...)`` -> None."""
    func = call.func
    fits = {"fit", "fit_transform", "fit_predict"}
    if isinstance(func, ast.Attribute) and func.attr in fits and isinstance(func.value, ast.Name):
        return func.value.id
    return None


def analyse_cell(source: str) -> CellFacts:
    """Read the names a cell assigns, which of them are literals, and what it fits.

    ``source`` must be plain Python (IPython syntax already transformed).
    """
    tree = ast.parse(source)
    facts = CellFacts(tree=tree)

    def assign(name: str, value: ast.expr | None) -> None:
        if name not in facts.assigned:
            facts.assigned.append(name)
        if value is None:
            facts.literals.pop(name, None)
            return
        ok, lit = _literal(value)
        if ok:
            facts.literals[name] = lit
        else:
            facts.literals.pop(name, None)

    def note_fit(call: ast.Call, assigned_to: list[str]) -> None:
        receiver = _fit_receiver(call)
        names = [receiver] if receiver else []
        # model = Pipeline(...).fit(X, y): fit returns the estimator, so the target is fitted
        if isinstance(call.func, ast.Attribute) and call.func.attr == "fit":
            names += assigned_to
        for name in names:
            if name not in facts.fitted:
                facts.fitted.append(name)
            facts.fit_data[name] = models.fit_args(call)

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            facts.mentioned.append(node.id)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            func = node.func  # model(X) or model.forward(X)
            if isinstance(func, ast.Attribute) and func.attr == "forward":
                func = func.value
            if isinstance(func, ast.Name):
                facts.called_with.setdefault(func.id, []).append(node.args[0].id)
        if isinstance(node, ast.Assign):
            targets = [n for t in node.targets for n in _target_names(t)]
            single = len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            for name in targets:
                assign(name, node.value if single else None)
            if isinstance(node.value, ast.Call):
                note_fit(node.value, targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            value = node.value if isinstance(node, ast.AnnAssign) else None
            for name in _target_names(node.target):
                assign(name, value)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for name in _target_names(node.target):
                assign(name, None)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            for name in _target_names(node.optional_vars):
                assign(name, None)
        elif isinstance(node, ast.NamedExpr):
            assign(node.target.id, node.value)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            note_fit(node.value, [])
    facts.mentioned = list(dict.fromkeys(facts.mentioned))
    return facts


def is_metric_name(name: str, *, literal: bool = False) -> bool:
    """True for names that conventionally hold an evaluation metric.

    ``literal`` says the cell assigned a literal value, which makes a split-prefixed name
    (``test_size = 0.2``) a parameter rather than a metric.
    """
    if METRIC_NAME.match(name):
        return True
    return not literal and bool(COMPUTED_METRIC_NAME.match(name))


@dataclass
class Captured:
    """Everything read off one executed cell, ready to be logged."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)  # name -> trained model
    training_data: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (X, y)
    histories: dict[str, list[float]] = field(default_factory=dict)  # metric -> step values
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it was not logged
    # model name -> its training's metric histories (``validation_0-logloss`` -> per step)
    step_metrics: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def _is_metric_series(name: str, literal: bool) -> bool:
    """``losses``, ``val_accs``, ``loss_history``: a metric-like name, plural or not."""
    if is_metric_name(name, literal=literal):
        return True
    one = steps.singular(name)
    return one is not None and is_metric_name(one, literal=literal)


def capture(
    facts: CellFacts,
    namespace: Mapping[str, Any],
    *,
    extra_params: Iterable[str] = (),
    extra_metrics: Iterable[str] = (),
    model_names: Iterable[str] | None = None,
    with_models: bool = True,
    fit_inputs: Mapping[str, tuple[Any, Any]] | None = None,
    histories: Mapping[str, list[float]] | None = None,
    skip_metrics: Collection[str] = (),
) -> Captured:
    """Combine what the cell bound (``facts``) with what the namespace holds after it ran.

    ``fit_inputs`` maps a fitted model's variable names to the (X, y) its fit call
    received (default: plain names read off the source); ``histories`` are the step
    values of metrics updated in loops; ``skip_metrics`` are metric keys the run already
    holds (the user logged them), left alone entirely.
    """
    out = Captured()
    extra_params, extra_metrics = list(extra_params), list(extra_metrics)

    for name in facts.assigned:
        if name.startswith("_") or name not in namespace:
            continue
        value = namespace[name]
        literal = name in facts.literals
        if is_metric_name(name, literal=literal):
            metric = as_metric_value(value)
            if metric is not None:
                out.metrics[name] = metric
                continue
        if literal and flavors.is_eval_history(namespace[name]):
            continue  # `evals = {}` filled by training: step metrics of its model, not a param
        if _is_metric_series(name, literal):
            numbers = steps.series(value)
            if numbers is not None:
                out.histories[name] = numbers
                continue
        if literal:
            text = as_param_value(value)
            if text is not None:
                out.params[name] = text

    for name in extra_params:
        if name not in namespace:
            out.skipped[name] = "named with --params but not defined"
            continue
        text = as_param_value(namespace[name])
        out.params[name] = text if text is not None else str(namespace[name])[:MAX_PARAM_LENGTH]
    for name in extra_metrics:
        metric = as_metric_value(namespace.get(name))
        if metric is None:
            out.skipped[name] = "named with --metrics but not a number"
        else:
            out.metrics[name] = metric

    # A metric updated in a loop is its history; its final value is the last step.
    finals = {k: out.metrics.pop(k) for k in list(histories or {}) if k in out.metrics}
    out.histories.update(steps.with_final(histories or {}, finals))
    for key in skip_metrics:
        out.metrics.pop(key, None)
        out.histories.pop(key, None)

    if not with_models:
        return out
    if model_names is not None:
        candidates = list(model_names)
        for name in candidates:
            if name not in namespace:
                out.skipped[name] = "named with --model but not defined"
            elif flavors.flavor_for(namespace[name]) is None:
                out.skipped[name] = "named with --model but not a fitted estimator"
    else:
        candidates = [n for n in [*facts.assigned, *facts.fitted] if not n.startswith("_")]
    # Which objects are models (predictors, not the steps inside them) and what each was
    # fitted on: tracking/models.py.
    if fit_inputs is None:  # not run instrumented: the fit calls read off the cell's code
        fit_inputs = models.fit_inputs_from_cell(facts.tree, namespace)
    else:  # what each fit call received; numpy arrays named after the frame they came from
        fit_inputs = models.name_columns(fit_inputs, facts.tree, namespace)
    if model_names is None:
        candidates += [n for n in fit_inputs if not n.startswith("_")]
    chosen, training_data, skipped = models.select_models(
        candidates, namespace, fit_inputs, explicit=model_names is not None
    )
    out.models.update(chosen)
    out.training_data.update(training_data)
    out.skipped.update(skipped)
    model_flavors = {
        name: flavors.flavor_for(model) or flavors.get(flavors.FALLBACK)
        for name, model in out.models.items()
    }
    # Models trained without fit (a PyTorch loop): the flavour finds their input among the
    # values the cell mentions, and training settings held by other values (an optimizer).
    values = {n: namespace[n] for n in facts.mentioned if n in namespace}
    for name, model in out.models.items():
        if out.training_data.get(name, (None, None))[0] is None:
            sample = model_flavors[name].sample_input(
                model, values, facts.called_with.get(name, [])
            )
            if sample is not None:
                out.training_data[name] = (sample, None)
    # Where native training APIs leave their evaluation history (xgb.train's evals_result).
    cell_values = {n: namespace[n] for n in facts.assigned if n in namespace}
    for name, model in out.models.items():
        histories = model_flavors[name].step_metrics(model, cell_values)
        if histories:
            out.step_metrics[name] = histories

    # Hyperparameters: bare names for a single model, prefixed when several; a cell literal
    # of the same name wins, and a clash with a different value keeps both (prefixed).
    for name, model in out.models.items():
        hyper = model_flavors[name].params(model)
        for key, text in {**hyper, **model_flavors[name].cell_params(model, values)}.items():
            bare = len(out.models) == 1
            param = key if bare else f"{name}.{key}"
            if param in out.params and out.params[param] != text:
                param = f"{name}.{key}"
            out.params.setdefault(param, text)
    return out
