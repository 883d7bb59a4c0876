"""tasks.allocation budget / bandit_allocation / offpolicy_evaluation on hand-made rows."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest

from flows.cli_support import to_jsonable
from strategies.budget import Candidate
from strategies.offpolicy import aggregate_logged, estimate_policy_value
from tasks.allocation.bandits import bandit_allocation, cell_stats, contextual_allocation
from tasks.allocation.budget import budget_report, budget_traffic_mix, use_case_traffic_mix
from tasks.allocation.offpolicy import evaluate_policy, logged_cells, parse_policy

UTC = dt.UTC


def _ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, tzinfo=UTC)


CONFIG: dict[str, Any] = {
    "defaults": {"forecast_window_days": 7, "forecast_level": 0.9, "min_candidate_requests": 5},
    "use_cases": {
        "alpha": {"monthly_budget_usd": 100.0},
        "beta": {"monthly_budget_usd": 1.0},
        "silent": {"monthly_budget_usd": 5.0},
    },
}


def _spend_rows() -> list[dict[str, Any]]:
    rows = []
    for day in range(1, 11):  # alpha: 1.00 USD/day over two calls, Oct 1..10
        for _ in range(2):
            rows.append({"timestamp": _ts(day), "use_case": "alpha", "cost_usd": 0.5})
    for day in (6, 8, 10):  # beta starts on the 6th and skips days (zero spend on 7th, 9th)
        rows.append({"timestamp": _ts(day), "use_case": "beta", "cost_usd": 0.3})
    return rows


def test_budget_report_sums_forecasts_and_explains(con: Any, load_rows: Any) -> None:
    load_rows(con, _spend_rows())
    reports = {
        r.use_case: r for r in budget_report(con, as_of=dt.date(2026, 10, 10), config=CONFIG)
    }
    assert set(reports) == {"alpha", "beta", "silent"}
    alpha = reports["alpha"]
    assert alpha.month == "2026-10" and alpha.requests_to_date == 20
    assert alpha.month_to_date_usd == pytest.approx(10.0)
    assert alpha.forecast is not None and alpha.forecast.forecast_total == pytest.approx(31.0)
    assert alpha.status == "on_track" and alpha.projected_overrun_usd == 0.0
    assert alpha.projected_monthly_requests == pytest.approx(62.0)
    beta = reports["beta"]
    assert beta.forecast is not None
    # forecast from the 6th: 5 elapsed days (3 with spend), 26 days of the month active
    assert beta.forecast.days_elapsed == 5 and beta.forecast.days_in_month == 26
    assert beta.forecast.daily_mean == pytest.approx(0.18)
    assert beta.forecast.forecast_total == pytest.approx(0.9 + 21 * 0.18)
    assert beta.status == "over_budget"
    assert beta.projected_overrun_usd == pytest.approx(0.9 + 21 * 0.18 - 1.0)
    assert "first call this month on 2026-10-06" in beta.reasons[0]
    assert reports["silent"].status == "no_data" and reports["silent"].forecast is None
    json.dumps(to_jsonable(reports["beta"]))  # JSON-serialisable, inf/NaN-free


def test_traffic_mix_from_warehouse_candidates(con: Any, load_rows: Any) -> None:
    rows = _spend_rows()
    for i in range(30):
        rows.append(
            {
                "timestamp": _ts(9 + i % 2),
                "use_case": "alpha",
                "config_id": "good",
                "quality": 0.9,
                "cost_usd": 0.02,
                "latency_ms": 900.0,
            }
        )
        rows.append(
            {
                "timestamp": _ts(9 + i % 2),
                "use_case": "alpha",
                "config_id": "cheap",
                "quality": 0.6,
                "cost_usd": 0.001,
                "latency_ms": 300.0,
            }
        )
    rows.append({"timestamp": _ts(10), "use_case": "alpha", "config_id": "rare", "quality": 1.0})
    load_rows(con, rows)
    result = use_case_traffic_mix(
        con, use_case="alpha", as_of=dt.date(2026, 10, 10), config=CONFIG, window_days=3
    )
    assert result.status == "ok" and result.mix is not None
    assert "rare" in result.skipped and "request" in result.skipped["rare"]
    # the spend rows carry no quality score: skipped with that reason, never silently
    assert {c.config_id for c in result.candidates} == {"good", "cheap"}
    assert any("no quality" in why for why in result.skipped.values())
    mix = result.mix
    assert mix.feasible
    assert mix.expected_monthly_cost is not None and mix.expected_monthly_cost <= 100.0 + 1e-6
    direct = budget_traffic_mix(
        list(result.candidates),
        monthly_requests=result.monthly_requests or 0.0,
        budget=100.0,
        latency_ceiling=None,
        min_exploration=0.0,
    )
    assert direct.weights == pytest.approx(mix.weights)
    assert mix.weights["good"] > mix.weights["cheap"]


def test_traffic_mix_accepts_frontier_candidates_and_reports_infeasible(
    con: Any, load_rows: Any
) -> None:
    load_rows(con, _spend_rows())
    frontier = [Candidate("x", 0.7, 2.0, 100.0), Candidate("y", 0.9, 5.0, 100.0)]
    result = use_case_traffic_mix(
        con, use_case="alpha", as_of=dt.date(2026, 10, 10), config=CONFIG, candidates=frontier
    )
    assert result.mix is not None and not result.mix.feasible
    assert result.mix.weights == pytest.approx({"x": 1.0, "y": 0.0})
    assert result.mix.shortfall == pytest.approx(62 * 2.0 - 100.0)
    assert result.candidates == tuple(frontier)
    silent = use_case_traffic_mix(
        con, use_case="unknown", as_of=dt.date(2026, 10, 10), config=CONFIG
    )
    assert silent.status == "cannot_analyse" and "monthly_budget_usd" in silent.reasons[0]


def _arm_rows(rng: np.random.Generator, n: int = 600) -> list[dict[str, Any]]:
    means = {"a": 0.55, "b": 0.75, "c": 0.5}
    rows = []
    for i in range(n):
        arm = ["a", "b", "c"][i % 3]
        task = "chat" if i % 2 else "code"
        quality = float(
            np.clip(
                means[arm] + (0.2 if arm == "c" and task == "code" else 0.0) + rng.normal(0, 0.05),
                0,
                1,
            )
        )
        rows.append(
            {
                "timestamp": _ts(1 + i % 5, hour=i % 24),
                "use_case": "uc",
                "config_id": arm,
                "quality": quality,
                "feedback": 1 if quality > 0.6 else -1,
                "task_type": task,
                "user_segment": "pro",
                "propensity": 1 / 3,
                "input_tokens": 100 if i % 4 else 3000,
            }
        )
    return rows


def test_bandit_allocation_from_config_metrics(con: Any, load_rows: Any) -> None:
    load_rows(con, _arm_rows(np.random.default_rng(0)))
    result = bandit_allocation(
        con, use_case="uc", as_of=dt.date(2026, 10, 5), window_days=5, floor=0.05, seed=3
    )
    assert result.status == "ok"
    weights = result.weights()
    assert sum(weights.values()) == pytest.approx(1.0)
    assert max(weights, key=weights.__getitem__) == "b"
    assert min(weights.values()) >= 0.05 - 1e-12
    assert {a.config_id: a.n for a in result.arms} == {"a": 200, "b": 200, "c": 200}
    again = bandit_allocation(
        con, use_case="uc", as_of=dt.date(2026, 10, 5), window_days=5, floor=0.05, seed=3
    )
    assert again.weights() == weights
    fb = bandit_allocation(con, use_case="uc", as_of=dt.date(2026, 10, 5), reward="feedback")
    assert fb.status == "ok" and max(fb.weights(), key=fb.weights().__getitem__) == "b"
    empty = bandit_allocation(con, use_case="uc", as_of=dt.date(2026, 9, 1))
    assert empty.status == "cannot_analyse" and "no calls" in empty.reasons[0]
    json.dumps(to_jsonable(result))


def test_contextual_allocation_per_task_type(con: Any, load_rows: Any) -> None:
    load_rows(con, _arm_rows(np.random.default_rng(1)))
    cells = cell_stats(
        con,
        use_case="uc",
        start=dt.date(2026, 10, 1),
        end=dt.date(2026, 10, 5),
        features=["task_type", "input_bucket", "hour_bucket"],
    )
    assert sum(c.n for c in cells) == 600
    assert {v for c in cells for k, v in c.features if k == "input_bucket"} == {"short", "long"}
    assert {v for c in cells for k, v in c.features if k == "hour_bucket"} == {
        "00-05",
        "06-11",
        "12-17",
        "18-23",
    }
    result = contextual_allocation(
        con,
        use_case="uc",
        as_of=dt.date(2026, 10, 5),
        window_days=5,
        features=["task_type"],
        alpha=0.1,
        floor=0.05,
    )
    assert result.status == "ok"
    chosen = {c.cell["task_type"]: c.chosen for c in result.cells}
    assert chosen["chat"] == "b"
    by_cell = {c.cell["task_type"]: c for c in result.cells}
    # on code, c (0.70) and b (0.75) are close; on chat b clearly wins
    assert by_cell["chat"].scores["b"] > by_cell["chat"].scores["c"] + 0.15
    assert by_cell["code"].scores["c"] > by_cell["code"].scores["a"]
    with pytest.raises(ValueError, match="unknown context feature"):
        cell_stats(
            con,
            use_case="uc",
            start=dt.date(2026, 10, 1),
            end=dt.date(2026, 10, 5),
            features=["task_type; DROP TABLE usage_logs"],
        )


def test_offpolicy_sql_sums_equal_the_numpy_twin(con: Any, load_rows: Any) -> None:
    rows = _arm_rows(np.random.default_rng(2))
    load_rows(con, rows)
    cells, counts = logged_cells(
        con, use_case="uc", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 5)
    )
    assert counts == {
        "rows": 600,
        "missing_propensity": 0,
        "invalid_propensity": 0,
        "missing_reward": 0,
    }
    twin = aggregate_logged(
        [r["task_type"] for r in rows],
        [r["config_id"] for r in rows],
        [r["quality"] for r in rows],
        [r["propensity"] for r in rows],
    )
    assert len(cells) == len(twin)
    for got, ref in zip(cells, twin, strict=True):
        assert (got.cell, got.arm) == (ref.cell, ref.arm)
        np.testing.assert_allclose(
            [
                got.n,
                got.reward_sum,
                got.inv_p_sum,
                got.r_inv_p_sum,
                got.inv_p2_sum,
                got.r_inv_p2_sum,
                got.r2_inv_p2_sum,
                got.max_inv_p,
            ],
            [
                ref.n,
                ref.reward_sum,
                ref.inv_p_sum,
                ref.r_inv_p_sum,
                ref.inv_p2_sum,
                ref.r_inv_p2_sum,
                ref.r2_inv_p2_sum,
                ref.max_inv_p,
            ],
        )
    policy = {"chat": {"b": 1.0}, "code": {"c": 1.0}}
    result = evaluate_policy(
        con,
        use_case="uc",
        policy=policy,
        start=dt.date(2026, 10, 1),
        end=dt.date(2026, 10, 5),
        min_ess=50,
    )
    direct = estimate_policy_value(twin, policy, min_ess=50)
    assert result.status == "ok" and result.estimate.dr is not None and direct.dr is not None
    assert result.estimate.dr.value == pytest.approx(direct.dr.value)
    assert result.estimate.dr.lower < 0.725 < result.estimate.dr.upper
    json.dumps(to_jsonable(result))


def test_offpolicy_refuses_missing_propensity_and_reward(con: Any, load_rows: Any) -> None:
    rows = _arm_rows(np.random.default_rng(3))
    rows[0]["propensity"] = None
    rows[1]["quality"] = None
    rows[2]["propensity"] = 1.5
    load_rows(con, rows)
    result = evaluate_policy(
        con,
        use_case="uc",
        policy='{"b": 1.0}',
        start=dt.date(2026, 10, 1),
        end=dt.date(2026, 10, 5),
        context=None,
    )
    assert result.status == "cannot_estimate"
    text = " ".join(result.reasons)
    assert "1 logged row(s) have no propensity" in text
    assert "outside (0, 1]" in text and "no reward" in text
    assert result.estimate.dr is None
    errored = evaluate_policy(
        con,
        use_case="uc",
        policy={"b": 1.0},
        start=dt.date(2026, 10, 1),
        end=dt.date(2026, 10, 5),
        context=None,
        reward="success",
    )
    assert errored.status == "cannot_estimate" and "no propensity" in errored.reasons[0]


def test_parse_policy_accepts_json_files_and_flat_mappings(tmp_path: Any) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"chat": {"a": 0.25, "b": 0.75}, "*": {"a": 1}}))
    assert parse_policy(str(path)) == {"chat": {"a": 0.25, "b": 0.75}, "*": {"a": 1.0}}
    assert parse_policy('{"a": 0.5, "b": 0.5}') == {"*": {"a": 0.5, "b": 0.5}}
    with pytest.raises(ValueError, match="neither JSON nor an existing file"):
        parse_policy("no-such-file.json")
    with pytest.raises(ValueError, match="sum to"):
        parse_policy({"a": 0.3})
