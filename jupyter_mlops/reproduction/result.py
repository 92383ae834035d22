"""What a reproduction found: the verdict, each difference, and the likely causes.

Plain data shared by every part of the reproduction (environment, re-execution,
comparison) and every face (magic, CLI, sidebar, run card): JSON-safe through
:meth:`Reproduction.to_dict`, text through ``str()``, HTML in notebooks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

REPRODUCED = "REPRODUCED"
DIFFERENT = "DIFFERENT"
FAILED = "FAILED"  # the run could not be re-executed (data missing, cell raised, env failed)

# Tags written on the original run (see verdict.py) and on the reproduction.
TAG_VERDICT = "mlops.reproduced"
TAG_BY = "mlops.reproduced.by"
TAG_AT = "mlops.reproduced.at"
TAG_REPRODUCES = "mlops.reproduces"
ENV_REPRODUCES = "JUPYTER_MLOPS_REPRODUCES"


@dataclass(frozen=True)
class PackageChange:
    """A distribution whose version differs between the run's record and the interpreter
    used (``None``: absent on that side)."""

    name: str
    recorded: str | None
    current: str | None

    def __str__(self) -> str:
        return f"{self.name} {self.recorded or 'absent'} -> {self.current or 'absent'}"


@dataclass
class EnvironmentReport:
    """The interpreter the re-execution ran in and how it relates to the recorded one."""

    mode: str  # "current" | "fresh"
    python: str  # the interpreter the kernel runs
    changes: list[PackageChange] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # "name==version" not to be had
    cached: bool = False  # a fresh environment reused from the cache
    seconds: float = 0.0

    def summary(self) -> str:
        what = "the running environment" if self.mode == "current" else "a fresh environment"
        if self.mode == "fresh":
            what += " (cached)" if self.cached else f" (built in {self.seconds:.1f} s)"
        same = "same packages" if not self.changes else f"{len(self.changes)} package(s) differ"
        return f"{what}: {same}"


@dataclass(frozen=True)
class Difference:
    """One thing the reproduction did not give again.

    ``kind``: "param" | "metric" | "prediction" | "data" | "model" | "execution".
    """

    kind: str
    name: str
    original: Any
    reproduced: Any
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.name}: {_short(self.original)} -> {_short(self.reproduced)}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class Cause:
    """A likely reason for a difference, with what to do about it.

    ``kind``: "unseeded" | "package" | "data_missing" | "unsnapshotted_read" | "code" |
    "execution".
    """

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Reproduction:
    """The outcome of :func:`jupyter_mlops.reproduction`: verdict, differences, causes."""

    original_run_id: str
    run_id: str | None
    verdict: str
    environment: EnvironmentReport
    differences: list[Difference] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # params, metrics, predictions, data
    seconds: float = 0.0
    workdir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == REPRODUCED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["workdir"] = str(self.workdir) if self.workdir is not None else None
        data["differences"] = [
            {**asdict(d), "original": _json(d.original), "reproduced": _json(d.reproduced)}
            for d in self.differences
        ]
        return data

    def headline(self) -> str:
        """One line: verdict, runs, what was compared."""
        checked = ", ".join(f"{n} {k}" for k, n in self.checked.items() if n)
        by = f" as {self.run_id}" if self.run_id else ""
        line = f"{self.verdict}: run {self.original_run_id}{by}"
        return f"{line} ({checked} compared)" if checked else line

    def __str__(self) -> str:
        lines = [self.headline(), f"  environment: {self.environment.summary()}"]
        lines += [f"    {c}" for c in self.environment.changes]
        lines += [f"    could not be had: {p}" for p in self.environment.unavailable]
        if self.differences:
            lines.append("  differences:")
            lines += [f"    {d}" for d in self.differences]
        if self.causes:
            lines.append("  likely causes:")
            lines += [f"    - {c}" for c in self.causes]
        if self.workdir is not None:
            lines.append(f"  re-executed in {self.workdir}")
        lines.append(f"  took {self.seconds:.1f} s")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        colour = {REPRODUCED: "#1a7f37", DIFFERENT: "#b35900"}.get(self.verdict, "#cf222e")
        parts = [
            f"<div><b style='color:{colour}'>{escape(self.verdict)}</b> "
            f"{escape(self.headline().split(': ', 1)[1])}</div>",
            f"<div>environment: {escape(self.environment.summary())}</div>",
        ]
        if self.environment.changes or self.environment.unavailable:
            items = [escape(str(c)) for c in self.environment.changes]
            items += [f"could not be had: {escape(p)}" for p in self.environment.unavailable]
            parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
        if self.differences:
            rows = "".join(
                f"<tr><td>{escape(d.kind)}</td><td>{escape(d.name)}</td>"
                f"<td>{escape(_short(d.original))}</td><td>{escape(_short(d.reproduced))}</td>"
                f"<td>{escape(d.detail)}</td></tr>"
                for d in self.differences
            )
            parts.append(
                "<table><tr><th>kind</th><th>name</th><th>original</th><th>reproduced</th>"
                f"<th></th></tr>{rows}</table>"
            )
        if self.causes:
            causes = "".join(f"<li>{escape(c.message)}</li>" for c in self.causes)
            parts.append(f"<div>likely causes:</div><ul>{causes}</ul>")
        return "".join(parts)


def _short(value: Any, width: int = 60) -> str:
    text = "absent" if value is None else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _json(value: Any) -> Any:
    """``value`` as JSON can hold it (non-finite floats and other objects as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return str(value)
