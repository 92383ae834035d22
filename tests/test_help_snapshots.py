"""Every CLI ``--help`` and every magic's usage, held against snapshots in tests/snapshots/.

The magics and the CLI are adapters over one command spec (``jupyter_mlops/commands``);
an option that changes in one face changes here, on purpose, in the same commit. After a
deliberate change: ``UPDATE_SNAPSHOTS=1 pytest tests/test_help_snapshots.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots" / "help"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def _cli_helps() -> dict[str, str]:
    from jupyter_mlops.cli import build_parser

    out: dict[str, str] = {}

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        out["cli-" + "-".join(path or ["jupyter-mlops"])] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    return out


def _magic_helps() -> dict[str, str]:
    from jupyter_mlops.magics import MlopsMagics

    out: dict[str, str] = {}
    for kind in ("line", "cell"):
        for name, method in MlopsMagics.magics[kind].items():
            magic = getattr(MlopsMagics, method)
            # ``?`` shows __doc__, formatted when the magics were imported, at that moment's
            # terminal width; the parser formats it again at the snapshots' width.
            percent = "%%" if kind == "cell" else "%"  # the usage reads as it is typed
            assert magic.__doc__.startswith(f"::\n\n  {percent}{name} "), magic.__doc__[:40]
            out[f"magic-{name}"] = magic.parser.format_help()
    return out


def _helps() -> dict[str, str]:
    return {**_cli_helps(), **_magic_helps()}


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")


def test_help_texts_match_snapshots() -> None:
    helps = _helps()
    if UPDATE:
        for old in SNAPSHOTS.glob("*.txt"):
            old.unlink()
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for name, text in helps.items():
            (SNAPSHOTS / f"{name}.txt").write_text(text)
    stored = {p.stem: p.read_text() for p in SNAPSHOTS.glob("*.txt")}
    assert sorted(helps) == sorted(stored), "commands added or removed: update the snapshots"
    changed = [name for name in helps if helps[name] != stored[name]]
    assert not changed, f"help changed for {changed}: update the snapshots if on purpose"
