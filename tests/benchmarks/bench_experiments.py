"""Experiment-analysis figures: vectorized statistics against per-comparison library calls.

``python tests/benchmarks/bench_experiments.py [--quick]`` prints markdown tables and writes
``data/benchmarks/experiments.json`` (through the shared harness: date and machine included):

1. **10,000 experiment-metric comparisons** (two arms each, sufficient statistics): our
   vectorized Welch test (+ relative effect, CI, chance to win) + Holm correction, the
   sequential test and the Bayesian test, beside a Python loop calling
   ``scipy.stats.ttest_ind_from_stats`` per comparison and ``statsmodels`` ``multipletests``
   (the bare baseline), and beside a loop calling our own engine one comparison at a time.
   The p-values of the two paths are checked to agree.
2. **Warehouse aggregation**: the per-unit, per-look statistics SQL (``STATS_SQL``) on a
   synthetic experiment table, beside a bare DuckDB ``GROUP BY`` of per-request sums (what a
   row-level, single-look analysis would compute).

3. **SRM on 10,000 experiments**: the vectorized always-valid sequential test and chi-square
   beside a loop of ``scipy.stats.chisquare`` calls.

Peak memory: tracemalloc for the numpy part, ``ru_maxrss`` for the process.
"""

from __future__ import annotations

import datetime as dt
import time
import tracemalloc
from typing import Any

import numpy as np
from harness import Clock, bench_parser, markdown_table, peak_rss_mib, write_result

COMPARISONS = 10_000


def _inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for arm, lift in (("c", 0.0), ("t", 0.01)):
        units = rng.integers(200, 20_000, n).astype(float)
        mean = rng.uniform(0.5, 0.9, n) + lift * (rng.random(n) < 0.3)
        sd = rng.uniform(0.05, 0.3, n)
        out[f"{arm}_n"], out[f"{arm}_mean"], out[f"{arm}_sd"] = units, mean, sd
        out[f"{arm}_sum"] = units * mean
        out[f"{arm}_ss"] = (units - 1) * sd**2 + units * mean**2
    return out


def _vectorized(x: dict[str, np.ndarray]) -> dict[str, Any]:
    from strategies.experiments import (
        BayesianTest,
        MeanStats,
        SequentialTest,
        WelchTest,
        adjust_pvalues,
    )

    timings: dict[str, float] = {}
    start = time.perf_counter()
    control = MeanStats(n=x["c_n"], sum=x["c_sum"], sum_squares=x["c_ss"]).moments()
    treatment = MeanStats(n=x["t_n"], sum=x["t_sum"], sum_squares=x["t_ss"]).moments()
    welch = WelchTest(alpha=0.05).compute(control, treatment)
    adjusted = adjust_pvalues(welch.p_value, method="holm")
    timings["fixed_welch_plus_holm_s"] = time.perf_counter() - start
    start = time.perf_counter()
    SequentialTest(alpha=0.05).compute(control, treatment)
    timings["sequential_s"] = time.perf_counter() - start
    start = time.perf_counter()
    BayesianTest().compute(control, treatment)
    timings["bayesian_s"] = time.perf_counter() - start
    return {"timings": timings, "p": welch.p_value, "p_holm": adjusted}


def _scipy_loop(x: dict[str, np.ndarray]) -> dict[str, Any]:
    from scipy import stats as sps
    from statsmodels.stats.multitest import multipletests

    start = time.perf_counter()
    p = np.empty(len(x["c_n"]))
    for i in range(len(p)):
        p[i] = sps.ttest_ind_from_stats(
            x["t_mean"][i], x["t_sd"][i], x["t_n"][i],
            x["c_mean"][i], x["c_sd"][i], x["c_n"][i], equal_var=False,
        ).pvalue  # fmt: skip
    holm = multipletests(p, method="holm")[1]
    return {"seconds": time.perf_counter() - start, "p": p, "p_holm": holm}


def _engine_loop(x: dict[str, np.ndarray], count: int) -> float:
    from strategies.experiments import MeanStats, WelchTest

    test = WelchTest(alpha=0.05)
    start = time.perf_counter()
    for i in range(count):
        c = MeanStats(n=x["c_n"][i], sum=x["c_sum"][i], sum_squares=x["c_ss"][i]).moments()
        t = MeanStats(n=x["t_n"][i], sum=x["t_sum"][i], sum_squares=x["t_ss"][i]).moments()
        test.compute(c, t)
    return (time.perf_counter() - start) * len(x["c_n"]) / count


def _warehouse(rows: int) -> dict[str, Any]:
    from tasks.experiments.analyze import STATS_SQL
    from tasks.warehouse.connection import connect

    con = connect(path=":memory:")
    con.execute("SELECT setseed(0.42)")
    con.execute(
        f"""
        INSERT INTO usage_logs (request_id, ts, day, use_case, model, experiment_id, variant_id,
            unit_id, input_tokens, output_tokens, latency_ms, cost_usd, cost_source, status,
            quality, feedback, source_file, source_line, ingest_id)
        SELECT 'r' || i, TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_days(CAST(i % 28 AS INTEGER)),
            DATE '2026-10-01' + CAST(i % 28 AS INTEGER), 'uc', 'm', 'exp-' || (i % 4),
            CASE WHEN hash(u) % 2 = 0 THEN 'control' ELSE 'treatment' END, 'u' || u,
            100 + (random() * 200)::BIGINT, 50 + (random() * 100)::BIGINT, 500 + random() * 1000,
            random() * 0.002, 'log', CASE WHEN random() < 0.02 THEN 'error' ELSE 'success' END,
            random(), CASE WHEN random() < 0.3 THEN 1 ELSE NULL END, 'f', i, 'b'
        FROM (SELECT range AS i, CAST(floor(pow(random(), 1.5) * {rows // 10}) AS BIGINT) AS u
              FROM range({rows}))
        """
    )
    params = {"as_of": dt.date(2026, 10, 28), "experiments": None}
    start = time.perf_counter()
    out = con.execute(STATS_SQL, params).fetchall()
    ours = time.perf_counter() - start
    start = time.perf_counter()
    con.execute(
        """
        SELECT experiment_id, variant_id, day, count(*), sum(quality), sum(quality * quality),
            count(*) FILTER (WHERE status = 'error'), sum(cost_usd), sum(cost_usd * cost_usd),
            sum(latency_ms), sum(latency_ms * latency_ms), count(feedback),
            sum(input_tokens + output_tokens)
        FROM usage_logs GROUP BY ALL
        """
    ).fetchall()
    bare = time.perf_counter() - start
    con.close()
    return {
        "rows": rows,
        "stat_rows": len(out),
        "per_unit_per_look_sql_s": ours,
        "bare_duckdb_group_by_s": bare,
        "ratio": ours / bare,
    }


def _srm(n: int) -> dict[str, Any]:
    from scipy import stats as sps

    from strategies.experiments import sequential_srm_test, srm_test

    rng = np.random.default_rng(3)
    units = rng.integers(1000, 50_000, n)
    treated = rng.binomial(units, 0.5)
    counts = np.stack([units - treated, treated], axis=1).astype(float)
    with Clock() as seq:
        sequential_srm_test(counts, [[0.5, 0.5]])
    with Clock() as chi:
        ours = srm_test(counts, [[0.5, 0.5]]).p_value
    with Clock() as loop:
        ref = np.array([sps.chisquare(row).pvalue for row in counts])
    return {
        "experiments": n,
        "sequential_srm_s": seq.seconds,
        "chi_square_vectorized_s": chi.seconds,
        "scipy_chisquare_loop_s": loop.seconds,
        "max_abs_p_difference": float(np.max(np.abs(ours - ref))),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench_parser(__doc__).parse_args(argv)
    x = _inputs(COMPARISONS)
    _vectorized(x)  # warm-up (imports, scipy distribution objects)
    vec = _vectorized(x)
    tracemalloc.start()  # memory measured in a separate pass: tracemalloc slows numpy calls
    _vectorized(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    base = _scipy_loop(x)
    agree = float(np.max(np.abs(vec["p"] - base["p"])))
    agree_holm = float(np.max(np.abs(vec["p_holm"] - base["p_holm"])))
    engine_loop = _engine_loop(x, 1000 if args.quick else COMPARISONS)
    fixed = vec["timings"]["fixed_welch_plus_holm_s"]
    stats = {
        "comparisons": COMPARISONS,
        **vec["timings"],
        "scipy_statsmodels_loop_s": base["seconds"],
        "engine_one_at_a_time_s": engine_loop,
        "speedup_vs_scipy_loop": base["seconds"] / fixed,
        "max_abs_p_difference": agree,
        "max_abs_holm_difference": agree_holm,
        "numpy_peak_mib": peak / 2**20,
    }
    warehouse = _warehouse(200_000 if args.quick else 2_000_000)
    srm = _srm(COMPARISONS)
    print(
        markdown_table(
            [
                {"10,000 comparisons": "vectorized Welch + relative + CI + Holm", "s": fixed},
                {"10,000 comparisons": "vectorized sequential (mSPRT)",
                 "s": vec["timings"]["sequential_s"]},
                {"10,000 comparisons": "vectorized Bayesian", "s": vec["timings"]["bayesian_s"]},
                {"10,000 comparisons": "loop: scipy ttest_ind_from_stats + statsmodels Holm",
                 "s": base["seconds"]},
                {"10,000 comparisons": "loop: our engine one comparison at a time",
                 "s": engine_loop},
            ]
        )
    )  # fmt: skip
    print(
        f"\nspeed-up vs scipy loop: {stats['speedup_vs_scipy_loop']:.0f}x; max |p diff| {agree:.2e}"
    )
    print()
    print(
        markdown_table(
            [
                {"warehouse": "per-unit per-look statistics SQL", "rows": warehouse["rows"],
                 "s": warehouse["per_unit_per_look_sql_s"]},
                {"warehouse": "bare DuckDB per-request GROUP BY", "rows": warehouse["rows"],
                 "s": warehouse["bare_duckdb_group_by_s"]},
            ]
        )
    )  # fmt: skip
    print()
    print(
        markdown_table(
            [
                {"SRM, 10,000 experiments": "sequential (vectorized)",
                 "s": srm["sequential_srm_s"]},
                {"SRM, 10,000 experiments": "chi-square (vectorized)",
                 "s": srm["chi_square_vectorized_s"]},
                {"SRM, 10,000 experiments": "loop: scipy.stats.chisquare",
                 "s": srm["scipy_chisquare_loop_s"]},
            ]
        )
    )  # fmt: skip
    result = {
        "comparisons": stats,
        "warehouse": warehouse,
        "srm": srm,
        "peak_rss_mib": peak_rss_mib(),
    }
    print(f"\npeak RSS {result['peak_rss_mib']:.0f} MiB; numpy peak {peak / 2**20:.1f} MiB")
    print(f"written {write_result('experiments', result, quick=args.quick, out=args.out)}")
    return result


if __name__ == "__main__":
    main()
