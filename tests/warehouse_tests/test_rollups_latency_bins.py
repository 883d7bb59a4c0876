"""Quantiles from merged log-spaced latency bins stay within the stated bound of quantile_cont."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from tasks.warehouse.rollup_specs import (
    LATENCY_RATIO,
    LATENCY_RELATIVE_BOUND,
    latency_bin_sql,
    quantile_from_bins_sql,
)


def test_the_bound_is_half_a_bin_in_log_space() -> None:
    assert math.sqrt(LATENCY_RATIO) - 1 == pytest.approx(LATENCY_RELATIVE_BOUND)
    assert LATENCY_RELATIVE_BOUND < LATENCY_RATIO - 1 < 0.021


@pytest.mark.parametrize("q", [0.0, 0.05, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_quantiles_from_bins_merged_over_days_are_within_the_bound(q: float) -> None:
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(40), rng.integers(1, 400, size=40))
    values = np.exp(rng.normal(5.5, 1.2, size=groups.size)) * (rng.random(groups.size) > 0.01)
    values = np.round(values, 1)  # latencies logged in tenths of a ms, a few zeros
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE raw AS SELECT unnest($g) AS g, unnest($v) AS v, unnest($d) AS day",
        {"g": groups.tolist(), "v": values.tolist(), "d": (np.arange(groups.size) % 7).tolist()},
    )
    # one bin table per day, merged by the quantile (as a window of daily rollups is)
    con.execute(
        f"CREATE TABLE bins AS SELECT g, day, {latency_bin_sql('v')} AS bin, count(*) AS n "
        "FROM raw GROUP BY ALL"
    )
    got = dict(con.execute(quantile_from_bins_sql("bins", ("g",), q)).fetchall())
    exact = dict(con.execute(f"SELECT g, quantile_cont(v, {q}) FROM raw GROUP BY g").fetchall())
    assert got.keys() == exact.keys()
    for g, value in exact.items():
        assert abs(got[g] - value) <= LATENCY_RELATIVE_BOUND * value + 1e-12, (g, got[g], value)
