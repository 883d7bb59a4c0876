"""Budget analysis over the warehouse: month-to-date spend, month-end forecast, traffic mix.

Entry points for the nightly flow:

* :func:`budget_report` -> one :class:`BudgetReport` per use case: spend so far this month, the
  month-end forecast with a prediction interval (:func:`strategies.budget.forecast_month_spend`)
  and the projected overrun against ``monthly_budget_usd`` from ``data/config/budget.toml``.
* :func:`budget_traffic_mix` -> the quality-maximising mix of candidate configurations under the
  budget (:func:`strategies.budget.optimize_traffic_mix`). Candidates come from the caller (the
  Pareto frontier when it was computed) or from :func:`candidates_from_warehouse`.
* :func:`use_case_traffic_mix` ties the two together for one use case.

Only daily spend sums per use case and the shared per-configuration aggregates
(:func:`tasks.warehouse.config_metrics.config_metrics`) leave DuckDB. The daily spend comes from
the daily rollup :data:`tasks.allocation.rollups.ALLOCATION_CELLS` when it is current (the night
never scans the month's raw rows for it), else from ``usage_logs``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import duckdb
import numpy as np

from strategies.budget import (
    Candidate,
    SpendForecast,
    TrafficMix,
    forecast_month_spend,
    optimize_traffic_mix,
)
from tasks.allocation.rollups import ALLOCATION_CELLS, Source, use_rollups
from tasks.warehouse.config_metrics import config_metrics
from tasks.warehouse.connection import require_connection
from tasks.warehouse.queries import latest_day

__all__ = [
    "BudgetReport",
    "UseCaseTrafficMix",
    "budget_report",
    "budget_traffic_mix",
    "candidates_from_frontier",
    "candidates_from_warehouse",
    "latest_day",
    "use_case_settings",
    "use_case_traffic_mix",
]

DEFAULTS: dict[str, Any] = {
    "forecast_method": "mean",
    "forecast_window_days": 14,
    "forecast_level": 0.90,
    "latency_ceiling_ms": None,
    "min_exploration_share": 0.0,
    "min_candidate_requests": 100,
    "monthly_budget_usd": None,
}

DAILY_SPEND_SQL = """
SELECT use_case, day, sum(cost_usd) AS spend, count(*) AS requests
FROM usage_logs
WHERE day BETWEEN $start AND $end AND ($use_case IS NULL OR use_case = $use_case)
GROUP BY ALL
ORDER BY use_case, day
"""

DAILY_SPEND_ROLLUP_SQL = f"""
SELECT use_case, day, sum(cost_all) AS spend, CAST(sum(rows) AS BIGINT) AS requests
FROM {ALLOCATION_CELLS.name}
WHERE day BETWEEN $start AND $end AND ($use_case IS NULL OR use_case = $use_case)
GROUP BY ALL
ORDER BY use_case, day
"""


def use_case_settings(config: Mapping[str, Any], use_case: str) -> dict[str, Any]:
    """``[defaults]`` overlaid by ``[use_cases.<use_case>]`` (built-in defaults underneath)."""
    merged = dict(DEFAULTS)
    merged.update(config.get("defaults", {}))
    merged.update(config.get("use_cases", {}).get(use_case, {}))
    return merged


@dataclass(frozen=True)
class BudgetReport:
    """Spend so far and where the month is heading for one use case."""

    use_case: str
    month: str
    as_of: dt.date
    status: Literal["on_track", "at_risk", "over_budget", "no_budget", "no_data"]
    month_to_date_usd: float
    requests_to_date: int
    projected_monthly_requests: float
    budget_usd: float | None
    projected_overrun_usd: float | None
    forecast: SpendForecast | None
    reasons: tuple[str, ...] = field(default=())


def _status(forecast: SpendForecast, budget: float | None) -> tuple[str, str]:
    if budget is None:
        return "no_budget", "no monthly_budget_usd configured"
    if forecast.lower > budget:
        return "over_budget", (
            f"even the low end of the forecast ({forecast.lower:.2f}) exceeds the budget "
            f"{budget:.2f} USD"
        )
    if forecast.upper > budget:
        return "at_risk", (
            f"the forecast interval [{forecast.lower:.2f}, {forecast.upper:.2f}] reaches past "
            f"the budget {budget:.2f} USD"
        )
    return "on_track", f"forecast up to {forecast.upper:.2f} USD stays within {budget:.2f} USD"


def _no_data(name: str, as_of: dt.date, budget: float | None, start: dt.date) -> BudgetReport:
    return BudgetReport(
        name,
        f"{as_of:%Y-%m}",
        as_of,
        "no_data",
        0.0,
        0,
        0.0,
        budget,
        None,
        None,
        (f"no calls logged between {start} and {as_of}",),
    )


def budget_report(
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    config: Mapping[str, Any],
    use_cases: Sequence[str] | None = None,
    source: Source = "auto",
) -> list[BudgetReport]:
    """Month-to-date spend and month-end forecast per use case, for the month of ``as_of``.

    ``as_of`` is the last complete UTC day counted. Days without calls count as zero spend from
    the first day the use case appears this month (a feature launched mid-month is forecast from
    its launch, not from the 1st). Use cases configured in ``budget.toml`` but silent this month
    are reported with status ``no_data``.

    Args:
        con: the warehouse.
        as_of: the last day counted.
        config: the parsed ``budget.toml``.
        use_cases: the use cases to report (default: every one with calls or a budget).
        source: daily spend from the rollups (``"rollups"``), a scan of ``usage_logs``
            (``"usage_logs"``) or ``"auto"`` (the rollups when they are current).

    Returns:
        One report per use case.
    """
    start = as_of.replace(day=1)
    days_in_month = calendar.monthrange(as_of.year, as_of.month)[1]
    sql = DAILY_SPEND_ROLLUP_SQL if use_rollups(con, source) else DAILY_SPEND_SQL
    rows = con.execute(sql, {"start": start, "end": as_of, "use_case": None}).fetchall()
    by_use_case: dict[str, dict[dt.date, tuple[float, int]]] = {}
    for use_case, day, spend, requests in rows:
        by_use_case.setdefault(use_case, {})[day] = (float(spend), int(requests))
    names = (
        list(use_cases)
        if use_cases is not None
        else sorted(set(by_use_case) | set(config.get("use_cases", {})))
    )
    reports: list[BudgetReport] = []
    for name in names:
        opts = use_case_settings(config, name)
        budget = opts["monthly_budget_usd"]
        budget = None if budget is None else float(budget)
        days = by_use_case.get(name, {})
        if not days:
            reports.append(_no_data(name, as_of, budget, start))
            continue
        first = min(days)
        span = (as_of - first).days + 1
        daily = np.array([days.get(first + dt.timedelta(d), (0.0, 0))[0] for d in range(span)])
        requests = sum(r for _, r in days.values())
        month_days_active = days_in_month - (first - start).days
        forecast = forecast_month_spend(
            daily,
            days_in_month=month_days_active,
            method=opts["forecast_method"],
            window=int(opts["forecast_window_days"]),
            level=float(opts["forecast_level"]),
        )
        status, why = _status(forecast, budget)
        overrun = None if budget is None else max(forecast.forecast_total - budget, 0.0)
        reasons = [forecast.reason, why]
        if first > start:
            reasons.insert(0, f"first call this month on {first}: forecast from that day")
        reports.append(
            BudgetReport(
                use_case=name,
                month=f"{as_of:%Y-%m}",
                as_of=as_of,
                status=status,  # type: ignore[arg-type]
                month_to_date_usd=forecast.month_to_date,
                requests_to_date=requests,
                projected_monthly_requests=requests / span * month_days_active,
                budget_usd=budget,
                projected_overrun_usd=overrun,
                forecast=forecast,
                reasons=tuple(reasons),
            )
        )
    return reports


def candidates_from_warehouse(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date | None,
    end: dt.date | None,
    min_requests: int = 100,
) -> tuple[list[Candidate], dict[str, str]]:
    """Every configuration with enough logged calls and a quality score, as budget candidates.

    Returns the candidates and, for the configurations left out, why (never a silent drop).
    """
    frame = config_metrics(con, use_case=use_case, start=start, end=end)
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    for row in frame.itertuples(index=False):
        key = str(row.config_key)
        if row.n < min_requests:
            skipped[key] = f"only {row.n} request(s) (< {min_requests})"
        elif not math.isfinite(float(row.quality_mean)):
            skipped[key] = "no quality scores logged"
        else:
            candidates.append(
                Candidate(
                    key, float(row.quality_mean), float(row.cost_mean), float(row.latency_p95)
                )
            )
    return candidates, skipped


class FrontierPointLike(Protocol):
    """What :func:`candidates_from_frontier` reads (``strategies.frontier.FrontierPoint``)."""

    @property
    def config_key(self) -> str: ...
    @property
    def quality(self) -> float: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def latency_p95_ms(self) -> float: ...
    @property
    def on_frontier(self) -> bool: ...


def candidates_from_frontier(points: Sequence[FrontierPointLike]) -> list[Candidate]:
    """Budget candidates from the Pareto frontier's points (only those on the frontier).

    Dominated configurations never belong in a quality-maximising mix at equal or higher cost,
    so restricting to the frontier loses nothing and keeps the LP small.
    """
    return [
        Candidate(p.config_key, float(p.quality), float(p.cost_usd), float(p.latency_p95_ms))
        for p in points
        if p.on_frontier
        and all(math.isfinite(float(v)) for v in (p.quality, p.cost_usd, p.latency_p95_ms))
    ]


def budget_traffic_mix(
    candidates: Sequence[Candidate],
    *,
    monthly_requests: float,
    budget: float,
    latency_ceiling: float | None,
    min_exploration: float,
) -> TrafficMix:
    """Shares maximising expected quality with expected monthly cost <= ``budget``.

    ``min_exploration`` is the share every admitted candidate keeps; ``latency_ceiling`` (ms,
    p95) admits candidates. An unaffordable budget returns ``feasible=False`` with the cheapest
    mix and its shortfall.
    """
    return optimize_traffic_mix(
        candidates,
        monthly_requests=monthly_requests,
        budget=budget,
        latency_ceiling_ms=latency_ceiling,
        min_share=min_exploration,
    )


@dataclass(frozen=True)
class UseCaseTrafficMix:
    """The traffic mix for one use case, with the inputs it was computed from."""

    use_case: str
    status: Literal["ok", "cannot_analyse"]
    reasons: tuple[str, ...]
    monthly_requests: float | None = None
    budget_usd: float | None = None
    candidates: tuple[Candidate, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    mix: TrafficMix | None = None


def use_case_traffic_mix(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str,
    as_of: dt.date,
    config: Mapping[str, Any],
    window_days: int = 14,
    candidates: Sequence[Candidate] | None = None,
    report: BudgetReport | None = None,
) -> UseCaseTrafficMix:
    """Budget mix for one use case: candidates (given, or from the last ``window_days``) and
    the projected monthly request volume from :func:`budget_report`."""
    opts = use_case_settings(config, use_case)
    if opts["monthly_budget_usd"] is None:
        return UseCaseTrafficMix(use_case, "cannot_analyse", ("no monthly_budget_usd configured",))
    budget = float(opts["monthly_budget_usd"])
    if report is None:
        report = budget_report(
            require_connection(con, "budget report"),
            as_of=as_of,
            config=config,
            use_cases=[use_case],
        )[0]
    if report.projected_monthly_requests <= 0:
        return UseCaseTrafficMix(
            use_case,
            "cannot_analyse",
            ("no requests this month to size the mix",),
            budget_usd=budget,
        )
    skipped: dict[str, str] = {}
    if candidates is None:
        start = as_of - dt.timedelta(days=window_days - 1)
        found, skipped = candidates_from_warehouse(
            require_connection(con, "budget candidates"),
            use_case=use_case,
            start=start,
            end=as_of,
            min_requests=int(opts["min_candidate_requests"]),
        )
        candidates = found
    if not candidates:
        return UseCaseTrafficMix(
            use_case,
            "cannot_analyse",
            ("no candidate configuration",),
            report.projected_monthly_requests,
            budget,
            (),
            skipped,
        )
    ceiling = opts["latency_ceiling_ms"]
    mix = budget_traffic_mix(
        candidates,
        monthly_requests=report.projected_monthly_requests,
        budget=budget,
        latency_ceiling=None if ceiling is None else float(ceiling),
        min_exploration=float(opts["min_exploration_share"]),
    )
    return UseCaseTrafficMix(
        use_case,
        "ok",
        (mix.reason,),
        report.projected_monthly_requests,
        budget,
        tuple(candidates),
        skipped,
        mix,
    )
