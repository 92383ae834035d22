"""Lineage of a model version: version -> run -> notebook, cell source, git commit,
environment and the DVC data it was trained on (restorable from here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.reprs import shown_as_text
from jupyter_mlops.client import quiet_mlflow
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, RegistryError
from jupyter_mlops.registry.lookup import get_version, registry_client
from jupyter_mlops.tracking import store
from jupyter_mlops.tracking.run import TAG_NOTEBOOK, TAG_SOURCE_HASH


@shown_as_text
@dataclass
class Lineage:
    """Model version -> run -> notebook, cell source, git commit, environment, data."""

    model: str
    version: str
    aliases: list[str]
    run_id: str
    experiment_id: str
    run_status: str
    notebook: str | None
    git_commit: str | None
    git_dirty: bool | None
    source_sha256: str | None
    cell_source: str | None
    environment: dict[str, Any]
    data: list[Any]  # DataSnapshot
    datasets: list[dict[str, Any]]
    config: Config = field(repr=False)

    def restore_data(self, path: str | None, dest: str, *, overwrite: bool = False) -> Any:
        """Restore the training data ``path`` (the only one if None) from DVC to ``dest``."""
        from jupyter_mlops.tracking.lineage import restore_data

        if path is None:
            if len(self.data) != 1:
                known = ", ".join(s.path for s in self.data) or "none"
                raise RegistryError(f"Say which data path to restore (recorded: {known})")
            path = self.data[0].path
        return restore_data(self.run_id, path, dest, overwrite=overwrite, config=self.config)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("config")
        out["data"] = [s.to_dict() for s in self.data]
        return out

    def __str__(self) -> str:
        aliases = f" ({', '.join('@' + a for a in self.aliases)})" if self.aliases else ""
        lines = [
            f"{self.model} version {self.version}{aliases}",
            f"  <- run {self.run_id} ({self.run_status}, experiment {self.experiment_id})",
            f"  <- notebook {self.notebook or 'unknown'}"
            + (f", cell sha256 {self.source_sha256[:12]}" if self.source_sha256 else ""),
        ]
        if self.git_commit:
            lines.append(f"  <- git {self.git_commit[:10]}{' (dirty)' if self.git_dirty else ''}")
        if self.environment:
            pkgs = self.environment.get("packages", {})
            lines.append(
                f"  <- python {self.environment.get('python')}, "
                + ", ".join(f"{k}=={v}" for k, v in sorted(pkgs.items())[:6])
            )
        for snap in self.data:
            lines.append(f"  <- data {snap.path} md5={snap.md5} ({snap.size} bytes)")
        for ds in self.datasets:
            if "mlops.dvc.path" in ds.get("tags", {}):
                continue  # a data file: its line is above
            lines.append(f"  <- dataset {ds['name']} digest={ds['digest']}")
        return "\n".join(lines)


def lineage(ref: str, *, config: Config | None = None) -> Lineage:
    """Trace a registered model version back to the code, environment and data behind it."""
    import mlflow

    from jupyter_mlops.tracking.lineage import run_data

    config = config or load_config()
    client = registry_client(config)
    version = get_version(ref, config)
    if not version.run_id:
        raise NotFoundError(f"{version.name}/{version.version} was not registered from a run")
    run = store.call(client.get_run, version.run_id)
    tags = run.data.tags

    def artifact_text(path: str) -> str | None:
        try:
            with quiet_mlflow():
                local = mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path=path, tracking_uri=config.tracking_uri
                )
        except Exception:  # older runs or runs not made by %%track
            return None
        return Path(local).read_text(encoding="utf-8")

    env_text = artifact_text("mlops/environment.json")
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "tags": {t.key: t.value for t in d.tags},
        }
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    ]
    dirty = tags.get("mlops.git.dirty")
    return Lineage(
        model=version.name,
        version=str(version.version),
        aliases=list(getattr(version, "aliases", []) or []),
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_status=run.info.status,
        notebook=tags.get(TAG_NOTEBOOK) or tags.get("mlflow.source.name"),
        git_commit=tags.get("mlflow.source.git.commit"),
        git_dirty=None if dirty is None else dirty == "true",
        source_sha256=tags.get(TAG_SOURCE_HASH),
        cell_source=artifact_text("mlops/cell.py"),
        environment=json.loads(env_text) if env_text else {},
        data=run_data(run.info.run_id, config),
        datasets=datasets,
        config=config,
    )
