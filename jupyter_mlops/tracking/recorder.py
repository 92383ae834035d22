"""What one execution of a cell did: the recorder that an instrumented cell reports to.

:mod:`jupyter_mlops.tracking.instrument` rewrites the cell so that each executed binding,
``del``, loop iteration and fit call reports here. After the cell, :meth:`Recorder.result`
turns that into the input of :func:`~jupyter_mlops.tracking.capture.capture`: the names
this execution bound (and still holds), which of them are unchanged literals, the step
histories of metrics updated in loops, and what each fit call received.

The per-iteration cost is what matters (a training loop runs this 10,000 times): the
instrumented loop stores into plain dicts and lists and compares a clock, inline; every
``LIVE_INTERVAL`` seconds :meth:`tick` converts the raw step values to floats (so no
reference to, say, a tensor is held longer than that) and redraws the live chart.
"""

from __future__ import annotations

import ast
import copy
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.tracking.capture import CellFacts
from jupyter_mlops.tracking.instrument import RECORDER, Instrumenter, Site
from jupyter_mlops.tracking.values import as_metric_value

LIVE_INTERVAL = 0.5  # seconds between two redraws of the live chart

Histories = dict[str, list[float]]


@dataclass
class FitCall:
    """One fit call that ran: its receiver and the X and y it was given (references)."""

    receiver: Any
    names: set[str]  # the receiver's variable names at the call
    method: str
    X: Any = None
    y: Any = None
    frozen: bool = False  # a later partial_fit batch: keep the first one


@dataclass
class Executed:
    """What one execution of the cell did, read after it ran (or failed)."""

    facts: CellFacts
    fit_inputs: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    histories: Histories = field(default_factory=dict)


def scalar(value: Any) -> float | None:
    """A step value as a float: numbers, numpy scalars, 0-d arrays and tensors."""
    number = as_metric_value(value)
    if number is not None or getattr(value, "ndim", None) != 0:
        return number
    try:  # a 0-d array-like of another kind: .item() is what the user would call
        return as_metric_value(value.item())
    except Exception:
        return None


class Recorder:
    """Receives the reports of one instrumented cell execution.

    ``live`` (optional) is called with the step histories at most every ``LIVE_INTERVAL``
    seconds while the cell runs, and once more at the end: the live chart under the cell.
    """

    def __init__(self, live: Callable[[Histories], None] | None = None) -> None:
        self.hits: dict[str, int] = {}  # name -> site of its last reported binding
        self.histories: Histories = {}  # metric -> step values, as floats
        self.raw: dict[str, list[Any]] = {}  # metric -> step values not yet converted
        self.fresh: list[bool] = []  # loop -> no iteration has completed yet
        self.fits: list[FitCall] = []
        self.sites: list[Site] = []
        self.instrumented = False
        self.clock = time.perf_counter
        self.next_tick = self.clock() + LIVE_INTERVAL
        self._calls: dict[int, FitCall | None] = {}  # fit site -> the call being made
        self._live = live
        self._drawn: tuple[int, ...] = ()

    # -- the seam a face's executor calls --------------------------------------------
    def instrument(self, tree: ast.Module) -> ast.Module:
        """Rewrite ``tree`` (after IPython's transforms) to report to this recorder."""
        instrumenter = Instrumenter()
        tree = instrumenter(tree)
        self.sites, self.instrumented = instrumenter.sites, True
        self.fresh = [True] * instrumenter.loops
        for number in range(instrumenter.loops):
            setattr(self, f"p{number}", {})  # the loop's pending step values
        self.raw = {name: [] for name in instrumenter.stepped}
        return tree

    @contextmanager
    def installed(self, namespace: MutableMapping[str, Any]) -> Iterator[Recorder]:
        """The recorder in ``namespace`` under its reserved name while the cell runs."""
        namespace[RECORDER] = self
        self.next_tick = self.clock() + LIVE_INTERVAL
        try:
            yield self
        finally:
            if namespace.get(RECORDER) is self:
                del namespace[RECORDER]
            self._compact()
            self._draw()  # the final chart is the one that stays

    # -- called by the instrumented cell ----------------------------------------------
    def tick(self) -> None:
        """Every LIVE_INTERVAL seconds while a loop steps: convert, redraw.

        Runs inside the user's loop: whatever goes wrong here (a value that will not
        convert, a display that fails) must not break the cell; the chart stops instead.
        """
        self.next_tick = self.clock() + LIVE_INTERVAL
        try:
            self._compact()
            self._draw()
        except Exception:
            self._live = None

    def _compact(self) -> None:
        for key, values in self.raw.items():
            if values:
                numbers = [v if type(v) is float else scalar(v) for v in values]
                self.histories.setdefault(key, []).extend(n for n in numbers if n is not None)
                values.clear()

    def _draw(self) -> None:
        """Show the histories, unless nothing was stepped since the last draw."""
        drawn = tuple(len(v) for v in self.histories.values())
        if self._live is not None and drawn and drawn != self._drawn:
            self._drawn = drawn
            self._live(self.histories)

    def bind(self, site: int, value: Any, loop: int, direct: bool) -> Any:
        """``(name := value)`` ran (a step of ``loop``'s, unless -1)."""
        name = self.sites[site].name
        self.hits[name] = site
        if direct and loop >= 0:
            self.raw[name].append(value)
        elif loop >= 0:
            getattr(self, f"p{loop}")[name] = value
        return value

    def fit_on(self, site: int, receiver: Any) -> Any:
        """A fit call is about to be made on ``receiver``; returns it unchanged."""
        spec = self.sites[site]
        names = {spec.name} if spec.name else set()
        if spec.method == "partial_fit":
            for call in self.fits:
                if call.receiver is receiver and call.method == "partial_fit":
                    call.names |= names
                    self._calls[site] = None  # a later batch: the first one is kept
                    return receiver
        call = FitCall(receiver, names, spec.method)
        self.fits.append(call)
        self._calls[site] = call
        return receiver

    def fit_arg(self, site: int, index: int, value: Any) -> Any:
        """X (``index`` 0) or y (1) of the fit call at ``site``; returns it unchanged."""
        call = self._calls.get(site)
        if call is not None:
            # A partial_fit caller may refill the same buffer for the next batch: copy.
            value_kept = _copy(value) if call.method == "partial_fit" else value
            if index == 0:
                call.X = value_kept
            else:
                call.y = value_kept
        return value

    # -- after the cell ---------------------------------------------------------------
    def result(self, namespace: Mapping[str, Any]) -> Executed:
        """What this execution bound, fitted and stepped, as ``capture`` takes it."""
        self._compact()
        facts = CellFacts()
        for name, site in self.hits.items():
            if name not in namespace:  # never bound, or deleted since
                continue
            facts.assigned.append(name)
            spec = self.sites[site]
            if spec.literal and _same(namespace[name], spec.value):
                facts.literals[name] = spec.value
        bound = {n: namespace[n] for n in facts.assigned}
        fit_inputs: dict[str, tuple[Any, Any]] = {}
        for call in self.fits:
            names = [n for n in call.names if namespace.get(n) is call.receiver]
            names += [n for n, v in bound.items() if v is call.receiver and n not in names]
            for name in names:
                fit_inputs[name] = (call.X, call.y)
                if name not in facts.fitted:
                    facts.fitted.append(name)
        return Executed(facts, fit_inputs, {k: list(v) for k, v in self.histories.items()})


def _same(value: Any, literal: Any) -> bool:
    """The name still holds the literal it was given (a list not appended to since)."""
    if type(value) is not type(literal):
        return False
    try:
        return bool(value == literal)
    except Exception:
        return False


def _copy(value: Any) -> Any:
    method = getattr(value, "copy", None)
    if callable(method):
        try:
            return method()
        except Exception:
            pass
    try:
        return copy.copy(value)
    except Exception:
        return value
