"""Daily rollups: per (use case, day) aggregates refreshed only where the raw rows changed.

Every night the strategies need sums, counts and histograms over a look-back window. Those are
additive per day, so each (use_case, day) pair is aggregated once into small ``rollup_*`` tables
(one per :class:`RollupSpec`) and a window is a sum over its days' rollup rows. A night then
costs the new day's rows, not the window's.

Which pairs changed (:func:`changed_pairs`):

1. ingests newer than the watermark: ``ingest_manifest`` ids not yet in ``rollup_ingests``;
   their rows' (use_case, day) pairs (late rows for an old day included);
2. a cheap consistency check: the raw row count outside those pairs must equal the rolled-up
   count (``rollup_coverage``, itself a spec: raw rows per pair). When it does not (rows
   inserted or deleted without an ingest, as tests and hand edits do), a per-pair count over
   ``usage_logs`` finds the pairs whose counts differ;
3. a spec whose table is new or whose definition (columns or SELECT text) changed is rebuilt
   over every pair once;
4. a refresh of some specs only (``config_metrics`` refreshes the warehouse's own) records the
   pairs it consumed for every other known spec table in ``rollup_stale``; those tables get
   them at their next refresh.

An UPDATE of ``usage_logs`` in place that keeps every pair's count is not detected (the product
only appends); call :func:`refresh_rollups` with ``full=True`` after one.

:func:`refresh_rollups` runs in ONE transaction: delete the pairs' rows from every spec table,
insert the spec's SELECT over the raw rows of those pairs (or rows precomputed elsewhere, e.g.
by Dask workers), record the coverage and advance the watermark. An exception rolls all of it
back.

Size: change detection and the refresh transaction share their bookkeeping tables and temp
tables; split apart, the watermark's invariants would be spread over two modules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import duckdb

Pair = tuple[str, dt.date]

COUNTED: dict[str, str] = {}
"""A raw relation -> the same rows counted: (use_case, day, ingest_id, n) per pair and ingest.

The change check counts rows; a source registered here (the lake's parts expanded to one row
per raw row, :data:`tasks.warehouse.dask_rollups.PARTS_SOURCE`) is counted from its counts
instead of row by row (a window of 30 M rows: seconds otherwise)."""

BOOKKEEPING_SQL = """
CREATE TABLE IF NOT EXISTS rollup_tables (
    name        VARCHAR NOT NULL,   -- the spec's table
    definition  VARCHAR NOT NULL,   -- hash of its columns, key and SELECT text
    complete    BOOLEAN NOT NULL,   -- false: (re)created, every pair must be rolled up
    refreshed_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS rollup_ingests (
    ingest_id    VARCHAR NOT NULL,  -- the watermark: ingests whose rows are rolled up
    rolled_up_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_stale (
    name        VARCHAR NOT NULL,   -- a spec table left out of a refresh of other specs
    use_case    VARCHAR NOT NULL,   -- ... and a pair that refresh consumed from the watermark
    day         DATE NOT NULL
);
"""


class Derived(Protocol):
    """A table kept up to date from a spec's rows inside the same refresh transaction.

    For example a cumulative table without the day in its key (per-unit totals), so readers of
    a whole window touch one row per key instead of one per key and day.
    """

    @property
    def name(self) -> str:
        """The derived table's name."""

    @property
    def definition(self) -> str:
        """Its columns and maintenance SQL (part of the spec's definition hash)."""

    def create(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)create the table empty."""

    def before(self, con: duckdb.DuckDBPyConnection, pairs_table: str) -> None:
        """Called before the spec's rows of the pairs in ``pairs_table`` are deleted."""

    def after(self, con: duckdb.DuckDBPyConnection, pairs_table: str, rebuild: bool) -> None:
        """Called once the spec's new rows of those pairs are in (``rebuild``: every pair)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RollupSpec:
    """One rollup table: its columns, key and the SELECT that aggregates raw rows into it.

    Attributes:
        name: the table name, ``rollup_<something>``.
        columns_sql: the CREATE TABLE column list, with types.
        key: the key columns; always starts with ``use_case``, ``day``.
        select: ``select(source)`` returns a SELECT aggregating the rows of relation ``source``
            (a table name or a parenthesised subquery with the usage_logs columns) GROUP BY the
            key, output columns in table order. Rows of one (use_case, day) depend only on raw
            rows of that pair.
        derived: a table maintained from this spec's rows in the same transaction (optional).
    """

    name: str
    columns_sql: str
    key: tuple[str, ...]
    select: Callable[[str], str]
    derived: Derived | None = None

    def __post_init__(self) -> None:
        if not self.name.startswith("rollup_") or not self.name.replace("_", "").isalnum():
            raise ValueError(f"rollup table name {self.name!r} must be rollup_<letters/digits>")
        if tuple(self.key[:2]) != ("use_case", "day"):
            raise ValueError(f"{self.name}: key must start with use_case, day (got {self.key})")

    @property
    def definition(self) -> str:
        """A hash of what the table holds: changes when columns, key or SELECT change."""
        parts = [self.columns_sql, ",".join(self.key), self.select("usage_logs")]
        if self.derived is not None:
            parts.append(self.derived.definition)
        text = "\n".join(parts)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


COVERAGE_SPEC = RollupSpec(
    name="rollup_coverage",
    columns_sql="use_case VARCHAR NOT NULL, day DATE NOT NULL, n BIGINT NOT NULL",
    key=("use_case", "day"),
    select=lambda source: f"SELECT use_case, day, count(*) AS n FROM {source} GROUP BY ALL",
)


def with_coverage(specs: Iterable[RollupSpec]) -> tuple[RollupSpec, ...]:
    """``specs`` with :data:`COVERAGE_SPEC` first (once): what a refresh computes.

    Args:
        specs: the capability specs.

    Returns:
        The coverage spec followed by the others, duplicates by name dropped.
    """
    out: dict[str, RollupSpec] = {COVERAGE_SPEC.name: COVERAGE_SPEC}
    for spec in specs:
        out.setdefault(spec.name, spec)
    return tuple(out.values())


@dataclasses.dataclass(frozen=True)
class RefreshReport:
    """What one refresh did.

    Attributes:
        pairs: the changed (use_case, day) pairs refreshed in every complete spec, sorted.
        touched: per spec table, the pairs whose rows were replaced (every pair when rebuilt).
        rebuilt: spec tables rebuilt over every pair (new or redefined).
        rows: rows inserted per spec table.
        ingests: ingests newly marked as rolled up (the watermark's advance).
        seconds: wall time of the transaction.
    """

    pairs: tuple[Pair, ...]
    touched: Mapping[str, tuple[Pair, ...]]
    rebuilt: tuple[str, ...]
    rows: Mapping[str, int]
    ingests: int
    seconds: float

    @property
    def nothing_to_do(self) -> bool:
        """True when no pair of any table was touched."""
        return not any(self.touched.values())


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [name]
    ).fetchall()[0]
    return bool(row and row[0])


def ensure_rollup_tables(con: duckdb.DuckDBPyConnection, specs: Iterable[RollupSpec]) -> None:
    """Create the bookkeeping tables and every spec's table (coverage included).

    A table whose definition changed since it was built is dropped and recreated empty; a new
    or recreated table is marked incomplete, so the next refresh rebuilds it over every pair.

    Args:
        con: a writable warehouse connection.
        specs: the specs whose tables must exist.
    """
    con.execute(BOOKKEEPING_SQL)
    known = dict(con.execute("SELECT name, definition FROM rollup_tables").fetchall())
    for spec in with_coverage(specs):
        exists = _table_exists(con, spec.name)
        derived_ok = spec.derived is None or _table_exists(con, spec.derived.name)
        if exists and derived_ok and known.get(spec.name) == spec.definition:
            continue
        con.execute(f"DROP TABLE IF EXISTS {spec.name}")
        con.execute(f"CREATE TABLE {spec.name} ({spec.columns_sql})")
        if spec.derived is not None:
            spec.derived.create(con)
        con.execute("DELETE FROM rollup_tables WHERE name = ?", [spec.name])
        con.execute(
            "INSERT INTO rollup_tables VALUES (?, ?, false, NULL)", [spec.name, spec.definition]
        )


def _incomplete(con: duckdb.DuckDBPyConnection, specs: Sequence[RollupSpec]) -> set[str]:
    rows = con.execute("SELECT name FROM rollup_tables WHERE NOT complete").fetchall()
    names = {str(r[0]) for r in rows}
    return {s.name for s in specs if s.name in names}


def _new_ingest_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    if not _table_exists(con, "ingest_manifest"):
        return []
    rows = con.execute(
        "SELECT DISTINCT ingest_id FROM ingest_manifest "
        "WHERE ingest_id NOT IN (SELECT ingest_id FROM rollup_ingests) ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _pairs_table(con: duckdb.DuckDBPyConnection, name: str, pairs: Iterable[Pair]) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (use_case VARCHAR, day DATE)")
    values = sorted(set(pairs))
    if values:
        con.executemany(f"INSERT INTO {name} VALUES (?, ?)", [list(p) for p in values])


def _pairs(rows: Iterable[Sequence[Any]]) -> list[Pair]:
    return sorted({(str(r[0]), r[1]) for r in rows})


def _reconciled_pairs(con: duckdb.DuckDBPyConnection, source: str) -> list[Pair]:
    """Pairs whose raw row count differs from the rolled-up count (a grouped count scan)."""
    return _pairs(
        con.execute(
            f"""
            SELECT coalesce(r.use_case, c.use_case), coalesce(r.day, c.day)
            FROM (SELECT use_case, day, count(*) AS n FROM {source} GROUP BY ALL) AS r
            FULL OUTER JOIN {COVERAGE_SPEC.name} AS c ON r.use_case = c.use_case AND r.day = c.day
            WHERE r.n IS DISTINCT FROM c.n
            """
        ).fetchall()
    )


def _ingest_pairs(
    con: duckdb.DuckDBPyConnection, ids: Sequence[str], source: str
) -> list[tuple[str, str, dt.date]]:
    if not ids:
        return []
    rows = con.execute(
        f"SELECT DISTINCT ingest_id, use_case, day FROM {COUNTED.get(source, source)} "
        "WHERE list_contains($ids, ingest_id)",
        {"ids": list(ids)},
    ).fetchall()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


def _pending(
    con: duckdb.DuckDBPyConnection, source: str
) -> tuple[list[Pair], list[tuple[str, str, dt.date]], list[str]]:
    """(changed pairs, (ingest id, pair) of new ingests, new ingest ids)."""
    ids = _new_ingest_ids(con)
    by_ingest = _ingest_pairs(con, ids, source)
    changed = {(uc, day) for _, uc, day in by_ingest}
    _pairs_table(con, "_rollup_check", changed)
    counted = COUNTED.get(source)  # one row per (pair, ingest) with its row count n
    rows_of = f"coalesce(sum(n), 0) FROM {counted}" if counted else f"count(*) FROM {source}"
    row = con.execute(
        f"""
        SELECT (SELECT {rows_of})
             - (SELECT {rows_of} AS u SEMI JOIN _rollup_check AS p
                ON u.use_case = p.use_case AND u.day = p.day),
               (SELECT coalesce(sum(n), 0) FROM {COVERAGE_SPEC.name} AS c ANTI JOIN _rollup_check
                AS p ON c.use_case = p.use_case AND c.day = p.day)
        """
    ).fetchall()[0]
    con.execute("DROP TABLE IF EXISTS _rollup_check")
    if row is not None and int(row[0]) != int(row[1]):
        changed |= set(_reconciled_pairs(con, source))
    return sorted(changed), by_ingest, ids


def changed_pairs(
    con: duckdb.DuckDBPyConnection,
    specs: Sequence[RollupSpec] | None = None,
    *,
    source: str = "usage_logs",
) -> list[Pair]:
    """The (use_case, day) pairs whose rollups are out of date.

    Pairs of ingests newer than the watermark, pairs whose raw count differs from the rolled-up
    count (checked cheaply first), and — when ``specs`` are given and one of them is new or
    redefined — every pair.

    Args:
        con: a writable warehouse connection.
        specs: the specs about to be refreshed (their tables are created when missing).
        source: the raw relation (default ``usage_logs``).

    Returns:
        The pairs, sorted.
    """
    ensure_rollup_tables(con, specs or ())
    found, _, _ = _pending(con, source)
    changed = set(found)
    if specs:
        stale = _stale(con)
        for spec in specs:
            changed |= stale.get(spec.name, set())
        if _incomplete(con, with_coverage(specs)):
            changed |= set(_all_pairs(con, source))
    return sorted(changed)


def _stale(con: duckdb.DuckDBPyConnection) -> dict[str, set[Pair]]:
    out: dict[str, set[Pair]] = {}
    for name, use_case, day in con.execute(
        "SELECT name, use_case, day FROM rollup_stale"
    ).fetchall():
        out.setdefault(str(name), set()).add((str(use_case), day))
    return out


def _mark_stale(
    con: duckdb.DuckDBPyConnection, refreshed: Sequence[str], pairs: Sequence[Pair]
) -> None:
    """Record ``pairs`` as pending for every known spec table not in ``refreshed``."""
    others = [
        str(r[0])
        for r in con.execute(
            "SELECT name FROM rollup_tables WHERE NOT list_contains(?, name)", [list(refreshed)]
        ).fetchall()
    ]
    rows = [[name, uc, day] for name in others for uc, day in pairs]
    if rows:
        con.executemany("INSERT INTO rollup_stale VALUES (?, ?, ?)", rows)


def _all_pairs(con: duckdb.DuckDBPyConnection, source: str) -> list[Pair]:
    return _pairs(con.execute(f"SELECT DISTINCT use_case, day FROM {source}").fetchall())


def _restricted(source: str, pairs: Sequence[Pair], table: str) -> str:
    """``source`` restricted to the pairs in temp table ``table`` (day range for pruning)."""
    first, last = min(p[1] for p in pairs), max(p[1] for p in pairs)
    return (
        f"(SELECT u.* FROM {source} AS u SEMI JOIN {table} AS p "
        f"ON u.use_case = p.use_case AND u.day = p.day "
        f"WHERE u.day BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}')"
    )


def _insert_rows(
    con: duckdb.DuckDBPyConnection, spec: RollupSpec, table: Any, pairs_table: str
) -> int:
    """Insert precomputed rows (a pyarrow table) after checking they belong to the pairs."""
    view = f"_rollup_rows_{spec.name}"
    con.register(view, table)
    try:
        stray = con.execute(
            f"SELECT count(*) FROM {view} AS r ANTI JOIN {pairs_table} AS p "
            "ON r.use_case = p.use_case AND r.day = p.day"
        ).fetchall()[0]
        if stray and stray[0]:
            raise ValueError(
                f"{spec.name}: {stray[0]} precomputed rows outside the refreshed pairs"
            )
        con.execute(f"INSERT INTO {spec.name} SELECT * FROM {view}")
        return int(table.num_rows)
    finally:
        con.unregister(view)


def _refresh_spec(
    con: duckdb.DuckDBPyConnection,
    spec: RollupSpec,
    pairs: Sequence[Pair],
    *,
    rebuild: bool,
    source: str,
    rows: Any,
) -> int:
    """Replace one spec's rows of ``pairs`` (all rows when ``rebuild``); rows inserted."""
    table = f"_rollup_pairs_{spec.name}"
    _pairs_table(con, table, pairs)
    if spec.derived is not None and not rebuild and pairs:
        spec.derived.before(con, table)
    if rebuild:
        con.execute(f"DELETE FROM {spec.name}")
    else:
        con.execute(
            f"DELETE FROM {spec.name} AS t USING {table} AS p "
            "WHERE t.use_case = p.use_case AND t.day = p.day"
        )
    inserted = 0
    if rows is not None:
        inserted = _insert_rows(con, spec, rows, table)
    elif pairs:
        before = con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0]
        con.execute(f"INSERT INTO {spec.name} {spec.select(_restricted(source, pairs, table))}")
        after = con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0]
        inserted = int(after[0] if after else 0) - int(before[0] if before else 0)
    if spec.derived is not None and (rebuild or pairs):
        spec.derived.after(con, table, rebuild)
    con.execute(f"DROP TABLE IF EXISTS {table}")
    return inserted


# size: one transaction's steps in order (pairs, per-spec replace, watermark, bookkeeping)
def refresh_rollups(
    con: duckdb.DuckDBPyConnection,
    specs: Sequence[RollupSpec],
    *,
    pairs: Iterable[Pair] | None = None,
    rows: Mapping[str, Any] | None = None,
    full: bool = False,
    source: str = "usage_logs",
) -> RefreshReport:
    """Bring every spec's rollups up to date, in one transaction.

    Args:
        con: a writable warehouse connection (not inside a transaction).
        specs: the specs to refresh; the coverage spec is always added.
        pairs: the (use_case, day) pairs to refresh; default :func:`changed_pairs`. A new or
            redefined spec is rebuilt over every pair regardless (it is only marked complete
            when the refreshed pairs cover every raw pair).
        rows: precomputed rows per spec table name (``pyarrow.Table`` in table column order,
            only rows of the refreshed pairs), e.g. from Dask workers; specs without an entry
            are computed here.
        full: rebuild every spec over every pair (after an in-place UPDATE of raw rows).
        source: the raw relation (default ``usage_logs``).

    Returns:
        What was refreshed; the watermark advanced past every new ingest whose pairs were all
        refreshed.
    """
    started = time.perf_counter()
    specs = with_coverage(specs)
    ensure_rollup_tables(con, specs)
    con.execute("BEGIN TRANSACTION")
    try:
        changed, by_ingest, ids = _pending(con, source)
        if pairs is not None:
            changed = sorted(set(pairs))
        incomplete = {s.name for s in specs} if full else _incomplete(con, specs)
        every = _all_pairs(con, source) if incomplete else []
        stale = _stale(con)
        touched: dict[str, tuple[Pair, ...]] = {}
        inserted: dict[str, int] = {}
        rebuilt: list[str] = []
        for spec in specs:
            wanted = set(changed) | stale.get(spec.name, set())
            if spec.name in incomplete and pairs is None:
                wanted |= set(every)
            spec_pairs = sorted(wanted)
            # a new table is emptied and marked complete only when every raw pair is refreshed
            rebuild = spec.name in incomplete and set(every) <= wanted
            inserted[spec.name] = _refresh_spec(
                con,
                spec,
                spec_pairs,
                rebuild=rebuild,
                source=source,
                rows=(rows or {}).get(spec.name),
            )
            touched[spec.name] = tuple(spec_pairs)
            if rebuild:
                rebuilt.append(spec.name)
                con.execute("UPDATE rollup_tables SET complete = true WHERE name = ?", [spec.name])
        con.execute(
            "DELETE FROM rollup_stale WHERE list_contains(?, name)", [[s.name for s in specs]]
        )
        _mark_stale(con, [s.name for s in specs], changed)
        refreshed = set(changed)
        uncovered = {i for i, uc, day in by_ingest if (uc, day) not in refreshed}
        marked = [i for i in ids if i not in uncovered]
        if marked:
            con.executemany("INSERT INTO rollup_ingests VALUES (?, now())", [[i] for i in marked])
        con.execute(
            "UPDATE rollup_tables SET refreshed_at = now() WHERE list_contains(?, name)",
            [[name for name, done in touched.items() if done]],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return RefreshReport(
        pairs=tuple(changed),
        touched=touched,
        rebuilt=tuple(sorted(rebuilt)),
        rows=inserted,
        ingests=len(marked),
        seconds=time.perf_counter() - started,
    )


def read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s database is open read-only (no refresh possible)."""
    row = con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0]
    return bool(row and row[0])


def rollups_current(con: duckdb.DuckDBPyConnection, specs: tuple[RollupSpec, ...]) -> bool:
    """Whether ``specs``' tables hold every raw row (read only; no raw scan but a count).

    True when each table exists and is complete (``rollup_tables``) with no pair left pending
    for it (``rollup_stale``), no ingest is newer than the watermark and the rolled-up row count
    equals ``usage_logs``'s. An in-place UPDATE of
    raw rows is not seen (the product only appends; see :mod:`tasks.warehouse.rollups`).

    Args:
        con: a warehouse connection.
        specs: the rollup specs a reader needs.

    Returns:
        ``True`` when the rollups can replace the raw scan.
    """
    names = [COVERAGE_SPEC.name, *(s.name for s in specs)]
    tables = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    }
    derived = {s.derived.name for s in specs if s.derived is not None}
    if not {"rollup_tables", "rollup_ingests", "usage_logs", *names, *derived} <= tables:
        return False
    row = con.execute(
        "SELECT count(*) FROM rollup_tables WHERE complete AND list_contains($names, name)",
        {"names": names},
    ).fetchall()[0]
    if int(row[0]) != len(set(names)):
        return False
    if "rollup_stale" in tables:  # pairs a refresh of other specs left pending for these
        stale = con.execute(
            "SELECT count(*) FROM rollup_stale WHERE list_contains($names, name)",
            {"names": names},
        ).fetchall()[0]
        if int(stale[0]) > 0:
            return False
    if "ingest_manifest" in tables:
        new = con.execute(
            "SELECT count(*) FROM ingest_manifest "
            "WHERE ingest_id NOT IN (SELECT ingest_id FROM rollup_ingests)"
        ).fetchall()[0]
        if int(new[0]) > 0:
            return False
    counts = con.execute(
        f"SELECT (SELECT count(*) FROM usage_logs), "
        f"(SELECT coalesce(sum(n), 0) FROM {COVERAGE_SPEC.name})"
    ).fetchall()[0]  # fetchall: a pending fetchone result blocks con.register in DuckDB 2
    return int(counts[0]) == int(counts[1])


__all__ = [
    "COUNTED",
    "COVERAGE_SPEC",
    "Derived",
    "Pair",
    "RefreshReport",
    "RollupSpec",
    "changed_pairs",
    "ensure_rollup_tables",
    "read_only",
    "refresh_rollups",
    "rollups_current",
    "with_coverage",
]
