"""Bandit traffic weights from the warehouse: batch Thompson sampling and per-context LinUCB.

Entry points for the nightly flow:

* :func:`bandit_allocation` -> :class:`BanditAllocation`: per configuration of a use case, the
  posterior probability of being best and tomorrow's weight (with a floor), from the shared
  per-configuration aggregates of the last ``window_days``.
* :func:`contextual_allocation` -> :class:`ContextualAllocation`: per context cell (task type,
  segment, input-length bucket, hour bucket) the LinUCB scores and weights; the per arm x cell
  counts and reward sums are aggregated in DuckDB.
* :func:`objective_exploration` -> :class:`strategies.exploration.ExplorationWeights`: how the
  exploration budget is shared, on the use case's objective (clearly worse candidates dropped,
  proven better ones flagged for promotion).
* :func:`simulator_regret` -> :class:`SimulatedRegret`: a replay of nights against the simulated
  world's true mean qualities, Thompson beside uniform (the figures in the README).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import pandas as pd

from strategies.bandits import (
    ArmStats,
    BernoulliStats,
    CellStats,
    GaussianStats,
    LinUCB,
    ThompsonSampling,
    apply_floor,
)
from strategies.exploration import ExplorationWeights, exploration_weights
from strategies.objective import Objective
from strategies.search import ConfigStats
from tasks.allocation.rollups import FEEDBACK_ROLLUP_SQL, use_rollups
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL, SharedConfigMetrics, config_metrics
from tasks.warehouse.connection import require_connection

__all__ = [
    "CONTEXT_FEATURES",
    "BanditAllocation",
    "BanditArm",
    "CellAllocation",
    "ContextualAllocation",
    "bandit_allocation",
    "contextual_allocation",
    "objective_exploration",
]

Reward = Literal["quality", "success", "feedback"]

# Context features LinUCB may use: name -> SQL expression over usage_logs (never user input).
CONTEXT_FEATURES: dict[str, str] = {
    "task_type": "coalesce(task_type, 'unknown')",
    "user_segment": "coalesce(user_segment, 'unknown')",
    "region": "coalesce(region, 'unknown')",
    "language": "coalesce(language, 'unknown')",
    "input_bucket": (
        "CASE WHEN input_tokens < 500 THEN 'short' "
        "WHEN input_tokens < 2000 THEN 'medium' ELSE 'long' END"
    ),
    "hour_bucket": (
        "CASE WHEN extract(hour FROM ts AT TIME ZONE 'UTC') < 6 THEN '00-05' "
        "WHEN extract(hour FROM ts AT TIME ZONE 'UTC') < 12 THEN '06-11' "
        "WHEN extract(hour FROM ts AT TIME ZONE 'UTC') < 18 THEN '12-17' ELSE '18-23' END"
    ),
}

# Reward per row: (count expression, sum expression).
_REWARD_SQL: dict[str, tuple[str, str]] = {
    "quality": ("count(quality)", "coalesce(sum(quality), 0)"),
    "success": ("count(*)", "count(*) FILTER (WHERE status = 'success')"),
    "feedback": ("count(feedback)", "count(*) FILTER (WHERE feedback = 1)"),
}

FEEDBACK_SQL = f"""
SELECT {CONFIG_KEY_SQL} AS config_key,
       count(*) FILTER (WHERE feedback = 1) AS positives,
       count(*) FILTER (WHERE feedback IN (-1, 0)) AS others
FROM usage_logs
WHERE use_case = $use_case AND day BETWEEN $start AND $end
GROUP BY ALL
"""


@dataclass(frozen=True)
class BanditArm:
    config_id: str
    n: int
    reward_mean: float | None
    probability_best: float
    weight: float


@dataclass(frozen=True)
class BanditAllocation:
    """Tomorrow's Thompson weights for one use case, or ``cannot_analyse`` with the reason."""

    use_case: str
    as_of: dt.date
    window_start: dt.date
    reward: str
    status: Literal["ok", "cannot_analyse"]
    reasons: tuple[str, ...]
    arms: tuple[BanditArm, ...] = ()
    floor: float = 0.0
    seed: int | None = None
    draws: int = 0

    def weights(self) -> dict[str, float]:
        return {arm.config_id: arm.weight for arm in self.arms}


def _floor_refusal(floor: float, arms: int) -> str | None:
    """Why a traffic floor per arm cannot be honoured, or ``None`` when it can."""
    if floor * arms > 1.0:
        return f"floor {floor} x {arms} arms exceeds 100% of the traffic"
    return None


def _arm_stats(
    con: duckdb.DuckDBPyConnection | None,
    use_case: str,
    start: dt.date,
    end: dt.date,
    reward: str,
    *,
    shared: SharedConfigMetrics | None = None,
) -> list[tuple[str, int, ArmStats]]:
    if reward == "feedback":
        con = require_connection(con, "feedback rewards")
        sql = FEEDBACK_ROLLUP_SQL if use_rollups(con, "auto") else FEEDBACK_SQL  # rollup: current
        rows = con.execute(sql, {"use_case": use_case, "start": start, "end": end})
        return [
            (str(key), int(pos + oth), BernoulliStats(float(pos), float(oth)))
            for key, pos, oth in sorted(rows.fetchall())
        ]
    frame = config_metrics(con, use_case=use_case, start=start, end=end, shared=shared)
    out: list[tuple[str, int, ArmStats]] = []
    for row in frame.itertuples(index=False):
        stats: ArmStats
        if reward == "quality":
            stats = GaussianStats(
                float(row.quality_n), float(row.quality_sum), float(row.quality_sum_squares)
            )
            n = int(row.quality_n)
        else:
            stats = BernoulliStats(float(row.successes), float(row.n - row.successes))
            n = int(row.n)
        out.append((str(row.config_key), n, stats))
    return out


def _window_fields(use_case: str, as_of: dt.date, window_days: int, reward: str) -> dict[str, Any]:
    """What every allocation result starts with: the use case, the window and the reward."""
    return {
        "use_case": use_case,
        "as_of": as_of,
        "window_start": as_of - dt.timedelta(days=window_days - 1),
        "reward": reward,
    }


def bandit_allocation(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str,
    as_of: dt.date,
    window_days: int = 14,
    floor: float = 0.02,
    seed: int | None = 0,
    reward: Reward = "quality",
    draws: int = 20_000,
    shared: SharedConfigMetrics | None = None,
) -> BanditAllocation:
    """Thompson-sampling weights over the configurations logged in ``[as_of - window + 1, as_of]``.

    ``reward``: ``quality`` (Gaussian posterior of mean quality), ``success`` or ``feedback``
    (Beta-Bernoulli on the success rate / the share of positive feedback). Arms with no reward
    observation keep their prior (they are explored, not dropped). ``shared`` serves the
    window's statistics when the night computed them already.
    """
    if reward not in _REWARD_SQL:
        raise ValueError(f"unknown reward {reward!r}; use one of {sorted(_REWARD_SQL)}")
    base = _window_fields(use_case, as_of, window_days, reward)
    start = base["window_start"]
    arms = _arm_stats(con, use_case, start, as_of, reward, shared=shared)
    if not arms:
        return BanditAllocation(
            **base, status="cannot_analyse", reasons=(f"no calls logged in {start}..{as_of}",)
        )
    if len(arms) == 1:
        key = arms[0][0]
        return BanditAllocation(
            **base,
            status="cannot_analyse",
            reasons=(f"only one configuration ({key}) logged: nothing to allocate",),
        )
    if (refusal := _floor_refusal(floor, len(arms))) is not None:
        return BanditAllocation(**base, status="cannot_analyse", reasons=(refusal,))
    sampler = ThompsonSampling(floor=floor, draws=draws, seed=seed)
    stats_list = [s for _, _, s in arms]
    p_best = sampler.probability_best(stats_list)
    weights = apply_floor(p_best, floor)
    out = tuple(
        BanditArm(
            key,
            n,
            None if not math.isfinite(stats.mean) else float(stats.mean),
            float(p),
            float(w),
        )
        for (key, n, stats), p, w in zip(arms, p_best, weights, strict=True)
    )
    leader = max(out, key=lambda a: a.probability_best)
    return BanditAllocation(
        **base,
        status="ok",
        reasons=(
            f"{leader.config_id} is best with probability {leader.probability_best:.1%}",
            f"{len(out)} arms, floor {floor:.1%} each, {draws} posterior draws",
        ),
        arms=out,
        floor=floor,
        seed=seed,
        draws=draws,
    )


@dataclass(frozen=True)
class CellAllocation:
    cell: dict[str, str]
    n: int
    weights: dict[str, float]
    scores: dict[str, float]
    chosen: str


@dataclass(frozen=True)
class ContextualAllocation:
    """Per-context LinUCB weights for one use case."""

    use_case: str
    as_of: dt.date
    window_start: dt.date
    reward: str
    features: tuple[str, ...]
    status: Literal["ok", "cannot_analyse"]
    reasons: tuple[str, ...]
    arms: tuple[str, ...] = ()
    cells: tuple[CellAllocation, ...] = ()
    alpha: float = 1.0
    floor: float = 0.0
    details: dict[str, float] = field(default_factory=dict)


def cell_stats(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date,
    end: dt.date,
    features: Sequence[str],
    reward: Reward = "quality",
) -> list[CellStats]:
    """Count and reward sum per arm x context cell, aggregated in DuckDB."""
    unknown = [f for f in features if f not in CONTEXT_FEATURES]
    if unknown:
        raise ValueError(f"unknown context feature(s) {unknown}; use {sorted(CONTEXT_FEATURES)}")
    if reward not in _REWARD_SQL:
        raise ValueError(f"unknown reward {reward!r}")
    count_sql, sum_sql = _REWARD_SQL[reward]
    selects = ", ".join(f"{CONTEXT_FEATURES[f]} AS f{i}" for i, f in enumerate(features))
    sql = f"""
        SELECT {CONFIG_KEY_SQL} AS arm{", " + selects if selects else ""},
               {count_sql} AS n, {sum_sql} AS reward_sum
        FROM usage_logs
        WHERE use_case = $use_case AND day BETWEEN $start AND $end
        GROUP BY ALL
        HAVING {count_sql} > 0
        ORDER BY ALL
    """
    rows = con.execute(sql, {"use_case": use_case, "start": start, "end": end}).fetchall()
    k = len(features)
    return [
        CellStats(
            arm=str(row[0]),
            features=tuple(zip(features, (str(v) for v in row[1 : 1 + k]), strict=True)),
            n=float(row[1 + k]),
            reward_sum=float(row[2 + k]),
        )
        for row in rows
    ]


def contextual_allocation(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    as_of: dt.date,
    window_days: int = 14,
    features: Sequence[str] = ("task_type", "user_segment"),
    alpha: float = 1.0,
    floor: float = 0.02,
    reward: Reward = "quality",
) -> ContextualAllocation:
    """LinUCB weights per context cell seen in the window (one-hot features + intercept)."""
    base = {**_window_fields(use_case, as_of, window_days, reward), "features": tuple(features)}
    start = base["window_start"]
    cells = cell_stats(
        con, use_case=use_case, start=start, end=as_of, features=features, reward=reward
    )
    arms = sorted({c.arm for c in cells})
    if len(arms) < 2:
        return ContextualAllocation(
            **base,
            status="cannot_analyse",
            reasons=(f"{len(arms)} configuration(s) with rewards in {start}..{as_of}",),
        )
    if (refusal := _floor_refusal(floor, len(arms))) is not None:
        return ContextualAllocation(**base, status="cannot_analyse", reasons=(refusal,))
    result = LinUCB(alpha=alpha, floor=floor).allocate(cells)
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for c in cells:
        key = tuple(sorted(c.features))
        counts[key] = counts.get(key, 0.0) + c.n
    out = tuple(
        CellAllocation(
            cell=dict(cell),
            n=int(counts.get(tuple(sorted(cell)), 0.0)),
            weights=dict(zip(result.arms, w, strict=True)),
            scores=dict(zip(result.arms, s, strict=True)),
            chosen=chosen,
        )
        for cell, w, s, chosen in zip(
            result.cells, result.weights, result.scores, result.chosen, strict=True
        )
    )
    distinct = sorted({c.chosen for c in out})
    return ContextualAllocation(
        **base,
        status="ok",
        reasons=(f"{len(out)} context cells, {len(arms)} arms; chosen arms: {distinct}",),
        arms=tuple(result.arms),
        cells=out,
        alpha=alpha,
        floor=floor,
    )


def objective_exploration(
    objective: Objective,
    window: pd.DataFrame,
    *,
    production_id: str,
    candidates: Sequence[str],
    seed: int = 0,
) -> ExplorationWeights:
    """Exploration weights on the use case's objective from the window's per-config statistics.

    Args:
        objective: the use case's objective (value and standard error per configuration).
        window: per-configuration rows of :func:`config_metrics` (the night's shared window).
        production_id: production's config key.
        candidates: exploration candidates (search proposals, exploration arms).
        seed: posterior-draw seed.

    Returns:
        :class:`strategies.exploration.ExplorationWeights`; a candidate without enough data to be
        scored keeps the neutral weight of an untried arm. Without a scorable production, every
        candidate is untried (nothing can be shown worse).
    """
    scores = {
        str(row["config_key"]): objective.score(ConfigStats.from_row(row))
        for row in window.to_dict("records")
    }

    def posterior(key: str) -> tuple[float, float] | None:
        score = scores.get(key)
        if score is None or score.status != "ok":
            return None
        return score.value, score.se

    prod = posterior(production_id)
    if prod is None:
        return exploration_weights(production=(0.0, math.inf), candidates=dict.fromkeys(candidates))
    return exploration_weights(
        production=prod,
        candidates={c: posterior(c) for c in candidates if c != production_id},
        confidence=objective.level,
        seed=seed,
    )
