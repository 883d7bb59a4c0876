"""Hourly latency bins are rolled up only when hourly series are read, and stay exact.

The nightly set (``ALL_SPECS``) leaves ``rollup_monitor_hourly_latency`` out (30,000 rows a day
at 1 M calls). Turning hourly monitoring on after some nights backfills it over every pair; later
nights' pairs (late rows included) are picked up from ``rollup_stale``; a read-only connection
bins the raw rows of the window with the same SELECT. Each time, the hourly series equal the raw
scan (latency p95 within the bins' bound, the rest exact).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.monitoring.rollups import MONITOR_HOURLY_LATENCY
from tasks.monitoring.series import hourly_latency_source, metric_series_many
from tasks.nightly.rollup_set import ALL_SPECS
from tasks.simulation import SimulationSpec, load_simulated, simulate
from tasks.warehouse.connection import connect
from tasks.warehouse.rollups import refresh_rollups, rollups_current

USE_CASES = ("support-summarize", "ticket-classify")
SPEC = SimulationSpec(days=6, requests_per_day=dict.fromkeys(USE_CASES, 150), include_cost=True)


def _hourly_equals_raw(con: object, raw_scan: ModuleType, last_day: dt.date) -> None:
    start = dt.datetime.combine(SPEC.day(0), dt.time(0))
    end = dt.datetime.combine(last_day, dt.time(23))
    got = metric_series_many(con, USE_CASES, start=start, end=end, granularity="hour")  # type: ignore[arg-type]
    for name in USE_CASES:
        want = raw_scan.metric_series(con, name, start=start, end=end, granularity="hour")
        assert np.nansum(want["requests"]) > 0
        raw_scan._assert_series_close(got[name], want)


def _stale_pairs(con: object) -> int:
    row = con.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM rollup_stale WHERE name = ?", [MONITOR_HOURLY_LATENCY.name]
    ).fetchall()[0]
    return int(row[0])


def test_hourly_latency_bins_are_backfilled_kept_and_read_raw_when_read_only(
    tmp_path: Path, raw_scan: ModuleType
) -> None:
    rows = simulate(SPEC)
    days = pc.cast(rows["timestamp"], pa.date32())
    late = pa.array([i % 8 == 0 for i in range(rows.num_rows)])
    path = tmp_path / "w.duckdb"
    con = connect(path=path)
    assert MONITOR_HOURLY_LATENCY not in ALL_SPECS
    for night in range(4):  # hourly off: the nights never build the hourly latency bins
        on_day = pc.equal(days, pa.scalar(SPEC.day(night), pa.date32()))
        load_simulated(con, rows.filter(on_day), label=f"night-{night}")
        refresh_rollups(con, ALL_SPECS)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert MONITOR_HOURLY_LATENCY.name not in tables
    # hourly on: the first hourly series backfills every pair
    _hourly_equals_raw(con, raw_scan, SPEC.day(3))
    assert rollups_current(con, (MONITOR_HOURLY_LATENCY,))
    (pairs,) = con.execute(
        f"SELECT count(DISTINCT (use_case, day)) FROM {MONITOR_HOURLY_LATENCY.name}"
    ).fetchall()[0]
    assert pairs == len(USE_CASES) * 4
    # night 4: its day, minus some rows of day 4 that arrive on night 5 with day 5
    on_day4 = pc.equal(days, pa.scalar(SPEC.day(4), pa.date32()))
    load_simulated(con, rows.filter(pc.and_(on_day4, pc.invert(late))), label="night-4")
    refresh_rollups(con, ALL_SPECS)
    assert _stale_pairs(con) == len(USE_CASES)
    assert hourly_latency_source(con) == MONITOR_HOURLY_LATENCY.name  # the pending pairs, rolled up
    assert _stale_pairs(con) == 0
    _hourly_equals_raw(con, raw_scan, SPEC.day(4))
    on_day5 = pc.equal(days, pa.scalar(SPEC.day(5), pa.date32()))
    load_simulated(con, rows.filter(pc.or_(on_day5, pc.and_(on_day4, late))), label="night-5")
    refresh_rollups(con, ALL_SPECS)
    assert _stale_pairs(con) == 2 * len(USE_CASES)  # day 5 and the late rows' day 4
    con.close()
    # read only: nothing can be rolled up, the window's raw rows are binned instead
    ro = connect(path=path, read_only=True)
    try:
        assert not rollups_current(ro, (MONITOR_HOURLY_LATENCY,))
        assert hourly_latency_source(ro).startswith("(")
        _hourly_equals_raw(ro, raw_scan, SPEC.day(5))
    finally:
        ro.close()
    con = connect(path=path)
    try:
        _hourly_equals_raw(con, raw_scan, SPEC.day(5))  # writable again: the pending pairs
        assert rollups_current(con, (MONITOR_HOURLY_LATENCY,))
    finally:
        con.close()
