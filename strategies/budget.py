"""Budget: where this month's spend is heading, and the best traffic mix a budget can buy.

Two pure computations over small arrays:

* :func:`forecast_month_spend` turns the daily spend of the month so far into a month-end
  forecast with a *prediction* interval (not a confidence interval for the mean: the unknown
  future days add their own noise). Two documented models:

  - ``"mean"`` (default): the remaining days are i.i.d. normal around the mean of the last
    ``window`` days. The sum of ``m`` future days then has variance ``m*s^2 + m^2*s^2/n`` (day
    noise plus uncertainty in the mean), with Student-t quantiles on ``n - 1`` degrees of freedom.
  - ``"trend"``: ordinary least squares ``spend = a + b*day`` on the window; the interval for the
    sum of the future days is the usual OLS prediction interval for a sum of new observations,
    ``s^2 * (m + 1' X_f (X'X)^-1 X_f' 1)`` on ``n - 2`` degrees of freedom.

  The lower bound never goes below the spend already booked.

* :func:`optimize_traffic_mix` allocates traffic shares across candidate configurations (usually
  the Pareto frontier) to maximise expected quality subject to expected monthly cost <= budget,
  a latency ceiling and a per-arm minimum share, with ``scipy.optimize.linprog(method="highs")``.
  An infeasible budget is an answer, not an exception: the cheapest admissible mix and its
  shortfall.

Example:
    >>> import numpy as np
    >>> f = forecast_month_spend(np.full(10, 100.0), days_in_month=30)
    >>> round(f.forecast_total, 6), round(f.lower, 6), round(f.upper, 6)
    (3000.0, 3000.0, 3000.0)
    >>> mix = optimize_traffic_mix(
    ...     [Candidate("cheap", 0.6, 0.001, 500.0), Candidate("good", 0.8, 0.01, 900.0)],
    ...     monthly_requests=100_000, budget=550.0, latency_ceiling_ms=None, min_share=0.0)
    >>> mix.feasible, {k: round(v, 3) for k, v in mix.weights.items()}
    (True, {'cheap': 0.5, 'good': 0.5})
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from strategies._checks import require_open_interval

__all__ = [
    "Candidate",
    "SpendForecast",
    "TrafficMix",
    "forecast_month_spend",
    "optimize_traffic_mix",
]

ForecastMethod = Literal["mean", "trend"]


@dataclass(frozen=True)
class SpendForecast:
    """Month-end spend forecast. ``lower``/``upper`` bound the month total at ``level``."""

    method: str
    level: float
    days_elapsed: int
    days_in_month: int
    window_days: int
    month_to_date: float
    daily_mean: float
    daily_sd: float
    forecast_total: float
    lower: float
    upper: float
    reason: str

    @property
    def days_remaining(self) -> int:
        return self.days_in_month - self.days_elapsed


def _checked_spend(
    daily_spend: ArrayLike, days_in_month: int, method: str, window: int, level: float
) -> np.ndarray:
    spend = np.asarray(daily_spend, dtype=float)
    if spend.ndim != 1:
        raise ValueError("daily_spend must be one-dimensional")
    if not np.all(np.isfinite(spend)) or np.any(spend < 0):
        raise ValueError("daily_spend must be finite and >= 0")
    require_open_interval("level", level, 0.0, 1.0)
    if method not in ("mean", "trend"):
        raise ValueError(f"unknown forecast method {method!r}: use 'mean' or 'trend'")
    if spend.size > days_in_month:
        raise ValueError("more elapsed days than days in the month")
    if window < 2:
        raise ValueError("window must be >= 2")
    return spend


def _trend_sum(recent: np.ndarray, elapsed: int, days_in_month: int) -> tuple[float, float, int]:
    """OLS ``spend = a + b*day`` on ``recent``: the future days' sum, its variance, the dof."""
    n = recent.size
    remaining = days_in_month - elapsed
    t = np.arange(elapsed - n, elapsed, dtype=float)
    x = np.column_stack([np.ones(n), t])
    beta, *_ = np.linalg.lstsq(x, recent, rcond=None)
    resid = recent - x @ beta
    dof = n - 2
    s2 = float(resid @ resid) / dof
    tf = np.arange(elapsed, days_in_month, dtype=float)
    xf_sum = np.array([remaining, tf.sum()])
    xtx_inv = np.linalg.inv(x.T @ x)
    # Spend cannot be negative: a falling trend is floored at zero per day.
    future = float(np.clip(beta[0] + beta[1] * tf, 0.0, None).sum())
    return future, s2 * (remaining + float(xf_sum @ xtx_inv @ xf_sum)), dof


def forecast_month_spend(
    daily_spend: ArrayLike,
    *,
    days_in_month: int,
    method: ForecastMethod = "mean",
    window: int = 14,
    level: float = 0.90,
) -> SpendForecast:
    """Forecast the month total from ``daily_spend`` (one value per elapsed day, zeros included).

    Fewer than 2 days (3 for ``trend``) cannot give an interval: the forecast then extrapolates
    the mean and the interval is unbounded above, with a reason saying so (never NaN).
    """
    spend = _checked_spend(daily_spend, days_in_month, method, window, level)
    elapsed = spend.size
    mtd = math.fsum(spend)
    remaining = days_in_month - elapsed
    recent = spend[-window:]
    n = recent.size
    mean = float(recent.mean()) if n else 0.0
    sd = float(recent.std(ddof=1)) if n >= 2 else 0.0
    base: dict[str, Any] = {
        "method": method,
        "level": level,
        "days_elapsed": elapsed,
        "days_in_month": days_in_month,
        "window_days": n,
        "month_to_date": mtd,
        "daily_mean": mean,
        "daily_sd": sd,
    }
    if remaining == 0:
        return SpendForecast(
            **base, forecast_total=mtd, lower=mtd, upper=mtd, reason="month complete"
        )
    min_n = 3 if method == "trend" else 2
    if n < min_n:
        return SpendForecast(
            **base,
            forecast_total=mtd + remaining * mean,
            lower=mtd,
            upper=math.inf,
            reason=f"only {n} day(s) of spend: no interval (need {min_n})",
        )
    if method == "mean":
        future = remaining * mean
        var_sum = sd**2 * (remaining + remaining**2 / n)
        dof = n - 1
    else:
        future, var_sum, dof = _trend_sum(recent, elapsed, days_in_month)
    half = float(stats.t.ppf(0.5 + level / 2.0, dof)) * math.sqrt(max(var_sum, 0.0))
    total = mtd + future
    return SpendForecast(
        **base,
        forecast_total=total,
        lower=max(mtd, total - half),
        upper=total + half,
        reason=f"{method} model on the last {n} days, {remaining} day(s) to go",
    )


@dataclass(frozen=True)
class Candidate:
    """A configuration that may receive traffic: mean quality, mean cost per request, p95 ms."""

    config_id: str
    quality: float
    cost_per_request: float
    latency_p95_ms: float

    def __post_init__(self) -> None:
        if not all(
            math.isfinite(v) for v in (self.quality, self.cost_per_request, self.latency_p95_ms)
        ):
            raise ValueError(f"{self.config_id}: quality, cost and latency must be finite")
        if self.cost_per_request < 0:
            raise ValueError(f"{self.config_id}: cost_per_request must be >= 0")


@dataclass(frozen=True)
class TrafficMix:
    """The allocation and its numbers; ``feasible`` is False when the budget cannot be met.

    When infeasible, ``weights`` is the cheapest admissible mix and ``shortfall`` is how much
    budget it misses by (expected cost minus budget).
    """

    feasible: bool
    status: Literal["optimal", "over_budget", "no_candidate"]
    weights: dict[str, float]
    expected_quality: float | None
    expected_monthly_cost: float | None
    budget: float
    shortfall: float
    excluded: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def _solve(
    objective: np.ndarray,
    cost: np.ndarray,
    *,
    budget_cap: float | None,
    min_share: float,
) -> np.ndarray | None:
    k = objective.size
    res = optimize.linprog(
        c=objective,
        A_ub=None if budget_cap is None else cost[None, :],
        b_ub=None if budget_cap is None else np.array([budget_cap]),
        A_eq=np.ones((1, k)),
        b_eq=np.array([1.0]),
        bounds=[(min_share, 1.0)] * k,
        method="highs",
    )
    return np.asarray(res.x, dtype=float) if res.status == 0 else None


def optimize_traffic_mix(
    candidates: Sequence[Candidate],
    *,
    monthly_requests: float,
    budget: float,
    latency_ceiling_ms: float | None,
    min_share: float,
) -> TrafficMix:
    """Shares per candidate maximising expected quality within budget and latency.

    Candidates whose p95 latency exceeds ``latency_ceiling_ms`` get no traffic (a p95 of a mix is
    not linear in the shares, so the ceiling is a per-configuration admission rule). Every
    admitted candidate keeps at least ``min_share`` of the traffic so exploration never starves;
    ``min_share`` is reduced to ``1/k`` when ``k`` admitted candidates cannot all get it.
    """
    if monthly_requests <= 0 or not math.isfinite(monthly_requests):
        raise ValueError("monthly_requests must be a positive number")
    if budget < 0 or not math.isfinite(budget):
        raise ValueError("budget must be a finite number >= 0")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError("min_share must be in [0, 1]")
    excluded: dict[str, str] = {}
    admitted: list[Candidate] = []
    for cand in candidates:
        if latency_ceiling_ms is not None and cand.latency_p95_ms > latency_ceiling_ms:
            excluded[cand.config_id] = (
                f"p95 latency {cand.latency_p95_ms:.0f} ms > ceiling {latency_ceiling_ms:.0f} ms"
            )
        else:
            admitted.append(cand)
    if not admitted:
        return TrafficMix(
            feasible=False,
            status="no_candidate",
            weights={},
            expected_quality=None,
            expected_monthly_cost=None,
            budget=budget,
            shortfall=0.0,
            excluded=excluded,
            reason="no candidate meets the latency ceiling"
            if candidates
            else "no candidates given",
        )
    k = len(admitted)
    floor = min(min_share, 1.0 / k)
    quality = np.array([c.quality for c in admitted])
    monthly_cost = np.array([c.cost_per_request for c in admitted]) * monthly_requests
    ids = [c.config_id for c in admitted]

    def mix(shares: np.ndarray, *, over_budget: bool, reason: str) -> TrafficMix:
        cost = float(shares @ monthly_cost)
        return TrafficMix(
            feasible=not over_budget,
            status="over_budget" if over_budget else "optimal",
            weights=dict(zip(ids, shares.tolist(), strict=True)),
            expected_quality=float(shares @ quality),
            expected_monthly_cost=cost,
            budget=budget,
            shortfall=cost - budget if over_budget else 0.0,
            excluded=excluded,
            reason=reason,
        )

    weights = _solve(-quality, monthly_cost, budget_cap=budget, min_share=floor)
    if weights is not None:
        why = f"best expected quality within {budget:.2f} USD/month"
        return mix(weights, over_budget=False, reason=why)
    # Over budget: the cheapest admissible mix (the floors still hold) and how far it misses.
    cheapest = _solve(monthly_cost, monthly_cost, budget_cap=None, min_share=floor)
    if cheapest is None:  # pragma: no cover - the equality-only LP is always feasible
        raise RuntimeError("linprog failed on the cheapest-mix problem")
    cost = float(cheapest @ monthly_cost)
    why = f"even the cheapest mix costs {cost:.2f} USD/month, {cost - budget:.2f} over budget"
    return mix(cheapest, over_budget=True, reason=why)
