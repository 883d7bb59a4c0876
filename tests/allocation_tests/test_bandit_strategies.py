"""strategies.bandits: Thompson probabilities, floors, LinUCB per-context choices, regret."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from strategies.bandits import (
    BernoulliStats,
    CellStats,
    GaussianStats,
    LinUCB,
    ThompsonSampling,
    UniformAllocation,
    apply_floor,
    simulate_regret,
)


def _probability_best_by_integration(dists: list[stats.rv_continuous]) -> np.ndarray:
    """P(arm i has the largest draw) = integral of f_i(x) * prod_{j != i} F_j(x)."""
    out = []
    for i, di in enumerate(dists):
        others = [d for j, d in enumerate(dists) if j != i]
        lo = min(d.ppf(1e-9) for d in dists)
        hi = max(d.ppf(1 - 1e-9) for d in dists)
        value, _ = integrate.quad(
            lambda x, di=di, others=others: di.pdf(x) * np.prod([d.cdf(x) for d in others]),
            lo,
            hi,
            limit=200,
            points=[d.mean() for d in dists],
        )
        out.append(value)
    return np.array(out)


def test_beta_bernoulli_probability_best_matches_numerical_integration() -> None:
    arms = [BernoulliStats(40, 60), BernoulliStats(45, 55), BernoulliStats(12, 18)]
    ts = ThompsonSampling(draws=400_000, seed=5, floor=0.0)
    got = ts.probability_best(arms)
    reference = _probability_best_by_integration(
        [stats.beta(1 + a.successes, 1 + a.failures) for a in arms]
    )
    assert reference.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(got, reference, atol=0.005)


def test_gaussian_probability_best_matches_numerical_integration() -> None:
    arms = [GaussianStats(200, 140.0, 102.0), GaussianStats(50, 36.0, 27.0)]
    ts = ThompsonSampling(draws=400_000, seed=9, floor=0.0, prior_mean=0.5, prior_n=1.0)
    got = ts.probability_best(arms)
    dists = []
    for a in arms:
        loc, scale = ts.gaussian_posterior(a)
        # conjugate normal posterior of the mean with a prior worth one observation
        assert loc == pytest.approx((0.5 + a.total) / (1 + a.n))
        assert scale == pytest.approx(np.sqrt(a.variance / (1 + a.n)))
        dists.append(stats.norm(loc, scale))
    np.testing.assert_allclose(got, _probability_best_by_integration(dists), atol=0.005)


def test_weights_are_seeded_floored_and_sum_to_one() -> None:
    arms = [BernoulliStats(5, 95), BernoulliStats(50, 50), BernoulliStats(48, 52)]
    a = ThompsonSampling(floor=0.05, draws=5000, seed=42).allocate(arms)
    b = ThompsonSampling(floor=0.05, draws=5000, seed=42).allocate(arms)
    np.testing.assert_array_equal(a, b)
    assert a.sum() == pytest.approx(1.0)
    assert a[0] == pytest.approx(0.05, abs=1e-3)  # hopeless arm keeps only its floor
    assert np.all(a >= 0.05 - 1e-12)
    with pytest.raises(ValueError, match="too large"):
        apply_floor(np.array([0.5, 0.5]), 0.6)


def _cells_from_rows(
    rows: list[tuple[str, str, str, float]],
) -> list[CellStats]:
    agg: dict[tuple[str, str, str], list[float]] = {}
    for arm, task, seg, r in rows:
        entry = agg.setdefault((arm, task, seg), [0.0, 0.0])
        entry[0] += 1
        entry[1] += r
    return [
        CellStats(arm, (("task_type", t), ("user_segment", s)), n, total)
        for (arm, t, s), (n, total) in agg.items()
    ]


def _synthetic_rows(seed: int) -> list[tuple[str, str, str, float]]:
    """Arm 'fast' is best on task 'chat', arm 'deep' on task 'code'; segment shifts all."""
    rng = np.random.default_rng(seed)
    truth = {
        ("fast", "chat"): 0.8,
        ("fast", "code"): 0.5,
        ("deep", "chat"): 0.6,
        ("deep", "code"): 0.75,
        ("base", "chat"): 0.65,
        ("base", "code"): 0.6,
    }
    seg_effect = {"free": -0.05, "pro": 0.05}
    rows = []
    for _ in range(6000):
        arm = str(rng.choice(["fast", "deep", "base"]))
        task = str(rng.choice(["chat", "code"]))
        seg = str(rng.choice(["free", "pro"]))
        rows.append((arm, task, seg, truth[arm, task] + seg_effect[seg] + rng.normal(0, 0.1)))
    return rows


def test_linucb_matrices_from_cell_aggregates_equal_the_row_level_ones() -> None:
    rows = _synthetic_rows(1)[:500]
    model = LinUCB(alpha=0.5, ridge=2.0)
    arms, layout, a_mat, b_vec = model.fit(_cells_from_rows(rows))
    for i, arm in enumerate(arms):
        x = np.array(
            [
                LinUCB._vector((("task_type", t), ("user_segment", s)), layout)
                for a, t, s, _ in rows
                if a == arm
            ]
        )
        r = np.array([rr for a, _, _, rr in rows if a == arm])
        np.testing.assert_allclose(a_mat[i], 2.0 * np.eye(len(layout)) + x.T @ x)
        np.testing.assert_allclose(b_vec[i], x.T @ r)


def test_linucb_picks_the_best_arm_per_context() -> None:
    result = LinUCB(alpha=0.1, floor=0.05).allocate(_cells_from_rows(_synthetic_rows(2)))
    for seg in ("free", "pro"):
        chat = result.for_cell({"task_type": "chat", "user_segment": seg})
        code = result.for_cell({"task_type": "code", "user_segment": seg})
        assert max(chat, key=chat.__getitem__) == "fast"
        assert max(code, key=code.__getitem__) == "deep"
        assert chat["fast"] == pytest.approx(0.9) and chat["deep"] == pytest.approx(0.05)
        assert sum(code.values()) == pytest.approx(1.0)


def test_linucb_explores_an_arm_it_has_barely_seen() -> None:
    cells = [
        CellStats("known", (("task_type", "chat"),), 1000, 700.0),
        CellStats("new", (("task_type", "chat"),), 2, 1.2),
    ]
    explore = LinUCB(alpha=2.0, floor=0.0).allocate(cells)
    exploit = LinUCB(alpha=0.0, floor=0.0).allocate(cells)
    assert explore.chosen == ("new",)
    assert exploit.chosen == ("known",)


@pytest.mark.parametrize("noise_sd", [None, 0.1])
def test_thompson_regret_is_far_below_uniform_and_flattens(noise_sd: float | None) -> None:
    means = [0.50, 0.55, 0.60, 0.45]
    ts = simulate_regret(
        ThompsonSampling(floor=0.01, draws=4000, seed=4),
        means,
        nights=30,
        requests_per_night=1000,
        noise_sd=noise_sd,
        seed=4,
    )
    uniform = simulate_regret(
        UniformAllocation(), means, nights=30, requests_per_night=1000, noise_sd=noise_sd, seed=4
    )
    assert uniform.regret_ratio == pytest.approx(1.0)
    assert ts.cumulative_regret[-1] < 0.25 * uniform.cumulative_regret[-1]
    assert ts.late_to_early_ratio < 0.8  # the second half adds less regret than the first
    assert ts.best_arm == 2 and max(ts.final_weights) == ts.final_weights[2]
