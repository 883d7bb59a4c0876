"""MLflow tracking for nightly runs: one parent run per night, child runs per use case / strategy.

Why ``MlflowClient`` with explicit run ids instead of ``mlflow.start_run``: the fluent API keeps
the active run per thread, and Prefect runs tasks on worker threads, so nested runs would attach
to the wrong parent. Explicit ids plus the ``mlflow.parentRunId`` tag give the same nesting in the
MLflow UI from any thread or process.

Metric and parameter names are the same every night (see :data:`STANDARD_METRICS`) so MLflow's
compare view lines nights up. Values that are None or not finite are skipped, never logged as 0.

Nights in order: a run tagged ``as_of`` (and its nested runs) logs its metrics at the night's
timestamp (midnight UTC) with the night's ordinal as the step, so a backfilled night charts where
it belongs, not where the clock was. Nested runs are named with their night.

One parent per night: :func:`open_night_run` tags an earlier parent of the same night
``llmopt.superseded_by`` (and ``llmopt.superseded=true``) before opening the new one, and records
the Prefect flow run id and URL and whether it is a dry run.
"""

from __future__ import annotations

import datetime as dt
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
SUPERSEDED_BY = "llmopt.superseded_by"
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

    def night_of(self, run_id: str) -> str | None:
        """The ``as_of`` tag of a run (its night), or None."""
        return self._client.get_run(run_id).data.tags.get("as_of")

    def log(self, run_id: str, record: RunRecord, *, night: str | None = None) -> None:
        """Log params, metrics, tags and artifacts of ``record`` into an existing run.

        Args:
            run_id: the MLflow run.
            record: what to log.
            night: the night (ISO date) the metrics belong to; default the record's or the run's
                ``as_of`` tag. Metrics of a night carry its timestamp and ordinal step.
        """
        night = night or record.tags.get("as_of") or self.night_of(run_id)
        stamp, step = _night_clock(night)
        metrics = [
            Metric(key, float(value), stamp, step)
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

    def log_tree(
        self, record: RunRecord, parent_run_id: str | None, *, night: str | None = None
    ) -> dict[str, str]:
        """Create a run for ``record`` (and nested runs for its children); name -> run id.

        Args:
            record: the run and its children.
            parent_run_id: the run to nest under (None for a top-level run).
            night: the night (ISO date); default the record's or the parent's ``as_of`` tag.
                Runs are named ``<name> <night>`` and tagged ``as_of``.
        """
        night = night or record.tags.get("as_of")
        if night is None and parent_run_id:
            night = self.night_of(parent_run_id)
        tags = dict(record.tags) | ({"as_of": night} if night else {})
        title = f"{record.name} {night}" if night and night not in record.name else record.name
        run_id = self.start_run(title, parent_run_id=parent_run_id, tags=tags)
        ids = {record.name: run_id}
        try:
            self.log(run_id, record, night=night)
            for child in record.children:
                for name, child_id in self.log_tree(child, run_id, night=night).items():
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


def open_night_run(
    settings: Settings,
    *,
    as_of: dt.date,
    run_key: str,
    dry_run: bool = False,
    prefect_flow_run_id: str | None = None,
    prefect_flow_run_url: str | None = None,
) -> str:
    """Open tonight's parent run; an earlier parent of the same night is marked superseded.

    Args:
        settings: the resolved settings (tracking URI, artifact root).
        as_of: the night.
        run_key: the night's stable key (``night-YYYY-MM-DD``).
        dry_run: whether this run publishes nothing (tag ``dry_run``).
        prefect_flow_run_id: the Prefect flow run (tag ``prefect.flow_run_id``).
        prefect_flow_run_url: its page in the Prefect UI (tag ``prefect.flow_run_url``).

    Returns:
        The new parent run id.
    """
    tracker = Tracker(settings)
    earlier = tracker.client.search_runs(
        [tracker.experiment_id()],
        filter_string=f"tags.run_key = '{run_key}' and tags.kind = 'nightly'",
    )
    tags = {
        "as_of": as_of.isoformat(),
        "run_key": run_key,
        "kind": "nightly",
        "dry_run": str(bool(dry_run)).lower(),
    }
    if prefect_flow_run_id:
        tags["prefect.flow_run_id"] = prefect_flow_run_id
    if prefect_flow_run_url:
        tags["prefect.flow_run_url"] = prefect_flow_run_url
    run_id = tracker.start_run(f"nightly-{as_of.isoformat()}", tags=tags)
    for run in earlier:
        if SUPERSEDED_BY not in run.data.tags:
            tracker.client.set_tag(run.info.run_id, SUPERSEDED_BY, run_id)
            tracker.client.set_tag(run.info.run_id, "llmopt.superseded", "true")
    return run_id


def _night_clock(night: str | None) -> tuple[int, int]:
    """(timestamp ms, step) for metrics of a night: its midnight UTC and its date ordinal."""
    if not night:
        return int(time.time() * 1000), 0
    day = dt.date.fromisoformat(night[:10])
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(midnight.timestamp() * 1000), day.toordinal()


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:MAX_PARAM_LENGTH]


def _artifact_dir(path: Path) -> str:
    return "plots" if path.suffix.lower() == ".png" else "reports"


__all__ = [
    "NIGHTLY_EXPERIMENT",
    "STANDARD_METRICS",
    "SUPERSEDED_BY",
    "RunRecord",
    "Tracker",
    "open_night_run",
]
