"""``%reproduce RUN`` / ``jupyter-mlops reproduce RUN``: prove that a tracked run reproduces.

A face over :func:`jupyter_mlops.reproduction.reproduce`: the run is named as everywhere else
(id, prefix, name, ``last``) or through a registered version (``iris-rf@champion``,
``iris-rf/3``). The magic shows the report (HTML in a notebook); the command line prints
it, or its ``to_dict()`` with ``--json``, and exits 0 when the verdict is REPRODUCED and 1
when it is DIFFERENT or FAILED, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, ClassVar

from jupyter_mlops import values as checks
from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import converter
from jupyter_mlops.errors import EXIT_ERROR, EXIT_OK, UsageError

#: ``--env``: how the interpreter of the re-execution is chosen.
ENV_MODES = ("current", "fresh")
LAST = "last"  # as ``tracking.runs.refs.LAST``: the newest finished run with a model


def _env_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ENV_MODES:
        raise UsageError(f"env must be current or fresh, got {value!r}; e.g. --env current")
    return text


#: ``--env``: current or fresh.
ENV = converter(_env_mode, "env")
#: ``--tolerance``: a finite number, 0 or more (0: metrics must be equal).
TOLERANCE = converter(lambda v: checks.non_negative(v, "tolerance"), "tolerance")


def _workdir(value: Any) -> str:
    folder = checks.out_folder(value, "--workdir")
    if folder.is_dir() and any(folder.iterdir()):
        raise UsageError(f"--workdir {str(value)!r} is not empty; give a new or empty folder")
    return str(folder)


#: ``--workdir``: a folder to rebuild the project in, new or empty.
WORKDIR = converter(_workdir, "folder")


CLI_DESCRIPTION = (
    "Rebuild a tracked run in a scratch copy of its project at the run's git commit: the "
    "running environment or a fresh uv environment from its pinned requirements, every "
    "--data snapshot restored byte for byte from DVC, the recorded cell (with the earlier "
    "cells it depends on) or pipeline notebooks re-executed in a new kernel as a run tagged "
    "mlops.reproduces; then compare params, metrics and predictions, and record the verdict "
    "on the original run (tag mlops.reproduced, artifact mlops/reproductions/). See "
    "docs/reproduce.md."
)
CLI_EPILOG = (
    "exit status: 0 REPRODUCED; 1 DIFFERENT or FAILED (the report says each difference and "
    "its likely cause), or an error; 2 usage error."
)


def resolve_ref(ref: str, context: Context) -> str:
    """The run ``ref`` names, as ``reproduce`` takes it: ``last`` becomes the newest finished
    run with a model (of the notebook the magic runs in, if known); anything else (a run id,
    prefix or name, ``NAME@ALIAS``, ``NAME/VERSION``) is passed on as written."""
    if ref.strip().lower() != LAST:
        return ref.strip()
    from jupyter_mlops.tracking.runs.refs import find_run

    return str(find_run(LAST, notebook=context.notebook).info.run_id)


class Reproduce(Command):
    name = "reproduce"
    magic = "reproduce"
    help = "re-execute a run in a scratch copy of its project and compare the results"
    doc = """Prove that a tracked run reproduces: rebuild, re-execute, compare, record.

        In a scratch copy of the project at the run's git commit: the environment is the
        running one (--env current) or a fresh virtual environment built with uv from the
        run's pinned requirements (--env fresh, cached; the default when they differ);
        every --data snapshot is restored byte for byte from DVC; the recorded cell (with
        the earlier cells it depends on), or the pipeline's notebooks, run again in a new
        kernel as a run tagged mlops.reproduces. Params, metrics (within --tolerance) and
        the model's predictions are compared. The verdict (REPRODUCED, DIFFERENT with each
        difference and its likely cause, or FAILED) is recorded on the original run: tags
        mlops.reproduced, mlops.reproduced.by, mlops.reproduced.at and an artifact
        mlops/reproductions/<run>.json. See docs/reproduce.md.

        Examples::

            %reproduce 3f2a                            # a run id prefix, or a run name
            %reproduce last --env current              # this notebook's newest run
            %reproduce iris-rf@champion --env fresh    # a registered version, through its run
            %reproduce iris-rf/3 --tolerance 1e-6 --workdir build/repro
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--json": "command line only: print the comparison as JSON (the magic returns the "
        "Reproduction; `.to_dict()` is the same data)",
    }

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add(
            "run",
            nargs="?",
            default=LAST,
            metavar="RUN",
            help="run id, prefix or name, NAME@ALIAS or NAME/VERSION of a registered model, "
            "or last (the default: the newest finished run with a model)",
        )
        add(
            "--env",
            type=ENV,
            metavar="current|fresh",
            capitalize=False,
            help="current: the running environment (package differences listed); fresh: a "
            "virtual environment built with uv from the run's pinned requirements, cached "
            "(default: fresh when the recorded packages differ from the running ones)",
        )
        add(
            "--tolerance",
            type=TOLERANCE,
            default=1e-9,
            help="largest difference allowed between a metric and its reproduction "
            "(default 1e-9; 0: equal)",
        )
        add(
            "--workdir",
            type=WORKDIR,
            metavar="DIR",
            help="rebuild the project in DIR, new or empty (default: a new folder under "
            ".mlops/reproductions/); it is kept",
        )
        if not parser.magic:
            add("--json", action="store_true", help="print the comparison as JSON")
            parser.parser.description = CLI_DESCRIPTION
            parser.parser.epilog = CLI_EPILOG

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.reproduction import reproduce

        return reproduce(
            resolve_ref(args.run, context),
            env=args.env,
            tolerance=args.tolerance,
            workdir=args.workdir,
        )

    def render(self, args: argparse.Namespace, result: Any) -> Any:
        if getattr(args, "json", False):
            return json.dumps(result.to_dict(), indent=2, default=str)
        return result

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        """0 when the run reproduced; 1 when it is DIFFERENT or could not be re-executed."""
        return EXIT_OK if result.ok else EXIT_ERROR
