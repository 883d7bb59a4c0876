"""Promotion from logged propensities (issue 12 item 2): the doubly-robust lower bound decides
when the propensities vary by context, and an A/A world never promotes over 28 nightly looks.

Worlds: :func:`tasks.simulation.worlds_loop.logged_nights` (the candidate is logged mostly on the
easy context, so its plain mean is inflated). The truth (``candidate_gain``) only grades.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from strategies.objective import Objective
from strategies.offpolicy import aggregate_logged
from strategies.offpolicy_promotion import dr_promotion, propensities_vary
from strategies.promotion import propose_promotion
from tasks.allocation.context_stats import ColumnData, RoutingInputs
from tasks.nightly.loop import with_logged_propensities
from tasks.simulation.worlds_loop import logged_nights

OBJECTIVE = Objective.from_preset("quality-focused")
ALPHA = 1 - OBJECTIVE.level


def _last(seed: int, gain: float, nights: int = 14) -> tuple[list, list]:
    *_, last = logged_nights(seed=seed, objective=OBJECTIVE, nights=nights, candidate_gain=gain)
    return last


def test_confounded_aa_world_fools_the_plain_comparison_but_not_the_dr_bound() -> None:
    stats, logged = _last(seed=3, gain=0.0)
    naive = propose_promotion(OBJECTIVE, production=stats[0], candidates=stats[1:], alpha=ALPHA)
    assert naive.action == "propose"  # the plain per-arm means are confounded by the context
    assert propensities_vary(logged)
    dr = dr_promotion(naive, logged, context="task_type", alpha=ALPHA)
    assert dr.action == "none" and dr.candidate_config_id is None
    (comparison,) = dr.comparisons
    assert comparison.lower < 0 < comparison.upper
    assert "doubly" in dr.reason


def test_a_truly_better_candidate_is_proposed_on_the_dr_bound_with_its_evidence() -> None:
    stats, logged = _last(seed=4, gain=0.03)
    naive = propose_promotion(OBJECTIVE, production=stats[0], candidates=stats[1:], alpha=ALPHA)
    dr = dr_promotion(naive, logged, context="task_type", alpha=ALPHA)
    assert dr.action == "propose" and dr.candidate_config_id == "arm-1"
    evidence = dr.evidence
    assert evidence["method"] == "doubly robust" and evidence["context"] == "task_type"
    assert evidence["difference_lower"] > 0 and evidence["rows_used"] == 14 * 1200
    assert evidence["alpha_per_candidate"] == ALPHA


def test_constant_propensities_leave_the_sequential_test_deciding() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    cell = rng.choice(["a", "b"], n)
    arm = np.where(rng.random(n) < 0.5, "x", "y")
    logged = aggregate_logged(cell, arm, rng.normal(0.7, 0.1, n), np.full(n, 0.5))
    assert not propensities_vary(logged)


def test_the_nightly_hook_uses_dr_only_when_propensities_vary_and_are_all_logged() -> None:
    stats, logged = _last(seed=3, gain=0.0)
    naive = propose_promotion(OBJECTIVE, production=stats[0], candidates=stats[1:], alpha=ALPHA)

    def routing(missing: int, cells: list) -> RoutingInputs:
        return RoutingInputs(
            use_case="uc",
            start=dt.date(2026, 10, 1),
            end=dt.date(2026, 10, 14),
            objective=OBJECTIVE,
            columns=(ColumnData(column="task_type", stats=(), logged=tuple(cells)),),
            skipped={},
            rows=14 * 1200,
            missing_propensity=missing,
            missing_quality=0,
        )

    assert with_logged_propensities(naive, routing(0, logged), OBJECTIVE).action == "none"
    # a row without a propensity: no off-policy estimate, the sequential decision stands
    assert with_logged_propensities(naive, routing(1, logged), OBJECTIVE) is naive
    assert with_logged_propensities(naive, None, OBJECTIVE) is naive


@pytest.mark.slow
def test_aa_over_28_nightly_looks_promotes_in_at_most_alpha_of_worlds() -> None:
    """A small sample of the benchmark (bench_loop: 200 worlds per run, figures in docs)."""
    worlds, fired = 12, 0
    for seed in range(worlds):
        for stats, logged in logged_nights(seed=100 + seed, objective=OBJECTIVE, nights=28):
            naive = propose_promotion(
                OBJECTIVE, production=stats[0], candidates=stats[1:], alpha=ALPHA
            )
            if dr_promotion(naive, logged, context="task_type", alpha=ALPHA).action == "propose":
                fired += 1
                break
    assert fired <= 1, f"{fired} of {worlds} A/A worlds promoted"
