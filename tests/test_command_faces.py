"""Both faces of a command take the same options, unless the command says otherwise.

For every command module with a magic and a command line face, the options of the magic's
parser and of all its command-line (sub)parsers must match, except those declared in the
commands' ``face_specific`` (which must really be in one face only).
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlops.commands import COMMANDS, face_table

TABLE = Path(__file__).parents[1] / "docs" / "commands.md"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
        elif not isinstance(action, argparse._HelpAction):
            found.update(action.option_strings)
    return found


def _cli_parsers() -> dict[str, argparse.ArgumentParser]:
    from jupyter_mlops.cli import build_parser

    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _modules() -> dict[str, list]:  # type: ignore[type-arg]
    grouped = defaultdict(list)
    for command in COMMANDS:
        grouped[type(command).__module__].append(command)
    return dict(grouped)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_faces_share_options_unless_declared(module: str) -> None:
    commands = _modules()[module]
    magic = [c for c in commands if c.magic]
    cli = [c for c in commands if c.cli]
    declared = {k for c in commands for k in c.face_specific}
    if not magic or not cli:
        assert not declared, f"{module} has one face only: nothing is face-specific"
        return
    from jupyter_mlops.magics import MlopsMagics

    parsers = _cli_parsers()
    in_magic = set().union(*(_options(getattr(MlopsMagics, c.magic).parser) for c in magic))
    in_cli = set().union(*(_options(parsers[c.name]) for c in cli))
    one_face = in_magic ^ in_cli
    assert one_face <= declared, f"options in one face only, not declared: {one_face - declared}"
    assert declared <= one_face, f"declared face-specific but in both faces: {declared - one_face}"


def test_every_face_specific_option_says_why() -> None:
    for command in COMMANDS:
        for option, why in command.face_specific.items():
            assert option.startswith("-") and why.strip(), (command.name, option)


def test_docs_table_is_current() -> None:
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        TABLE.write_text(face_table())
    assert TABLE.read_text() == face_table(), "docs/commands.md is stale: UPDATE_SNAPSHOTS=1"


def test_track_own_errors_in_one_line_cell_errors_unchanged(
    ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.error import UsageError

    import jupyter_mlops.tracking
    from jupyter_mlops.errors import NotFoundError, TrackingError

    def fails_after_the_cell(source: str, namespace: Any, execute: Any, **options: Any) -> None:
        execute()
        raise TrackingError("the store went away while logging")

    with monkeypatch.context() as patch:
        patch.setattr(jupyter_mlops.tracking, "track_code", fails_after_the_cell)
        with pytest.raises(UsageError, match="store went away"):
            ip.run_cell_magic("track", "--quiet", "ran = True")
    assert ip.user_ns["ran"] is True
    cell = "from jupyter_mlops.errors import NotFoundError\nraise NotFoundError('mine')"
    with pytest.raises(NotFoundError, match="mine"):
        ip.run_cell_magic("track", "-e own-error --quiet", cell)


def test_command_line_exit_codes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_mlops.cli import main

    assert main(["drift"]) == 2  # a usage error: nothing to compare
    assert "--reference and --current" in capsys.readouterr().err
    assert main(["drift", "--reference", "a.csv", "--current", "b.csv", "--threshold", "x"]) == 2
    assert "NAME=NUMBER" in capsys.readouterr().err
    assert main(["drift", "dep", "--threshold", "nope=1"]) == 2
    assert "Unknown drift threshold 'nope'" in capsys.readouterr().err
