"""The night's aggregate step: what every use case's decision reads, computed once for all of them.

Twenty use cases each asking the warehouse for their own statistics scan the same rows once per
use case and strategy (search, frontier, bandits, budget, monitoring: a few hundred statements at
10 M rows). Here each aggregate is one grouped pass over the warehouse and every use case gets
its slice, a :class:`UseCaseInputs`. The per-use-case step
(:func:`tasks.nightly.steps.optimize_use_case`) then needs no warehouse connection at all, which
is also what a fan-out to other machines (a Dask cluster) needs: small, picklable inputs.

Every aggregate here reads the daily rollups (tasks/warehouse/rollup_specs.py), refreshed first
for the days that changed (:func:`tasks.warehouse.rollups.refresh_rollups` of
:data:`tasks.nightly.rollup_set.ALL_SPECS`): the step never scans the raw look-back window. The
``*_SQL`` constants without ``ROLLUP_`` are the raw-scan references the tests compare against.

A problem that concerns one use case only (no traffic in its window, say) is carried in its
inputs as ``problem`` and fails that use case's branch, not the night.

Size: the aggregate step's SQL, its result types and the one function that runs them together
(splitting them would scatter one set of grouped scans over several modules).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from strategies.experiments import MeanStats, ProportionStats
from strategies.traffic import RolloutState
from tasks.core.config import load_config
from tasks.core.settings import Settings
from tasks.nightly.loop import bootstrap_by_objective
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL, SharedConfigMetrics, Window
from tasks.warehouse.dask_rollups import refresh_night_rollups
from tasks.warehouse.rollup_specs import CONFIG_DAY, CONFIG_LATENCY, binned_quantiles

if TYPE_CHECKING:
    from tasks.allocation.budget import BudgetReport
    from tasks.monitoring.run import MonitoringReport

NIGHT_METRICS_SQL = """
SELECT use_case, count(*), avg(quality), avg(cost_usd), quantile_cont(latency_ms, 0.95),
       avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END), sum(cost_usd)
FROM usage_logs WHERE day = $day AND list_contains($use_cases, use_case)
GROUP BY use_case
"""
NIGHT_METRIC_NAMES = (
    "requests",
    "quality_mean",
    "cost_per_request_usd",
    "latency_p95_ms",
    "error_rate",
    "spend_usd",
)

# The incumbent: what serves outside experiments, or an experiment's control. A first night
# bootstraps to the best configuration on the objective (loop.bootstrap_by_objective); the
# incumbent is the fallback when no configuration can be ranked yet (too little traffic).
BOOTSTRAP_SQL = f"""
SELECT use_case, {CONFIG_KEY_SQL} AS key,
       count(*) FILTER (WHERE experiment_id IS NULL OR variant_id = 'control') AS incumbent,
       count(*) AS n
FROM usage_logs
WHERE list_contains($use_cases, use_case) AND day BETWEEN $start AND $end
GROUP BY 1, 2
QUALIFY row_number() OVER (PARTITION BY use_case ORDER BY incumbent DESC, n DESC, key) = 1
"""

PAIR_STATS_SQL = f"""
SELECT {CONFIG_KEY_SQL} AS key, count(*) AS n,
       count(quality) AS qn, coalesce(sum(quality), 0), coalesce(sum(quality*quality), 0),
       count(*) FILTER (WHERE status = 'error') AS errors,
       sum(latency_ms), sum(latency_ms * latency_ms)
FROM usage_logs
WHERE use_case = $use_case AND day BETWEEN $first AND $day AND {CONFIG_KEY_SQL} IN ($a, $b)
GROUP BY 1
"""


ROLLUP_NIGHT_METRICS_SQL = f"""
WITH d AS (
    SELECT use_case, CAST(sum(n) AS BIGINT) AS n,
           sum(quality_sum) / nullif(sum(quality_n), 0) AS quality,
           sum(cost_sum) / sum(n) AS cost, CAST(sum(errors) AS DOUBLE) / sum(n) AS error_rate,
           sum(cost_sum) AS spend
    FROM {CONFIG_DAY.name} WHERE day = $day AND list_contains($use_cases, use_case)
    GROUP BY use_case
)
SELECT use_case, n, quality, cost, CAST(NULL AS DOUBLE), error_rate, spend FROM d
"""
ROLLUP_NIGHT_LATENCY_BINS_SQL = f"""(
    SELECT * FROM {CONFIG_LATENCY.name} WHERE day = $day AND list_contains($use_cases, use_case)
)"""

ROLLUP_BOOTSTRAP_SQL = f"""
SELECT use_case, config_key AS key, sum(incumbent_n) AS incumbent, sum(n) AS calls
FROM {CONFIG_DAY.name}
WHERE list_contains($use_cases, use_case) AND day BETWEEN $start AND $end
GROUP BY 1, 2
QUALIFY row_number() OVER (PARTITION BY use_case ORDER BY incumbent DESC, calls DESC, key) = 1
"""

ROLLUP_PAIR_STATS_SQL = f"""
SELECT config_key AS key, sum(n), sum(quality_n), sum(quality_sum), sum(quality_sum_squares),
       sum(errors), sum(latency_sum), sum(latency_sum_squares)
FROM {CONFIG_DAY.name}
WHERE use_case = $use_case AND day BETWEEN $first AND $day AND config_key IN ($a, $b)
GROUP BY 1
"""


@dataclasses.dataclass(frozen=True)
class RegistryState:
    """What the registry says about a use case before tonight's decision."""

    base_version: int  # latest version when the plan is computed (stale-publish check)
    current_version: int | None  # the production version, None before the first publish
    production_id: str
    production_params: dict[str, Any]
    rollout: RolloutState | None
    serving_versions: dict[str, int]  # config id -> newest good version serving it (rollback)
    bootstrap_reason: str | None = None
    ended_rollouts: tuple[str, ...] = ()  # candidates whose rollout stopped or rolled back


@dataclasses.dataclass(frozen=True)
class RolloutPair:
    """Last night's sufficient statistics of incumbent (index 0) and candidate (index 1)."""

    quality: MeanStats
    errors: ProportionStats
    latency: MeanStats


@dataclasses.dataclass(frozen=True)
class UseCaseInputs:
    """One use case's slice of the night: statistics, registry state, monitoring, budget."""

    use_case: str
    lookback_start: dt.date
    metrics: SharedConfigMetrics
    night_metrics: dict[str, float | None]
    registry: RegistryState | None
    monitoring: MonitoringReport | None = None  # with this use case's report only
    budget: BudgetReport | None = None
    rollout_pair: RolloutPair | None = None
    problem: str | None = None  # set: this use case cannot be decided tonight, and why
    routing: Any = None  # tasks.allocation.routing.RoutingInputs (contextual routing, issue 12)

    def history(self, as_of: dt.date) -> pd.DataFrame:
        """Per-configuration statistics over every day up to ``as_of``."""
        return self._slice(None, as_of)

    def window(self, as_of: dt.date) -> pd.DataFrame:
        """Per-configuration statistics over the lookback window."""
        return self._slice(self.lookback_start, as_of)

    def _slice(self, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        frame = self.metrics.slice(self.use_case, start, end)
        if frame is None:
            raise KeyError(f"{self.use_case}: no shared statistics for {start}..{end}")
        return frame


def night_windows(as_of: dt.date, lookback_days: int, search_lookback_days: int) -> list[Window]:
    """The config-metrics windows tonight's strategies ask for."""
    return [
        (None, as_of),
        (as_of - dt.timedelta(days=lookback_days - 1), as_of),
        (as_of - dt.timedelta(days=search_lookback_days - 1), as_of),
    ]


def night_metrics(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], day: dt.date
) -> dict[str, dict[str, float | None]]:
    """Requests, quality, cost, p95 latency, error rate and spend per use case on ``day``.

    Read from the day's rollups (refreshed by the caller); the p95 from merged latency bins.
    """
    params = {"day": day, "use_cases": list(use_cases)}
    rows = con.execute(ROLLUP_NIGHT_METRICS_SQL, params).fetchall()
    p95 = binned_quantiles(con, ROLLUP_NIGHT_LATENCY_BINS_SQL, params, ("use_case",), 0.95)
    found = {
        row[0]: {
            n: (None if v is None else float(v))
            for n, v in zip(NIGHT_METRIC_NAMES, row[1:], strict=True)
        }
        | {"latency_p95_ms": p95.get((row[0],))}
        for row in rows
    }
    empty: dict[str, float | None] = dict.fromkeys(NIGHT_METRIC_NAMES, None) | {"requests": 0.0}
    return {uc: found.get(uc, dict(empty)) for uc in use_cases}


def bootstrap_production(
    con: duckdb.DuckDBPyConnection, use_cases: Sequence[str], start: dt.date, end: dt.date
) -> dict[str, str]:
    """The incumbent configuration per use case (absent: no traffic in the window), from the
    daily rollups."""
    rows = con.execute(
        ROLLUP_BOOTSTRAP_SQL, {"use_cases": list(use_cases), "start": start, "end": end}
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def pair_stats(
    con: duckdb.DuckDBPyConnection,
    use_case: str,
    day: dt.date,
    incumbent: str,
    candidate: str,
    *,
    nights: int = 1,
) -> RolloutPair:
    """Incumbent vs candidate over the ``nights`` days ending on ``day`` (a rollout stage's
    traffic so far): quality, error rate and latency statistics, from the daily rollups."""
    first = day - dt.timedelta(days=max(nights, 1) - 1)
    params = {"use_case": use_case, "day": day, "first": first, "a": incumbent, "b": candidate}
    rows = con.execute(ROLLUP_PAIR_STATS_SQL, params).fetchall()
    by_key = {r[0]: r for r in rows}
    empty = (None, 0, 0, 0.0, 0.0, 0, 0.0, 0.0)
    inc, cand = by_key.get(incumbent, empty), by_key.get(candidate, empty)
    col = {i: np.array([inc[i], cand[i]], dtype=float) for i in range(1, 8)}  # 0 is the key
    return RolloutPair(
        quality=MeanStats(n=col[2], sum=col[3], sum_squares=col[4]),
        errors=ProportionStats(n=col[1], successes=col[5]),
        latency=MeanStats(n=col[1], sum=col[6], sum_squares=col[7]),
    )


def rollout_from_registry(current: Any) -> RolloutState | None:
    meta = dict(current.config.metadata or {}).get("rollout")
    if not meta:
        return None
    return RolloutState(
        candidate_config_id=str(meta["candidate_config_id"]),
        incumbent_config_id=str(meta["incumbent_config_id"]),
        stage_index=int(meta.get("stage_index", 0)),
        history=tuple(meta.get("history", ())),
    )


def production_of(version: Any) -> tuple[str | None, dict[str, Any]]:
    """(config id, params) of the production arm of a registry version."""
    meta = dict(version.config.metadata or {})
    for arm in version.config.arms:
        if arm.role == "production":
            return arm.config_id or meta.get("production_config_id"), arm.params.to_dict()
    return meta.get("production_config_id"), version.config.params.to_dict()


GOOD_STATES = frozenset({"approved", "production", "retired"})


def _serving_versions(versions: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for version in sorted(versions, key=lambda v: v.version):
        config_id = production_of(version)[0]
        if version.state.value in GOOD_STATES and config_id:
            out[config_id] = int(version.version)
    return out


def _approved_configs(
    versions: Sequence[Any], observed: Mapping[str, Mapping[str, Any]]
) -> list[Any]:
    """Approved registry versions as monitoring's ApprovedConfig, with observed quality / cost."""
    from strategies.monitor.degradation import ApprovedConfig

    out: dict[str, Any] = {}
    for version in versions:
        if version.state.value not in GOOD_STATES:
            continue
        config_id, _ = production_of(version)
        seen = observed.get(str(config_id))
        if not config_id or seen is None or seen.get("quality_mean") is None:
            continue
        out[config_id] = ApprovedConfig(
            config_id=config_id,
            quality=float(seen["quality_mean"]),
            cost_per_request=float(seen["cost_mean"]),
            latency_p95_ms=float(seen["latency_p95"]),
            approved_at=version.created_at,
            is_production=version.state.value == "production",
        )
    return list(out.values())


def _read_registry(store: Any, use_case: str) -> tuple[Any | None, int, list[Any]]:
    """(production version or None, latest version number, every version) of a use case."""
    from tasks.registry.store import NotFoundError

    try:
        production = store.get(use_case, "production")
    except NotFoundError:
        production = None
    return production, int(store.latest_version(use_case)), list(store.versions_of(use_case))


def _registry_states(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    use_cases: Sequence[str],
    start: dt.date,
    as_of: dt.date,
    *,
    window: pd.DataFrame,
) -> tuple[dict[str, RegistryState], dict[str, list[Any]], dict[str, str]]:
    """Registry state per use case, its versions, and the problems of use cases left out."""
    from tasks.registry.store import RegistryStore

    store = RegistryStore.from_settings(settings, reconcile=False)  # read only; see planned_specs
    try:
        read = {use_case: _read_registry(store, use_case) for use_case in use_cases}
    finally:
        store.dispose()
    missing = [uc for uc, (production, _, _) in read.items() if production is None]
    incumbents = bootstrap_production(con, missing, start, as_of) if missing else {}
    bootstrapped = {
        uc: bootstrap_by_objective(settings, uc, window, incumbents[uc], (as_of - start).days + 1)
        for uc in missing
        if uc in incumbents
    }
    states: dict[str, RegistryState] = {}
    problems: dict[str, str] = {}
    for use_case, (production, base_version, versions) in read.items():
        serving = _serving_versions(versions)
        if production is not None:
            production_id, params = production_of(production)
            states[use_case] = RegistryState(
                base_version=base_version,
                current_version=int(production.version),
                production_id=production_id or "production",
                production_params=params,
                rollout=rollout_from_registry(production),
                serving_versions=serving,
                ended_rollouts=tuple(
                    str(c) for c in (production.config.metadata or {}).get("ended_rollouts", ())
                ),
            )
        elif use_case in bootstrapped:
            key, why = bootstrapped[use_case]
            states[use_case] = RegistryState(
                base_version=base_version,
                current_version=None,
                production_id=key,
                production_params={},
                rollout=None,
                serving_versions=serving,
                bootstrap_reason=why,
            )
        else:
            problems[use_case] = f"{use_case}: no traffic between {start} and {as_of}"
    return states, {uc: versions for uc, (_, _, versions) in read.items()}, problems


# The night's passes in order: shared statistics, registry, monitoring, budget, rollout pairs.
# size: each pass is a call; together so the number of warehouse passes is visible in one place
def aggregate_night(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    use_cases: Sequence[str],
    run_key: str,
    lookback_days: int,
    monitoring: bool = True,
    budget: bool = True,
) -> dict[str, UseCaseInputs]:
    """Every use case's inputs for tonight, from a constant number of warehouse passes.

    Monitoring runs here once for all use cases (its alerts are stored and notified once); its
    per-use-case report travels in the inputs. The rollups of every capability are refreshed
    first (only the days that changed; a no-op when the night's first step did it).
    """
    from tasks.nightly.rollup_set import ALL_SPECS
    from tasks.search.study import load_search_config

    refresh_night_rollups(con, ALL_SPECS, settings)
    start = as_of - dt.timedelta(days=lookback_days - 1)
    search_lookback = load_search_config(settings).lookback_days
    shared = SharedConfigMetrics.compute(
        con, night_windows(as_of, lookback_days, search_lookback), source="rollups"
    )
    metrics_tonight = night_metrics(con, use_cases, as_of)
    window = shared.frames[(start, as_of)]
    states, versions, problems = _registry_states(
        settings, con, use_cases, start, as_of, window=window
    )

    reports: dict[str, Any] = {}
    if monitoring and states:
        from tasks.monitoring.run import load_monitoring_config, run_monitoring

        approved = {}
        for use_case in states:
            rows = window[window["use_case"] == use_case].to_dict("records")
            observed = {str(r["config_key"]): r for r in rows}
            approved[use_case] = _approved_configs(versions[use_case], observed)
        report = run_monitoring(
            con,
            settings,
            as_of=as_of,
            run_id=run_key,
            config=load_monitoring_config(settings),
            approved_configs=approved,
            production_configs={uc: s.production_id for uc, s in states.items()},
            use_cases=list(states),
        )
        for uc_report in report.use_cases:
            reports[uc_report.use_case] = dataclasses.replace(report, use_cases=(uc_report,))

    budgets: dict[str, Any] = {}
    if budget:
        from tasks.allocation.budget import budget_report

        config = load_config("budget", settings)
        budgets = {
            r.use_case: r
            for r in budget_report(con, as_of=as_of, config=config, use_cases=list(use_cases))
        }

    out: dict[str, UseCaseInputs] = {}
    for use_case in use_cases:
        state = states.get(use_case)
        rollout = state.rollout if state is not None else None
        pair = (
            pair_stats(
                con,
                use_case,
                as_of,
                rollout.incumbent_config_id,
                rollout.candidate_config_id,
                nights=rollout.nights_at_stage,
            )
            if rollout is not None
            else None
        )
        out[use_case] = UseCaseInputs(
            use_case=use_case,
            lookback_start=start,
            metrics=shared.for_use_case(use_case),
            night_metrics=metrics_tonight[use_case],
            registry=state,
            monitoring=reports.get(use_case),
            budget=budgets.get(use_case),
            rollout_pair=pair,
            problem=problems.get(use_case),
        )
    return out


__all__ = [
    "RegistryState",
    "RolloutPair",
    "UseCaseInputs",
    "aggregate_night",
    "bootstrap_production",
    "night_metrics",
    "night_windows",
    "pair_stats",
    "production_of",
    "rollout_from_registry",
]
