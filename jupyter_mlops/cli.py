"""``jupyter-mlops``: the command line over the same API the magics use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jupyter_mlops._util.urls import redact
from jupyter_mlops.errors import MlopsError


def _info(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import describe

    print(describe())
    return 0


def _runs(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import runs_table

    print(runs_table(limit=args.limit, all_notebooks=True))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import pending_table, retry_table

    print(pending_table() if args.list else retry_table())
    return 0


def _restore(args: argparse.Namespace) -> int:
    from jupyter_mlops.tracking import restore_data

    dest = restore_data(args.run_id, args.path, args.dest, overwrite=args.overwrite)
    print(f"Restored {args.path} of run {args.run_id} to {dest}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from jupyter_mlops.config import load_config

    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".mlops").mkdir(exist_ok=True)
    config = load_config(folder)
    config.ensure_dirs()
    print(f"Project initialised at {config.root} (tracking: {redact(config.tracking_uri)})")
    return 0


def _execute(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines.execute import execute_notebook, parse_parameters

    out = execute_notebook(
        args.notebook,
        args.output,
        parameters=parse_parameters(args.param or []),
        cwd=args.cwd,
    )
    print(f"Executed {args.notebook} -> {out}")
    return 0


def _register(args: argparse.Namespace) -> int:
    import jupyter_mlops.registry as registry

    print(
        registry.register(
            args.run,
            name=args.name,
            aliases=args.alias or [],
            gate=args.gate,
            against=args.against,
            metric=args.metric,
            min_delta=args.min_delta,
            model=args.model,
        )
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import models_table

    print(models_table())
    return 0


def _promote(args: argparse.Namespace) -> int:
    import jupyter_mlops.registry as registry
    from jupyter_mlops.status import event_text

    event = registry.promote(
        args.version,
        args.alias,
        gate=args.gate,
        force=args.force,
        **registry.expectation(args.expect),
    )
    print(event_text(event))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    import jupyter_mlops.registry as registry
    from jupyter_mlops.status import event_text

    print(event_text(registry.rollback(args.name, args.alias)))
    return 0


def _history(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import history_table

    print(history_table(args.name))
    return 0


def _lineage(args: argparse.Namespace) -> int:
    import json

    import jupyter_mlops.registry as registry

    lin = registry.lineage(args.model)
    print(json.dumps(lin.to_dict(), indent=2, default=str) if args.json else lin)
    if args.restore:
        print(f"Restored training data to {lin.restore_data(args.path, args.restore)}")
    return 0


def _package(args: argparse.Namespace) -> int:
    from jupyter_mlops.packaging import package

    print(package(args.model, args.out, overwrite=args.overwrite))
    return 0


def _monitor_check(args: argparse.Namespace) -> int:
    import json

    from jupyter_mlops import monitoring

    result = monitoring.check(
        args.deployment,
        args.rule or None,
        last=args.last,
        webhook=args.webhook,
        notify=not args.no_notify,
    )
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else result)
    if result.firing:
        return 1
    return 3 if args.strict and result.unknown else 0


def _monitor_figures(args: argparse.Namespace) -> int:
    import json

    from jupyter_mlops import monitoring

    figs = monitoring.figures(args.deployment, last=args.last, drift=not args.no_drift)
    if args.json:
        print(json.dumps({"figures": dict(figs), "notes": figs.notes}, indent=2))
    else:
        print(figs)
    return 0


def _monitor_rules(args: argparse.Namespace) -> int:
    from jupyter_mlops import monitoring

    if args.remove:
        monitoring.remove_rules(args.deployment, args.remove)
    rules = [
        monitoring.AlertRule(r, action=args.action, cooldown_s=args.cooldown)
        for r in args.add or []
    ]
    stored = (
        monitoring.set_rules(args.deployment, rules, webhook=args.webhook)
        if rules or args.webhook is not None
        else monitoring.get_rules(args.deployment)
    )
    for rule in stored.rules:
        action = f"  -> {rule.action}" if rule.action else ""
        print(f"{rule.expression}{action}")
    print(f"webhook: {stored.webhook or 'none'}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from jupyter_mlops import monitoring

    try:  # a malformed or unknown --threshold is a ValueError: report it as a usage error
        options = {}
        for item in args.threshold or []:
            key, _, value = item.partition("=")
            number = int if key.strip() in ("bins", "min_samples") else float
            options[key.strip()] = number(value)
        if args.deployment:
            report = monitoring.drift_for_deployment(
                args.deployment, last=args.last, reference=args.reference, model=args.model,
                **options,
            )  # fmt: skip
        else:
            if not (args.reference and args.current):
                raise monitoring.MonitoringError("give a DEPLOYMENT, or --reference and --current")
            report = monitoring.drift(
                monitoring.read_table(args.reference),
                monitoring.read_table(args.current),
                prediction=args.prediction,
                **options,
            )
    except ValueError as exc:
        raise monitoring.MonitoringError(f"{exc} (--threshold NAME=NUMBER)") from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    if args.html:
        page = f"<html><meta charset='utf-8'><body>{report.to_html()}</body></html>"
        Path(args.html).write_text(page)
    if args.log:
        print(f"logged to MLflow run {report.log_to_mlflow()}")
    return 1 if args.fail_on_drift and report.dataset_drift else 0


def _pipeline_parameterize(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import parameterize

    print(parameterize(args.notebook, cell=args.cell))
    return 0


def _pipeline_new(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import new_pipeline

    path = new_pipeline(args.notebook, args.output, name=args.name, overwrite=args.overwrite)
    print(f"Wrote {path}; edit it, then: jupyter-mlops pipeline run {path}")
    return 0


def _pipeline_run(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import launch

    result = launch(
        args.pipeline,
        args.param or [],
        grid=args.grid,
        executor=args.executor,
        scheduler=args.scheduler,
        workers=args.workers,
        steps=args.step,
    )
    print(result)
    return 0 if result.ok else 1


def _pipeline_step(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import run_step

    record = run_step(
        args.pipeline,
        args.step,
        args.param or [],
        params_file=args.params_file,
        run_dir=args.run_dir,
    )
    print(record)
    return 0 if record.ok else 1


def _pipeline_export(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import export_dvc

    out = export_dvc(args.pipeline, output=args.output, run_dir=args.run_dir)
    print(f"Wrote {out} (and params.yaml); run `dvc repro` to execute what changed")
    return 0


def _pipeline_history(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import history

    print(history(pipeline=args.pipeline, model=args.model, limit=args.limit))
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines import PipelineError, parse_overrides, retrain, watch

    params, swept = parse_overrides(args.param or [])
    if swept:
        raise PipelineError("retrain runs the pipeline once: one value per parameter")
    options = {
        "model": args.model,
        "pipeline": args.pipeline,
        "when": args.when,
        "deployment": args.deployment,
        "force": args.force,
        "canary_weight": args.canary,
        "metric": args.metric,
        "params": params,
        "last": args.last,
        "executor": args.executor,
        "scheduler": args.scheduler,
    }
    if args.watch:
        watch(args.watch, max_checks=args.max_checks, on_decision=print, **options)
        return 0
    decision = retrain(**options)
    print(decision)
    return 1 if decision.action in ("pipeline-failed", "no-model") else 0


def _deploy(args: argparse.Namespace) -> int:
    from jupyter_mlops import serving

    if args.deploy_command == "list":
        print(serving.list_deployments())
    elif args.deploy_command == "start":
        print(
            serving.deploy(
                args.target,
                name=args.name,
                port=args.port,
                host=args.host,
                workers=args.workers,
                token=args.token,
                prediction_log=not args.no_log,
            )
        )
    elif args.deploy_command == "canary":
        print(serving.canary(args.name, args.target, args.weight))
    elif args.deploy_command == "batch":
        print(serving.batch_predict(args.target, args.input, args.output))
    else:
        action = {
            "promote": serving.promote,
            "rollback": serving.rollback,
            "stop": serving.stop,
            "status": serving.get_deployment,
        }[args.deploy_command]
        print(action(args.name))
    return 0


def _server(args: argparse.Namespace) -> int:
    from jupyter_mlops.tracking import server

    if args.server_command == "start":
        info = server.start_server(
            backend_store_uri=args.backend_store_uri,
            artifacts_destination=args.artifacts_destination,
            host=args.host,
            port=args.port,
            workers=args.workers,
        )
        print(info)
    elif args.server_command == "stop":
        info = server.stop_server(args.port)
        print(f"Stopped the tracking server {info.url} (pid {info.pid})")
    else:
        known = server.servers()
        if not known:
            print("No tracking server started from this project (`jupyter-mlops server start`).")
        for info, alive in known:
            state = server.probe(info.url) if alive else "process gone"
            backend = redact(info.backend_store_uri)
            print(f"{info.url}  pid {info.pid}  {state}  backend {backend}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from jupyter_mlops.demo import run_demo

    run_demo(Path(args.dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-mlops", description="Jupyter-native MLOps on MLflow and DVC."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="show the project, tracking store and DVC state")
    p.set_defaults(func=_info)

    p = sub.add_parser("runs", help="list the latest runs")
    p.add_argument("-n", "--limit", type=int, default=10)
    p.set_defaults(func=_runs)

    p = sub.add_parser(
        "retry", help="log the runs buffered while the tracking store was unreachable"
    )
    p.add_argument("--list", action="store_true", help="only list them")
    p.set_defaults(func=_retry)

    p = sub.add_parser("restore", help="restore a run's data snapshot byte for byte")
    p.add_argument("run_id")
    p.add_argument("path", help="the data path as the run recorded it")
    p.add_argument("dest", help="where to write the restored file or folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_restore)

    p = sub.add_parser("init", help="make a folder a jupyter-mlops project (creates .mlops/)")
    p.add_argument("dir", nargs="?", default=".")
    p.set_defaults(func=_init)

    p = sub.add_parser("execute", help="execute a notebook with papermill, tracking its cells")
    p.add_argument("notebook")
    p.add_argument("output", nargs="?", help="executed copy (default: <name>.out.ipynb)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--cwd", help="working directory of the kernel (default: notebook's folder)")
    p.set_defaults(func=_execute)

    p = sub.add_parser("register", help="register a tracked run's model as a new version")
    p.add_argument("run", nargs="?", default="last", help="run id or prefix (default: last)")
    p.add_argument("-n", "--name", required=True, help="registered model name")
    p.add_argument("--alias", action="append", help="alias to set (repeatable)")
    p.add_argument("--gate", help='bar over the run\'s metrics, e.g. "accuracy >= 0.9"')
    p.add_argument("--against", metavar="ALIAS", help="register only if it beats this alias")
    p.add_argument("--metric", help="metric for --against")
    p.add_argument("--min-delta", type=float, default=0.0)
    p.add_argument("--model", help="which model of the run, if it logged several")
    p.set_defaults(func=_register)

    p = sub.add_parser("models", help="registered models, versions, aliases, metrics")
    p.set_defaults(func=_models)

    p = sub.add_parser("promote", help="point an alias at a version: promote NAME/VERSION ALIAS")
    p.add_argument("version", metavar="NAME/VERSION")
    p.add_argument("alias")
    p.add_argument("--gate")
    p.add_argument(
        "--expect",
        metavar="VERSION",
        help="refuse unless ALIAS still points at VERSION ('none': unset); default: its "
        "holder when the command starts",
    )
    p.add_argument("--force", action="store_true", help="overwrite whatever holds ALIAS")
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="move an alias back to its previous holder")
    p.add_argument("name")
    p.add_argument("alias")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("history", help="alias history of a registered model")
    p.add_argument("name")
    p.set_defaults(func=_history)

    p = sub.add_parser("lineage", help="trace a model version to its run, code and data")
    p.add_argument("model", metavar="NAME@ALIAS|NAME/VERSION")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--restore", metavar="DEST", help="restore the training data to DEST")
    p.add_argument("--path", help="which data path to restore (if the run read several)")
    p.set_defaults(func=_lineage)

    p = sub.add_parser("package", help="write a Docker build context serving a model version")
    p.add_argument("model", metavar="MODEL", help="models:/NAME@ALIAS, NAME@ALIAS or NAME/VERSION")
    p.add_argument("--out", required=True, help="folder to write the build context into")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_package)

    p = sub.add_parser("monitor", help="monitored figures and alert rules of a deployment")
    msub = p.add_subparsers(dest="monitor_command", required=True)

    c = msub.add_parser(
        "check",
        help="evaluate the alert rules (exit 1 if one fires): for cron and CI",
    )
    c.add_argument("deployment")
    c.add_argument("--last", default="1h", help="window of the figures (default 1h)")
    c.add_argument("--rule", action="append", help="rule to check instead of the stored ones")
    c.add_argument("--webhook", help="POST firing alerts here instead of the stored URL")
    c.add_argument("--no-notify", action="store_true", help="record only: no webhook, no action")
    c.add_argument("--strict", action="store_true", help="exit 3 when a rule is unknown")
    c.add_argument("--json", action="store_true", help="print as JSON")
    c.set_defaults(func=_monitor_check)

    c = msub.add_parser("figures", help="print the monitored figures")
    c.add_argument("deployment")
    c.add_argument("--last", default="1h")
    c.add_argument("--no-drift", action="store_true", help="skip drift_share/n_drifted")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_monitor_figures)

    c = msub.add_parser("rules", help="list, add or remove the stored alert rules")
    c.add_argument("deployment")
    c.add_argument("--add", action="append", metavar="RULE", help='e.g. "p99_ms > 50"')
    c.add_argument("--remove", action="append", metavar="RULE")
    c.add_argument("--action", metavar="KIND:ARG", help="action of the added rules")
    c.add_argument("--cooldown", type=float, default=0.0, help="seconds between notifications")
    c.add_argument("--webhook", metavar="URL", help='where firing alerts go ("" removes it)')
    c.set_defaults(func=_monitor_rules)

    p = sub.add_parser(
        "drift", help="drift of a deployment's inputs against its training data, or of two files"
    )
    p.add_argument("deployment", nargs="?")
    p.add_argument("--last", default="1h", help="window of the deployment's inputs")
    p.add_argument("--reference", metavar="PATH", help="CSV/Parquet (default: training data)")
    p.add_argument("--current", metavar="PATH", help="CSV/Parquet (without a deployment)")
    p.add_argument("--model", default="primary", help="primary, canary or a version number")
    p.add_argument("--prediction", metavar="COLUMN", help="prediction column of the files")
    p.add_argument("--threshold", action="append", metavar="NAME=VALUE")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--html", metavar="OUT", help="also write the report as HTML")
    p.add_argument("--log", action="store_true", help="log the report to MLflow")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")
    p.set_defaults(func=_drift)

    p = sub.add_parser("pipeline", help="notebooks as papermill pipelines (pipeline.yaml)")
    psub = p.add_subparsers(dest="pipeline_command", required=True)

    q = psub.add_parser("parameterize", help="tag a notebook's parameters cell for papermill")
    q.add_argument("notebook")
    q.add_argument("--cell", type=int, help="index of the cell to tag (default: found)")
    q.set_defaults(func=_pipeline_parameterize)

    q = psub.add_parser("new", help="write a starter pipeline.yaml from a notebook")
    q.add_argument("notebook")
    q.add_argument("-o", "--output", default="pipeline.yaml")
    q.add_argument("--name", help="pipeline name (default: the notebook's)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=_pipeline_new)

    q = psub.add_parser("run", help="run a pipeline; comma-separated values sweep")
    q.add_argument("pipeline", help="pipeline.yaml")
    q.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="override (NAME or STEP.NAME); a,b,c sweeps over the values",
    )
    q.add_argument("--grid", metavar="FILE", help="sweep over a YAML/JSON grid")
    q.add_argument("--executor", help="local (default), threads or dask")
    q.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    q.add_argument("--workers", type=int, help="steps at once (default: CPUs)")
    q.add_argument("--step", action="append", help="run only this step (repeatable)")
    q.set_defaults(func=_pipeline_run)

    q = psub.add_parser("step", help="run one step (the command of an exported DVC stage)")
    q.add_argument("pipeline")
    q.add_argument("step")
    q.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    q.add_argument("--params-file", help="params.yaml written by the export")
    q.add_argument("--run-dir", help="folder ${run_dir} stands for")
    q.set_defaults(func=_pipeline_step)

    q = psub.add_parser("export", help="write dvc.yaml + params.yaml for `dvc repro`")
    q.add_argument("pipeline")
    q.add_argument("--dvc", action="store_true", required=True, help="export to DVC")
    q.add_argument("-o", "--output", help="dvc.yaml to write (default: beside the pipeline)")
    q.add_argument("--run-dir", help="folder for ${run_dir} (default: build/pipelines/NAME)")
    q.set_defaults(func=_pipeline_export)

    q = psub.add_parser("history", help="pipeline runs and retraining decisions")
    q.add_argument("--pipeline", help="runs of this pipeline only")
    q.add_argument("--model", help="retraining decisions of this model only")
    q.add_argument("-n", "--limit", type=int, default=20)
    q.set_defaults(func=_pipeline_history)

    p = sub.add_parser("retrain", help="retrain on drift: pipeline, challenger, gate, promote")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--pipeline", required=True, help="pipeline.yaml")
    p.add_argument("--when", help='trigger over monitoring figures, e.g. "drift_share > 0.3"')
    p.add_argument("--deployment", help="deployment whose figures to read (default: model)")
    p.add_argument("--force", action="store_true", help="retrain whatever the figures say")
    p.add_argument("--canary", type=float, metavar="PERCENT", help="canary the winner first")
    p.add_argument("--metric", help="holdout metric to compare (default: pipeline's)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--last", default="1h", help="monitoring window (default 1h)")
    p.add_argument("--executor", help="local (default), threads or dask")
    p.add_argument("--scheduler", help="Dask scheduler address")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="check every SECONDS")
    p.add_argument("--max-checks", type=int, help="with --watch: stop after N checks")
    p.set_defaults(func=_retrain)

    p = sub.add_parser("deploy", help="serve registered models as REST APIs")
    dsub = p.add_subparsers(dest="deploy_command", required=True)
    q = dsub.add_parser("start", help="serve a model in a detached server on 127.0.0.1")
    q.add_argument("target", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION or a URI")
    q.add_argument("--name", help="deployment name (default: from the model)")
    q.add_argument("--port", type=int, help="port (default: a free one)")
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--workers", type=int, default=1)
    q.add_argument("--token", help="bearer token for every endpoint but /health")
    q.add_argument("--no-log", action="store_true", help="no prediction log")
    q.set_defaults(func=_deploy)
    q = dsub.add_parser("canary", help="send WEIGHT percent of a deployment's traffic to MODEL")
    q.add_argument("name")
    q.add_argument("target", metavar="MODEL")
    q.add_argument("--weight", type=float, default=10.0)
    q.set_defaults(func=_deploy)
    for verb, text in (
        ("promote", "blue-green: the canary becomes primary"),
        ("rollback", "back to the previous primary"),
        ("stop", "stop a deployment"),
        ("status", "one deployment's models, traffic and health"),
    ):
        q = dsub.add_parser(verb, help=text)
        q.add_argument("name")
        q.set_defaults(func=_deploy)
    q = dsub.add_parser("list", help="deployments, versions, traffic split, health, uptime")
    q.set_defaults(func=_deploy)
    q = dsub.add_parser("batch", help="score a CSV/Parquet file with lineage columns")
    q.add_argument("target", metavar="MODEL")
    q.add_argument("input")
    q.add_argument("output")
    q.set_defaults(func=_deploy)

    p = sub.add_parser("server", help="a shared MLflow tracking server for a team")
    ssub = p.add_subparsers(dest="server_command", required=True)
    q = ssub.add_parser(
        "start",
        help="start `mlflow server` detached (default: this project's store, on 127.0.0.1:5000)",
    )
    q.add_argument(
        "--backend-store-uri",
        help="where runs and models live, e.g. postgresql://user:pw@db/mlflow "
        "(default: this project's .mlops/mlflow.db)",
    )
    q.add_argument(
        "--artifacts-destination",
        help="where the server keeps artifacts: a folder or s3://... (default: .mlops/artifacts)",
    )
    q.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=5000)
    q.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1: with more, each request on a kept-alive "
        "connection was measured ~45 ms slower)",
    )
    q.set_defaults(func=_server)
    q = ssub.add_parser("stop", help="stop a server started from this project")
    q.add_argument("--port", type=int, default=5000)
    q.set_defaults(func=_server)
    q = ssub.add_parser("status", help="servers started from this project and their health")
    q.set_defaults(func=_server)

    p = sub.add_parser("demo", help="run the quickstart notebook in a fresh demo project")
    p.add_argument("--dir", default="build/demo", help="demo project folder")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MlopsError as exc:
        print(f"jupyter-mlops: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
