"""The steps of one night, as plain functions the Prefect flow wraps (and tests call directly).

Each step opens what it needs from :class:`~tasks.core.settings.Settings` (a warehouse connection, the
registry store, the tracker), so a step can run on a worker thread or a Dask worker. Every step
returns JSON-friendly dataclasses or dicts: they become Prefect artifacts, MLflow runs and the
registry's evidence. The warehouse is read by :func:`analyse_experiments` and
:func:`aggregate_night` (every use case's inputs in one set of grouped scans, see
:mod:`tasks.nightly.inputs`); :func:`optimize_use_case` works on its :class:`UseCaseInputs` alone.

How one use case is decided (:func:`optimize_use_case`):

1. the production plan comes from the registry (bootstrapped from the most-served configuration
   on the first night);
2. monitoring may demand a rollback / circuit breaker (applied first) or pause exploration;
3. a staged rollout in progress is judged on last night's traffic (advance / hold / roll back);
4. an experiment that ships starts a new rollout of its winner (this is what needs approval);
5. search candidates and bandit weights fill the exploration share;
6. :func:`strategies.traffic.plan_traffic` turns all of it into one plan that sums to 1.

Exploration within the configured share and rollout steps whose guardrails held are pre-approved
by configuration; a *new* configuration entering the rollout path goes through the use case's
approval policy (auto, or a person in the Prefect UI / ``llmopt registry approve``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from strategies.rollout_guard import RolloutGuard, RolloutJudgement
from strategies.traffic import (
    ExperimentArms,
    RolloutState,
    RolloutStep,
    SafetyOverride,
    TrafficPlan,
    TrafficPolicy,
    plan_traffic,
    start_rollout,
    step_rollout,
)
from tasks.core.config import ConfigError, load_config
from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.nightly import inputs as night_inputs
from tasks.nightly.inputs import UseCaseInputs
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL
from tasks.warehouse.connection import connect

log = logging.getLogger(__name__)

PARAM_FIELDS = ("model", "provider", "prompt_id", "temperature", "top_p", "max_tokens")


class NothingToAnalyse(LlmoptError, RuntimeError):
    """The warehouse has no traffic for the requested night or use cases."""


# --------------------------------------------------------------------------------------------
# night and options
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Night:
    as_of: dt.date
    use_cases: tuple[str, ...]
    first_day: dt.date
    last_day: dt.date


@dataclasses.dataclass(frozen=True)
class NightOptions:
    lookback_days: int = 14
    search_candidates: int = 3
    dry_run: bool = False
    switches: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    policy: TrafficPolicy = dataclasses.field(default_factory=TrafficPolicy)
    guard: RolloutGuard = dataclasses.field(default_factory=RolloutGuard)
    max_rollout_holds: int = 3
    bandit_floor: float = 0.02

    def enabled(self, strategy: str) -> bool:
        return bool(self.switches.get(strategy, True))

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], settings: Settings) -> NightOptions:
        """Flow parameters on top of ``data/config/nightly.toml`` (missing file: defaults)."""
        try:
            config = load_config("nightly", settings)
        except ConfigError:
            config = {}
        traffic = config.get("traffic", {})
        rollout = dict(config.get("rollout", {}))
        max_holds = int(rollout.pop("max_holds", 3))
        return cls(
            lookback_days=int(params.get("lookback_days", 14)),
            search_candidates=int(params.get("search_candidates", 3)),
            dry_run=bool(params.get("dry_run", False)),
            switches=dict(params.get("strategies", {})),
            policy=TrafficPolicy(
                max_exploration_share=float(traffic.get("max_exploration_share", 0.10)),
                min_arm_share=float(traffic.get("min_arm_share", 0.01)),
                rollout_stages=tuple(traffic.get("rollout_stages", (0.05, 0.25, 0.5, 1.0))),
            ),
            guard=RolloutGuard(**rollout),
            max_rollout_holds=max_holds,
        )


@contextlib.contextmanager
def _warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


def run_key_for(night: Night) -> str:
    """Stable id of a night: re-running the same night overwrites its stored results."""
    return f"night-{night.as_of.isoformat()}"


def ingest_new_logs(settings: Settings, paths: Sequence[str]) -> dict[str, Any]:
    """Ingest files / globs; per-file accounting, validation results and totals as a dict.

    A file that cannot be read fails this step with its name (Prefect retries it); rows that
    break a rule are quarantined with a reason and counted, never dropped.
    """
    from tasks.ingest.pipeline import ingest_paths

    report = ingest_paths(list(paths), settings=settings)
    summary = report.to_dict()
    if report.failed:
        names = ", ".join(f"{f.path}: {f.error}" for f in report.failed)
        raise RuntimeError(f"{len(report.failed)} file(s) failed to ingest: {names}")
    return summary


def resolve_night(settings: Settings, *, as_of: dt.date | None, use_cases: Sequence[str]) -> Night:
    """The night to analyse (default: the latest day with traffic) and its use cases."""
    with _warehouse(settings) as con:
        first, last = con.execute("SELECT min(day), max(day) FROM usage_logs").fetchone() or (
            None,
            None,
        )
        if last is None:
            raise NothingToAnalyse(
                f"the warehouse {settings.warehouse_path} has no usage logs yet: "
                "ingest some first (llmopt ingest PATH)"
            )
        night = as_of or last
        present = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT use_case FROM usage_logs WHERE day <= ? ORDER BY 1", [night]
            ).fetchall()
        ]
    unknown = sorted(set(use_cases) - set(present))
    if unknown:
        raise NothingToAnalyse(f"no traffic up to {night} for use case(s): {', '.join(unknown)}")
    chosen = tuple(use_cases) if use_cases else tuple(present)
    if not chosen:
        raise NothingToAnalyse(f"no traffic on or before {night}")
    prepare_storages(settings)
    return Night(as_of=night, use_cases=chosen, first_day=first, last_day=last)


def prepare_storages(settings: Settings) -> None:
    """Create the registry and Optuna tables once, before use cases fan out in parallel.

    SQLite serialises writers; several threads racing to ``CREATE TABLE`` the same file on a
    first night fail with "database is locked", so this step runs alone.
    """
    from tasks.search.study import load_search_config, open_storage

    _store(settings).dispose()
    open_storage(load_search_config(settings).storage or settings.optuna_storage)


def artifact_dir(settings: Settings, night: Night) -> Path:
    """Where a night's plots and reports are written before they go to MLflow."""
    path = settings.warehouse_path.parent / "runs" / run_key_for(night)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# experiments
# --------------------------------------------------------------------------------------------

ARM_CONFIG_SQL = f"""
SELECT experiment_id, variant_id, any_value(use_case) AS use_case,
       {CONFIG_KEY_SQL} AS config_key, count(*) AS n,
       any_value(model) AS model, any_value(provider) AS provider,
       any_value(prompt_id) AS prompt_id, any_value(temperature) AS temperature,
       any_value(top_p) AS top_p, any_value(max_tokens) AS max_tokens
FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
GROUP BY ALL
"""

EXPERIMENT_SHARE_SQL = """
SELECT use_case, experiment_id, count(*) / any_value(total) AS share
FROM usage_logs
JOIN (SELECT use_case AS uc, count(*) AS total FROM usage_logs WHERE day = $as_of GROUP BY 1)
  ON uc = use_case
WHERE day = $as_of AND experiment_id IS NOT NULL
GROUP BY ALL
"""


def _params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    params = {
        name: row[name]
        for name in PARAM_FIELDS
        if row.get(name) is not None and not pd.isna(row[name])
    }
    if "max_tokens" in params:
        params["max_tokens"] = int(params["max_tokens"])
    for name in ("temperature", "top_p"):
        if name in params:
            params[name] = float(params[name])
    return params


def analyse_experiments(settings: Settings, night: Night, *, run_key: str) -> list[dict[str, Any]]:
    """Analyse every experiment up to the night; each report gains its use case, arm configs
    (the configuration each variant served) and its observed traffic share that night."""
    from tasks.experiments.analyze import analyze_experiments, plot_experiment_intervals

    config = load_config("experiments", settings)
    with _warehouse(settings) as con:
        reports = analyze_experiments(con, config, as_of=night.as_of, run_id=run_key)
        arm_rows = con.execute(ARM_CONFIG_SQL, {"as_of": night.as_of}).df().to_dict("records")
        shares = {
            (r["use_case"], r["experiment_id"]): float(r["share"])
            for r in con.execute(EXPERIMENT_SHARE_SQL, {"as_of": night.as_of})
            .df()
            .to_dict("records")
        }
    arms: dict[str, dict[str, dict[str, Any]]] = {}
    use_case_of: dict[str, str] = {}
    for row in sorted(arm_rows, key=lambda r: -int(r["n"])):  # modal config per variant
        variants = arms.setdefault(row["experiment_id"], {})
        use_case_of.setdefault(row["experiment_id"], row["use_case"])
        variants.setdefault(
            row["variant_id"], {"config_key": row["config_key"], "params": _params_of(row)}
        )
    configured = config.get("experiments", {})
    out: list[dict[str, Any]] = []
    for report in reports:
        item = report.to_dict()
        exp_id = report.experiment_id
        use_case = configured.get(exp_id, {}).get("use_case") or use_case_of.get(exp_id)
        item["use_case"] = use_case
        item["arm_configs"] = arms.get(exp_id, {})
        item["weights"] = configured.get(exp_id, {}).get("weights", {})
        item["traffic_share"] = shares.get((use_case, exp_id), 0.0)
        out.append(item)
    if reports:
        plot = plot_experiment_intervals(reports, artifact_dir(settings, night) / "experiments.png")
        for item in out:
            item["plot"] = str(plot)
    return out


# --------------------------------------------------------------------------------------------
# one use case
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UseCaseOutcome:
    """Everything decided for one use case tonight; the publish step needs only this."""

    use_case: str
    as_of: dt.date
    run_key: str
    current_version: int | None
    base_version: int  # latest registry version when the plan was computed (stale check)
    production_config_id: str
    plan: dict[str, Any]
    proposed_config: dict[str, Any]
    needs_approval: bool
    guardrails_passed: bool
    guardrails: dict[str, bool]
    registry_action: str  # publish | rollback | none
    rollback_to_version: int | None
    headline: str
    reasons: tuple[str, ...]
    metrics: dict[str, float | None]
    strategies: dict[str, Any]
    plots: tuple[str, ...]
    evidence: dict[str, Any]


def aggregate_night(
    settings: Settings, night: Night, options: NightOptions, *, run_key: str
) -> dict[str, UseCaseInputs]:
    """The night's aggregate step: every use case's inputs from one set of grouped scans
    (see :mod:`tasks.nightly.inputs`); monitoring runs here once for all use cases."""
    with _warehouse(settings) as con:
        return night_inputs.aggregate_night(
            settings,
            con,
            as_of=night.as_of,
            use_cases=night.use_cases,
            run_key=run_key,
            lookback_days=options.lookback_days,
            monitoring=options.enabled("monitoring"),
            budget=options.enabled("budget"),
        )


@dataclasses.dataclass(frozen=True)
class _Safety:
    override: SafetyOverride | None = None
    rollback_version: int | None = None


def _safety_from_monitoring(
    inputs: UseCaseInputs, catalogue: Mapping[str, Any], registry: night_inputs.RegistryState
) -> _Safety:
    """Monitoring may roll back, break the circuit or pause exploration (applied first)."""
    report = inputs.monitoring.use_cases[0] if inputs.monitoring is not None else None
    action = report.action if report is not None else None
    if action is None:
        return _Safety()
    if action.kind in {"rollback", "circuit_breaker"}:
        target = action.target_config_id
        if target and target in catalogue:
            return _Safety(
                SafetyOverride(action.kind, action.reason, target),
                registry.serving_versions.get(target),
            )
        return _Safety(SafetyOverride("pause_optimizer", f"{action.reason} (no target)"))
    if action.pause_optimizer:
        return _Safety(SafetyOverride("pause_optimizer", action.reason))
    return _Safety()


@dataclasses.dataclass
class _ExperimentDecisions:
    running: list[ExperimentArms] = dataclasses.field(default_factory=list)
    rollout: RolloutState | None = None
    needs_approval: bool = False
    guardrails: dict[str, bool] = dataclasses.field(default_factory=dict)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


def _experiment_decisions(
    experiments: Sequence[Mapping[str, Any]],
    *,
    production_id: str,
    rollout: RolloutState | None,
    safety: SafetyOverride | None,
    catalogue: dict[str, dict[str, Any]],
    reasons: list[str],
) -> _ExperimentDecisions:
    """Running experiments keep their arms; a shipped winner starts a rollout (needs approval)."""
    out = _ExperimentDecisions(rollout=rollout)
    for exp in experiments:
        decision = exp["decision"]
        arm_configs = exp.get("arm_configs", {})
        for info in arm_configs.values():
            catalogue.setdefault(info["config_key"], info["params"])
        if decision["action"] == "ship" and decision.get("variant") in arm_configs:
            winner = arm_configs[decision["variant"]]["config_key"]
            if safety is not None:
                reasons.append(f"{exp['experiment_id']} ships, but safety comes first")
            elif out.rollout is not None:
                reasons.append(f"{exp['experiment_id']} ships {winner}: queued behind rollout")
            elif winner != production_id:
                out.rollout = start_rollout(
                    candidate_config_id=winner, incumbent_config_id=production_id
                )
                out.needs_approval = True
                out.guardrails = _experiment_guardrails(exp)
                out.evidence = {"experiment": exp["experiment_id"], "decision": decision}
                shipped = f"{exp['experiment_id']} ships {decision['variant']}"
                reasons.append(f"{shipped}: rollout of {winner}")
        elif decision["action"] == "keep running" and exp.get("traffic_share", 0) > 0:
            weights = exp.get("weights") or {v: 1 / len(arm_configs) for v in arm_configs}
            variants = tuple(v for v in weights if v in arm_configs)
            arms = tuple((arm_configs[v]["config_key"], float(weights[v])) for v in variants)
            if len(arms) >= 2:
                share = min(float(exp["traffic_share"]), 1.0)
                out.running.append(ExperimentArms(exp["experiment_id"], arms, share, variants))
    return out


def _exploration(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    paused: bool,
    catalogue: dict[str, dict[str, Any]],
    results: dict[str, Any],
) -> tuple[list[str], dict[str, float] | None]:
    """Search candidates, weighted by the bandit's beliefs (none while monitoring pauses)."""
    exploration: list[str] = []
    weights: dict[str, float] | None = None
    if options.enabled("search") and not paused and options.search_candidates > 0:
        from tasks.search.study import load_search_config, open_storage, run_search_round

        config = load_search_config(settings)
        search = run_search_round(
            settings,
            None,
            use_case=use_case,
            as_of=night.as_of,
            n_candidates=options.search_candidates,
            config=config,
            storage=open_storage(config.storage or settings.optuna_storage, schema_checked=True),
            shared=inputs.metrics,
        )
        results["search"] = search
        for candidate in search.candidates:
            catalogue.setdefault(candidate.config_id, dict(candidate.params))
            exploration.append(candidate.config_id)
    if options.enabled("bandits"):
        from tasks.allocation.bandits import bandit_allocation

        bandit = bandit_allocation(
            None,
            use_case=use_case,
            as_of=night.as_of,
            window_days=options.lookback_days,
            floor=options.bandit_floor,
            seed=_stable_seed(use_case, night.as_of),
            shared=inputs.metrics,
        )
        results["bandit"] = bandit
        if bandit.status == "ok" and exploration:
            beliefs = {a.config_id: a.probability_best for a in bandit.arms}
            neutral = 1.0 / max(len(beliefs), 1)
            weights = {c: beliefs.get(c, neutral) for c in exploration}
    return exploration, weights


def _frontier_and_budget(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    inputs: UseCaseInputs,
    *,
    production_id: str,
    out_dir: Path,
    results: dict[str, Any],
) -> list[str]:
    """Evidence for people: the frontier (plot) and the budget-constrained mix."""
    plots: list[str] = []
    if options.enabled("frontier"):
        from tasks.search.frontier import compute_frontier, plot_frontier

        frontier = compute_frontier(
            None,
            use_case=use_case,
            start=inputs.lookback_start,
            end=night.as_of,
            production_config=production_id,
            shared=inputs.metrics,
        )
        results["frontier"] = frontier
        plots.append(str(plot_frontier(frontier, out_dir / "frontier.png")))
    if options.enabled("budget"):
        from tasks.allocation.budget import candidates_from_frontier, use_case_traffic_mix

        results["budget"] = inputs.budget
        if "frontier" in results and inputs.budget is not None:
            results["budget_mix"] = use_case_traffic_mix(
                None,
                use_case=use_case,
                as_of=night.as_of,
                config=load_config("budget", settings),
                window_days=options.lookback_days,
                candidates=candidates_from_frontier(results["frontier"].points),
                report=inputs.budget,
            )
    return plots


def optimize_use_case(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    experiments: Sequence[Mapping[str, Any]],
    *,
    inputs: UseCaseInputs,
) -> UseCaseOutcome:
    """Run every enabled strategy for one use case and decide tomorrow's traffic plan.

    Reads only ``inputs`` (the night's aggregate step), the Optuna storage and the
    configuration files: no warehouse connection.
    """
    if inputs.problem is not None or inputs.registry is None:
        raise NothingToAnalyse(inputs.problem or f"{use_case}: no registry state")
    registry = inputs.registry
    run_key = run_key_for(night)
    out_dir = artifact_dir(settings, night) / use_case
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = [registry.bootstrap_reason] if registry.bootstrap_reason else []
    results: dict[str, Any] = {}
    plots: list[str] = []
    history = inputs.history(night.as_of)
    catalogue = {str(r["config_key"]): _params_of(r) for r in history.to_dict("records")}
    production_id = registry.production_id
    catalogue.setdefault(production_id, registry.production_params)
    rollout = registry.rollout

    # 1. monitoring (computed in the aggregate step): may roll back / break / pause
    safety = _Safety()
    if inputs.monitoring is not None:
        from tasks.monitoring.run import plot_monitoring

        results["monitoring"] = inputs.monitoring
        plots += [str(p) for p in plot_monitoring(inputs.monitoring, out_dir)]
        safety = _safety_from_monitoring(inputs, catalogue, registry)
        if safety.override is not None and safety.override.kind != "pause_optimizer":
            rollout = None  # a rollback or circuit breaker ends any rollout

    # 2. a rollout in progress: judge last night's traffic
    step: RolloutStep | None = None
    if rollout is not None and safety.override is None and inputs.rollout_pair is not None:
        pair = inputs.rollout_pair
        judgement = options.guard.judge(
            quality=pair.quality, errors=pair.errors, latency=pair.latency
        )
        step = _rollout_step(rollout, judgement, options)
        results["rollout"] = {"judgement": judgement, "step": step}
        reasons.append(f"rollout: {step.reason}")
        production_id = step.production_config_id
        rollout = step.state

    # 3. experiments of this use case
    mine = [e for e in experiments if e.get("use_case") == use_case]
    results["experiments"] = [
        {"experiment_id": e["experiment_id"], "decision": e["decision"]} for e in mine
    ]
    decided = _experiment_decisions(
        mine,
        production_id=production_id,
        rollout=rollout,
        safety=safety.override,
        catalogue=catalogue,
        reasons=reasons,
    )

    # 4. exploration, 5. frontier and budget
    exploration, exploration_weights = _exploration(
        settings,
        night,
        use_case,
        options,
        inputs,
        paused=safety.override is not None,
        catalogue=catalogue,
        results=results,
    )
    plots += _frontier_and_budget(
        settings,
        night,
        use_case,
        options,
        inputs,
        production_id=production_id,
        out_dir=out_dir,
        results=results,
    )

    plan = plan_traffic(
        use_case=use_case,
        production_config_id=production_id,
        policy=options.policy,
        safety=safety.override,
        rollout=decided.rollout,
        experiments=decided.running,
        exploration=[c for c in exploration if c in catalogue],
        exploration_weights=exploration_weights,
    )
    reasons.extend(plan.reasons)
    proposed = _registry_payload(plan, catalogue, decided.rollout, run_key)
    headline = _headline(plan, step, safety.override, decided.needs_approval)
    metrics = dict(inputs.night_metrics)
    metrics["experiments_shipped"] = float(
        sum(1 for e in results["experiments"] if e["decision"]["action"] == "ship")
    )
    monitoring_result = results.get("monitoring")
    metrics["drift_alerts"] = float(len(monitoring_result.alerts)) if monitoring_result else None
    guardrails = decided.guardrails
    return UseCaseOutcome(
        use_case=use_case,
        as_of=night.as_of,
        run_key=run_key,
        current_version=registry.current_version,
        base_version=registry.base_version,
        production_config_id=plan.production_config_id,
        plan=_plan_dict(plan),
        proposed_config=proposed,
        needs_approval=decided.needs_approval,
        guardrails_passed=all(guardrails.values()) if guardrails else not decided.needs_approval,
        guardrails=guardrails,
        registry_action="rollback" if safety.rollback_version is not None else "publish",
        rollback_to_version=safety.rollback_version,
        headline=headline,
        reasons=tuple(reasons),
        metrics=metrics,
        strategies=_jsonable(results),
        plots=tuple(plots),
        evidence=decided.evidence,
    )


def _rollout_step(
    rollout: RolloutState, judgement: RolloutJudgement, options: NightOptions
) -> RolloutStep:
    holds = sum(1 for h in rollout.history if h == "hold")
    if judgement.held is None and holds >= options.max_rollout_holds:
        return step_rollout(rollout, guardrails_held=False, policy=options.policy)
    return step_rollout(rollout, guardrails_held=judgement.held, policy=options.policy)


def _experiment_guardrails(exp: Mapping[str, Any]) -> dict[str, bool]:
    """Guardrail verdicts of the shipped variant, named as the registry policy expects."""
    variant = exp["decision"].get("variant")
    names = {
        "error_rate": "error_rate",
        "cost_usd": "cost_per_request",
        "latency_ms": "latency_p95",
        "quality": "quality",
    }
    out = {"srm": not bool(exp.get("srm", {}).get("mismatch", False))}
    for comparison in exp.get("comparisons", []):
        if comparison.get("variant") != variant:
            continue
        name = names.get(comparison["metric"])
        if name is None:
            continue
        if comparison["role"] == "guardrail":
            out[name] = comparison.get("verdict") in {"non-inferior", "better", "no difference yet"}
        elif comparison["role"] == "primary":
            out[name] = comparison.get("verdict") == "better"
    return out


def _stable_seed(use_case: str, day: dt.date) -> int:
    digest = hashlib.sha256(f"{use_case}|{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _plan_dict(plan: TrafficPlan) -> dict[str, Any]:
    return {
        "use_case": plan.use_case,
        "production_config_id": plan.production_config_id,
        "arms": [
            {
                "config_id": a.config_id,
                "weight": a.weight,
                "role": a.role.value,
                "reason": a.reason,
                "experiment_id": a.experiment_id,
            }
            for a in plan.arms
        ],
        "reasons": list(plan.reasons),
        "exploration_share": plan.exploration_share,
    }


def _registry_payload(
    plan: TrafficPlan,
    catalogue: Mapping[str, Mapping[str, Any]],
    rollout: RolloutState | None,
    run_key: str,
) -> dict[str, Any]:
    """The plan as a registry configuration document (validated again by the registry)."""
    from tasks.registry.model import ModelParams
    from tasks.registry.plans import config_from_plan

    needed = {a.config_id for a in plan.arms} | {plan.production_config_id}
    params = {key: ModelParams(**dict(catalogue[key])) for key in needed}
    metadata: dict[str, Any] = {
        "production_config_id": plan.production_config_id,
        "run_key": run_key,
        "reasons": list(plan.reasons),
    }
    if rollout is not None:
        metadata["rollout"] = dataclasses.asdict(rollout) | {"history": list(rollout.history)}
    return config_from_plan(plan, params, metadata=metadata).to_dict()


def _safe_id(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._:-" else "-" for ch in text)
    return cleaned.strip("-.")[:190] or "arm"


def _headline(
    plan: TrafficPlan, step: RolloutStep | None, safety: SafetyOverride | None, shipping: bool
) -> str:
    if safety is not None and safety.kind != "pause_optimizer":
        return f"{safety.kind} to {safety.target_config_id}: {safety.reason}"
    parts = [f"production {plan.production_config_id}"]
    if step is not None:
        parts.append(f"rollout {step.action} ({step.candidate_share:.0%})")
    if shipping:
        parts.append("new rollout proposed")
    if safety is not None:
        parts.append(f"exploration paused ({safety.reason})")
    parts.append(f"exploration {plan.exploration_share:.0%}")
    return "; ".join(parts)


def _jsonable(value: Any) -> Any:
    from tasks.core.jsonable import to_jsonable

    return to_jsonable(value)


# --------------------------------------------------------------------------------------------
# approval and publishing
# --------------------------------------------------------------------------------------------


def approval_mode_for(settings: Settings, use_case: str) -> str:
    """``auto`` or ``human``, from the registry's per-use-case approval policy."""
    from tasks.registry.policy import policy_for

    return str(policy_for(use_case, settings).approval)


def approval_request_markdown(outcome: UseCaseOutcome) -> str:
    """What a person sees in the Prefect UI before approving a new configuration."""
    lines = [
        f"### Approve a new configuration for `{outcome.use_case}`?",
        "",
        f"Night {outcome.as_of}: {outcome.headline}",
        "",
        "| guardrail | passed |",
        "|---|---|",
        *[f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in outcome.guardrails.items()],
        "",
        "Reasons:",
        *[f"- {reason}" for reason in outcome.reasons],
    ]
    return "\n".join(lines)


def _store(settings: Settings) -> Any:
    from tasks.registry.store import RegistryStore

    return RegistryStore.from_settings(settings)


def publish_outcome(
    settings: Settings,
    outcome: UseCaseOutcome,
    *,
    approved_by: str,
    comment: str,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write tonight's plan as the next version, approve it, make it production, snapshot it.

    A rollback re-promotes the earlier approved version the monitoring chose, with the reason in
    the audit trail. A stale ``current_version`` (someone published meanwhile) fails clearly.
    """
    from tasks.registry.model import RegistryConfig

    store = _store(settings)
    try:
        kept = _already_published(store, outcome)
        if kept is not None:
            return kept
        if outcome.registry_action == "rollback" and outcome.rollback_to_version is not None:
            version = store.rollback(
                outcome.use_case,
                actor=approved_by,
                reason=outcome.headline,
                to_version=outcome.rollback_to_version,
            )
        else:
            config = RegistryConfig.from_dict(outcome.proposed_config)
            version = store.publish(
                outcome.use_case,
                config,
                expected_version=outcome.base_version,
                actor=approved_by,
                reason=outcome.headline,
                run_id=mlflow_run_id,
                evidence=_jsonable(
                    {"reasons": outcome.reasons, "guardrails": outcome.guardrails}
                    | outcome.evidence
                ),
            )
            store.approve(outcome.use_case, version.version, actor=approved_by, comment=comment)
            version = store.promote(
                outcome.use_case, version.version, actor=approved_by, comment=comment
            )
        snapshot = store.write_snapshot(outcome.use_case)
        return {
            "status": outcome.registry_action,
            "version": int(version.version),
            "state": version.state.value,
            "snapshot": str(snapshot),
            "approved_by": approved_by,
        }
    finally:
        store.dispose()


def _already_published(store: Any, outcome: UseCaseOutcome) -> dict[str, Any] | None:
    """A re-run of a night that already published keeps that version (no second rollout step)."""
    from tasks.registry.store import NotFoundError

    try:
        current = store.get(outcome.use_case, "production")
    except NotFoundError:
        return None
    if dict(current.config.metadata or {}).get("run_key") != outcome.run_key:
        return None
    return {
        "status": "kept: this night was already published",
        "version": int(current.version),
        "state": current.state.value,
        "snapshot": str(store.snapshot_file(outcome.use_case)),
        "approved_by": current.created_by,
    }


def leave_as_candidate(
    settings: Settings, outcome: UseCaseOutcome, *, reason: str, mlflow_run_id: str | None = None
) -> dict[str, Any]:
    """Publish the proposal as a candidate only (awaiting ``llmopt registry approve``)."""
    from tasks.registry.model import RegistryConfig

    store = _store(settings)
    try:
        version = store.publish(
            outcome.use_case,
            RegistryConfig.from_dict(outcome.proposed_config),
            expected_version=outcome.base_version,
            actor="nightly-flow",
            reason=f"{outcome.headline} ({reason})",
            run_id=mlflow_run_id,
            evidence=_jsonable({"reasons": outcome.reasons, "guardrails": outcome.guardrails}),
        )
        return {"status": "candidate", "version": int(version.version), "reason": reason}
    finally:
        store.dispose()


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
            tags={"use_case": outcome.use_case, "as_of": outcome.as_of.isoformat()},
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
                }
                for o in summary.outcomes
            },
            "failures": summary.failures,
        }
    )


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
        lines.append(
            f"| {o.use_case} | {o.headline} | {pub.get('status', '-')} v{pub.get('version', '-')} |"
        )
    for use_case, error in summary.failures.items():
        lines.append(f"| {use_case} | FAILED: {error} | - |")
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
