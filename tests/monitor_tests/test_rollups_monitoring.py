"""Monitoring on daily rollups over a simulated month with late rows equals the raw scan.

Night by night, the day's rows arrive (a tenth of each day's rows held back and ingested two
nights later, as late rows); ``run_monitoring`` refreshes the rollups of the changed (use case,
day) pairs only, then reads them. Every night the rollup inputs are compared with the raw-scan
reference (``raw_scan.py``): counts exact, sums to the last bits of their order, latency p95
within the bins' bound, fixed-bin drift bins exact, drift p-values those of the raw bins; and
the quantile-edge drift statistics of before stay close.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from strategies.monitor.drift import numeric_drift
from strategies.monitor.settings import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    Windows,
)
from tasks.monitoring.run import (
    apply_monitoring_schema,
    fetch_monitoring_inputs,
    refresh_monitoring_rollups,
    run_monitoring,
)
from tasks.simulation import SimulationSpec, load_simulated, simulate
from tasks.warehouse.connection import apply_schema

pytestmark = pytest.mark.slow  # a month of nights, each compared with the raw scan (~40 s)

USE_CASES = ("code-review", "sales-email", "support-summarize", "ticket-classify")
LATE_SHARE = 0.1
LATE_NIGHTS = 2
FIRST_NIGHT = 16  # index of the first night judged (a full 14-day reference before it)


def _late(table: pa.Table) -> np.ndarray:
    """A fixed tenth of the rows (by a checksum of the request id), the ones that arrive late."""
    ids = table["request_id"].to_pylist()
    return np.asarray([zlib.crc32(i.encode()) % 1000 < LATE_SHARE * 1000 for i in ids])


def _arrive(con: duckdb.DuckDBPyConnection, month: dict[str, Any], night: int) -> int:
    """Ingest what arrives on ``night``: that day's punctual rows and day ``night - 2``'s late
    rows (the first night: every punctual row so far)."""
    spec, rows, days, late = month["spec"], month["rows"], month["days"], month["late"]
    day = np.datetime64(spec.day(night))
    if night == FIRST_NIGHT:
        punctual = (days <= day) & ~late
        overdue = (days <= day - LATE_NIGHTS) & late
    else:
        punctual = (days == day) & ~late
        overdue = (days == day - LATE_NIGHTS) & late
    return load_simulated(con, rows.filter(pa.array(punctual | overdue)), label=f"night-{night}")


@pytest.fixture(scope="module")
def month(raw_scan: ModuleType) -> Iterator[dict[str, Any]]:
    """Every night: the arrivals, the refresh, ``run_monitoring``, and both sets of inputs
    (rollups and raw scan) as they were that night."""
    spec = SimulationSpec(include_cost=True, requests_per_day=dict.fromkeys(USE_CASES, 300))
    rows = simulate(spec)
    days = pc.cast(rows["timestamp"], pa.date32()).to_numpy(zero_copy_only=False)
    world = {"spec": spec, "rows": rows, "days": days, "late": _late(rows)}
    config = dataclasses.replace(
        MonitoringConfig(),
        hourly=True,
        numeric_fields=NUMERIC_FIELDS,
        categorical_fields=CATEGORICAL_FIELDS,
    )
    con = duckdb.connect()
    apply_schema(con)
    apply_monitoring_schema(con)
    nights = []
    for night in range(FIRST_NIGHT, spec.days):
        as_of = spec.day(night)
        arrived = _arrive(con, world, night)
        refreshed = refresh_monitoring_rollups(con)
        report = run_monitoring(con, as_of=as_of, config=config, record=False)
        nights.append(
            {
                "as_of": as_of,
                "arrived": arrived,
                "pairs": () if refreshed is None else refreshed.pairs,
                "report": report,
                "rollups": fetch_monitoring_inputs(con, USE_CASES, as_of=as_of, config=config),
                "raw": {
                    name: raw_scan.reference_inputs(
                        con, name, as_of=as_of, config=config, known=None
                    )
                    for name in USE_CASES
                },
            }
        )
    yield world | {"con": con, "config": config, "nights": nights}
    con.close()


def test_rollups_equal_the_raw_scan_every_night_with_late_rows(
    month: dict[str, Any], raw_scan: ModuleType
) -> None:
    spec = month["spec"]
    for i, night in enumerate(month["nights"]):
        as_of = night["as_of"]
        assert night["arrived"] > 0
        assert [u.use_case for u in night["report"].use_cases] == list(USE_CASES)
        if i > 0:
            # only the new day and the day whose late rows arrived: never the whole window
            late_day = as_of - dt.timedelta(days=LATE_NIGHTS)
            assert set(night["pairs"]) == {(u, d) for u in USE_CASES for d in (as_of, late_day)}
        for name in USE_CASES:
            raw_scan.assert_inputs_close(night["rollups"][name], night["raw"][name])
    # the late rows are in: every simulated row up to the last night but the last two late days
    (count,) = month["con"].execute("SELECT count(*) FROM usage_logs").fetchone() or (0,)
    last = np.datetime64(spec.day(spec.days - 1))
    days, late = month["days"], month["late"]
    assert count == int((days <= last).sum() - ((days > last - LATE_NIGHTS) & late).sum())
    assert late.mean() == pytest.approx(LATE_SHARE, abs=0.02)


def test_drift_p_values_stay_close_to_the_quantile_edges_of_before(
    month: dict[str, Any], raw_scan: ModuleType
) -> None:
    con, spec, config = month["con"], month["spec"], month["config"]
    th = config.drift
    compared = 0
    for night in range(FIRST_NIGHT, spec.days, 3):
        windows = Windows.for_night(spec.day(night), config)
        inputs = fetch_monitoring_inputs(con, USE_CASES, as_of=spec.day(night), config=config)
        for name in USE_CASES:
            for field in config.numeric_fields:
                fixed = numeric_drift(field, *inputs[name].numeric[field], thresholds=th)
                edges = raw_scan.numeric_bins(con, name, field, windows)
                before = numeric_drift(field, *edges, thresholds=th)
                if not (fixed.analysable and before.analysable) or fixed.ks_pvalue is None:
                    continue
                assert before.ks_pvalue is not None and before.ks_statistic is not None
                assert fixed.ks_statistic is not None
                assert abs(fixed.ks_statistic - before.ks_statistic) <= 0.02, (name, field)
                # p-values on a log scale, where they can matter (not astronomically small)
                if min(fixed.ks_pvalue, before.ks_pvalue) > 1e-6:
                    gap = abs(np.log10(fixed.ks_pvalue) - np.log10(before.ks_pvalue))
                    assert gap <= 0.5, (name, field, fixed.ks_pvalue, before.ks_pvalue)
                compared += 1
    assert compared >= 50
