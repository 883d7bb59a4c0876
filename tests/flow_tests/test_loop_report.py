"""The loop's report pieces: objective from config, expected change of the plan, text lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategies.objective import Objective
from strategies.promotion import propose_promotion
from strategies.search import ConfigStats
from tasks.core.config import ConfigError
from tasks.core.settings import load_settings
from tasks.nightly.loop import LOOP_METRICS, loop_section, objective_for, plan_expectation
from tasks.nightly.report import loop_lines


def _row(key: str, n: int, quality: float, cost: float) -> dict[str, object]:
    return {
        "config_key": key,
        "n": n,
        "successes": n,
        "quality_n": n,
        "quality_sum": quality * n,
        "quality_sum_squares": (quality**2 + 0.01) * n,
        "cost_sum": cost * n,
        "cost_sum_squares": (cost**2) * n * 1.1,
        "latency_mean": 900.0,
        "latency_p95": 1500.0,
    }


def test_objective_for_reads_defaults_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "nightly.toml").write_text(
        '[objective]\npreset = "cost-focused"\n\n'
        '[objective.use_cases.my-bot]\nkind = "min_cost"\nquality_floor = 0.75\n'
    )
    settings = load_settings(env={"LLMOPT_HOME": str(tmp_path), "LLMOPT_CONFIG_DIR": str(config)})
    assert objective_for(settings, "other").name == "cost-focused"
    mine = objective_for(settings, "my-bot")
    assert mine.kind == "min_cost" and mine.quality_floor == 0.75
    with pytest.raises(ConfigError, match="unknown preset"):
        objective_for(settings, "x", {"preset": "cheapest"})


def test_plan_expectation_weighs_observed_arms_and_counts_unobserved_ones() -> None:
    window = pd.DataFrame([_row("prod", 1000, 0.70, 0.001), _row("strong", 500, 0.85, 0.004)])
    plan = {"prod": 0.75, "strong": 0.2, "new": 0.05}
    out = plan_expectation(plan, window=window, production_id="prod", requests_per_day=10_000)
    quality = 0.75 * 0.70 + 0.2 * 0.85 + 0.05 * 0.70  # "new" counts at production's values
    cost = 0.75 * 0.001 + 0.2 * 0.004 + 0.05 * 0.001
    assert out["status"] == "ok" and out["unobserved"] == ["new"]
    assert out["quality_change"] == pytest.approx(quality - 0.70)
    assert out["spend_change_per_day_usd"] == pytest.approx((cost - 0.001) * 10_000)
    missing = plan_expectation(plan, window=window, production_id="gone", requests_per_day=1.0)
    assert missing["status"] == "cannot_analyse" and "gone" in missing["reason"]


def test_loop_section_metrics_and_printed_lines() -> None:
    rng = np.random.default_rng(0)

    def cfg(key: str, q: float, cost: float) -> ConfigStats:
        return ConfigStats.from_samples(
            key,
            quality=rng.normal(q, 0.1, 2000),
            cost=np.full(2000, cost),
            latency=np.full(2000, 900.0),
            success=np.ones(2000, bool),
        )

    objective = Objective.from_preset("quality-focused")
    decision = propose_promotion(
        objective, production=cfg("weak", 0.70, 0.0002), candidates=[cfg("strong", 0.85, 0.004)]
    )
    expected = {"status": "ok", "quality_change": 0.0075, "spend_change_per_day_usd": 1.9}
    section, metrics = loop_section(
        objective,
        production_id="weak",
        promotion=decision,
        proposed="proposed strong from logged evidence",
        expectation=expected | {"unobserved": []},
    )
    assert set(metrics) == set(LOOP_METRICS)
    assert metrics["loop_proposed"] == 1.0 and metrics["plan_expected_quality_change"] == 0.0075
    assert section["best_alternative"] == "strong"
    low, high = section["best_alternative_interval"]
    assert low < section["best_alternative_value"] < high
    lines = loop_lines({"use_cases": {"support-route": {"loop": section}, "other": {}}})
    text = "\n".join(lines)
    assert lines[0] == "support-route:" and "other" not in text
    assert "quality-focused (quality-focused reward: 0.8 quality" in text
    assert "proposed          proposed strong from logged evidence" in text
    assert "quality +0.0075, spend +1.90 USD/day" in text


def test_promotion_from_logs_compares_only_recent_configurations() -> None:
    from tasks.nightly.loop import promotion_from_logs

    history = pd.DataFrame(
        [
            _row("prod", 6000, 0.70, 0.001),
            _row("old-star", 6000, 0.95, 0.001),  # served weeks ago, not concurrently
            _row("same", 6000, 0.70, 0.001),
        ]
    )
    objective = Objective.max_quality(max_cost_per_request=1.0)
    everything = promotion_from_logs(objective, history=history, production_id="prod")
    assert everything.candidate_config_id == "old-star"
    recent = promotion_from_logs(
        objective, history=history, production_id="prod", recent=["prod", "same"]
    )
    assert recent.action == "none" and [c.config_key for c in recent.comparisons] == ["same"]
    excluded = promotion_from_logs(
        objective, history=history, production_id="prod", excluded=["old-star"]
    )
    assert excluded.action == "none"


def test_promotion_guardrails_use_the_margins_and_the_budget() -> None:
    from strategies.rollout_guard import RolloutGuard
    from tasks.nightly.loop import promotion_guardrails

    prod = ConfigStats.from_row(_row("prod", 5000, 0.70, 0.001))
    better = ConfigStats.from_row(_row("better", 5000, 0.80, 0.003))
    budget = Objective.max_quality(monthly_budget_usd=300.0)
    guard = RolloutGuard()
    ok, notes = promotion_guardrails(
        budget, guard, production=prod, candidate=better, monthly=50_000
    )
    assert ok == {
        "srm": True,
        "quality": True,
        "error_rate": True,
        "latency_p95": True,
        "cost_per_request": True,  # 0.003 <= 300 / 50,000 = 0.006
    }
    assert "not an experiment" in notes["srm"]
    over, _ = promotion_guardrails(
        budget, guard, production=prod, candidate=better, monthly=200_000
    )
    assert over["cost_per_request"] is False  # 0.003 > 300 / 200,000 = 0.0015
    worse = ConfigStats.from_row(_row("worse", 5000, 0.60, 0.001))
    bad, _ = promotion_guardrails(budget, guard, production=prod, candidate=worse, monthly=50_000)
    assert bad["quality"] is False
