"""Stored daily increments of the experiment statistics: a night recomputes only changed days.

Why: :data:`tasks.experiments.rollups.STATS_ROLLUP_SQL` reads rollups instead of raw rows, but it
still re-runs every unit's running totals over every unit-day of every experiment each night, a
cost that grows with the experiment's age, not with the new day. The statement's *daily
increments* (``daily`` in :data:`tasks.experiments.sql.STATS_SQL_TEMPLATE`) of day ``d`` depend
on each unit's rows of days ``<= d`` only, so they are stored (``experiment_increments``) and a
night recomputes them from the earliest changed day ``d0`` of each experiment on: the window
runs over the days from ``d0`` only, and each unit's totals before ``d0`` (``prefix`` in
:func:`tasks.experiments.sql.stats_sql`) are its cumulative totals
(:mod:`tasks.experiments.unit_totals`, one row per unit) minus its unit-days from ``d0`` on, so
a night reads the units and the changed days, not every older unit-day. The looks then
cumulate the stored increments (:data:`LOOKS_SQL`), which is the last step of the full
statement. Same numbers: integer counts are exact, double sums differ
from the full window only in summation order (tests: 1e-9 relative, observed ulps).

Which days changed: the rolled-up raw row count per (use_case, day) (``rollup_coverage``, kept
by :func:`tasks.warehouse.rollups.refresh_rollups`) differs from the one the increments were
last computed from (``experiment_increments_pairs``). Like the rollups themselves, this sees
appended and deleted rows, not a raw row updated in place (refresh with ``full=True`` then).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from tasks.experiments.rollups import EXPERIMENT_UNITS, UNIT_SUMS_ROLLUP_SQL, UNIT_TOTALS
from tasks.experiments.sql import LOOKS_SELECT_TEMPLATE, stats_sql
from tasks.experiments.unit_totals import SUM_COLUMNS
from tasks.warehouse.rollups import COVERAGE_SPEC

__all__ = [
    "INCREMENTS_SCHEMA",
    "LOOKS_SQL",
    "IncrementsReport",
    "refresh_increments",
]

INCREMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment_increments (
    experiment_id VARCHAR NOT NULL, variant_id VARCHAR NOT NULL, metric VARCHAR NOT NULL,
    day DATE NOT NULL, n_new BIGINT NOT NULL, num_sum DOUBLE, num_sum_squares DOUBLE,
    den_sum DOUBLE, den_sum_squares DOUBLE, sum_products DOUBLE, max_den DOUBLE
);
CREATE TABLE IF NOT EXISTS experiment_increments_pairs (
    use_case VARCHAR NOT NULL, day DATE NOT NULL, n BIGINT NOT NULL
);
"""

_UNITS = EXPERIMENT_UNITS.name
_SUMS = UNIT_SUMS_ROLLUP_SQL

# the unit-days from each experiment's first changed day on, and each unit's totals before it
_RECENT_SQL = f"""    SELECT experiment_id, variant_id, unit, day, {_SUMS}
    FROM {_UNITS} AS u JOIN _increments_from AS f USING (experiment_id)
    WHERE u.day >= f.d0
    GROUP BY ALL"""
# each unit's totals before d0: its cumulative totals (one row per unit) minus its unit-days
# from d0 on (the days the window above re-reads anyway); not the older unit-days themselves
_RECENT_TOTALS = ", ".join(f"sum({c}) AS {c}" for c in SUM_COLUMNS)
_PREFIX_COLUMNS = ", ".join(
    f"sum(t.{c}) - coalesce(any_value(r.{c}), 0) AS {c}" for c in SUM_COLUMNS
)
_PREFIX_SQL = f"""SELECT t.experiment_id, t.variant_id, t.unit, {_PREFIX_COLUMNS}
    FROM {UNIT_TOTALS.name} AS t JOIN _increments_from AS f USING (experiment_id)
    LEFT JOIN (
        SELECT experiment_id, variant_id, unit, {_RECENT_TOTALS}
        FROM {_UNITS} AS u JOIN _increments_from AS f USING (experiment_id)
        WHERE u.day >= f.d0
        GROUP BY ALL
    ) AS r ON t.experiment_id = r.experiment_id AND t.variant_id = r.variant_id
        AND t.unit = r.unit
    WHERE t.first_day < f.d0
    GROUP BY t.experiment_id, t.variant_id, t.unit"""

INCREMENTS_SQL = stats_sql(
    _RECENT_SQL, source=f"{_UNITS} from d0", prefix=_PREFIX_SQL, increments_only=True
)

# (experiment, first changed day): experiments of use cases with a changed (use_case, day) pair
_CHANGED_SQL = f"""
WITH changed AS (
    SELECT coalesce(c.use_case, p.use_case) AS use_case, coalesce(c.day, p.day) AS day
    FROM {COVERAGE_SPEC.name} AS c
    FULL OUTER JOIN experiment_increments_pairs AS p ON c.use_case = p.use_case AND c.day = p.day
    WHERE c.n IS DISTINCT FROM p.n
)
SELECT experiment_id, min(changed.day) AS d0
FROM (SELECT DISTINCT use_case, experiment_id FROM {_UNITS}) AS e JOIN changed USING (use_case)
GROUP BY ALL
"""

LOOKS_SQL = LOOKS_SELECT_TEMPLATE.replace(
    "{daily}",
    "(SELECT * FROM experiment_increments WHERE day <= $as_of "
    "AND ($experiments IS NULL OR list_contains($experiments, experiment_id)))",
)


@dataclass(frozen=True, kw_only=True)
class IncrementsReport:
    """What one refresh recomputed: experiment -> first recomputed day (empty: nothing)."""

    recomputed: dict[str, str]
    dropped: int


def refresh_increments(con: duckdb.DuckDBPyConnection) -> IncrementsReport:
    """Bring ``experiment_increments`` up to date with the (current) experiment rollups.

    Args:
        con: a writable warehouse connection whose experiment rollups are current
            (:func:`tasks.experiments.rollups.rollups_current`).

    Returns:
        The experiments recomputed and from which day; increments of experiments no longer in
        the rollup are dropped.
    """
    con.execute(INCREMENTS_SCHEMA)
    try:
        con.execute("BEGIN TRANSACTION")
        own = True
    except duckdb.TransactionException:  # the caller's transaction holds it
        own = False
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _increments_from AS {_CHANGED_SQL}")
        rows = con.execute("SELECT experiment_id, d0 FROM _increments_from").fetchall()
        if rows:
            con.execute(
                "DELETE FROM experiment_increments AS i USING _increments_from AS f "
                "WHERE i.experiment_id = f.experiment_id AND i.day >= f.d0"
            )
            con.execute(f"INSERT INTO experiment_increments {INCREMENTS_SQL}")
        gone = con.execute(
            "DELETE FROM experiment_increments WHERE experiment_id NOT IN "
            f"(SELECT DISTINCT experiment_id FROM {_UNITS})"
        ).fetchall()
        con.execute("DELETE FROM experiment_increments_pairs")
        con.execute(
            f"INSERT INTO experiment_increments_pairs SELECT use_case, day, n "
            f"FROM {COVERAGE_SPEC.name}"
        )
        con.execute("DROP TABLE IF EXISTS _increments_from")
        if own:
            con.execute("COMMIT")
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    return IncrementsReport(
        recomputed={str(e): d.isoformat() for e, d in rows},
        dropped=int(gone[0][0]) if gone else 0,
    )
