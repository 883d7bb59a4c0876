"""Exploration weights from the posterior on the objective (issue 12, item 4)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from scipy import stats

from strategies.exploration import exploration_weights
from strategies.objective import Objective
from tasks.allocation.bandits import objective_exploration
from tasks.warehouse.config_metrics import config_metrics


def test_worse_candidates_drop_proven_better_are_flagged_untried_keep_a_neutral_share() -> None:
    plan = exploration_weights(
        production=(0.80, 0.004),
        candidates={
            "worse": (0.75, 0.004),
            "better": (0.86, 0.004),
            "close": (0.805, 0.01),
            "untried": None,
        },
        confidence=0.95,
        seed=1,
    )
    assert set(plan.dropped) == {"worse"}
    assert plan.proven_better == ("better",)
    assert set(plan.weights) == {"better", "close", "untried"}
    assert sum(plan.weights.values()) == pytest.approx(1.0)
    # the proven better arm is never cut below the doubtful one
    assert plan.weights["better"] > plan.weights["close"]
    expected = stats.norm.cdf((0.805 - 0.80) / np.hypot(0.01, 0.004))
    assert plan.probability_better["close"] == pytest.approx(expected)


def test_when_production_is_proven_best_exploration_takes_nothing_from_it() -> None:
    plan = exploration_weights(
        production=(0.80, 0.002), candidates={"a": (0.70, 0.01), "b": (0.72, 0.01)}
    )
    assert plan.weights == {}
    assert "production keeps the traffic" in plan.reasons[-1]


def test_a_clearly_worse_candidate_loses_its_share_after_one_small_night() -> None:
    # 0.1 worse than production with a per-request sd of 0.1: 2 requests cannot tell, 10 can
    for n, expect_dropped in [(2, False), (10, True)]:
        plan = exploration_weights(
            production=(0.80, 0.1 / np.sqrt(5000)),
            candidates={"cand": (0.70, 0.1 / np.sqrt(n))},
        )
        assert ("cand" in plan.dropped) is expect_dropped


def test_objective_exploration_scores_the_window_on_the_use_case_objective(
    con: Any, load_rows: Any
) -> None:
    rng = np.random.default_rng(2)
    day = dt.date(2026, 10, 5)
    rows = []
    for config_id, quality, n in [("prod", 0.80, 800), ("bad", 0.60, 300), ("thin", 0.9, 5)]:
        for q in rng.normal(quality, 0.05, n):
            rows.append(
                {
                    "timestamp": dt.datetime(2026, 10, 5, 12, tzinfo=dt.UTC),
                    "use_case": "my-feature",
                    "config_id": config_id,
                    "quality": float(np.clip(q, 0, 1)),
                }
            )
    load_rows(con, rows)
    window = config_metrics(con, use_case="my-feature", start=day, end=day)
    plan = objective_exploration(
        Objective.from_preset("quality-focused"),
        window,
        production_id="prod",
        candidates=["bad", "thin", "search-new"],
    )
    assert set(plan.dropped) == {"bad"}
    assert set(plan.weights) == {"thin", "search-new"}  # too few rows to judge: untried
    assert plan.weights["thin"] == pytest.approx(plan.weights["search-new"])
