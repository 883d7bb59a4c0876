"""Production from evidence: bootstrap on the lower bound, promotion with an always-valid test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from strategies.experiments import MeanStats, SequentialTest
from strategies.objective import Objective
from strategies.promotion import choose_bootstrap, propose_promotion
from strategies.search import ConfigStats
from tasks.simulation.worlds_loop import aa_promotion_rate


def _cfg(key: str, q: float, cost: float, *, n: int = 3000, seed: int = 0) -> ConfigStats:
    rng = np.random.default_rng(seed)
    return ConfigStats.from_samples(
        key,
        quality=np.clip(rng.normal(q, 0.15, n), 0, 1),
        cost=np.full(n, cost),
        latency=np.full(n, 900.0),
        success=np.ones(n, bool),
    )


def test_bootstrap_is_the_best_lower_bound_not_the_most_served() -> None:
    served = _cfg("most-served", 0.70, 0.001, n=20_000, seed=1)
    better = _cfg("better", 0.80, 0.001, n=800, seed=2)
    choice = choose_bootstrap(Objective.from_preset("balanced"), [served, better])
    assert choice.config_key == "better"


def test_the_difference_interval_is_the_experiments_confidence_sequence() -> None:
    """On quality alone (max_quality), the promotion's bound is the sequential test's."""
    prod, cand = _cfg("prod", 0.70, 0.001, seed=3), _cfg("cand", 0.73, 0.001, seed=4)
    objective = Objective.max_quality(max_cost_per_request=1.0)
    decision = propose_promotion(objective, production=prod, candidates=[cand], alpha=0.05)
    comparison = decision.comparisons[0]

    def moments(s: ConfigStats):
        return MeanStats(
            n=[s.quality_n], sum=[s.quality_sum], sum_squares=[s.quality_sum_squares]
        ).moments()

    reference = SequentialTest(alpha=0.05, alternative="greater").compute(
        moments(prod), moments(cand)
    )
    assert comparison.difference == pytest.approx(float(reference.effect[0]))
    assert comparison.lower == pytest.approx(float(reference.ci_low[0]), rel=1e-6)
    # and it is wider than the fixed-horizon one-sided interval (it is valid at every look)
    se = np.hypot(prod.quality_se, cand.quality_se)
    assert comparison.lower < comparison.difference - sps.norm.ppf(0.95) * se
    assert decision.action == "propose" and decision.evidence["rows_used"] == 6000


def test_promising_but_not_shown_reports_the_sample_it_needs() -> None:
    prod = _cfg("prod", 0.70, 0.001, n=400, seed=5)
    cand = _cfg("cand", 0.715, 0.001, n=400, seed=6)
    decision = propose_promotion(
        Objective.max_quality(max_cost_per_request=1.0), production=prod, candidates=[cand]
    )
    assert decision.action == "none"
    (comparison,) = decision.comparisons
    assert comparison.status == "promising" and comparison.needed_n and comparison.needed_n > 400
    assert "most promising cand" in decision.reason


def test_constraints_block_an_unaffordable_winner() -> None:
    prod = _cfg("prod", 0.70, 0.001, seed=7)
    pricey = _cfg("pricey", 0.90, 0.02, seed=8)
    capped = Objective.max_quality(max_cost_per_request=0.01)
    decision = propose_promotion(capped, production=prod, candidates=[pricey])
    assert decision.action == "none" and decision.comparisons[0].status == "infeasible"


def test_thin_and_missing_data_is_an_explicit_result() -> None:
    prod = _cfg("prod", 0.70, 0.001, seed=9)
    thin = _cfg("thin", 0.99, 0.001, n=5, seed=10)
    objective = Objective.from_preset("balanced")
    decision = propose_promotion(objective, production=prod, candidates=[thin])
    assert decision.comparisons[0].status == "cannot_analyse"
    assert propose_promotion(objective, production=None, candidates=[thin]).action == "none"
    with pytest.raises(ValueError, match="alpha"):
        propose_promotion(objective, production=prod, candidates=[thin], alpha=0.7)


def test_aa_worlds_promote_nothing_at_more_than_alpha() -> None:
    """Small-seed version of tests/benchmarks/bench_loop.py (28 nightly looks per world)."""
    result = aa_promotion_rate(Objective.from_preset("cost-focused"), seeds=range(30), nights=28)
    low = sps.binomtest(result.proposed, result.worlds).proportion_ci(method="exact").low
    assert low <= 0.05, result
