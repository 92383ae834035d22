"""Reading runs through MLflow's client: tracking servers and databases other than the
embedded SQLite store, with what the filter allows pushed into ``filter_string``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jupyter_mlops.client import client
from jupyter_mlops.config import Config
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_NOTEBOOK
from jupyter_mlops.tracking.runs.refs import is_id_prefix, names_run
from jupyter_mlops.tracking.runs.rows import RunRows

PAGE = 50_000  # MLflow's largest page for search_runs


class ClientReader:
    """MLflow's client, for tracking servers and databases other than SQLite."""

    def __init__(self, config: Config) -> None:
        self.client = client(config)

    def close(self) -> None:
        pass

    def experiments(self) -> list[tuple[str, str, str]]:
        from mlflow.entities import ViewType

        exps = store.call(self.client.search_experiments, view_type=ViewType.ALL)
        return [(str(e.experiment_id), e.name, e.lifecycle_stage) for e in exps]

    def notebook_experiment(self, notebook: str) -> str | None:
        exps = [i for i, _, stage in self.experiments() if stage == "active"]
        if not exps:
            return None
        found = store.call(
            self.client.search_runs,
            exps,
            filter_string=f"tags.`{TAG_NOTEBOOK}` = '{notebook}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return str(found[0].info.experiment_id) if found else None

    def read(
        self, experiment_ids: Sequence[str], refs: Sequence[str], filter_string: str = ""
    ) -> RunRows:
        rows = RunRows(experiments={i: n for i, n, _ in self.experiments()})
        ids = list(experiment_ids) or [i for i, n in rows.experiments.items()]
        if refs and all(len(r) == 32 and is_id_prefix(r) for r in refs):
            quoted = ", ".join(f"'{r.lower()}'" for r in refs)
            filter_string = " and ".join(
                f for f in (filter_string, f"attributes.run_id IN ({quoted})") if f
            )
        token = None
        while ids:
            page = store.call(
                self.client.search_runs,
                ids,
                filter_string=filter_string,
                max_results=PAGE,
                page_token=token,
            )
            for run in page:
                info, data = run.info, run.data
                if refs and not any(names_run(r, info.run_id, info.run_name) for r in refs):
                    continue
                rid = len(rows.info)
                rows.info.append(
                    (
                        rid,
                        info.run_id,
                        info.run_name,
                        str(info.experiment_id),
                        info.status,
                        info.start_time,
                        info.end_time,
                        info.artifact_uri,
                        info.user_id,
                    )
                )
                rows.params += [(rid, k, v) for k, v in data.params.items()]
                rows.metrics += [(rid, k, v) for k, v in data.metrics.items()]
                rows.tags += [(rid, k, v) for k, v in data.tags.items()]
                for ds in run.inputs.dataset_inputs if run.inputs else []:
                    tags = {t.key: t.value for t in ds.tags}
                    rows.datasets.append((rid, ds.dataset.name, tags.get("mlops.content_hash")))
            token = page.token
            if not token:
                break
        return rows

    def history(self, run_ids: Sequence[str], keys: Sequence[str] | None) -> list[Any]:
        out = []
        for rid in run_ids:
            run = store.call(self.client.get_run, rid)
            for key in keys or list(run.data.metrics):
                if key not in run.data.metrics:
                    continue
                for m in store.call(self.client.get_metric_history, rid, key):
                    out.append((rid, key, m.step, m.timestamp, m.value))
        return out
