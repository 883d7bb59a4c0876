"""MLflow tracking for nightly runs: one parent run per night, child runs per use case / strategy.

Why ``MlflowClient`` with explicit run ids instead of ``mlflow.start_run``: the fluent API keeps
the active run per thread, and Prefect runs tasks on worker threads, so nested runs would attach
to the wrong parent. Explicit ids plus the ``mlflow.parentRunId`` tag give the same nesting in the
MLflow UI from any thread or process.

Metric and parameter names are the same every night (see :data:`STANDARD_METRICS`) so MLflow's
compare view lines nights up. Values that are None or not finite are skipped, never logged as 0.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tasks.core.settings import Settings
from tasks.nightly.inputs import NIGHT_METRIC_NAMES

NIGHTLY_EXPERIMENT = "llm-auto-optimizer-nightly"
MAX_PARAM_LENGTH = 6000

STANDARD_METRICS: tuple[str, ...] = (*NIGHT_METRIC_NAMES, "experiments_shipped", "drift_alerts")


@dataclass(frozen=True)
class RunRecord:
    """Everything logged for one run; ``children`` become nested runs under it."""

    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float | int | None] = field(default_factory=dict)
    json_artifacts: Mapping[str, Any] = field(default_factory=dict)
    files: Sequence[Path] = ()
    children: Sequence[RunRecord] = ()


class Tracker:
    """Writes :class:`RunRecord` trees to the tracking server named by the settings.

    Example (local SQLite store under a scratch home)::

        tracker = Tracker(settings)
        parent = tracker.start_run("nightly-2026-10-30", tags={"as_of": "2026-10-30"})
        tracker.log_tree(RunRecord("support-summarize", metrics={"quality_mean": 0.71}), parent)
        tracker.end_run(parent)
    """

    def __init__(self, settings: Settings, *, experiment_name: str = NIGHTLY_EXPERIMENT) -> None:
        self._settings = settings
        self._experiment_name = experiment_name
        self._client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        self._experiment_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        return self._client

    @property
    def tracking_uri(self) -> str:
        return self._settings.mlflow_tracking_uri

    def experiment_id(self) -> str:
        """The nightly experiment, created with its artifacts under the configured root."""
        if self._experiment_id is None:
            found = self._client.get_experiment_by_name(self._experiment_name)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
            else:
                root = self._settings.mlflow_artifact_root
                location: str | None = None
                if self._settings.mlflow_tracking_uri.startswith(("sqlite:", "postgresql")):
                    root.mkdir(parents=True, exist_ok=True)
                    location = (root / self._experiment_name).resolve().as_uri()
                self._experiment_id = self._client.create_experiment(
                    self._experiment_name, artifact_location=location
                )
        return self._experiment_id

    def start_run(
        self, name: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self._client.create_run(self.experiment_id(), run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def log(self, run_id: str, record: RunRecord) -> None:
        """Log params, metrics, tags and artifacts of ``record`` into an existing run."""
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, 0)
            for key, value in record.metrics.items()
            if value is not None and math.isfinite(float(value))
        ]
        params = [Param(key, _param_value(value)) for key, value in record.params.items()]
        tags = [RunTag(key, str(value)) for key, value in record.tags.items()]
        self._client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        for artifact_file, payload in record.json_artifacts.items():
            self._log_json(run_id, payload, artifact_file)
        for path in record.files:
            self._client.log_artifact(run_id, str(path), artifact_path=_artifact_dir(path))

    def log_tree(self, record: RunRecord, parent_run_id: str | None) -> dict[str, str]:
        """Create a run for ``record`` (and nested runs for its children); name -> run id."""
        run_id = self.start_run(record.name, parent_run_id=parent_run_id, tags=record.tags)
        ids = {record.name: run_id}
        try:
            self.log(run_id, record)
            for child in record.children:
                for name, child_id in self.log_tree(child, run_id).items():
                    ids[f"{record.name}/{name}"] = child_id
        except Exception:
            self.end_run(run_id, status="FAILED")
            raise
        self.end_run(run_id)
        return ids

    def end_run(self, run_id: str, *, status: str = "FINISHED") -> None:
        self._client.set_terminated(run_id, status=status)

    def _log_json(self, run_id: str, payload: Any, artifact_file: str) -> None:
        # default=str keeps dates and dataclass reprs readable instead of failing the night
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / Path(artifact_file).name
            path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
            folder = str(Path(artifact_file).parent)
            self._client.log_artifact(run_id, str(path), None if folder == "." else folder)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:MAX_PARAM_LENGTH]


def _artifact_dir(path: Path) -> str:
    return "plots" if path.suffix.lower() == ".png" else "reports"


__all__ = ["NIGHTLY_EXPERIMENT", "STANDARD_METRICS", "RunRecord", "Tracker"]
