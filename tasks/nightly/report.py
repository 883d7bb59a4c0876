"""The night's summary: MLflow tracking, the Prefect summary artifact and tables, the printed
summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.core.settings import Settings
from tasks.nightly.night import Night, UseCaseOutcome
from tasks.nightly.use_case import _jsonable, _safe_id

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# summary, MLflow, Prefect artifacts
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NightSummary:
    as_of: dt.date
    run_key: str
    ingest: dict[str, Any] | None
    experiments: list[dict[str, Any]]
    outcomes: tuple[UseCaseOutcome, ...]
    failures: dict[str, str]
    published: dict[str, dict[str, Any]]
    mlflow_parent_run_id: str | None = None
    mlflow_runs: dict[str, str] = dataclasses.field(default_factory=dict)


def describe_failure(state: Any) -> str:
    """One line for a failed Prefect state: the exception type and message."""
    try:
        state.result()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return str(getattr(state, "message", "") or state)


def summarize_night(
    night: Night,
    *,
    run_key: str,
    ingest: dict[str, Any] | None,
    experiments: list[dict[str, Any]],
    outcomes: Sequence[UseCaseOutcome],
    failures: dict[str, str],
    published: dict[str, dict[str, Any]],
    mlflow_parent_run_id: str | None = None,
) -> NightSummary:
    return NightSummary(
        night.as_of,
        run_key,
        ingest,
        experiments,
        tuple(outcomes),
        failures,
        published,
        mlflow_parent_run_id,
    )


def start_tracking(settings: Settings, night: Night, run_key: str) -> str:
    """Open tonight's parent MLflow run (registry entries link to it)."""
    from tasks.nightly.tracking import Tracker

    tags = {"as_of": night.as_of.isoformat(), "run_key": run_key, "kind": "nightly"}
    return Tracker(settings).start_run(f"nightly-{night.as_of.isoformat()}", tags=tags)


def abort_tracking(settings: Settings, parent_run_id: str) -> None:
    """Mark the parent run FAILED when the night crashed before it could be logged."""
    from tasks.nightly.tracking import Tracker

    try:
        Tracker(settings).end_run(parent_run_id, status="FAILED")
    except Exception:  # never hide the original error behind a tracking one
        log.exception("could not mark MLflow run %s as failed", parent_run_id)


def track_night(settings: Settings, summary: NightSummary, parent_run_id: str) -> dict[str, str]:
    """Log the night under its parent run: a child per use case, a grandchild per strategy."""
    from tasks.nightly.tracking import RunRecord, Tracker

    tracker = Tracker(settings)
    parent_files = sorted({Path(e["plot"]) for e in summary.experiments if e.get("plot")})
    totals = (summary.ingest or {}).get("totals", {})
    tracker.log(
        parent_run_id,
        RunRecord(
            name="nightly",
            params={"as_of": summary.as_of.isoformat(), "use_cases": len(summary.outcomes)},
            metrics={
                "use_cases_ok": len(summary.outcomes),
                "use_cases_failed": len(summary.failures),
                "rows_ingested": totals.get("ingested"),
                "rows_quarantined": totals.get("quarantined"),
                "experiments_shipped": sum(
                    1 for e in summary.experiments if e["decision"]["action"] == "ship"
                ),
            },
            json_artifacts={
                "reports/experiments.json": summary.experiments,
                "reports/ingest.json": summary.ingest or {},
                "reports/validation.json": (summary.ingest or {}).get("validation") or {},
                "reports/failures.json": summary.failures,
            },
            files=[p for p in parent_files if p.exists()],
        ),
    )
    ids: dict[str, str] = {}
    for outcome in summary.outcomes:
        children = [
            RunRecord(
                name=name,
                tags={"use_case": outcome.use_case, "strategy": name},
                metrics=_strategy_metrics(name, result),
                json_artifacts={f"reports/{name}.json": result},
            )
            for name, result in outcome.strategies.items()
            if result is not None
        ]
        record = RunRecord(
            name=outcome.use_case,
            tags={
                "use_case": outcome.use_case,
                "as_of": outcome.as_of.isoformat(),
                **_decision_tags(outcome),
            },
            params={
                "chosen_config": outcome.production_config_id,
                "chosen_params": outcome.proposed_config.get("params", {}),
                "traffic_arms": len(outcome.plan["arms"]),
            },
            metrics=dict(outcome.metrics)
            | {"exploration_share": outcome.plan["exploration_share"]},
            json_artifacts={
                "reports/traffic_plan.json": outcome.plan,
                "reports/chosen_config.json": outcome.proposed_config,
                "reports/publish.json": summary.published.get(outcome.use_case, {}),
            },
            files=[Path(p) for p in outcome.plots if Path(p).exists()],
            children=children,
        )
        ids.update(tracker.log_tree(record, parent_run_id))
    tracker.end_run(parent_run_id, status="FAILED" if summary.failures else "FINISHED")
    return ids


def _decision_tags(outcome: UseCaseOutcome) -> dict[str, str]:
    """What happened, in the words of the decision (MLflow tags are searchable per night):
    the headline, the rollout step's action and reason, the objective and the promotion."""
    tags = {"decision": outcome.headline[:5000]}
    step = (outcome.strategies.get("rollout") or {}).get("step") or {}
    if step:
        tags["rollout_step"] = str(step.get("action", ""))
        tags["rollout_reason"] = str(step.get("reason", ""))[:5000]
    loop = outcome.strategies.get("loop") or {}
    if loop:
        tags["objective"] = str(loop.get("objective", ""))
        tags["promotion"] = str(loop.get("promotion", ""))
    return tags


def _strategy_metrics(name: str, result: Any) -> dict[str, float | None]:
    """A few comparable numbers per strategy, the same names night after night."""
    if not isinstance(result, Mapping):
        return {}
    numbers: dict[str, float | None] = {}
    for key in ("score_gain_vs_production", "month_to_date_usd", "projected_overrun_usd"):
        value = result.get(key)
        if isinstance(value, int | float):
            numbers[key] = float(value)
    if name == "search":
        numbers["trials_told"] = float(len(result.get("told", [])))
        numbers["trials_pending"] = float(len(result.get("still_pending", [])))
        best = result.get("best") or {}
        if isinstance(best.get("score"), int | float):
            numbers["best_score"] = float(best["score"])
    if name == "monitoring":
        numbers["alerts"] = float(
            sum(len(u.get("alerts", [])) for u in result.get("use_cases", []))
        )
    return numbers


def with_tracking(summary: NightSummary, runs: dict[str, str]) -> NightSummary:
    return dataclasses.replace(summary, mlflow_runs=runs)


def summary_dict(summary: NightSummary) -> dict[str, Any]:
    """The flow's return value: small, JSON, what ``llmopt nightly run --json`` prints."""
    return _jsonable(
        {
            "as_of": summary.as_of,
            "run_key": summary.run_key,
            "mlflow_parent_run_id": summary.mlflow_parent_run_id,
            "ingest": (summary.ingest or {}).get("totals"),
            "experiments": {
                e["experiment_id"]: e["decision"].get("label", e["decision"]["action"])
                for e in summary.experiments
            },
            "use_cases": {
                o.use_case: {
                    "headline": o.headline,
                    "production_config_id": o.production_config_id,
                    "plan": _weights_by_config(o.plan),
                    "metrics": o.metrics,
                    "published": summary.published.get(o.use_case),
                    "reasons": list(o.reasons),
                    "loop": o.strategies.get("loop"),
                    "alerts": _alert_lines(o.strategies.get("monitoring")),
                }
                for o in summary.outcomes
            },
            "failures": summary.failures,
        }
    )


def _alert_lines(monitoring: Mapping[str, Any] | None) -> list[str]:
    """One line per monitoring alert of the night (the monitoring report, as JSON)."""
    return [
        f"[{a['severity']}] {a['message']}"
        for uc in (monitoring or {}).get("use_cases", [])
        for a in uc.get("alerts", [])
    ]


def _weights_by_config(plan: Mapping[str, Any]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for arm in plan["arms"]:
        merged[arm["config_id"]] = merged.get(arm["config_id"], 0.0) + float(arm["weight"])
    return {key: round(value, 6) for key, value in merged.items()}


def summary_markdown(summary: NightSummary) -> str:
    """The Prefect UI artifact: decisions first, then the numbers behind them."""
    lines = [f"# Nightly optimization, {summary.as_of}", ""]
    if summary.ingest:
        t = summary.ingest.get("totals", {})
        lines += [
            f"Ingested {t.get('ingested', 0):,} rows from {t.get('files', 0)} file(s); "
            f"{t.get('duplicates', 0):,} duplicates, {t.get('quarantined', 0):,} quarantined.",
            "",
        ]
    lines += ["## Decisions", "", "| use case | decision | published |", "|---|---|---|"]
    for o in summary.outcomes:
        pub = summary.published.get(o.use_case, {})
        note = f": {pub['message']}" if pub.get("message") else ""  # e.g. who rejected
        lines.append(
            f"| {o.use_case} | {o.headline} | "
            f"{pub.get('status', '-')} v{pub.get('version', '-')}{note} |"
        )
    for use_case, error in summary.failures.items():
        lines.append(f"| {use_case} | FAILED: {error} | - |")
    loops = {o.use_case: o.strategies.get("loop") for o in summary.outcomes}
    if any(loops.values()):
        lines += ["", "## The loop: evidence to tomorrow's traffic", ""]
        lines += [
            "| use case | objective | production | best alternative | proposed | "
            "tomorrow vs production |",
            "|---|---|---|---|---|---|",
        ]
        for use_case, loop in loops.items():
            if loop:
                cells = _loop_cells(loop)
                lines.append(f"| {use_case} | " + " | ".join(cells) + " |")
    if summary.experiments:
        lines += ["", "## Experiments", "", "| experiment | use case | decision | reasons |"]
        lines.append("|---|---|---|---|")
        for e in summary.experiments:
            d = e["decision"]
            lines.append(
                f"| {e['experiment_id']} | {e.get('use_case')} | {d.get('label', d['action'])} "
                f"| {'; '.join(d.get('reasons', []))[:300]} |"
            )
    if summary.mlflow_parent_run_id:
        lines += ["", f"MLflow parent run: `{summary.mlflow_parent_run_id}`"]
    return "\n".join(lines)


def summary_tables(summary: NightSummary) -> dict[str, list[dict[str, Any]]]:
    """One Prefect table artifact per use case: tomorrow's traffic plan."""
    return {
        f"plan-{_safe_id(o.use_case).lower()}": [
            {"config_id": a["config_id"], "role": a["role"], "weight": round(a["weight"], 4)}
            for a in o.plan["arms"]
        ]
        for o in summary.outcomes
    }


# --------------------------------------------------------------------------------------------
# the loop, as a person reads it (Prefect artifact, `llmopt nightly run`)
# --------------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".4f") -> str:
    return format(float(value), fmt) if isinstance(value, int | float) else "n/a"


def _interval(pair: Any) -> str:
    if not pair or any(not isinstance(v, int | float) for v in pair):
        return ""
    return f" [{pair[0]:.4f}, {pair[1]:.4f}]"


def _loop_cells(loop: Mapping[str, Any]) -> list[str]:
    """objective, production, best alternative, proposed, expected change (one row)."""
    production = f"{loop.get('production')}: {_num(loop.get('production_value'))}"
    best = loop.get("best_alternative")
    alternative = (
        f"{best}: {_num(loop.get('best_alternative_value'))}"
        f"{_interval(loop.get('best_alternative_interval'))}, difference "
        f"{_num(loop.get('best_alternative_difference'), '+.4f')}"
        f"{_interval(loop.get('best_alternative_difference_interval'))}"
        if best
        else "none analysable"
    )
    expected = loop.get("expected") or {}
    if expected.get("status") == "ok":
        change = (
            f"quality {expected['quality_change']:+.4f}, spend "
            f"{expected['spend_change_per_day_usd']:+.2f} USD/day"
        )
        if expected.get("unobserved"):
            change += f" ({len(expected['unobserved'])} unobserved arm(s) at production's values)"
    else:
        change = f"cannot analyse: {expected.get('reason', 'no estimate')}"
    objective = f"{loop.get('objective')} ({loop.get('objective_description')})"
    return [objective, production, alternative, str(loop.get("proposed", "")), change]


def loop_lines(summary: Mapping[str, Any]) -> list[str]:
    """The loop per use case as plain text lines, from :func:`summary_dict`'s output.

    For ``llmopt nightly run``'s printed summary: objective, production's estimated value, the
    best alternative with its interval, what was proposed and why (or why not), and the expected
    change in quality and spend of tomorrow's plan.

    Args:
        summary: the flow's return value (:func:`summary_dict`).

    Returns:
        Lines without trailing newlines (empty when no use case carries a loop section).
    """
    lines: list[str] = []
    for use_case, info in (summary.get("use_cases") or {}).items():
        loop = (info or {}).get("loop")
        if not loop:
            continue
        objective, production, alternative, proposed, change = _loop_cells(loop)
        lines += [
            f"{use_case}:",
            f"  objective         {objective}",
            f"  production        {production}",
            f"  best alternative  {alternative}",
            f"  proposed          {proposed}",
            f"  tomorrow's plan   {change}",
        ]
    return lines
