"""One spec per command, adapted by both text faces (``magics.py`` and ``cli.py``).

Each module holds one command (or one family: ``register`` with promote, rollback...):
its options, added once by ``add_arguments``, and ``run(args, context)`` returning a result
object that the magic displays and the command line prints. Where the faces have different
shapes (``%deploy NAME --canary MODEL`` and ``jupyter-mlops deploy canary NAME MODEL``),
both shapes are built from the same option helpers and call the same functions. An option
present in one face only is declared in its command's ``face_specific``, with its form in the
other face or the reason; ``tests/test_command_faces.py`` fails on any undeclared one.

Whole commands of one face: ``%%track`` and ``%compare`` (magics: they run a cell or show a
widget); ``restore``, ``init``, ``execute``, ``retrain``, ``server``, ``demo`` (command line).

Modules are light (argparse only); everything heavy is imported inside ``run``.
"""

from __future__ import annotations

from jupyter_mlops.commands import (
    compare,
    demo,
    deploy,
    doctor,
    drift,
    execute,
    info,
    init,
    monitor,
    outcomes,
    pipeline,
    register,
    reproduce,
    restore,
    retrain,
    server,
    track,
)
from jupyter_mlops.commands.base import (
    Arguments,
    CellRunner,
    Command,
    Context,
    Face,
    ModalCommand,
)

#: Every command, in the order the command line lists them.
COMMANDS: tuple[Command, ...] = (
    *info.COMMANDS,
    doctor.Doctor(),
    restore.Restore(),
    reproduce.Reproduce(),
    init.Init(),
    execute.Execute(),
    *register.COMMANDS,
    monitor.Monitor(),
    drift.Drift(),
    outcomes.Outcomes(),
    pipeline.Pipeline(),
    retrain.Retrain(),
    deploy.Deploy(),
    server.Server(),
    demo.Demo(),
    track.Track(),
    compare.Compare(),
)


def cli_commands() -> list[Command]:
    """The command line's subcommands, in order."""
    return [c for c in COMMANDS if c.cli]


def face_table() -> str:
    """docs/commands.md: each command's faces and its face-specific options, then the
    command line's exit statuses, the keys of each listing's ``--json`` and the magic
    settings, as Markdown."""
    from jupyter_mlops.commands.output import keys_table
    from jupyter_mlops.commands.settings import settings_table
    from jupyter_mlops.errors import EXIT_CODES

    lines = [
        "# Commands: magic and command line",
        "",
        "Generated from `jupyter_mlops/commands/` (`UPDATE_SNAPSHOTS=1 pytest "
        "tests/test_command_faces.py` rewrites it). Every option not listed here exists in "
        "both faces with the same name and meaning.",
        "",
        "| command | magic | command line | face-specific option | why / other face |",
        "| --- | --- | --- | --- | --- |",
    ]
    for command in COMMANDS:
        magic = f"`%{'%' if command.cell else ''}{command.magic}`" if command.magic else "-"
        cli = f"`jupyter-mlops {command.name}`" if command.cli else "-"
        whole = ""
        if command.magic_form:
            whole = f"magic: `{command.magic_form}`"
        elif not (command.magic and command.cli):
            whole = "magic only" if command.magic else "command line only"
        rows = sorted(command.face_specific.items()) or [("", whole)]
        for option, why in rows:
            shown = f"`{option}`" if option else ""
            lines.append(f"| {command.name} | {magic} | {cli} | {shown} | {why} |")
    lines += [
        "",
        "## Exit status",
        "",
        "`jupyter-mlops --version` prints `jupyter-mlops X.Y.Z` (`%mlops --version` in a "
        "notebook). Every command exits with one of these statuses (also in `--help`):",
        "",
        "| status | meaning |",
        "| --- | --- |",
        *(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items()),
        "",
        *keys_table(),
        "",
        *settings_table(),
    ]
    return "\n".join(lines) + "\n"


def magic_commands() -> list[Command]:
    """The commands that are magics (``command.magic`` is the magic's name)."""
    return [c for c in COMMANDS if c.magic]


__all__ = [
    "COMMANDS",
    "Arguments",
    "CellRunner",
    "Command",
    "Context",
    "Face",
    "ModalCommand",
    "cli_commands",
    "face_table",
    "magic_commands",
]
