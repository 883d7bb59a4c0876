"""Latency quantiles from daily bins merged over a window stay within the stated bound of
DuckDB's quantile_cont on the raw values (the p95 of config metrics and night metrics)."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from strategies.rollup_quantiles import RATIO, bin_sql
from tasks.warehouse.rollup_specs import LATENCY_RELATIVE_BOUND, binned_quantiles


def test_the_bound_is_one_bin_ratio() -> None:
    assert math.isclose(LATENCY_RELATIVE_BOUND, RATIO - 1)
    assert LATENCY_RELATIVE_BOUND < 0.0101


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
    # one bin table per day, merged by the read (as a window of daily rollups is)
    con.execute(
        f"CREATE TABLE bins AS SELECT g, day, {bin_sql('v')} AS bin, count(*) AS n, "
        "min(v) AS vmin, max(v) AS vmax FROM raw GROUP BY ALL"
    )
    got = binned_quantiles(con, "(SELECT * FROM bins WHERE day >= $first)", {"first": 0}, ("g",), q)
    exact = dict(con.execute(f"SELECT g, quantile_cont(v, {q}) FROM raw GROUP BY g").fetchall())
    assert got.keys() == {(g,) for g in exact}
    for g, value in exact.items():
        assert abs(got[(g,)] - value) <= LATENCY_RELATIVE_BOUND * value + 1e-12, (g, value)
    assert binned_quantiles(con, "(SELECT * FROM bins WHERE day < 0)", {}, ("g",), q) == {}
