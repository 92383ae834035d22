"""The steps' dependency graph: checked for cycles, walked in an executable order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from jupyter_mlops.errors import PipelineError


class _Needs(Protocol):
    @property
    def needs(self) -> list[str]: ...


N = TypeVar("N", bound=_Needs)


def check_acyclic(graph: Mapping[str, set[str]]) -> None:
    """Raise naming the cycle (``a -> b -> a``) if ``graph`` (node -> needs) has one."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise PipelineError(
                    "the steps form a cycle: "
                    + " -> ".join(reversed(cycle))
                    + " (each needs the one before it)"
                )
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def topological(nodes: Mapping[str, N]) -> list[N]:
    """Nodes ordered so each comes after what it needs; ties keep the written order.

    The graph must be acyclic (:func:`check_acyclic`).
    """
    done: set[str] = set()
    out: list[N] = []
    pending = list(nodes)
    while pending:
        for name in pending:
            if all(n in done for n in nodes[name].needs):
                out.append(nodes[name])
                done.add(name)
                pending.remove(name)
                break
    return out
