"""The ground truth matches the generated data within sampling error (seeded, so deterministic)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from tasks.simulation import (
    GroundTruth,
    SimulationSpec,
    ground_truth,
    make_config,
    simulate,
    simulate_config_traffic,
    true_quality,
)
from tasks.simulation import world as w

SPEC = SimulationSpec(
    seed=11,
    days=30,
    requests_per_day={
        "support-summarize": 2400,
        "ticket-classify": 1500,
        "sales-email": 1500,
        "code-review": 1200,
    },
)
# Unit-level effects make the finite user population a small fixed bias (about 1/sqrt(0.75 *
# n_units) of their sd); allow for it on top of 4 standard errors.
UNIT_ALLOWANCE = 0.002


@pytest.fixture(scope="module")
def sim() -> tuple[duckdb.DuckDBPyConnection, GroundTruth]:
    table = simulate(SPEC)
    con = duckdb.connect(":memory:")
    con.register("rows_arrow", table)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE logs AS SELECT *, CAST(timestamp AT TIME ZONE 'UTC' AS DATE) AS day "
        "FROM rows_arrow"
    )
    return con, ground_truth(SPEC)


def _day_index(day: dt.date) -> int:
    return (day - SPEC.start_date).days


def test_config_quality_error_cost_latency_match_truth(sim: tuple) -> None:
    con, truth = sim
    drift_from = SPEC.day(SPEC.drift_day)
    spike_day = SPEC.day(SPEC.cost_spike_day)
    checked = 0
    for uc_name, uc in truth.use_cases.items():
        for cfg in uc.configs:
            p_in = truth.prices[cfg.model]["input_usd_per_token"]
            p_out = truth.prices[cfg.model]["output_usd_per_token"]
            # normal days only: drift and spike days change this use case on purpose
            n, q_mean, q_sd, q_n, err, cost, cost_sd, lat, lat_sd, lat_n, p95 = con.execute(
                """
                SELECT count(*), avg(quality), stddev_samp(quality), count(quality),
                       avg((status = 'error')::INT),
                       avg(input_tokens * ? + output_tokens * ?),
                       stddev_samp(input_tokens * ? + output_tokens * ?),
                       avg(latency_ms) FILTER (status = 'success'),
                       stddev_samp(latency_ms) FILTER (status = 'success'),
                       count(*) FILTER (status = 'success'),
                       quantile_cont(latency_ms, 0.95) FILTER (status = 'success')
                FROM logs
                WHERE config_id = ? AND use_case = ?
                  AND NOT (use_case = 'sales-email' AND day >= ?)
                  AND NOT (use_case = 'code-review' AND day = ?)
                """,
                [p_in, p_out, p_in, p_out, cfg.config_id, uc_name, drift_from, spike_day],
            ).fetchall()[0]
            assert n > 1000, (cfg.config_id, n)
            assert abs(q_mean - cfg.true_mean_quality) < 4 * q_sd / np.sqrt(q_n) + UNIT_ALLOWANCE
            err_se = np.sqrt(cfg.true_error_rate * (1 - cfg.true_error_rate) / n)
            assert abs(err - cfg.true_error_rate) < 4 * err_se
            assert abs(cost - cfg.true_mean_cost_usd) < 4 * cost_sd / np.sqrt(n)
            assert abs(lat - cfg.true_mean_latency_ms) < 4 * lat_sd / np.sqrt(lat_n) + 0.01 * lat
            # empirical p95 of a few thousand draws: a few percent of sampling error
            assert abs(p95 - cfg.true_p95_latency_ms) < 0.06 * cfg.true_p95_latency_ms
            checked += 1
    assert checked == sum(len(u.configs) for u in truth.use_cases.values())


def test_propensities_are_probabilities_and_match_config_frequencies(sim: tuple) -> None:
    con, truth = sim
    lo, hi = con.execute("SELECT min(propensity), max(propensity) FROM logs").fetchall()[0]
    assert 0 < lo <= hi <= 1
    for uc_name, uc in truth.use_cases.items():
        for cfg in uc.configs:
            # share of the config's rows, with a cluster-robust (by unit) standard error
            n_total, share, se = con.execute(
                """
                WITH per_unit AS (
                    SELECT unit_id, count(*) AS n_u, sum((config_id = ?)::INT) AS x_u
                    FROM logs WHERE use_case = ? GROUP BY unit_id
                ), tot AS (SELECT sum(n_u) AS n, sum(x_u) / sum(n_u) AS p FROM per_unit)
                SELECT n, p, sqrt(sum((x_u - p * n_u) ^ 2)) / n FROM per_unit, tot GROUP BY n, p
                """,
                [cfg.config_id, uc_name],
            ).fetchall()[0]
            assert n_total == SPEC.days * SPEC.requests_per_day[uc_name]
            logged = con.execute(
                "SELECT DISTINCT propensity FROM logs WHERE config_id = ?", [cfg.config_id]
            ).fetchall()
            assert [r[0] for r in logged] == [pytest.approx(cfg.propensity)]
            assert abs(share - cfg.propensity) < 4 * se


def test_ab_experiment_shows_its_true_lift_and_aa_shows_none(sim: tuple) -> None:
    con, truth = sim
    ab = truth.experiment(w.AB_EXPERIMENT_ID)
    aa = truth.experiment(w.AA_EXPERIMENT_ID)
    assert ab.true_absolute_lift == pytest.approx(0.02, abs=1e-9)
    assert not ab.guardrail_harm
    assert aa.true_absolute_lift == 0.0
    assert aa.arms[0].config_id == aa.arms[1].config_id
    for exp, truth_lift in ((ab, ab.true_absolute_lift), (aa, 0.0)):
        rows = con.execute(
            """
            SELECT variant_id, avg(quality), var_samp(quality), count(quality),
                   count(DISTINCT unit_id)
            FROM logs WHERE experiment_id = ? GROUP BY variant_id ORDER BY variant_id
            """,
            [exp.experiment_id],
        ).fetchall()
        assert [r[0] for r in rows] == ["control", "treatment"]
        (_, m0, v0, n0, u0), (_, m1, v1, n1, u1) = rows
        # the unit split is a 50/50 hash: arms are balanced (no SRM)
        chi2 = stats.chisquare([n0, n1]).pvalue
        assert chi2 > 1e-4
        welch = stats.ttest_ind_from_stats(
            m1, np.sqrt(v1), n1, m0, np.sqrt(v0), n0, equal_var=False
        )
        se = np.sqrt(v0 / n0 + v1 / n1)
        assert abs((m1 - m0) - truth_lift) < 4 * se
        if exp is ab:
            assert welch.pvalue < 1e-3  # the +0.02 is detectable at this size
        # a unit never switches arm
        switched = con.execute(
            "SELECT count(*) FROM (SELECT unit_id FROM logs WHERE experiment_id = ? "
            "GROUP BY unit_id HAVING count(DISTINCT variant_id) > 1)",
            [exp.experiment_id],
        ).fetchall()[0][0]
        assert switched == 0 and u0 > 100 and u1 > 100


def test_drift_is_visible_from_its_day(sim: tuple) -> None:
    con, truth = sim
    drift = truth.drift
    assert drift is not None and drift.start_date == "2026-10-21"
    q_before, q_after, in_before, in_after, sd_q, n_after = con.execute(
        """
        SELECT avg(quality) FILTER (day < ?), avg(quality) FILTER (day >= ?),
               avg(input_tokens) FILTER (day < ? AND error_type IS DISTINCT FROM 'rate_limit'),
               avg(input_tokens) FILTER (day >= ? AND error_type IS DISTINCT FROM 'rate_limit'),
               stddev_samp(quality) FILTER (day >= ?), count(quality) FILTER (day >= ?)
        FROM logs WHERE config_id = ?
        """,
        [drift.start_date] * 6 + [drift.config_id],
    ).fetchall()[0]
    assert abs(q_after - drift.quality_after) < 4 * sd_q / np.sqrt(n_after) + UNIT_ALLOWANCE
    assert q_after / q_before == pytest.approx(drift.quality_factor, abs=0.02)
    assert in_after / in_before == pytest.approx(drift.input_token_factor, rel=0.03)
    assert in_before == pytest.approx(drift.input_tokens_before, rel=0.02)


def test_cost_spike_is_visible_on_its_day(sim: tuple) -> None:
    con, truth = sim
    spike = truth.cost_spike
    assert spike is not None and spike.date == "2026-10-26" and spike.cost_factor > 2
    prices = pa.table(
        {
            "model": list(truth.prices),
            "p_in": [v["input_usd_per_token"] for v in truth.prices.values()],
            "p_out": [v["output_usd_per_token"] for v in truth.prices.values()],
        }
    )
    con.register("prices", prices)
    daily = dict(
        con.execute(
            """
            SELECT day, avg(input_tokens * p_in + output_tokens * p_out)
            FROM logs JOIN prices USING (model) WHERE use_case = ? GROUP BY day
            """,
            [spike.use_case],
        ).fetchall()
    )
    spike_cost = daily.pop(dt.date.fromisoformat(spike.date))
    normal = float(np.mean(list(daily.values())))
    assert spike_cost / normal == pytest.approx(spike.cost_factor, rel=0.08)
    assert max(daily.values()) < 1.3 * normal  # no other day spikes
    flagged = con.execute(
        "SELECT count(*) FROM logs WHERE metadata LIKE '%max_tokens_override%' AND day <> ?",
        [dt.date.fromisoformat(spike.date)],
    ).fetchall()[0][0]
    assert flagged == 0


def test_true_quality_of_an_unlogged_config_matches_served_traffic() -> None:
    cfg = make_config("code-review", "gpt-4o", "review-v1", 0.9, 0.7, 512)
    assert cfg.config_id not in {
        c.config_id
        for c in (w.production_config("code-review"), *w.exploration_configs("code-review"))
    }
    table = simulate_config_traffic(SPEC, "code-review", cfg, 30_000, day=3, seed=5)
    assert table.num_rows == 30_000
    assert set(table.column("config_id").to_pylist()) == {cfg.config_id}
    q = np.asarray(table.column("quality").drop_null())
    truth = true_quality("code-review", "gpt-4o", "review-v1", 0.9, 0.7, 512)
    assert abs(q.mean() - truth) < 4 * q.std(ddof=1) / np.sqrt(len(q)) + UNIT_ALLOWANCE
    finish_length = np.mean(['"length"' in m for m in table.column("metadata").to_pylist()])
    trunc = w.truncation_probability("code-review", 512)
    ok = 1 - w.true_error_rate("code-review", "gpt-4o", 512)
    assert abs(finish_length - trunc * ok) < 4 * np.sqrt(trunc * (1 - trunc) / table.num_rows)


def test_world_functions_agree_with_scipy_and_have_the_promised_shape() -> None:
    uc = w.USE_CASES["support-summarize"]
    for m in (64, 128, 512):
        ref = stats.lognorm.sf(m + 0.5, uc.output_sigma, scale=uc.output_median)
        assert w.truncation_probability("support-summarize", m) == pytest.approx(ref, rel=1e-9)
    # E[min(D, m)] against a brute-force sum of the discretised lognormal (scipy cdf)
    k = np.arange(1, 5000)
    cdf = stats.lognorm.cdf
    pmf = cdf(k + 0.5, uc.output_sigma, scale=uc.output_median) - np.where(
        k > 1, cdf(k - 0.5, uc.output_sigma, scale=uc.output_median), 0.0
    )
    ref = float(np.sum(np.minimum(k, 128) * pmf))
    assert w.expected_output_tokens("support-summarize", 128) == pytest.approx(ref, rel=1e-6)
    # quality peaks at the use case's best temperature and drops when max_tokens truncates
    args = ("support-summarize", "gpt-4o", "summarize-v1")
    at_best = true_quality(*args, uc.best_temperature, uc.best_top_p, 512)
    assert at_best > true_quality(*args, 0.0, uc.best_top_p, 512)
    assert at_best > true_quality(*args, 1.5, uc.best_top_p, 512)
    assert at_best > true_quality(*args, uc.best_temperature, 0.5, 512)
    assert true_quality(*args, uc.best_temperature, uc.best_top_p, 128) < at_best - 0.05
    with pytest.raises(ValueError, match="unknown model"):
        true_quality("support-summarize", "gpt-9", "summarize-v1", 0.3, 0.9, 512)


def test_true_optimum_beats_every_logged_config_under_the_same_caps(sim: tuple) -> None:
    _, truth = sim
    for uc in truth.use_cases.values():
        prod = uc.config(uc.production_config_id)
        assert uc.optimal.true_mean_quality >= prod.true_mean_quality
        assert uc.optimal.true_mean_cost_usd <= prod.true_mean_cost_usd * (1 + 1e-9)
        assert uc.optimal_quality.true_mean_quality >= uc.optimal.true_mean_quality
        for cfg in uc.configs:
            if (
                cfg.true_mean_cost_usd <= prod.true_mean_cost_usd
                and cfg.true_error_rate <= prod.true_error_rate
            ):
                assert cfg.true_mean_quality <= uc.optimal.true_mean_quality + 1e-12
        o = uc.optimal
        assert true_quality(
            uc.use_case, o.model, o.prompt_id, o.temperature, o.top_p, o.max_tokens
        ) == pytest.approx(o.true_mean_quality)
    # at least one use case has real room to improve (the demo needs it)
    gains = [
        u.optimal.true_mean_quality - u.config(u.production_config_id).true_mean_quality
        for u in truth.use_cases.values()
    ]
    assert max(gains) > 0.02


def test_traffic_follows_the_diurnal_curve_and_context_mix(sim: tuple) -> None:
    con, _ = sim
    hours = dict(con.execute("SELECT hour(timestamp), count(*) FROM logs GROUP BY 1").fetchall())
    observed = np.array([hours.get(h, 0) for h in range(24)])
    expected = np.asarray(w.HOUR_WEIGHTS) / np.sum(w.HOUR_WEIGHTS) * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    assert observed[15] > 3 * observed[3]  # afternoon peak, night trough
    uc = w.USE_CASES["ticket-classify"]
    tasks = dict(
        con.execute(
            "SELECT task_type, count(*) FROM logs WHERE use_case = 'ticket-classify' GROUP BY 1"
        ).fetchall()
    )
    observed = np.array([tasks[t] for t in uc.task_types])
    expected = np.asarray(uc.task_type_weights) * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_feedback_tracks_quality(sim: tuple) -> None:
    con, truth = sim
    for uc in truth.use_cases.values():
        prod = uc.config(uc.production_config_id)
        pos, given, given_share = con.execute(
            """
            SELECT avg((feedback = 1)::INT) FILTER (feedback IS NOT NULL),
                   count(feedback), count(feedback) / count(*) FILTER (status = 'success')
            FROM logs WHERE config_id = ? AND NOT (use_case = 'sales-email' AND day >= ?)
            """,
            [prod.config_id, SPEC.day(SPEC.drift_day)],
        ).fetchall()[0]
        p = prod.true_positive_feedback_share
        assert abs(pos - p) < 4 * np.sqrt(p * (1 - p) / given) + UNIT_ALLOWANCE
        assert given_share == pytest.approx(w.FEEDBACK_RATE, abs=0.02)
    # higher-quality rows get more thumbs up
    lo, hi = con.execute(
        """
        SELECT avg((feedback = 1)::INT) FILTER (quality < 0.5),
               avg((feedback = 1)::INT) FILTER (quality > 0.8)
        FROM logs WHERE feedback IS NOT NULL
        """
    ).fetchall()[0]
    assert hi > lo + 0.3
