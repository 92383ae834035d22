"""The one way a run is named by its users: its id, an unambiguous prefix of it, its name
(where the caller accepts names), or ``last``.

Run ids are 32 hexadecimal characters nobody types in full, so every face accepts a prefix.
The matching rule lives here once: a prefix that picks out exactly one run wins over a run
name that happens to look like hexadecimal, and a name is used only when no id starts with
the reference. Callers differ in what a failure means to them (a bad request in the
sidebar, a missing run in the registry), so they pass the error class and wording; the
rule itself does not vary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jupyter_mlops._util.urls import redact
from jupyter_mlops.client import client as project_client
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError, NotFoundError, QueryError
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_MODELS, TAG_NOTEBOOK

if TYPE_CHECKING:
    from mlflow.entities import Run

LAST = "last"
RUN_ID_PREFIX = re.compile(r"[0-9a-fA-F]{1,32}")
MIN_STORE_PREFIX = 6  # shorter prefixes of a whole store are too likely to be ambiguous
_SHOWN = 5  # candidates listed in an "ambiguous" message


def is_id_prefix(ref: str) -> bool:
    """Whether ``ref`` could be (the start of) a run id: 1 to 32 hexadecimal characters."""
    return RUN_ID_PREFIX.fullmatch(ref) is not None


def names_run(ref: str, run_id: str, run_name: str | None) -> bool:
    """Whether ``ref`` could name this run: it is the run's name or a prefix of its id."""
    return run_name == ref or (is_id_prefix(ref) and run_id.startswith(ref.lower()))


def match_run_ref(
    ref: str,
    run_ids: Sequence[str],
    run_names: Sequence[str | None] | None = None,
    *,
    min_prefix: int = 1,
) -> list[int]:
    """The positions of the candidate runs ``ref`` names (several when it is ambiguous).

    ``run_names`` None: names are not accepted. A prefix shorter than ``min_prefix`` is
    not tried as a prefix. One run whose id starts with ``ref`` wins; otherwise one run
    named ``ref``; otherwise every run matched either way.
    """
    by_id: list[int] = []
    if len(ref) >= min_prefix and is_id_prefix(ref):
        lowered = ref.lower()
        by_id = [i for i, run_id in enumerate(run_ids) if run_id.startswith(lowered)]
    by_name = [i for i, name in enumerate(run_names or ()) if name == ref]
    if len(by_id) == 1:
        return by_id
    if not by_id and len(by_name) == 1:
        return by_name
    return by_id or by_name


def resolve_run_ref(
    ref: str,
    run_ids: Sequence[str],
    run_names: Sequence[str | None] | None = None,
    *,
    min_prefix: int = 1,
    hint: str = "",
    ambiguous: type[MlopsError] = QueryError,
) -> int:
    """The position of the one candidate run ``ref`` names (see :func:`match_run_ref`).

    None found: ``NotFoundError("No run <ref><hint>")``. Several: ``ambiguous`` listing the
    first few (with their names when names are accepted).
    """
    found = match_run_ref(ref, run_ids, run_names, min_prefix=min_prefix)
    if not found:
        raise NotFoundError(f"No run {ref!r}{hint}")
    if len(found) > 1:
        if run_names is None:
            listed = ", ".join(run_ids[i] for i in found[:_SHOWN])
            raise ambiguous(f"Run id prefix {ref!r} is ambiguous: {listed}")
        listed = ", ".join(f"{run_ids[i]} ({run_names[i]})" for i in found[:_SHOWN])
        raise ambiguous(f"Run reference {ref!r} is ambiguous: {listed}")
    return found[0]


def get_run(run_id: str, config: Config | None = None) -> Run:
    """The MLflow run ``run_id`` (an unambiguous prefix of 6+ characters also works)."""
    from mlflow.exceptions import MlflowException

    config = config or load_config()
    mlflow_client = project_client(config)
    try:
        return store.call(mlflow_client.get_run, run_id)
    except MlflowException:
        pass
    candidates: list[Run] = []
    if len(run_id) >= MIN_STORE_PREFIX and is_id_prefix(run_id):
        exps = [e.experiment_id for e in store.call(mlflow_client.search_experiments)]
        candidates = store.call(mlflow_client.search_runs, exps, max_results=50000)
    index = resolve_run_ref(
        run_id,
        [r.info.run_id for r in candidates],
        min_prefix=MIN_STORE_PREFIX,
        hint=f" in {redact(config.tracking_uri)}",
        ambiguous=NotFoundError,
    )
    return candidates[index]


def find_run(run: str = LAST, *, notebook: str | None = None, config: Config | None = None) -> Run:
    """A run to act on: ``last`` (the newest finished run with a model, of ``notebook`` or
    else of the current notebook, if known; never a reproduction, which is a check of a
    run, not a result of its own), or an id or a prefix of one."""
    from jupyter_mlops.tracking.environment import notebook_path
    from jupyter_mlops.tracking.lifecycle import TAG_REPRODUCES

    config = config or load_config()
    if run != LAST:
        return get_run(run, config)
    client = project_client(config)
    notebook = notebook or notebook_path(None, config.root)
    exps = [e.experiment_id for e in store.call(client.search_experiments)]
    flt = "attributes.status = 'FINISHED'"
    if notebook:
        flt += f" and tags.`{TAG_NOTEBOOK}` = '{notebook}'"
    runs = (
        store.call(
            client.search_runs,
            exps,
            filter_string=flt,
            max_results=200,
            order_by=["attributes.start_time DESC"],
        )
        if exps
        else []
    )
    for candidate in runs:
        tags = candidate.data.tags
        if tags.get(TAG_MODELS) and not tags.get(TAG_REPRODUCES):
            return candidate
    where = f" of notebook {notebook}" if notebook else ""
    raise NotFoundError(
        f"No finished run with a model{where}. Train one under %%track first, or pass a run id."
    )
