"""``python -m jupyter_mlops.serving``: run a deployment's server in this process.

``deploy()`` starts it as ``--deployment-dir DIR --fd N`` (N: the listening socket it reserved).
A container runs it on its own, either on a deployment folder copied or mounted in, or
straight from a model::

    python -m jupyter_mlops.serving --model models:/iris-rf/3 --host 0.0.0.0 --port 8080
    python -m jupyter_mlops.serving --model /opt/model --deployment-dir /srv/iris --workers 2
    python -m jupyter_mlops.serving --package /app --host 0.0.0.0 --port 8080

``--package DIR`` serves a build context written by ``%register --package`` (its ``model/``
folder) under the identity its ``package.json`` records, so ``/info`` and ``/metrics`` name the
registered version and run rather than the folder; state and prediction log go to
``DIR/deployment`` unless ``--deployment-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import logging
import os
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops import values
from jupyter_mlops._util.urls import redact_text
from jupyter_mlops.errors import MlopsError

if TYPE_CHECKING:
    from jupyter_mlops.config import Config
    from jupyter_mlops.registry.refs import ModelRef


def _checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` over a check of :mod:`jupyter_mlops.values` (the serving layer
    cannot import ``commands.options``, whose converters do the same): its one-line
    UsageError becomes argparse's ``argument --port: ...`` error, exit status 2."""
    from jupyter_mlops.errors import UsageError

    def convert(text: str) -> Any:
        try:
            return check(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


PORT = _checked(values.port)
TIMEOUT = _checked(lambda v: values.positive(v, "timeout"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_mlops.serving",
        description="Serve a jupyter-mlops deployment (a folder holding state.json) or a model.",
    )
    parser.add_argument(
        "--deployment-dir", help="the deployment folder (default ./deployment with --model)"
    )
    parser.add_argument(
        "--model",
        help="serve this model (name@alias, name/version, URI or "
        "folder): writes a fresh state.json into the deployment folder",
    )
    parser.add_argument(
        "--package",
        metavar="DIR",
        help="serve a packaged build context (its model/ and package.json): writes a fresh "
        "state.json into DIR/deployment (or --deployment-dir)",
    )
    parser.add_argument("--name", help="deployment name with --model (default: the model's)")
    parser.add_argument("--host", help="address to bind (default: from the state, 127.0.0.1)")
    parser.add_argument(
        "--port", type=PORT, help="port to bind, 1-65535 (default: from the state, 8080)"
    )
    parser.add_argument("--workers", type=int, help="uvicorn worker processes")
    parser.add_argument(
        "--timeout",
        type=TIMEOUT,
        metavar="SECONDS",
        help="answer 504 to a prediction not done this many seconds after it arrived "
        "(default: from the state, 30)",
    )
    parser.add_argument(
        "--token-env",
        metavar="VAR",
        help="with --model: require the bearer token held in this variable",
    )
    parser.add_argument(
        "--strict-invocations",
        action="store_true",
        help="/invocations validates as /predict does (default: as `mlflow models serve`)",
    )
    parser.add_argument("--fd", type=int, help="an inherited listening socket to serve on")
    parser.add_argument("--log-level", default="info")
    return parser


def _packaged(context: Path, folder: Path) -> tuple[ModelRef, Config]:
    """The model reference and configuration of a packaged build context.

    The model loads from ``context/model``; name, version, run id and alias come from its
    ``package.json``. The configuration is the deployment folder's own: no project around
    the context is looked for, no tracking store is needed (the prediction log defaults to
    SQLite in the deployment folder, or ``JUPYTER_MLOPS_PREDICTION_LOG``).
    """
    import json

    from jupyter_mlops._util.layout import PACKAGE_FILE
    from jupyter_mlops.config import Config
    from jupyter_mlops.serving.targets import resolve_target

    try:
        identity = json.loads((context / PACKAGE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise MlopsError(f"{context} is not a packaged model ({PACKAGE_FILE}: {exc}).") from exc
    local = resolve_target(str(context / "model"))
    ref = dataclasses.replace(
        local,
        name=identity["name"],
        version=identity.get("version"),
        alias=identity.get("alias"),
        run_id=identity.get("run_id"),
        uri=identity.get("model_uri") or local.uri,
        target=identity.get("model_uri") or local.target,
    )
    config = Config(
        root=folder,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        artifact_root=None,
        prediction_log=os.environ.get("JUPYTER_MLOPS_PREDICTION_LOG"),
    )
    return ref, config


def _prepare_from_model(args: argparse.Namespace, folder: Path) -> None:
    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving.manager import default_deployment_name, new_state
    from jupyter_mlops.serving.state import write_state
    from jupyter_mlops.serving.targets import resolve_target

    if args.package:
        ref, config = _packaged(Path(args.package).resolve(), folder)
    else:
        config = load_config()
        ref = resolve_target(args.model, config)
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        raise MlopsError(f"--token-env {args.token_env}: the variable is empty or unset.")
    state = new_state(
        ref,
        name=args.name or default_deployment_name(ref),
        host=args.host or "127.0.0.1",
        port=args.port or 8080,
        workers=args.workers or 1,
        config=config,
        token=token,
        strict_invocations=args.strict_invocations,
        **({"request_timeout": args.timeout} if args.timeout else {}),
    )
    state["pid"] = os.getpid()
    write_state(folder, state)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; exit code 1 with a message on a usage error."""
    # Start-up allocates millions of long-lived objects (imports, the model): collecting
    # garbage meanwhile only rescans them, about 0.9 s of a 3 s start. The app re-enables
    # the collector once its models are loaded (and freezes what start-up made).
    args = _parser().parse_args(argv)  # a usage error exits 2 here, the collector still on
    gc.disable()
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    try:
        if args.model and args.package:
            raise MlopsError("Give --model or --package, not both.")
        default_dir = Path(args.package) / "deployment" if args.package else Path("deployment")
        folder = Path(args.deployment_dir or default_dir).resolve()
        if not args.deployment_dir and not args.model and not args.package:
            raise MlopsError(
                "Give --deployment-dir, --model to serve a model directly, or --package."
            )
        if args.model or args.package:
            _prepare_from_model(args, folder)
        from jupyter_mlops._util.layout import read_state

        state = read_state(folder)
        if state is None:
            raise MlopsError(f"No state.json in {folder}.")
        overrides = {
            "strict_invocations": True if args.strict_invocations else None,
            "request_timeout_s": args.timeout,
        }
        changed = {k: v for k, v in overrides.items() if v is not None and state.get(k) != v}
        if changed:
            from jupyter_mlops.serving.state import write_state

            state.update(changed)  # the app reads the folder's state
            write_state(folder, state)
        host = args.host or state.get("host") or "127.0.0.1"
        port = args.port or int(state.get("port") or 8080)
        workers = args.workers or int(state.get("workers") or 1)
        if state.get("tracking_uri"):
            os.environ.setdefault("MLFLOW_TRACKING_URI", str(state["tracking_uri"]))
        os.environ["JUPYTER_MLOPS_DEPLOYMENT_DIR"] = str(folder)
        if args.fd is not None:
            sock = socket.socket(fileno=args.fd)
        else:
            from jupyter_mlops.serving.manager import listening_socket

            sock = listening_socket(host, port)
    except (MlopsError, OSError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1

    import uvicorn

    options = {
        "log_level": args.log_level,
        "access_log": False,  # per-request lines cost throughput; /metrics counts requests
        "timeout_graceful_shutdown": 10,
        # Clients pool connections; a longer idle keep-alive than uvicorn's 5 s makes the race
        # of a request sent on a connection the server is just closing rarer.
        "timeout_keep_alive": 65,
        "server_header": False,
    }
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        # Each worker keeps its metrics in this folder; /metrics sums them.
        metrics_dir = folder / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        config = uvicorn.Config(
            "jupyter_mlops.serving.app:app_from_env", factory=True, workers=workers, **options
        )
        # Recent uvicorn's Multiprocess(config, sockets) builds each worker's server itself;
        # older releases (the dependency allows them) take its ``run`` as ``target``.
        supervisor_args: dict[str, Any] = {"sockets": [sock]}
        if "target" in inspect.signature(Multiprocess).parameters:
            supervisor_args["target"] = uvicorn.Server(config).run
        Multiprocess(config, **supervisor_args).run()
        return 0

    from jupyter_mlops.serving.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(folder), **options))
    server.run(sockets=[sock])
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
