"""Experiment analysis on daily rollups equals the full scan, night by night, with late rows.

A simulated month is loaded one night at a time; some days' rows arrive three nights late, and a
few units leak into the other variant on a late night (crossovers). After each night's refresh
(:func:`tasks.warehouse.rollups.refresh_rollups` over the experiment specs), the statistics of
every look (:data:`STATS_ROLLUP_SQL`), the per-arm extras, the crossovers, the stop-reset units
and the analysed reports equal the raw-scan reference.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tasks.experiments import rollups as R
from tasks.experiments import sql as S
from tasks.experiments.analyze import _statements, analyze_warehouse_experiments
from tasks.experiments.increments import LOOKS_SQL, refresh_increments
from tasks.experiments.stops import _UNITS_SQL
from tasks.simulation import SimulationSpec
from tasks.simulation.files import load_simulated
from tasks.simulation.generate import iter_simulation
from tasks.warehouse.connection import connect
from tasks.warehouse.rollups import refresh_rollups

SPEC = SimulationSpec(
    days=30,
    requests_per_day={"support-summarize": 1200, "ticket-classify": 800},
    include_cost=True,
    n_units=4000,
)
LATE_DAYS = {3, 11, 19, 26}  # an eighth of these days' rows arrive three nights later
LEAK_NIGHT = 12  # a few units of day 2 show up in the other variant, loaded this night
CHECK_NIGHTS = {5, 14, 22, 29}  # 5, 14, 22, 29 follow late loads or a leak
RTOL = 1e-9


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=RTOL, abs_tol=1e-12)
    return bool(a == b)


def _leak(table: pa.Table) -> pa.Table:
    """Ten experiment rows copied into the other variant (same unit, new request id)."""
    rows = table.filter(pc.is_valid(table["experiment_id"])).slice(0, 10)
    other = pc.if_else(pc.equal(rows["variant_id"], "control"), "treatment", "control")
    rows = rows.set_column(rows.schema.get_field_index("variant_id"), "variant_id", other)
    ids = pc.binary_join_element_wise(rows["request_id"], "leak", "-")
    return rows.set_column(rows.schema.get_field_index("request_id"), "request_id", ids)


def _leak_of_day_2(index: int, table: pa.Table) -> dict[int, list[pa.Table]]:
    """Day 2's leaked rows, loaded on :data:`LEAK_NIGHT`."""
    return {LEAK_NIGHT: [_leak(table)]} if index == 2 else {}


@pytest.fixture(scope="module")
def month(late_nights: Any) -> Any:
    """Run the month night by night; yield (connection, {night: checks}) for the checks."""
    con = connect(path=":memory:")
    results: dict[int, dict[str, Any]] = {}
    earliest: dt.date | None = None  # the earliest day loaded since the last check
    for night, tables in late_nights(SPEC, LATE_DAYS, also=_leak_of_day_2).items():
        for table in tables:
            load_simulated(con, table, label=f"night-{night}")
            first = pc.min(table["timestamp"]).as_py().date()
            earliest = first if earliest is None else min(earliest, first)
        assert not R.rollups_current(con, R.EXPERIMENT_READS)  # new rows: stale until refreshed
        report = refresh_rollups(con, R.EXPERIMENT_READS)
        assert report.pairs, "every night changes at least its own day"
        assert R.rollups_current(con, R.EXPERIMENT_READS)
        if night in CHECK_NIGHTS:
            results[night] = _checks(con, SPEC.day(night))
            results[night]["earliest"], earliest = earliest, None
    yield con, results
    con.close()


# each unit's totals over all its raw rows: what rollup_experiment_unit_totals must hold
TOTALS_RAW_SQL = f"""
SELECT use_case, experiment_id, variant_id, coalesce(unit_id, request_id) AS unit,
    {S.UNIT_DAY_SUMS_SQL}, min(day), max(day), count(DISTINCT day)
FROM usage_logs
WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL
GROUP BY ALL
"""


def _totals(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], list[Any]]:
    """(raw reference, the cumulative totals table), sorted by unit key."""
    return (
        sorted(con.execute(TOTALS_RAW_SQL).fetchall(), key=lambda r: r[:4]),
        sorted(con.execute(f"SELECT * FROM {R.UNIT_TOTALS.name}").fetchall(), key=lambda r: r[:4]),
    )


def _same_totals(raw: list[Any], kept: list[Any]) -> None:
    assert raw, "no experiment units"
    assert [r[:4] for r in raw] == [r[:4] for r in kept]
    for a, b in zip(raw, kept, strict=True):
        assert a[-3:] == b[-3:], (a, b)  # first day, last day, days
        for x, y in zip(a[4:-3], b[4:-3], strict=True):
            assert (x is None and y is None) or _close(x, y), (a, b)


def _checks(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> dict[str, Any]:
    params = {"as_of": as_of, "experiments": None}
    out: dict[str, Any] = {"increments": refresh_increments(con), "totals": _totals(con)}
    for name, raw, rolled in (
        ("stats", S.STATS_SQL, R.STATS_ROLLUP_SQL),
        ("looks", S.STATS_SQL, LOOKS_SQL),  # stored increments, recomputed from changed days
        ("extras", S.EXTRAS_SQL, R.EXTRAS_ROLLUP_SQL),
    ):
        out[name] = (
            sorted(con.execute(raw, params).fetchall()),
            sorted(con.execute(rolled, params).fetchall()),
        )
    out["p95"] = R.latency_p95(con, params)
    cross = {"as_of": as_of}
    out["crossover"] = (
        sorted(con.execute(S.CROSSOVER_SQL, cross).fetchall()),
        sorted(con.execute(R.CROSSOVER_ROLLUP_SQL, cross).fetchall()),
    )
    out["reports"] = tuple(
        [
            r.to_dict()
            for r in analyze_warehouse_experiments(
                con, {}, as_of=as_of, run_id="t", store=False, source=source
            )
        ]
        for source in ("usage_logs", "rollups")
    )
    return out


@pytest.mark.slow
def test_every_look_statistic_equals_the_full_scan(month: Any) -> None:
    _, results = month
    assert set(results) == CHECK_NIGHTS
    for night, checks in results.items():
        for name in ("stats", "looks"):
            raw, rolled = checks[name]
            assert raw, f"night {night}: no statistics"
            assert len(raw) == len(rolled), (night, name)
            for a, b in zip(raw, rolled, strict=True):
                assert a[:4] == b[:4]
                assert all(_close(x, y) for x, y in zip(a[4:], b[4:], strict=True)), (name, a, b)


@pytest.mark.slow
def test_cumulative_unit_totals_equal_the_raw_rows_after_late_rows(month: Any) -> None:
    """The per-unit totals are merged night by night (late rows and the leak included) and
    still equal each unit's sums over all its raw rows, first and last day and day count."""
    _, results = month
    for checks in results.values():
        _same_totals(*checks["totals"])
    late = results[14]["totals"][1]  # after the late rows of day 11 and the leak into day 2
    assert any(r[-3] == SPEC.day(2) for r in late)


def test_unit_totals_after_rows_deleted_and_replaced() -> None:
    """Rows deleted without an ingest: a unit that loses a day is summed again from its per-day
    rows; a unit whose day is replaced by one row without quality is merged (old day out, new
    day in). Both equal the raw rows, and the readers of the totals equal the raw scan."""
    con = connect(path=":memory:")
    try:
        small = SimulationSpec(
            days=4, requests_per_day={"support-summarize": 400}, include_cost=True, n_units=60
        )
        for _, table in iter_simulation(small):
            load_simulated(con, table, label="small")
        refresh_rollups(con, R.EXPERIMENT_READS)
        _same_totals(*_totals(con))
        lost, priced = con.execute(
            "SELECT coalesce(unit_id, request_id) AS unit, count(DISTINCT day) FROM usage_logs"
            " WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL"
            " GROUP BY ALL HAVING count(DISTINCT day) > 1 ORDER BY unit LIMIT 2"
        ).fetchall()
        # the first unit loses every row of its last day (a minimum/maximum to recompute) ...
        con.execute(
            "DELETE FROM usage_logs WHERE coalesce(unit_id, request_id) = ? AND day = "
            "(SELECT max(day) FROM usage_logs WHERE coalesce(unit_id, request_id) = ?)",
            [lost[0], lost[0]],
        )
        # ... the second one's rows of its first day come back once, without a quality
        con.execute(
            "CREATE TEMP TABLE again AS SELECT * FROM usage_logs WHERE coalesce(unit_id, "
            "request_id) = ? AND day = (SELECT min(day) FROM usage_logs WHERE "
            "coalesce(unit_id, request_id) = ?) LIMIT 1",
            [priced[0], priced[0]],
        )
        con.execute(
            "DELETE FROM usage_logs WHERE coalesce(unit_id, request_id) = ? AND day = "
            "(SELECT day FROM again)",
            [priced[0]],
        )
        con.execute("UPDATE again SET quality = NULL, request_id = request_id || '-again'")
        con.execute("INSERT INTO usage_logs SELECT * FROM again")
        report = refresh_rollups(con, R.EXPERIMENT_READS)
        assert report.pairs and report.rebuilt == ()  # a merge of the changed pairs
        raw, kept = _totals(con)
        _same_totals(raw, kept)
        by_unit = {r[3]: r for r in kept}
        assert by_unit[lost[0]][-1] == lost[1] - 1  # one day fewer
        params = {"as_of": small.day(3), "experiments": None}
        for raw_sql, rolled in (
            (S.EXTRAS_SQL, R.EXTRAS_ROLLUP_SQL),
            (S.CROSSOVER_SQL, R.CROSSOVER_ROLLUP_SQL),
        ):
            args = params if "experiments" in raw_sql else {"as_of": params["as_of"]}
            a = sorted(con.execute(raw_sql, args).fetchall())
            b = sorted(con.execute(rolled, args).fetchall())
            if raw_sql == S.EXTRAS_SQL:  # the p95 is read from the latency bins
                assert a
                a, b = [r[:2] + r[3:] for r in a], [r[:2] + r[3:] for r in b]
            assert a == b
    finally:
        con.close()


@pytest.mark.slow
def test_increments_are_recomputed_from_the_first_changed_day_only(month: Any) -> None:
    """Between checks the nights add their own day and late rows of earlier days: the stored
    increments are recomputed from the earliest of those days, not from the start."""
    _, results = month
    for night, checks in sorted(results.items()):
        since = checks["increments"].recomputed
        assert set(since) == {"exp-summarize-prompt-v2", "exp-classify-aa"}, night
        # both use cases changed on the loaded days: every experiment restarts at the earliest
        assert set(since.values()) == {checks["earliest"].isoformat()}, (night, since)
    assert results[14]["earliest"] == SPEC.day(2)  # the leak night reaches back to day 2
    assert results[22]["earliest"] == SPEC.day(15)  # otherwise: the first night after a check


@pytest.mark.slow
def test_units_first_day_and_crossovers_are_exact_p95_within_the_bound(month: Any) -> None:
    _, results = month
    leaked = 0
    for checks in results.values():
        raw, rolled = checks["extras"]
        assert [r[:2] + r[3:] for r in raw] == [r[:2] + r[3:] for r in rolled]
        assert len(checks["p95"]) == len(raw)
        for a in raw:
            binned = checks["p95"][(a[0], a[1])]
            assert abs(binned - a[2]) <= R.P95_RELATIVE_ERROR * a[2] + 1e-9
        assert checks["crossover"][0] == checks["crossover"][1]
        leaked += sum(n for _, n in checks["crossover"][0])
    assert leaked > 0, "the leak night must produce crossovers for the check to mean something"


def _same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in {"p95_control", "p95_treatment"}:  # read from bins: within the bound
                _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) and math.isnan(b)):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12), (path, a, b)
    elif isinstance(a, float) and isinstance(b, float):
        pass  # both NaN
    else:
        assert a == b, (path, a, b)


@pytest.mark.slow
def test_analysed_reports_and_decisions_equal_the_full_scan(month: Any) -> None:
    _, results = month
    for night, checks in results.items():
        raw, rolled = checks["reports"]
        assert raw, f"night {night}: no report"
        assert [r["decision"] for r in raw] == [r["decision"] for r in rolled]
        _same(raw, rolled)


@pytest.mark.slow
def test_reset_baseline_units_and_auto_source(month: Any) -> None:
    con, _ = month
    for exp in ("exp-summarize-prompt-v2", "exp-classify-aa"):
        raw = sorted(con.execute(_UNITS_SQL, {"experiment": exp}).fetchall())
        assert raw == sorted(con.execute(R.UNITS_ROLLUP_SQL, {"experiment": exp}).fetchall())
    assert R.rollups_current(con, R.EXPERIMENT_READS)
    last = con.execute(R.LAST_DAY_ROLLUP_SQL).fetchone()
    assert last is not None and last[0] == SPEC.day(SPEC.days - 1)
    refresh_increments(con)
    assert refresh_increments(con).recomputed == {}  # nothing changed: nothing recomputed
    # auto reads the rollups while they are current, the raw rows once they are stale
    assert _statements(con, "auto").rollups
    auto = analyze_warehouse_experiments(con, {}, run_id="t", store=False)
    raw = analyze_warehouse_experiments(con, {}, run_id="t", store=False, source="usage_logs")
    _same([r.to_dict() for r in raw], [r.to_dict() for r in auto])
    con.execute("CREATE TEMP TABLE one_more AS SELECT * FROM usage_logs LIMIT 1")
    con.execute("UPDATE one_more SET request_id = 'one-more'")
    con.execute("INSERT INTO usage_logs SELECT * FROM one_more")
    assert not _statements(con, "auto").rollups


def test_after_the_nightly_refresh_experiments_and_allocation_read_rollups() -> None:
    """The nightly flow refreshes every capability's specs (ALL_SPECS): both readers see them."""
    from tasks.allocation.rollups import use_rollups
    from tasks.nightly.rollup_set import ALL_SPECS

    con = connect(path=":memory:")
    try:
        small = SimulationSpec(days=2, requests_per_day={"support-summarize": 300})
        for _, table in iter_simulation(small):
            load_simulated(con, table, label="small")
        assert not _statements(con, "auto").rollups and not use_rollups(con, "auto")
        refresh_rollups(con, ALL_SPECS)
        assert _statements(con, "auto").rollups and use_rollups(con, "auto")
        reports = analyze_warehouse_experiments(con, {}, run_id="t", store=False)
        assert reports and reports[0].as_of == small.day(1).isoformat()
    finally:
        con.close()
