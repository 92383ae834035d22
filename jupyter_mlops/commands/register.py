"""Model registry commands: register, promote, rollback, history, models, lineage, package.

The magic is one command with modes (``%register --promote NAME/V --alias A``); the command
line gives each mode its own subcommand (``jupyter-mlops promote NAME/V A``). Both shapes
are built from the option helpers below and call the same functions.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from jupyter_mlops._util.records import attributes
from jupyter_mlops.commands.base import Arguments, Command, Context, Face
from jupyter_mlops.commands.options import EXPECT, OUT_FOLDER, json_option
from jupyter_mlops.errors import UsageError


def _register_options(parser: Arguments) -> None:
    add = parser.add_argument
    add("run", nargs="?", default="last", help="run id or prefix (default: last)")
    # The command line registers only; the magic's other modes use --name too.
    add("-n", "--name", required=not parser.magic, help="registered model name")
    add("--alias", action="append", default=[], help="alias to set (repeatable)")
    _gate(parser)
    add("--against", metavar="ALIAS", help="register only if it beats this alias")
    add("--metric", help="metric for --against")
    add("--min-delta", type=float, default=0.0, help="margin required by --against")
    add(
        "--lower-is-better",
        action="store_true",
        default=None,
        help="for --against: a smaller --metric is better",
    )
    add("--model", help="which model of the run, if it logged several")


def _gate(parser: Arguments) -> None:
    parser.add_argument("--gate", help='bar over the run\'s metrics, e.g. "accuracy >= 0.9"')


def _promote_options(parser: Arguments) -> None:
    alias, scope = ("--alias", "With --promote") if parser.magic else ("ALIAS", None)
    parser.add_argument(
        "--expect",
        metavar="VERSION",
        type=EXPECT,
        scope=scope,
        help=f"refuse unless {alias} still points at VERSION ('none': unset); default: its "
        "holder when the command starts",
    )
    parser.add_argument(
        "--force", action="store_true", scope=scope, help=f"overwrite whatever holds {alias}"
    )


def _restore_options(parser: Arguments) -> None:
    scope = "With --lineage" if parser.magic else None
    add = parser.add_argument
    add("--restore", metavar="DEST", scope=scope, help="restore the training data to DEST")
    add("--path", scope=scope, help="which data path to restore (if the run read several)")


def _overwrite_option(parser: Arguments) -> None:
    out, scope = ("--package DIR", "With --package") if parser.magic else ("--out", None)
    parser.add_argument(
        "--overwrite", action="store_true", scope=scope, help=f"replace a non-empty {out}"
    )


def register(args: argparse.Namespace, context: Context) -> Any:
    if not args.name:
        raise UsageError("Say which model to register into: --name NAME")
    import jupyter_mlops.registry as registry

    options = ("name", "gate", "against", "metric", "min_delta", "lower_is_better", "model")
    return registry.register(
        args.run, aliases=args.alias, context=context.origin(), **attributes(args, *options)
    )


def promote(
    context: Context, version: str, alias: str, gate: str | None, force: bool, expect: str | None
) -> Any:
    import jupyter_mlops.registry as registry
    from jupyter_mlops.present import event_text

    event = registry.promote(
        version,
        alias,
        gate=gate,
        context=context.origin(),
        force=force,
        **registry.expectation(expect),
    )
    return event_text(event)


def rollback(context: Context, name: str, alias: str) -> Any:
    import jupyter_mlops.registry as registry
    from jupyter_mlops.present import event_text

    skipped: list[str] = []  # damaged history entries, left out: said below the event
    shown = event_text(registry.rollback(name, alias, context=context.origin(), skipped=skipped))
    shown.notes += skipped
    return shown


def models(as_json: bool = False) -> Any:
    if as_json:
        from jupyter_mlops.commands import output
        from jupyter_mlops.registry import list_models

        return output.models(list_models())
    from jupyter_mlops.present import models_table

    return models_table()


def history(name: str, as_json: bool = False) -> Any:
    if as_json:
        from jupyter_mlops.commands import output
        from jupyter_mlops.registry import history as alias_history

        skipped: list[str] = []
        events = alias_history(name, skipped=skipped)
        output.warn(skipped)  # stdout stays JSON
        return output.alias_history(events)
    from jupyter_mlops.present import history_table

    return history_table(name)


def lineage(
    context: Context, model: str, restore: str | None, path: str | None, as_json: bool
) -> Any:
    """The lineage of a version; with ``restore``, also its training data restored there."""
    import json

    import jupyter_mlops.registry as registry

    lin = registry.lineage(model)
    shown = json.dumps(lin.to_dict(), indent=2, default=str) if as_json else lin
    if not restore:
        return shown
    context.say(shown)
    context.say(f"Restored training data to {lin.restore_data(path, restore)}")
    return None


def package(model: str, out: str, overwrite: bool) -> Any:
    from jupyter_mlops.packaging import package as build_context

    return build_context(model, out, overwrite=overwrite)


class Register(Command):
    name = "register"
    magic = "register"
    help = "register a tracked run's model as a new version"
    doc = """Register a tracked run's model in MLflow's registry, with gates and aliases.

        Examples::

            %register --name iris-rf --alias challenger --gate "accuracy >= 0.9"
            %register --name iris-rf --against champion --metric accuracy --alias champion
            %register --promote iris-rf/4 --alias champion
            %register --rollback iris-rf --alias champion
            %register --history iris-rf
            %register --list
            %register --lineage iris-rf@champion
            %register --name iris-rf@champion --package build/iris-rf
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--promote": "magic mode; command line: `promote NAME/VERSION ALIAS`",
        "--rollback": "magic mode; command line: `rollback NAME ALIAS`",
        "--history": "magic mode; command line: `history NAME`",
        "--list": "magic mode; command line: `models`",
        "--lineage": "magic mode; command line: `lineage NAME@ALIAS`",
        "--package": "magic mode; command line: `package MODEL --out DIR`",
        "--out": "command line (`package MODEL --out DIR`); magic: `--name MODEL --package DIR`",
        "--json": "command line only (`models`, `history`, `lineage`): JSON for scripts",
    }

    def add_arguments(self, parser: Arguments) -> None:
        _register_options(parser)
        if not parser.magic:
            return
        add = parser.add_argument
        add("--promote", metavar="NAME/VERSION", help="point --alias at this version")
        add("--rollback", metavar="NAME", help="move --alias back to its previous holder")
        _promote_options(parser)
        add("--history", metavar="NAME", help="alias history of a model")
        add("--list", action="store_true", help="registered models, versions, aliases")
        add("--lineage", metavar="NAME@ALIAS", help="trace a version to code and data")
        _restore_options(parser)
        add(
            "--package",
            metavar="DIR",
            type=OUT_FOLDER,
            help="write a Docker build context serving the version (with --name NAME@ALIAS|/N)",
        )
        _overwrite_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        if context.face is Face.CLI:  # the command line's modes are subcommands
            return register(args, context)
        if args.list:
            return models()
        if args.history:
            return history(args.history)
        if args.lineage:
            return lineage(context, args.lineage, args.restore, args.path, as_json=False)
        if args.package:
            if not args.name:
                raise UsageError("--package needs --name NAME@ALIAS or NAME/VERSION")
            return package(args.name, args.package, args.overwrite)
        if args.promote or args.rollback:
            if len(args.alias) != 1:
                raise UsageError("--promote and --rollback need exactly one --alias")
            if args.promote:
                return promote(
                    context, args.promote, args.alias[0], args.gate, args.force, args.expect
                )
            return rollback(context, args.rollback, args.alias[0])
        return register(args, context)


class Models(Command):
    name = "models"
    magic_form = "%register --list"
    help = "registered models, versions, aliases, metrics"

    def add_arguments(self, parser: Arguments) -> None:
        json_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return models(args.json)


class Promote(Command):
    name = "promote"
    magic_form = "%register --promote NAME/VERSION --alias ALIAS"
    help = "point an alias at a version: promote NAME/VERSION ALIAS"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("version", metavar="NAME/VERSION")
        parser.add_argument("alias")
        _gate(parser)
        _promote_options(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return promote(context, args.version, args.alias, args.gate, args.force, args.expect)


class Rollback(Command):
    name = "rollback"
    magic_form = "%register --rollback NAME --alias ALIAS"
    help = "move an alias back to its previous holder"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("name")
        parser.add_argument("alias")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return rollback(context, args.name, args.alias)


class History(Command):
    name = "history"
    magic_form = "%register --history NAME"
    help = "alias history of a registered model"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("name")
        json_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return history(args.name, args.json)


class Lineage(Command):
    name = "lineage"
    magic_form = "%register --lineage NAME@ALIAS"
    help = "trace a model version to its run, code and data"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("model", metavar="NAME@ALIAS|NAME/VERSION")
        parser.add_argument("--json", action="store_true", help="print as JSON")
        _restore_options(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return lineage(context, args.model, args.restore, args.path, as_json=args.json)


class Package(Command):
    name = "package"
    magic_form = "%register --name MODEL --package DIR"
    help = "write a Docker build context serving a model version"

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("model", metavar="MODEL", help="models:/NAME@ALIAS, NAME@ALIAS or NAME/VERSION")
        add("--out", type=OUT_FOLDER, required=True, help="folder to write the build context into")
        _overwrite_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return package(args.model, args.out, args.overwrite)


COMMANDS = (Register(), Models(), Promote(), Rollback(), History(), Lineage(), Package())
