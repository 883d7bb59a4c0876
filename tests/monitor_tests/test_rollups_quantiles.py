"""Fixed log-spaced bins: the SQL binning equals the numpy one, and quantiles read from merged
bins are within the stated bound (``RATIO - 1``) of DuckDB's ``quantile_cont`` on the raw rows."""

from __future__ import annotations

import doctest

import duckdb
import numpy as np
import pytest

import strategies.rollup_quantiles as rq
from strategies.monitor.binned import ks_from_binned, psi
from strategies.rollup_quantiles import (
    RATIO,
    LogHistogram,
    bin_sql,
    drift_bins,
    merge_histograms,
    quantile_by_group,
)


def test_doctests_run() -> None:
    result = doctest.testmod(rq)
    assert result.attempted > 5 and result.failed == 0


def _sample(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == 0:  # latency-like
        return rng.lognormal(6.0, 1.0, n)
    if kind == 1:  # token counts: integers, many repeats, zeros
        return rng.integers(0, 3000, n).astype(float)
    if kind == 2:  # quality-like in [0, 1] with exact zeros
        x = rng.uniform(0.0, 1.0, n)
        x[rng.random(n) < 0.1] = 0.0
        return x
    return np.round(rng.exponential(0.002, n), 6)  # cost-like, tiny values


@pytest.mark.parametrize("kind", [0, 1, 2, 3])
def test_sql_bins_equal_numpy_bins_and_quantiles_within_bound(kind: int) -> None:
    rng = np.random.default_rng(100 + kind)
    con = duckdb.connect()
    for trial in range(25):
        n = int(rng.integers(1, 4000))
        x, g = _sample(kind, n, rng), rng.integers(0, 4, n)
        con.execute(
            "CREATE OR REPLACE TABLE t AS SELECT unnest($x) AS x, unnest($g) AS g",
            {"x": x.tolist(), "g": g.tolist()},
        )
        rows = con.execute(
            f"SELECT g, {bin_sql('x')} AS b, count(*), min(x), max(x) FROM t"
            " GROUP BY ALL ORDER BY g, b"
        ).fetchall()
        for group in range(4):
            h = LogHistogram.from_values(x[g == group])
            assert [r[1] for r in rows if r[0] == group] == h.index.tolist(), trial
        a = np.asarray(rows, dtype=float)
        for q in (0.0, 0.25, 0.5, 0.95, 0.99, 1.0):
            sql = f"SELECT g, quantile_cont(x, {q}) FROM t GROUP BY g"
            truth = dict(con.execute(sql).fetchall())
            labels, est = quantile_by_group(a[:, 0].astype(int), a[:, 2], a[:, 3], a[:, 4], q)
            for label, value in zip(labels, est, strict=True):
                exact = truth[int(label)]
                assert abs(value - exact) <= (RATIO - 1) * abs(exact) + 1e-12, (trial, q)
            if q in (0.0, 1.0):  # the ends of the range are exact
                assert all(v == truth[int(lab)] for lab, v in zip(labels, est, strict=True))


def test_merged_days_equal_one_histogram_of_all_rows() -> None:
    rng = np.random.default_rng(5)
    days = [rng.lognormal(5.5 + 0.1 * d, 0.6, 500 + 50 * d) for d in range(14)]
    merged = merge_histograms(LogHistogram.from_values(x) for x in days)
    whole = LogHistogram.from_values(np.concatenate(days))
    for name in ("index", "counts", "vmin", "vmax"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name)), name
    exact = float(np.quantile(np.concatenate(days), 0.95))
    assert abs(merged.quantile(0.95) / exact - 1) <= RATIO - 1


def test_empty_and_single_value_histograms() -> None:
    assert np.isnan(merge_histograms([]).quantile(0.5))
    assert LogHistogram.from_values([0.0, 0.0]).quantile(0.95) == 0.0
    assert LogHistogram.from_values([42.0] * 7).quantile(0.3) == 42.0
    with pytest.raises(ValueError, match="strictly ascending"):
        LogHistogram(np.array([2, 1]), np.array([1, 1]), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="q must be"):
        quantile_by_group([0], [1], [1.0], [1.0], 1.5)


def test_drift_bins_keep_each_group_under_one_level_of_either_window() -> None:
    rng = np.random.default_rng(9)
    ref_x, cur_x = rng.lognormal(6.0, 0.7, 20_000), rng.lognormal(6.05, 0.7, 3_000)
    edges, ref, cur = drift_bins(
        LogHistogram.from_values(ref_x), LogHistogram.from_values(cur_x), levels=100
    )
    assert edges.size <= 201 and np.all(np.diff(edges) > 0)
    assert ref.sum() == ref_x.size and cur.sum() == cur_x.size
    # a group may exceed 1/levels only by the one fine bin that crossed the level
    assert ref.max() / ref.sum() < 0.02 and cur.max() / cur.sum() < 0.02
    # the statistics are those of exact quantile edges, within the binning
    exact_edges = np.quantile(np.r_[ref_x, cur_x], [0, *np.linspace(0.01, 0.99, 99), 1])
    exact_ref = np.bincount(np.searchsorted(exact_edges, ref_x), minlength=exact_edges.size)
    exact_cur = np.bincount(np.searchsorted(exact_edges, cur_x), minlength=exact_edges.size)
    d_fixed, _ = ks_from_binned(ref, cur)
    d_exact, _ = ks_from_binned(exact_ref, exact_cur)
    assert abs(d_fixed - d_exact) < 0.01
    assert abs(psi(ref, cur) - psi(exact_ref, exact_cur)) < 0.05
