"""Series analysis the way the nightly job runs it: sliding windows, gaps, hourly series."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.core.settings import Settings
from tasks.monitoring.run import (
    MonitoringConfig,
    analyse_series,
    metric_series,
    refresh_monitoring_rollups,
    run_monitoring,
)


def _nightly_alarm(x: np.ndarray, config: MonitoringConfig) -> bool:
    for t in range(config.reference_days, x.size):
        window = x[max(0, t - config.series_days + 1) : t + 1]
        periods = [f"d{i}" for i in range(t + 1 - window.size, t + 1)]
        if analyse_series("m", periods, window, config).recent_change_points:
            return True
    return False


def test_false_alarms_per_use_case_month_stay_under_five_percent() -> None:
    """Stationary months of four metrics, monitored night by night with the defaults."""
    config = MonitoringConfig()
    rng = np.random.default_rng(7)
    months = 60
    alarmed = sum(
        any(_nightly_alarm(rng.normal(0.0, 1.0, 30), config) for _ in range(4))
        for _ in range(months)
    )
    assert alarmed / months < 0.05


def test_a_step_is_caught_the_night_it_happens_when_it_is_large() -> None:
    config = MonitoringConfig()
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(0.70, 0.006, 20), rng.normal(0.53, 0.006, 1)]  # quality -25%
    result = analyse_series("quality", [f"d{i}" for i in range(21)], x, config)
    assert result.recent_change_points == ("d20",)
    assert result.anomalies and result.anomalies[-1].period == "d20"


def test_missing_days_are_skipped_not_zero_and_short_series_say_why() -> None:
    config = MonitoringConfig()
    x = np.r_[np.full(10, 0.8), [np.nan] * 5, np.full(10, 0.8)]
    result = analyse_series("quality", [f"d{i}" for i in range(25)], x, config)
    assert result.analysable and result.change_points == ()
    assert result.values[12] is None
    short = analyse_series("quality", ["d0", "d1"], np.array([0.8, 0.2]), config)
    assert not short.analysable and "need 15" in short.reason


def test_hourly_series_and_a_single_day_of_data(settings: Settings, warehouse: Any) -> None:
    rng = np.random.default_rng(1)
    day = dt.date(2026, 10, 5)
    n = 480
    ts = [dt.datetime(2026, 10, 5, i % 24, 0, 30, tzinfo=dt.UTC) for i in range(n)]
    table = pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "day": [day] * n,
            "use_case": ["uc"] * n,
            "model": ["m"] * n,
            "config_id": ["c"] * n,
            "input_tokens": rng.integers(100, 200, n),
            "output_tokens": rng.integers(10, 20, n),
            "latency_ms": rng.uniform(100, 300, n),
            "cost_usd": [0.001] * n,
            "cost_source": ["log"] * n,
            "status": ["success"] * n,
            "quality": rng.uniform(0.6, 0.9, n),
            "source_file": ["t"] * n,
            "source_line": list(range(n)),
            "ingest_id": ["t"] * n,
        }
    )
    warehouse.register("rows_in", table)
    warehouse.execute("INSERT INTO usage_logs BY NAME SELECT * FROM rows_in")
    refresh_monitoring_rollups(warehouse)  # run_monitoring does it itself; metric_series reads
    hourly = metric_series(
        warehouse,
        "uc",
        start=dt.datetime(2026, 10, 5, 0),
        end=dt.datetime(2026, 10, 5, 23),
        granularity="hour",
    )
    assert len(hourly["periods"]) == 24 and np.all(hourly["requests"] == 20)
    daily = metric_series(warehouse, "uc", start=day - dt.timedelta(days=2), end=day)
    assert np.isnan(daily["quality"][0]) and daily["requests"][-1] == n
    config = dataclasses.replace(MonitoringConfig(), hourly=True, hourly_days=1)
    report = run_monitoring(warehouse, settings, as_of=day, config=config, record=False)
    (uc,) = report.use_cases
    # one day of data: no reference, so drift and daily series are not analysable, with reasons
    assert all(not d.analysable and "too few rows" in d.reason for d in uc.drift)
    daily_series = [s for s in uc.series if s.granularity == "day"]
    assert daily_series and all(not s.analysable for s in daily_series)
    hourly_series = [s for s in uc.series if s.granularity == "hour"]
    assert hourly_series and all(s.analysable for s in hourly_series)
    assert uc.alerts == () and uc.action is None
