"""The steps of one night, as plain functions the Prefect flow wraps (and tests call directly).

Each step opens what it needs from :class:`~tasks.settings.Settings` (a warehouse connection, the
registry store, the tracker), so a step can run on a worker thread or a Dask worker. Every step
returns JSON-friendly dataclasses or dicts: they become Prefect artifacts, MLflow runs and the
registry's evidence.

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
import numpy as np
import pandas as pd

from strategies.experiments import MeanStats, ProportionStats
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
from tasks.config import ConfigError, load_config
from tasks.config_metrics import CONFIG_KEY_SQL, config_metrics
from tasks.settings import Settings
from tasks.warehouse import connect

log = logging.getLogger(__name__)

PARAM_FIELDS = ("model", "provider", "prompt_id", "temperature", "top_p", "max_tokens")


class NothingToAnalyse(RuntimeError):
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
    from tasks.ingest import ingest_paths

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
    from tasks.study import open_storage

    _store(settings).dispose()
    open_storage(settings.optuna_storage)


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
    from tasks.experiment_analysis import analyze_experiments, plot_experiment_intervals

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


def _night_metrics(
    con: duckdb.DuckDBPyConnection, use_case: str, day: dt.date
) -> dict[str, float | None]:
    row = con.execute(
        """
        SELECT count(*), avg(quality), avg(cost_usd), quantile_cont(latency_ms, 0.95),
               avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END), sum(cost_usd)
        FROM usage_logs WHERE use_case = ? AND day = ?
        """,
        [use_case, day],
    ).fetchone()
    names = (
        "requests",
        "quality_mean",
        "cost_per_request_usd",
        "latency_p95_ms",
        "error_rate",
        "spend_usd",
    )
    return {n: (None if v is None else float(v)) for n, v in zip(names, row or (), strict=True)}


def _pair_stats(
    con: duckdb.DuckDBPyConnection, use_case: str, day: dt.date, incumbent: str, candidate: str
) -> tuple[MeanStats, ProportionStats, MeanStats]:
    rows = con.execute(
        f"""
        SELECT {CONFIG_KEY_SQL} AS key, count(*) AS n,
               count(quality) AS qn, coalesce(sum(quality), 0), coalesce(sum(quality*quality), 0),
               count(*) FILTER (WHERE status = 'error') AS errors,
               sum(latency_ms), sum(latency_ms * latency_ms)
        FROM usage_logs WHERE use_case = ? AND day = ? AND {CONFIG_KEY_SQL} IN (?, ?)
        GROUP BY 1
        """,
        [use_case, day, incumbent, candidate],
    ).fetchall()
    by_key = {r[0]: r for r in rows}
    empty = (None, 0, 0, 0.0, 0.0, 0, 0.0, 0.0)
    inc, cand = by_key.get(incumbent, empty), by_key.get(candidate, empty)
    col = {i: np.array([inc[i], cand[i]], dtype=float) for i in range(1, 8)}  # 0 is the key
    quality = MeanStats(n=col[2], sum=col[3], sum_squares=col[4])
    errors = ProportionStats(n=col[1], successes=col[5])
    latency = MeanStats(n=col[1], sum=col[6], sum_squares=col[7])
    return quality, errors, latency


def _bootstrap_production(
    con: duckdb.DuckDBPyConnection, use_case: str, start: dt.date, end: dt.date
) -> str:
    """First night: production is what serves outside experiments, or an experiment's control.

    Counting all rows would crown a treatment arm that happens to carry as much traffic as its
    control; a running experiment's control arm is, by definition, the incumbent.
    """
    row = con.execute(
        f"""
        SELECT {CONFIG_KEY_SQL} AS key,
               count(*) FILTER (WHERE experiment_id IS NULL OR variant_id = 'control') AS incumbent,
               count(*) AS n
        FROM usage_logs WHERE use_case = ? AND day BETWEEN ? AND ?
        GROUP BY 1 ORDER BY incumbent DESC, n DESC, key LIMIT 1
        """,
        [use_case, start, end],
    ).fetchall()
    if not row:
        raise NothingToAnalyse(f"{use_case}: no traffic between {start} and {end}")
    return str(row[0][0])


def _rollout_from_registry(current: Any) -> RolloutState | None:
    meta = dict(current.config.metadata or {}).get("rollout")
    if not meta:
        return None
    return RolloutState(
        candidate_config_id=str(meta["candidate_config_id"]),
        incumbent_config_id=str(meta["incumbent_config_id"]),
        stage_index=int(meta.get("stage_index", 0)),
        history=tuple(meta.get("history", ())),
    )


def _production_of(current: Any) -> tuple[str | None, dict[str, Any]]:
    meta = dict(current.config.metadata or {})
    for arm in current.config.arms:
        if arm.role == "production":
            return arm.config_id or meta.get("production_config_id"), arm.params.to_dict()
    return meta.get("production_config_id"), current.config.params.to_dict()


def _approved_configs(
    store: Any, use_case: str, metrics: Mapping[str, Mapping[str, Any]]
) -> list[Any]:
    """Approved registry versions as monitoring's ApprovedConfig, with observed quality / cost."""
    from strategies.monitor.degradation import ApprovedConfig

    out: dict[str, Any] = {}
    for version in store.versions_of(use_case):
        if version.state.value not in {"approved", "production", "retired"}:
            continue
        config_id, _ = _production_of(version)
        observed = metrics.get(str(config_id))
        if not config_id or observed is None or observed.get("quality_mean") is None:
            continue
        out[config_id] = ApprovedConfig(
            config_id=config_id,
            quality=float(observed["quality_mean"]),
            cost_per_request=float(observed["cost_mean"]),
            latency_p95_ms=float(observed["latency_p95"]),
            approved_at=version.created_at,
            is_production=version.state.value == "production",
        )
    return list(out.values())


def _version_serving(store: Any, use_case: str, config_id: str) -> int | None:
    for version in sorted(store.versions_of(use_case), key=lambda v: -v.version):
        good = version.state.value in {"approved", "production", "retired"}
        if good and _production_of(version)[0] == config_id:
            return int(version.version)
    return None


def optimize_use_case(
    settings: Settings,
    night: Night,
    use_case: str,
    options: NightOptions,
    experiments: Sequence[Mapping[str, Any]],
) -> UseCaseOutcome:
    """Run every enabled strategy for one use case and decide tomorrow's traffic plan."""
    from tasks.registry.store import NotFoundError, RegistryStore

    run_key = run_key_for(night)
    start = night.as_of - dt.timedelta(days=options.lookback_days - 1)
    out_dir = artifact_dir(settings, night) / use_case
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    results: dict[str, Any] = {}
    plots: list[str] = []
    store = RegistryStore.from_settings(settings)
    try:
        with _warehouse(settings) as con:
            frame = config_metrics(con, use_case=use_case, end=night.as_of)
            catalogue = {str(r["config_key"]): _params_of(r) for r in frame.to_dict("records")}
            window = config_metrics(con, use_case=use_case, start=start, end=night.as_of)
            observed = {str(r["config_key"]): r for r in window.to_dict("records")}
            metrics = _night_metrics(con, use_case, night.as_of)

            base_version = int(store.latest_version(use_case))
            try:
                current = store.get(use_case, "production")
            except NotFoundError:
                current = None
            if current is not None:
                production_id, production_params = _production_of(current)
                production_id = production_id or "production"
                catalogue.setdefault(production_id, production_params)
                rollout = _rollout_from_registry(current)
            else:
                production_id = _bootstrap_production(con, use_case, start, night.as_of)
                rollout = None
                reasons.append(f"bootstrap: production is the incumbent config {production_id}")

            # 1. monitoring: may roll back / break the circuit / pause exploration
            safety: SafetyOverride | None = None
            rollback_version: int | None = None
            if options.enabled("monitoring"):
                from tasks.monitoring import load_monitoring_config, plot_monitoring, run_monitoring

                approved = _approved_configs(store, use_case, observed)
                monitoring = run_monitoring(
                    con,
                    settings,
                    as_of=night.as_of,
                    run_id=run_key,
                    config=load_monitoring_config(settings),
                    approved_configs={use_case: approved},
                    production_configs={use_case: production_id},
                    use_cases=[use_case],
                )
                plots += [str(p) for p in plot_monitoring(monitoring, out_dir)]
                report = monitoring.use_cases[0] if monitoring.use_cases else None
                results["monitoring"] = monitoring
                action = report.action if report else None
                if action is not None and action.kind in {"rollback", "circuit_breaker"}:
                    target = action.target_config_id
                    if target and target in catalogue:
                        safety = SafetyOverride(action.kind, action.reason, target)
                        rollback_version = _version_serving(store, use_case, target)
                        rollout = None
                    else:
                        safety = SafetyOverride("pause_optimizer", f"{action.reason} (no target)")
                elif action is not None and action.pause_optimizer:
                    safety = SafetyOverride("pause_optimizer", action.reason)

            # 2. a rollout in progress: judge last night's traffic
            step: RolloutStep | None = None
            if rollout is not None and safety is None:
                quality, errors, latency = _pair_stats(
                    con,
                    use_case,
                    night.as_of,
                    rollout.incumbent_config_id,
                    rollout.candidate_config_id,
                )
                judgement = options.guard.judge(quality=quality, errors=errors, latency=latency)
                step = _rollout_step(rollout, judgement, options)
                results["rollout"] = {"judgement": judgement, "step": step}
                reasons.append(f"rollout: {step.reason}")
                production_id = step.production_config_id
                rollout = step.state

            # 3. experiments of this use case
            running: list[ExperimentArms] = []
            needs_approval = False
            guardrails: dict[str, bool] = {}
            evidence: dict[str, Any] = {}
            mine = [e for e in experiments if e.get("use_case") == use_case]
            results["experiments"] = [
                {"experiment_id": e["experiment_id"], "decision": e["decision"]} for e in mine
            ]
            for exp in mine:
                decision = exp["decision"]
                arm_configs = exp.get("arm_configs", {})
                for info in arm_configs.values():
                    catalogue.setdefault(info["config_key"], info["params"])
                if decision["action"] == "ship" and decision.get("variant") in arm_configs:
                    winner = arm_configs[decision["variant"]]["config_key"]
                    if safety is not None:
                        reasons.append(f"{exp['experiment_id']} ships, but safety comes first")
                    elif rollout is not None:
                        reasons.append(
                            f"{exp['experiment_id']} ships {winner}: queued behind rollout"
                        )
                    elif winner != production_id:
                        rollout = start_rollout(
                            candidate_config_id=winner, incumbent_config_id=production_id
                        )
                        needs_approval = True
                        guardrails = _experiment_guardrails(exp)
                        evidence = {"experiment": exp["experiment_id"], "decision": decision}
                        shipped = f"{exp['experiment_id']} ships {decision['variant']}"
                        reasons.append(f"{shipped}: rollout of {winner}")
                elif decision["action"] == "keep running" and exp.get("traffic_share", 0) > 0:
                    weights = exp.get("weights") or {v: 1 / len(arm_configs) for v in arm_configs}
                    variants = tuple(v for v in weights if v in arm_configs)
                    arms = tuple(
                        (arm_configs[v]["config_key"], float(weights[v])) for v in variants
                    )
                    if len(arms) >= 2:
                        share = min(float(exp["traffic_share"]), 1.0)
                        running.append(ExperimentArms(exp["experiment_id"], arms, share, variants))

            # 4. exploration: search candidates, weighted by bandit beliefs
            exploration: list[str] = []
            weights_by_config: dict[str, float] | None = None
            paused = safety is not None
            if options.enabled("search") and not paused and options.search_candidates > 0:
                from tasks.study import run_search_round

                search = run_search_round(
                    settings,
                    con,
                    use_case=use_case,
                    as_of=night.as_of,
                    n_candidates=options.search_candidates,
                )
                results["search"] = search
                for candidate in search.candidates:
                    catalogue.setdefault(candidate.config_id, dict(candidate.params))
                    exploration.append(candidate.config_id)
            if options.enabled("bandits"):
                from tasks.bandit_allocation import bandit_allocation

                bandit = bandit_allocation(
                    con,
                    use_case=use_case,
                    as_of=night.as_of,
                    window_days=options.lookback_days,
                    floor=options.bandit_floor,
                    seed=_stable_seed(use_case, night.as_of),
                )
                results["bandit"] = bandit
                if bandit.status == "ok" and exploration:
                    beliefs = {a.config_id: a.probability_best for a in bandit.arms}
                    neutral = 1.0 / max(len(beliefs), 1)
                    weights_by_config = {c: beliefs.get(c, neutral) for c in exploration}

            # 5. frontier and budget: evidence for people, and the budget-constrained mix
            if options.enabled("frontier"):
                from tasks.frontier_analysis import compute_frontier, plot_frontier

                frontier = compute_frontier(
                    con,
                    use_case=use_case,
                    start=start,
                    end=night.as_of,
                    production_config=production_id,
                )
                results["frontier"] = frontier
                plots.append(str(plot_frontier(frontier, out_dir / "frontier.png")))
            if options.enabled("budget"):
                from tasks.budget_analysis import budget_report, use_case_traffic_mix

                budget_config = load_config("budget", settings)
                budget = budget_report(
                    con, as_of=night.as_of, config=budget_config, use_cases=[use_case]
                )
                results["budget"] = budget[0] if budget else None
                if "frontier" in results:
                    from tasks.budget_analysis import candidates_from_frontier

                    results["budget_mix"] = use_case_traffic_mix(
                        con,
                        use_case=use_case,
                        as_of=night.as_of,
                        config=budget_config,
                        window_days=options.lookback_days,
                        candidates=candidates_from_frontier(results["frontier"].points),
                        report=results["budget"],
                    )
    finally:
        store.dispose()

    plan = plan_traffic(
        use_case=use_case,
        production_config_id=production_id,
        policy=options.policy,
        safety=safety,
        rollout=rollout,
        experiments=running,
        exploration=[c for c in exploration if c in catalogue],
        exploration_weights=weights_by_config,
    )
    reasons.extend(plan.reasons)
    proposed = _registry_payload(plan, catalogue, rollout, run_key)
    headline = _headline(plan, step, safety, needs_approval)
    metrics["experiments_shipped"] = float(
        sum(1 for e in results.get("experiments", []) if e["decision"]["action"] == "ship")
    )
    monitoring_result = results.get("monitoring")
    metrics["drift_alerts"] = float(len(monitoring_result.alerts)) if monitoring_result else None
    return UseCaseOutcome(
        use_case=use_case,
        as_of=night.as_of,
        run_key=run_key,
        current_version=int(current.version) if current is not None else None,
        base_version=base_version,
        production_config_id=plan.production_config_id,
        plan=_plan_dict(plan),
        proposed_config=proposed,
        needs_approval=needs_approval,
        guardrails_passed=all(guardrails.values()) if guardrails else not needs_approval,
        guardrails=guardrails,
        registry_action="rollback" if rollback_version is not None else "publish",
        rollback_to_version=rollback_version,
        headline=headline,
        reasons=tuple(reasons),
        metrics=metrics,
        strategies=_jsonable(results),
        plots=tuple(plots),
        evidence=evidence,
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
    from tasks.jsonable import to_jsonable

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
    from tasks.tracking import Tracker

    tags = {"as_of": night.as_of.isoformat(), "run_key": run_key, "kind": "nightly"}
    return Tracker(settings).start_run(f"nightly-{night.as_of.isoformat()}", tags=tags)


def abort_tracking(settings: Settings, parent_run_id: str) -> None:
    """Mark the parent run FAILED when the night crashed before it could be logged."""
    from tasks.tracking import Tracker

    try:
        Tracker(settings).end_run(parent_run_id, status="FAILED")
    except Exception:  # never hide the original error behind a tracking one
        log.exception("could not mark MLflow run %s as failed", parent_run_id)


def track_night(settings: Settings, summary: NightSummary, parent_run_id: str) -> dict[str, str]:
    """Log the night under its parent run: a child per use case, a grandchild per strategy."""
    from tasks.tracking import RunRecord, Tracker

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
