"""``python -m jupyter_mlops.pipelines step PIPELINE STEP``: one step, as ``dvc repro`` runs it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jupyter_mlops._util.urls import redact_text
from jupyter_mlops.errors import MlopsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("step", help="run one step of a pipeline (the command of a DVC stage)")
    p.add_argument("pipeline")
    p.add_argument("step")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--params-file", help="params.yaml written by the DVC export")
    p.add_argument("--run-dir", help="folder ${run_dir} stands for")
    args = parser.parse_args(argv)
    try:
        from jupyter_mlops.pipelines import run_step

        record = run_step(
            args.pipeline,
            args.step,
            args.param,
            params_file=args.params_file,
            run_dir=args.run_dir,
        )
    except MlopsError as exc:
        print(f"jupyter-mlops: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    print(redact_text(str(record)))  # a step's error may quote the store's URL
    return 0 if record.ok else 1


if __name__ == "__main__":
    sys.exit(main())
