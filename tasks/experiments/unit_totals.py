"""Cumulative per-unit totals: one row per experiment unit, kept from the per-unit-day rollup.

Why: the per-unit-day rollup (``rollup_experiment_units``) has one row per unit and day, so a
reader of an experiment's whole window (units per arm, first day, crossovers, each unit's totals
before the changed days) touched units x days rows, about 50,000 a day at 1 M calls a day. This
table (``rollup_experiment_unit_totals``) holds each unit's sums over all its days, its first and
last day and its number of days: its size is the units, not the unit-days.

How it stays exact (:class:`UnitTotals`, called by :func:`tasks.warehouse.rollups.refresh_rollups`
in the same transaction that replaces the per-day rows of the changed (use case, day) pairs):

* before the pairs' per-day rows are deleted, they are copied aside (the *old* contribution);
* after the new rows are in, old and new are compared per unit and day. A unit that kept every
  one of its old unit-days (the normal case: ingest only appends, so a new day adds unit-days and
  late rows only grow existing ones) is merged: ``total + new - old`` for every sum (integer
  counts exactly; double sums up to summation order), ``least``/``greatest`` of the first and
  last day, ``days`` plus the unit-days that are new;
* a unit that lost a unit-day on a changed pair (rows deleted by hand or by a test), or whose
  cost, latency or tokens became NULL on one, is rebuilt from its per-day rows (all its days),
  so a minimum that cannot be subtracted is never guessed;
* a rebuild of the spec (new or redefined table) rebuilds the totals from every per-day row.

The per-day rows stay: the daily increments of the statistics need them from the first changed
day on (:mod:`tasks.experiments.increments`). Readers filter on ``first_day <= $as_of`` where
the raw statement filters ``day <= $as_of``: a unit has a row on or before ``as_of`` exactly when
its first day is, so unit counts, first days and crossovers are exact for any ``as_of``.
"""

from __future__ import annotations

import dataclasses

import duckdb

__all__ = ["SUM_COLUMNS", "UNIT_KEY", "UnitTotals"]

UNIT_KEY = ("use_case", "experiment_id", "variant_id", "unit")
# the per-unit-day sums of rollup_experiment_units; True: nullable (may be NULL when every
# raw value is)
SUM_COLUMNS: dict[str, bool] = {
    "quality_num": False,
    "quality_den": False,
    "feedback_num": False,
    "feedback_den": False,
    "error_num": False,
    "requests": False,
    "cost_num": True,
    "latency_num": True,
    "tokens_num": True,
}
_OLD = "_unit_totals_old"
_DELTA = "_unit_totals_delta"


def _on(a: str, b: str, keys: tuple[str, ...]) -> str:
    return " AND ".join(f"{a}.{k} = {b}.{k}" for k in keys)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnitTotals:
    """The cumulative totals of a per-unit-day table (see the module docstring).

    Attributes:
        name: the totals table.
        source: the per-unit-day rollup table (key ``use_case, day`` + :data:`UNIT_KEY`).
        sum_types: the column types of :data:`SUM_COLUMNS` in ``source``, in that order.
    """

    name: str
    source: str
    sum_types: tuple[str, ...]

    @property
    def columns_sql(self) -> str:
        """The CREATE TABLE column list."""
        sums = ", ".join(
            f"{c} {t}{'' if nullable else ' NOT NULL'}"
            for (c, nullable), t in zip(SUM_COLUMNS.items(), self.sum_types, strict=True)
        )
        return (
            "use_case VARCHAR NOT NULL, experiment_id VARCHAR NOT NULL, "
            f"variant_id VARCHAR NOT NULL, unit VARCHAR NOT NULL, {sums}, "
            "first_day DATE NOT NULL, last_day DATE NOT NULL, days BIGINT NOT NULL"
        )

    @property
    def definition(self) -> str:
        """Columns and the rebuild statement (changes rebuild the spec and this table)."""
        return self.columns_sql + "\n" + self._grouped("TRUE")

    def create(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)create the totals table empty."""
        con.execute(f"DROP TABLE IF EXISTS {self.name}")
        con.execute(f"CREATE TABLE {self.name} ({self.columns_sql})")

    def _grouped(self, where: str) -> str:
        """Per unit, the sums over every per-day row of ``source`` matching ``where``."""
        sums = ", ".join(
            f"CAST(sum({c}) AS {t}) AS {c}"
            for c, t in zip(SUM_COLUMNS, self.sum_types, strict=True)
        )
        return (
            f"SELECT {', '.join(UNIT_KEY)}, {sums}, min(day) AS first_day, "
            f"max(day) AS last_day, count(*) AS days FROM {self.source} AS s WHERE {where} "
            "GROUP BY ALL"
        )

    def before(self, con: duckdb.DuckDBPyConnection, pairs_table: str) -> None:
        """Copy the per-day rows of the pairs aside (their old contribution)."""
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_OLD} AS SELECT s.* FROM {self.source} AS s "
            f"SEMI JOIN {pairs_table} AS p ON {_on('s', 'p', ('use_case', 'day'))}"
        )

    def after(self, con: duckdb.DuckDBPyConnection, pairs_table: str, rebuild: bool) -> None:
        """Merge the pairs' new rows into the totals (or rebuild them all)."""
        if rebuild:
            con.execute(f"DELETE FROM {self.name}")
            con.execute(f"INSERT INTO {self.name} {self._grouped('TRUE')}")
            con.execute(f"DROP TABLE IF EXISTS {_OLD}")
            return
        day_key = (*UNIT_KEY, "day")
        lost = " OR ".join(
            ["(o.requests IS NOT NULL AND n.requests IS NULL)"]
            + [
                f"(o.{c} IS NOT NULL AND n.requests IS NOT NULL AND n.{c} IS NULL)"
                for c, nullable in SUM_COLUMNS.items()
                if nullable
            ]
        )
        sums = ", ".join(f"sum(n.{c}) AS new_{c}, sum(o.{c}) AS old_{c}" for c in SUM_COLUMNS)
        keys = ", ".join(f"coalesce(n.{k}, o.{k}) AS {k}" for k in UNIT_KEY)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {_DELTA} AS
            SELECT {keys}, bool_or({lost}) AS lost, {sums},
                count(*) FILTER (WHERE n.requests IS NOT NULL AND o.requests IS NULL)
                    AS new_days,
                min(n.day) AS first_new, max(n.day) AS last_new
            FROM (SELECT s.* FROM {self.source} AS s SEMI JOIN {pairs_table} AS p
                  ON {_on("s", "p", ("use_case", "day"))}) AS n
            FULL OUTER JOIN {_OLD} AS o ON {_on("n", "o", day_key)}
            GROUP BY ALL
            """
        )
        merged = ", ".join(
            (f"CASE WHEN t.{c} IS NULL AND d.new_{c} IS NULL THEN NULL ELSE " if nullable else "")
            + f"CAST(coalesce(t.{c}, 0) + coalesce(d.new_{c}, 0) - coalesce(d.old_{c}, 0)"
            + f" AS {typ})"
            + (" END" if nullable else "")
            for (c, nullable), typ in zip(SUM_COLUMNS.items(), self.sum_types, strict=True)
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _unit_totals_merged AS
            SELECT {", ".join(f"d.{k}" for k in UNIT_KEY)}, {merged},
                least(t.first_day, d.first_new) AS first_day,
                greatest(t.last_day, d.last_new) AS last_day,
                coalesce(t.days, 0) + d.new_days AS days
            FROM {_DELTA} AS d LEFT JOIN {self.name} AS t ON {_on("d", "t", UNIT_KEY)}
            WHERE NOT d.lost
            """
        )
        con.execute(
            f"DELETE FROM {self.name} AS t USING {_DELTA} AS d WHERE {_on('t', 'd', UNIT_KEY)}"
        )
        con.execute(f"INSERT INTO {self.name} SELECT * FROM _unit_totals_merged")
        n_lost = con.execute(f"SELECT count(*) FROM {_DELTA} WHERE lost").fetchall()[0]
        if n_lost[0]:  # units that lost a unit-day: every per-day row of theirs, summed again
            con.execute(
                f"INSERT INTO {self.name} "
                + self._grouped(
                    f"EXISTS (SELECT 1 FROM {_DELTA} AS l WHERE l.lost AND "
                    f"{_on('s', 'l', UNIT_KEY)})"
                )
            )
        for temp in (_OLD, _DELTA, "_unit_totals_merged"):
            con.execute(f"DROP TABLE IF EXISTS {temp}")
