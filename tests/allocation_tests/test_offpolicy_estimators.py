"""strategies.offpolicy: IPS / SNIPS / DR against hand computations, refusals, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from strategies.offpolicy import (
    aggregate_logged,
    estimate_policy_value,
    policy_true_value,
    validate_policy,
)

# A tiny log: (cell, arm, reward, propensity)
TINY = [
    ("x", "a", 0.9, 0.5),
    ("x", "b", 0.4, 0.5),
    ("x", "a", 0.7, 0.5),
    ("y", "a", 0.2, 0.25),
    ("y", "b", 0.6, 0.75),
    ("y", "b", 0.8, 0.75),
]
POLICY = {"x": {"a": 1.0}, "y": {"a": 0.5, "b": 0.5}}


def _by_hand() -> dict[str, float]:
    n = len(TINY)
    w = [POLICY[c].get(a, 0.0) / p for c, a, _, p in TINY]
    r = [row[2] for row in TINY]
    ips_terms = [wi * ri for wi, ri in zip(w, r, strict=True)]
    ips = sum(ips_terms) / n
    snips = sum(ips_terms) / sum(w)
    # reward model: mean per (cell, arm)
    groups: dict[tuple[str, str], list[float]] = {}
    for c, a, rr, _ in TINY:
        groups.setdefault((c, a), []).append(rr)
    rhat = {k: sum(v) / len(v) for k, v in groups.items()}
    dr_terms = []
    for (c, a, rr, _), wi in zip(TINY, w, strict=True):
        dm = sum(p * rhat[c, arm] for arm, p in POLICY[c].items())
        dr_terms.append(dm + wi * (rr - rhat[c, a]))
    dr = sum(dr_terms) / n
    ips_se = float(np.std(ips_terms, ddof=1) / math.sqrt(n))
    dr_se = float(np.std(dr_terms, ddof=1) / math.sqrt(n))
    snips_se = math.sqrt(sum(wi**2 * (ri - snips) ** 2 for wi, ri in zip(w, r, strict=True)))
    snips_se /= sum(w)
    ess = sum(w) ** 2 / sum(x * x for x in w)
    return {
        "ips": ips,
        "snips": snips,
        "dr": dr,
        "ips_se": ips_se,
        "dr_se": dr_se,
        "snips_se": snips_se,
        "ess": ess,
        "max_w": max(w),
    }


def test_estimates_equal_hand_computations_on_a_tiny_log() -> None:
    cells, arms, rewards, props = zip(*TINY, strict=True)
    est = estimate_policy_value(
        aggregate_logged(cells, arms, rewards, props), POLICY, min_ess=0, level=0.9
    )
    hand = _by_hand()
    assert est.status == "ok"
    assert est.ips is not None and est.snips is not None and est.dr is not None
    assert est.ips.value == pytest.approx(hand["ips"])
    assert est.snips.value == pytest.approx(hand["snips"])
    assert est.dr.value == pytest.approx(hand["dr"])
    assert est.ips.se == pytest.approx(hand["ips_se"])
    assert est.dr.se == pytest.approx(hand["dr_se"])
    assert est.snips.se == pytest.approx(hand["snips_se"])
    assert est.ess == pytest.approx(hand["ess"])
    assert est.max_weight == pytest.approx(hand["max_w"])
    z = stats.norm.ppf(0.95)
    assert est.dr.upper - est.dr.value == pytest.approx(z * hand["dr_se"])
    assert est.unsupported_mass == 0.0


def _log(seed: int, n: int = 3000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    cells = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    probs = {"x": [0.6, 0.3, 0.1], "y": [0.2, 0.5, 0.3], "z": [0.34, 0.33, 0.33]}
    table = np.array([probs[c] for c in cells])
    idx = (rng.random(n)[:, None] > table.cumsum(1)).sum(1)
    arms = np.array(["a", "b", "c"])[idx]
    prop = table[np.arange(n), idx]
    mean = np.array([MU[c, a] for c, a in zip(cells, arms, strict=True)])
    rewards = (rng.random(n) < mean).astype(float)
    return cells, arms, rewards, prop


MU = {
    ("x", "a"): 0.5,
    ("x", "b"): 0.6,
    ("x", "c"): 0.7,
    ("y", "a"): 0.4,
    ("y", "b"): 0.55,
    ("y", "c"): 0.3,
    ("z", "a"): 0.8,
    ("z", "b"): 0.2,
    ("z", "c"): 0.5,
}
SHARES = {"x": 0.5, "y": 0.3, "z": 0.2}


def test_intervals_cover_the_true_value_near_nominal() -> None:
    policy = {"x": {"c": 1.0}, "y": {"a": 0.5, "b": 0.5}, "z": {"a": 1.0}}
    truth = policy_true_value(policy, SHARES, MU)
    assert truth == pytest.approx(0.5 * 0.7 + 0.3 * 0.475 + 0.2 * 0.8)
    reps = 300
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in range(reps):
        est = estimate_policy_value(aggregate_logged(*_log(seed)), policy, min_ess=50)
        assert est.status == "ok"
        for name in covered:
            e = getattr(est, name)
            covered[name] += e.lower <= truth <= e.upper
    assert 0.92 <= covered["dr"] / reps <= 0.98
    assert 0.90 <= covered["snips"] / reps <= 0.99
    assert 0.88 <= covered["ips"] / reps <= 0.99


def test_refuses_missing_propensities_and_never_logged_arms() -> None:
    logged = aggregate_logged(*_log(0))
    missing = estimate_policy_value(logged, {"*": {"a": 1.0}}, missing_propensity_rows=3)
    assert missing.status == "cannot_estimate" and "no propensity" in missing.reasons[0]
    assert missing.dr is None and missing.ips is None
    never = estimate_policy_value(logged, {"*": {"new-config": 1.0}})
    assert never.status == "cannot_estimate"
    assert "never served" in never.reasons[0] and "new-config" in never.reasons[0]


def test_refuses_thin_support() -> None:
    cells, arms, rewards, prop = _log(1, n=400)
    logged = aggregate_logged(cells, arms, rewards, prop)
    thin = estimate_policy_value(logged, {"*": {"c": 1.0}}, min_ess=200)
    assert thin.status == "cannot_estimate" and thin.ess is not None and thin.ess < 200
    assert any("effective sample size" in r for r in thin.reasons)
    # arm 'c' absent from cell 'x': the policy's mass there has no support
    keep = ~((cells == "x") & (arms == "c"))
    holes = aggregate_logged(cells[keep], arms[keep], rewards[keep], prop[keep])
    unsupported = estimate_policy_value(holes, {"*": {"c": 1.0}}, min_ess=0)
    assert unsupported.status == "cannot_estimate"
    assert unsupported.unsupported_mass == pytest.approx(np.mean(cells[keep] == "x"))
    uncovered = estimate_policy_value(logged, {"x": {"a": 1.0}}, min_ess=0)
    assert "no distribution for cell" in uncovered.reasons[0]


def test_bad_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="sum to"):
        validate_policy({"*": {"a": 0.5, "b": 0.2}})
    with pytest.raises(ValueError, match="finite and >= 0"):
        validate_policy({"*": {"a": 1.5, "b": -0.5}})
    with pytest.raises(ValueError, match="empty"):
        validate_policy({})
