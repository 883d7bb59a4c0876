"""Allocation rollups: per use case x day x context x configuration x propensity sums.

Why: the nightly routing inputs (:mod:`tasks.allocation.context_stats`), the budget's daily spend
(:mod:`tasks.allocation.budget`), the bandit's feedback counts and the off-policy sums
(:mod:`tasks.allocation.offpolicy`) all aggregate the raw rows of a window. Every one of them is a
sum over rows of a function of (context, configuration, propensity, quality, cost, latency,
error, feedback), so one daily rollup keyed by the discrete inputs serves them all, and a night
refreshes only the days that changed (:func:`tasks.warehouse.rollups.refresh_rollups`).

Sufficient statistics (exact up to floating-point summation order):

* Router statistics per context value x arm: counts and sums / sums of squares of quality,
  cost, latency and errors: sums of the group sums.
* Off-policy importance weights: within a group the propensity ``p`` is one value, so
  ``sum(1/p) = n/p``, ``sum(r/p) = (sum r)/p``, ``sum(1/p^2) = n/p^2``,
  ``sum(r/p^2) = (sum r)/p^2``, ``sum(r^2/p^2) = (sum r^2)/p^2``, ``max(1/p) = 1/p``. The
  doubly-robust per-row term is a function of (context, arm, propensity, reward), so these sums
  per (context, arm, propensity) are exact for IPS, SNIPS and DR and their variances.
* The routing reward is linear in the row's (quality, cost, latency, error) with coefficients
  the objective sets at night (not known when the rollup is built): the rollup keeps the first
  moments and every second moment and cross-product of the four, so ``sum r`` and ``sum r^2``
  follow for any coefficients (``r^2 = sum_ij w_i w_j x_i x_j``).
* Profiles (filled / distinct values of a context column) and the counts of rows without a
  usable propensity or quality: the columns and the propensity are in the key, the quality
  filter is a count.

Context columns: the four canonical ones (``task_type``, ``user_segment``, ``language``,
``region``) are in the key jointly, so any one column's cells are a sum over the others. A
``metadata.<key>`` column or the LinUCB features ``input_bucket`` / ``hour_bucket`` are not in
the rollup: readers asked for them scan ``usage_logs`` as before (the CLI only; the nightly
defaults use the canonical columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import duckdb

from tasks.experiments.rollups import rollups_current
from tasks.warehouse.rollup_specs import CONFIG_KEY_SQL
from tasks.warehouse.rollups import RollupSpec

__all__ = [
    "ALLOCATION_CELLS",
    "ALLOCATION_SPECS",
    "CONTEXT_COLUMNS",
    "FEEDBACK_ROLLUP_SQL",
    "MOMENTS",
    "Source",
    "moment_column",
    "reward_sums_sql",
    "use_rollups",
]

Source = Literal["auto", "rollups", "usage_logs"]

CONTEXT_COLUMNS: tuple[str, ...] = ("task_type", "user_segment", "language", "region")

# the four per-row quantities of the routing reward (rows with a quality score only; an errored
# call scores quality 0)
_QUALITY = "CASE WHEN status = 'error' THEN 0.0 ELSE quality END"
_ROW_TERMS: dict[str, str] = {
    "q": _QUALITY,
    "c": "coalesce(cost_usd, 0.0)",
    "l": "latency_ms",
    "e": "CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END",
}
MOMENTS: tuple[str, ...] = tuple(_ROW_TERMS)


def moment_column(a: str, b: str | None = None) -> str:
    """The rollup column of ``sum(a)`` or ``sum(a * b)`` (order of ``a``, ``b`` irrelevant).

    Args:
        a: one of :data:`MOMENTS`.
        b: another (or the same) for a second moment; ``None`` for the first moment.

    Returns:
        The column name, e.g. ``s_q`` or ``s_c_l``.
    """
    if b is None:
        return f"s_{a}"
    i, j = sorted((MOMENTS.index(a), MOMENTS.index(b)))
    return f"s_{MOMENTS[i]}_{MOMENTS[j]}"


_PAIRS = [(a, b) for i, a in enumerate(MOMENTS) for b in MOMENTS[i:]]


def _cells_select(source: str) -> str:
    firsts = ",\n            ".join(
        f"fsum({expr}) FILTER (WHERE ({_QUALITY}) IS NOT NULL) AS {moment_column(m)}"
        for m, expr in _ROW_TERMS.items()
    )
    seconds = ",\n            ".join(
        f"fsum(({_ROW_TERMS[a]}) * ({_ROW_TERMS[b]})) FILTER (WHERE ({_QUALITY}) IS NOT NULL) "
        f"AS {moment_column(a, b)}"
        for a, b in _PAIRS
    )
    return f"""
        SELECT use_case, day, {CONFIG_KEY_SQL} AS arm, {", ".join(CONTEXT_COLUMNS)}, propensity,
            count(*) AS rows, sum(cost_usd) AS cost_all,
            count(*) FILTER (WHERE status = 'success') AS successes,
            count(*) FILTER (WHERE feedback = 1) AS feedback_pos,
            count(*) FILTER (WHERE feedback IN (-1, 0)) AS feedback_other,
            count(*) FILTER (WHERE ({_QUALITY}) IS NOT NULL) AS q_rows,
            {firsts},
            {seconds}
        FROM {source}
        GROUP BY ALL
    """


_MOMENT_COLUMNS = ", ".join(
    [f"{moment_column(m)} DOUBLE" for m in MOMENTS]
    + [f"{moment_column(a, b)} DOUBLE" for a, b in _PAIRS]
)

ALLOCATION_CELLS = RollupSpec(
    name="rollup_allocation_cells",
    columns_sql=f"""
        use_case VARCHAR NOT NULL, day DATE NOT NULL, arm VARCHAR NOT NULL,
        task_type VARCHAR, user_segment VARCHAR, language VARCHAR, region VARCHAR,
        propensity DOUBLE, rows BIGINT NOT NULL, cost_all DOUBLE, successes BIGINT NOT NULL,
        feedback_pos BIGINT NOT NULL, feedback_other BIGINT NOT NULL, q_rows BIGINT NOT NULL,
        {_MOMENT_COLUMNS}
    """,
    key=("use_case", "day", "arm", *CONTEXT_COLUMNS, "propensity"),
    select=_cells_select,
)

ALLOCATION_SPECS: tuple[RollupSpec, ...] = (ALLOCATION_CELLS,)

# the bandit's feedback counts per configuration (tasks.allocation.bandits.FEEDBACK_SQL)
FEEDBACK_ROLLUP_SQL = f"""
SELECT arm AS config_key,
       CAST(sum(feedback_pos) AS BIGINT) AS positives,
       CAST(sum(feedback_other) AS BIGINT) AS others
FROM {ALLOCATION_CELLS.name}
WHERE use_case = $use_case AND day BETWEEN $start AND $end
GROUP BY ALL
"""


def reward_sums_sql(coefficients: Sequence[float]) -> tuple[str, str]:
    """SQL of ``sum r`` and ``sum r^2`` of one rollup row for a linear reward.

    Args:
        coefficients: the weights of (quality, cost, latency, error), as
            :meth:`strategies.routing.RoutingObjective.coefficients_of` returns them.

    Returns:
        ``(sum_r, sum_r2)`` expressions over the rollup's moment columns (NULL-safe).
    """
    w = dict(zip(MOMENTS, (float(c) for c in coefficients), strict=True))
    first = " + ".join(f"{w[m]!r} * coalesce({moment_column(m)}, 0.0)" for m in MOMENTS)
    second = " + ".join(
        f"{(w[a] * w[b] * (1.0 if a == b else 2.0))!r} * coalesce({moment_column(a, b)}, 0.0)"
        for a, b in _PAIRS
    )
    return f"({first})", f"({second})"


def use_rollups(
    con: duckdb.DuckDBPyConnection, source: Source, columns: Sequence[str] = ()
) -> bool:
    """Whether a reader reads :data:`ALLOCATION_CELLS` instead of ``usage_logs``.

    Args:
        con: the warehouse.
        source: ``"rollups"``, ``"usage_logs"`` or ``"auto"`` (the rollups when current and
            every requested context column is in them).
        columns: the context columns the reader needs.

    Returns:
        ``True`` for the rollup path.

    Raises:
        ValueError: ``source="rollups"`` with a context column the rollup does not hold.
    """
    outside = [c for c in columns if c not in CONTEXT_COLUMNS]
    if source == "usage_logs":
        return False
    if source == "rollups":
        if outside:
            raise ValueError(f"context columns {outside} are not in {ALLOCATION_CELLS.name}")
        return True
    return not outside and rollups_current(con, ALLOCATION_SPECS)
