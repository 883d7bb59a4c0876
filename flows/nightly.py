"""The nightly optimization flow: what users schedule, and what "Run" in the Prefect UI starts.

ingest new logs -> validate -> experiments and aggregate (in parallel: config statistics,
monitoring, budget, registry state for every use case in one set of grouped scans) -> per use case
(search tell/ask, frontier, bandit, rollout guardrails, traffic plan; no warehouse access) ->
approval -> publish -> report (Prefect artifacts + MLflow runs).

The flow only composes; each step is a plain function in :mod:`tasks.nightly.steps` wrapped here
as a Prefect task with retries where a retry can help (file and network I/O; ingest retries only
transient errors). One use case that fails is reported and the others finish. One nightly run per
warehouse at a time (a file lock; the deployment also sets a concurrency limit of 1).

What operators see: the run is named after its resolved night (``nightly-2026-10-21``); every
step, alert, decision and failure goes to the flow run's logs (the Prefect UI); alerts and
publish / reject decisions are also Prefect events (:mod:`tasks.nightly.events`).
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.nightly_form import (  # the forms; re-exported for callers of flows.nightly
    DEFAULT_INPUTS,
    ApprovalDecision,
    NightlyParameters,
    StrategySwitches,
    deployment_parameters,
)
from tasks.core.run_lock import exclusive_run, lock_path_for
from tasks.core.settings import Settings, load_settings
from tasks.nightly import events, steps
from tasks.nightly.ingest_step import ingest_new_logs, is_transient
from tasks.nightly.inputs import UseCaseInputs
from tasks.nightly.publish import record_rejection
from tasks.nightly.tracking import open_night_run

FLOW_NAME = "nightly-optimization"
DEPLOYMENT_NAME = "nightly"  # deployments/prefect.yaml: a work pool and workers
SERVE_DEPLOYMENT_NAME = "nightly-serve"  # `llmopt nightly serve`: one long-lived process
NIGHTLY_CRON = "15 2 * * *"  # 02:15 UTC, after the day's logs have landed
# Use cases fan out on two threads (the machines have 2 cores); prefect-dask's DaskTaskRunner
# drops in here for a cluster. The cast only widens prefect's generic type for mypy.
TWO_WORKERS = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=2))


def _flow_run_name() -> str:
    """``nightly-<as_of>``; without ``as_of`` a placeholder the flow renames once the night is
    resolved (the latest day after tonight's ingest)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters.get("params") or {}
    as_of = params.get("as_of") if isinstance(params, dict) else getattr(params, "as_of", None)
    return f"nightly-{as_of}" if as_of else "nightly-resolving"


def _name_run_after(night: steps.Night) -> None:
    """Rename the running flow run after its resolved night (``nightly-2026-10-21``)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id, wanted = flow_run.get_id(), f"nightly-{night.as_of.isoformat()}"
    if run_id is None or flow_run.get_name() == wanted:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), name=wanted)
    except Exception as exc:  # a name is cosmetic: never fail the night for it
        get_run_logger().warning("could not rename the run to %s: %s", wanted, exc)


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry I/O trouble, not a deterministic ingest failure."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


@task(
    name="ingest-new-logs",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
def ingest_task(settings: Settings, paths: list[str]) -> dict[str, Any]:
    logger = get_run_logger()
    logger.info("ingest: reading %s", ", ".join(paths))
    report = ingest_new_logs(settings, paths)
    if report.get("nothing_new"):
        logger.info("ingest: nothing new tonight (no file matches %s)", ", ".join(paths))
    else:
        totals = report.get("totals", {})
        logger.info(
            "ingest: %s rows ingested, %s duplicates, %s quarantined",
            totals.get("ingested"),
            totals.get("duplicates"),
            totals.get("quarantined"),
        )
    return report


@task(name="resolve-night", cache_policy=NO_CACHE)
def resolve_task(settings: Settings, as_of: dt.date | None, use_cases: list[str]) -> steps.Night:
    return steps.resolve_night(settings, as_of=as_of, use_cases=use_cases)


@task(name="analyse-experiments", cache_policy=NO_CACHE)
def experiments_task(settings: Settings, night: steps.Night, run_key: str) -> list[dict[str, Any]]:
    return steps.analyse_experiments(settings, night, run_key=run_key)


@task(name="aggregate-night", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def aggregate_task(
    settings: Settings, night: steps.Night, options: steps.NightOptions, run_key: str
) -> dict[str, UseCaseInputs]:
    return steps.aggregate_night(settings, night, options, run_key=run_key)


@task(name="optimize-use-case", cache_policy=NO_CACHE, task_run_name="optimize-{use_case}")
def use_case_task(
    settings: Settings,
    night: steps.Night,
    use_case: str,
    options: steps.NightOptions,
    experiments: list[dict[str, Any]],
    *,
    inputs: UseCaseInputs,
) -> steps.UseCaseOutcome:
    return steps.optimize_use_case(settings, night, use_case, options, experiments, inputs=inputs)


@task(name="publish-plan", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def publish_task(
    settings: Settings,
    outcome: steps.UseCaseOutcome,
    approved_by: str,
    comment: str,
    mlflow_run_id: str,
) -> dict[str, Any]:
    return steps.publish_outcome(
        settings, outcome, approved_by=approved_by, comment=comment, mlflow_run_id=mlflow_run_id
    )


@task(name="open-mlflow-run", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def open_run_task(settings: Settings, night: steps.Night, run_key: str, dry_run: bool) -> str:
    from prefect.runtime import flow_run

    return open_night_run(
        settings,
        as_of=night.as_of,
        run_key=run_key,
        dry_run=dry_run,
        prefect_flow_run_id=flow_run.get_id(),
        prefect_flow_run_url=flow_run.get_flow_run_ui_url(),
    )


@task(name="track-in-mlflow", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def tracking_task(settings: Settings, summary: steps.NightSummary, parent: str) -> dict[str, str]:
    return steps.track_night(settings, summary, parent)


def _ask_a_human(outcome: steps.UseCaseOutcome, timeout: int) -> ApprovalDecision | None:
    description = steps.approval_request_markdown(outcome)
    try:
        return pause_flow_run(
            wait_for_input=ApprovalDecision.with_initial_data(description=description),
            timeout=timeout,
            key=f"approve-{outcome.use_case}",
        )
    except Exception as exc:  # a timeout leaves the candidate pending in the registry
        get_run_logger().warning("no approval for %s: %s", outcome.use_case, exc)
        return None


def _approve(
    params: NightlyParameters, settings: Settings, outcome: steps.UseCaseOutcome
) -> tuple[str, str, str]:
    """(publish | candidate | rejected, who, why) for one use case's proposal."""
    mode: str = params.approval
    if mode == "policy":
        mode = steps.approval_mode_for(settings, outcome.use_case)
    if not outcome.needs_approval:
        return "publish", "nightly-flow", "no new configuration: traffic plan update only"
    if not outcome.guardrails_passed:
        return "candidate", "nightly-flow", "guardrails did not pass"
    if mode == "auto":
        return "publish", "auto-approval", "every guardrail passed"
    if not params.ask_in_ui:
        return "candidate", "nobody", "needs a person: llmopt registry approve"
    get_run_logger().info(
        "waiting for a person to approve or reject %s (up to %d s)",
        outcome.use_case,
        params.approval_timeout_seconds,
    )
    decision = _ask_a_human(outcome, params.approval_timeout_seconds)
    if decision is None:
        return "candidate", "nobody", "approval timed out: left as candidate"
    if decision.decision == "reject":
        return "rejected", decision.approver, decision.reason or "rejected in the Prefect UI"
    return "publish", decision.approver, decision.reason or "approved in the Prefect UI"


def _decide_and_publish(
    params: NightlyParameters, settings: Settings, outcome: steps.UseCaseOutcome, parent: str
) -> dict[str, Any]:
    """Approval, then the registry write; the decision goes to the run's logs and events."""
    logger = get_run_logger()
    as_of = outcome.as_of.isoformat()
    if params.dry_run:
        logger.info("%s: dry run, nothing published (%s)", outcome.use_case, outcome.headline)
        return {"status": "dry run: nothing published"}
    verdict, who, why = _approve(params, settings, outcome)
    if verdict == "publish":
        result = publish_task(settings, outcome, who, why, parent)
        logger.info(
            "%s: published v%s (%s, by %s)",
            outcome.use_case,
            result.get("version"),
            result.get("status"),
            who,
        )
    elif verdict == "rejected":
        result = record_rejection(
            settings, outcome, rejected_by=who, reason=why, mlflow_run_id=parent
        )
        logger.warning("%s: %s (%s)", outcome.use_case, result["message"], why)
    else:
        result = steps.leave_as_candidate(settings, outcome, reason=why, mlflow_run_id=parent)
        logger.info("%s: left as candidate v%s: %s", outcome.use_case, result["version"], why)
    events.emit_decision(outcome.use_case, as_of, result)
    return result


def _report_outcome(outcome: steps.UseCaseOutcome) -> None:
    """Tonight's decision and its alerts in the run's logs, alerts also as Prefect events."""
    logger = get_run_logger()
    logger.info("%s: %s", outcome.use_case, outcome.headline)
    for reason in outcome.reasons:
        logger.info("%s: - %s", outcome.use_case, reason)
    alerts = events.alerts_of(outcome.strategies)
    for alert in alerts:
        logger.warning(
            "%s: %s alert %s: %s",
            outcome.use_case,
            alert.get("severity"),
            alert.get("name"),
            alert.get("message"),
        )
    events.emit_alerts(outcome.use_case, outcome.as_of.isoformat(), alerts)


def _run_night(
    params: NightlyParameters,
    settings: Settings,
    *,
    night: steps.Night,
    run_key: str,
    options: steps.NightOptions,
    ingest: dict[str, Any] | None,
    parent: str,
) -> steps.NightSummary:
    logger = get_run_logger()
    logger.info("night %s: %d use case(s)", night.as_of, len(night.use_cases))
    # experiments and the aggregate step read the warehouse side by side (two threads)
    experiments_future = (
        experiments_task.submit(settings, night, run_key) if params.strategies.experiments else None
    )
    inputs = aggregate_task.submit(settings, night, options, run_key).result()
    experiments = experiments_future.result() if experiments_future is not None else []
    futures: dict[str, PrefectFuture[steps.UseCaseOutcome]] = {
        use_case: use_case_task.submit(
            settings, night, use_case, options, experiments, inputs=inputs[use_case]
        )
        for use_case in night.use_cases
    }
    wait(list(futures.values()))
    outcomes: list[steps.UseCaseOutcome] = []
    failures: dict[str, str] = {}
    for use_case, future in futures.items():
        state = future.state
        if state.is_completed():
            outcomes.append(future.result())
            _report_outcome(outcomes[-1])
        else:  # one broken use case is reported; the others go on
            failures[use_case] = steps.describe_failure(state)
            logger.error("use case %s failed: %s", use_case, failures[use_case])

    published = {
        outcome.use_case: _decide_and_publish(params, settings, outcome, parent)
        for outcome in outcomes
    }

    summary = steps.summarize_night(
        night,
        run_key=run_key,
        ingest=ingest,
        experiments=experiments,
        outcomes=outcomes,
        failures=failures,
        published=published,
        mlflow_parent_run_id=parent,
    )
    return steps.with_tracking(summary, tracking_task(settings, summary, parent))


@flow(
    name=FLOW_NAME,
    log_prints=True,
    flow_run_name=_flow_run_name,
    task_runner=TWO_WORKERS,
)
def nightly_optimization(
    params: NightlyParameters = NightlyParameters(),  # noqa: B008 - pydantic default form
) -> dict[str, Any]:
    """Run one night of optimization and return its summary (also a Prefect artifact)."""
    settings = load_settings().ensure_dirs()
    with exclusive_run(
        lock_path_for(settings.warehouse_path), wait_seconds=params.lock_wait_seconds
    ):
        ingest = ingest_task(settings, params.input_paths) if params.input_paths else None
        night = resolve_task(settings, params.as_of, params.use_cases)
        _name_run_after(night)
        run_key = steps.run_key_for(night)
        options = steps.NightOptions.from_parameters(params.model_dump(mode="json"), settings)
        parent = open_run_task(settings, night, run_key, params.dry_run)
        try:
            summary = _run_night(
                params,
                settings,
                night=night,
                run_key=run_key,
                options=options,
                ingest=ingest,
                parent=parent,
            )
        except BaseException:
            steps.abort_tracking(settings, parent)
            raise
        create_markdown_artifact(
            key="nightly-summary", markdown=steps.summary_markdown(summary), description="Decisions"
        )
        for table_key, rows in steps.summary_tables(summary).items():
            create_table_artifact(key=table_key, table=rows, description="Tomorrow's traffic plan")
    return steps.summary_dict(summary)


# Served and deployed runs rebuild the parameter model outside this module's namespace, where
# the postponed (string) annotation "NightlyParameters" cannot be resolved: resolve it here.
nightly_optimization.fn.__annotations__ = typing.get_type_hints(nightly_optimization.fn)

__all__ = [
    "DEFAULT_INPUTS",
    "DEPLOYMENT_NAME",
    "FLOW_NAME",
    "NIGHTLY_CRON",
    "SERVE_DEPLOYMENT_NAME",
    "ApprovalDecision",
    "NightlyParameters",
    "StrategySwitches",
    "deployment_parameters",
    "nightly_optimization",
]
