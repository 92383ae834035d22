"""The sidebar shows whether a run reproduces: the verdict ``%reproduce`` recorded on a run,
by which run and when, in the run's details and its row of the runs list; a reproduction
names the run it reproduces; a run never checked has neither (the panel shows the hint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.reproduction.result import (
    DIFFERENT,
    REPRODUCED,
    TAG_AT,
    TAG_BY,
    TAG_REPRODUCES,
    TAG_VERDICT,
)
from tests.server.test_server_api import get

AT = "2025-06-01T12:00:00+00:00"


def _tag(root: Path, run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient(load_config(root).tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


async def test_run_detail_shows_the_verdict_its_run_and_time(
    jp_fetch: Any, sidebar_project: tuple[Path, dict[str, Any]]
) -> None:
    root, ids = sidebar_project
    original, again = ids["better"], ids["baseline"]
    _tag(root, original, {TAG_VERDICT: REPRODUCED, TAG_BY: again, TAG_AT: AT})
    _tag(root, again, {TAG_REPRODUCES: original})

    run = await get(jp_fetch, "runs", original)
    assert run["reproduction"] == {"verdict": REPRODUCED, "run_id": again, "at": AT}
    assert run["reproduces"] is None
    assert not any(k.startswith("mlops.") for k in run["tags"])  # shown once, as a field

    reproduction = await get(jp_fetch, "runs", again)
    assert reproduction["reproduction"] is None
    assert reproduction["reproduces"] == original

    never = await get(jp_fetch, "runs", ids["xss"])
    assert never["reproduction"] is None and never["reproduces"] is None


async def test_a_failed_reproduction_without_a_run_and_the_runs_list(
    jp_fetch: Any, sidebar_project: tuple[Path, dict[str, Any]]
) -> None:
    root, ids = sidebar_project
    _tag(root, ids["better"], {TAG_VERDICT: DIFFERENT, TAG_BY: "", TAG_AT: AT})

    run = await get(jp_fetch, "runs", ids["better"][:8])
    assert run["reproduction"] == {"verdict": DIFFERENT, "run_id": None, "at": AT}
    page = await get(jp_fetch, "runs", experiment="iris")
    verdicts = {r["run_id"]: r["reproduced"] for r in page["runs"]}
    assert verdicts[ids["better"]] == DIFFERENT
    assert verdicts[ids["baseline"]] is None


async def test_a_verdict_written_after_the_list_was_read_shows_on_the_next_page(
    jp_fetch: Any, sidebar_project: tuple[Path, dict[str, Any]]
) -> None:
    """The first page after the store changed comes from MLflow's own search while the
    full read runs behind it: that page carries the verdict %reproduce just wrote."""
    root, ids = sidebar_project
    first = await get(jp_fetch, "runs")  # the full read, cached
    assert {r["run_id"]: r["reproduced"] for r in first["runs"]}[ids["better"]] is None
    _tag(root, ids["better"], {TAG_VERDICT: DIFFERENT, TAG_BY: "", TAG_AT: AT})

    page = await get(jp_fetch, "runs")  # the store changed: the newest page, read anew
    assert {r["run_id"]: r["reproduced"] for r in page["runs"]}[ids["better"]] == DIFFERENT
