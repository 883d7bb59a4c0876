"""The steps of one night, as plain functions the Prefect flow wraps (and tests call directly).

This module is the facade: the steps live in :mod:`tasks.nightly.night` (which night, ingest,
experiments), :mod:`tasks.nightly.use_case` (one use case's decisions),
:mod:`tasks.nightly.publish` (approval and registry) and :mod:`tasks.nightly.report` (summary,
MLflow, artifacts).

Each step opens what it needs from :class:`~tasks.core.settings.Settings` (a warehouse connection,
the
registry store, the tracker), so a step can run on a worker thread or a Dask worker. Every step
returns JSON-friendly dataclasses or dicts: they become Prefect artifacts, MLflow runs and the
registry's evidence. The warehouse is read by :func:`analyse_experiments` and
:func:`aggregate_night` (every use case's inputs in one set of grouped scans, see
:mod:`tasks.nightly.inputs`); :func:`optimize_use_case` works on its :class:`UseCaseInputs` alone.

How one use case is decided (:func:`optimize_use_case`):

1. the production plan comes from the registry (on the first night: the configuration best on
   the use case's objective by its lower confidence bound, ties to the cheaper);
2. monitoring may demand a rollback / circuit breaker (applied first) or pause exploration;
3. a staged rollout in progress is judged on its stage's traffic so far (advance / hold while
   the sample its guardrails need can still arrive / roll back on shown harm / stop and say
   "not enough traffic");
4. an experiment that ships starts a new rollout of its winner; otherwise a configuration with
   logged traffic that beats production on the objective with confidence does (the sequential
   test on per-configuration statistics, or the doubly-robust bound when logged propensities
   vary by context); otherwise a promising candidate whose traffic carries no propensities gets
   a pre-registered experiment (all three need approval; :mod:`tasks.nightly.decisions`,
   :mod:`tasks.nightly.loop`, :mod:`tasks.nightly.experiment_plans`);
5. search candidates and bandit weights fill the exploration share;
6. :func:`strategies.traffic.plan_traffic` turns all of it into one plan that sums to 1.

Exploration within the configured share and rollout steps whose guardrails held are pre-approved
by configuration; a *new* configuration entering the rollout path goes through the use case's
approval policy (auto, or a person in the Prefect UI / ``llmopt registry approve``).
"""

from __future__ import annotations

from tasks.nightly.night import (
    ARM_CONFIG_SQL,
    EXPERIMENT_SHARE_SQL,
    PARAM_FIELDS,
    Night,
    NightOptions,
    NothingToAnalyse,
    UseCaseOutcome,
    analyse_experiments,
    artifact_dir,
    ingest_new_logs,
    prepare_storages,
    resolve_night,
    run_key_for,
)
from tasks.nightly.publish import (
    approval_mode_for,
    approval_request_markdown,
    leave_as_candidate,
    publish_outcome,
)
from tasks.nightly.report import (
    NightSummary,
    abort_tracking,
    describe_failure,
    loop_lines,
    start_tracking,
    summarize_night,
    summary_dict,
    summary_markdown,
    summary_tables,
    track_night,
    with_tracking,
)
from tasks.nightly.use_case import (
    aggregate_night,
    optimize_use_case,
)

__all__ = [
    "ARM_CONFIG_SQL",
    "EXPERIMENT_SHARE_SQL",
    "PARAM_FIELDS",
    "Night",
    "NightOptions",
    "NightSummary",
    "NothingToAnalyse",
    "UseCaseOutcome",
    "abort_tracking",
    "aggregate_night",
    "analyse_experiments",
    "approval_mode_for",
    "approval_request_markdown",
    "artifact_dir",
    "describe_failure",
    "ingest_new_logs",
    "leave_as_candidate",
    "loop_lines",
    "optimize_use_case",
    "prepare_storages",
    "publish_outcome",
    "resolve_night",
    "run_key_for",
    "start_tracking",
    "summarize_night",
    "summary_dict",
    "summary_markdown",
    "summary_tables",
    "track_night",
    "with_tracking",
]
