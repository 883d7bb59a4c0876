"""The promise "no false winners, even when you look every night", measured.

Thousands of seeded A/A experiments are generated as daily sufficient statistics (the warehouse
gives nothing else), cumulated, and looked at after every day for four weeks. The sequential
method must keep the chance of ever declaring a winner at or below alpha; the naive fixed-horizon
test looked at daily must exceed it (so this check has teeth); a real lift must be found.

Binomial allowance: with E experiments the observed rate of a true rate alpha has standard error
sqrt(alpha (1 - alpha) / E); we allow three of them (one-sided, about 0.13% chance of a spurious
failure per assertion).
"""

from __future__ import annotations

import numpy as np
import pytest

from strategies.experiments import (
    MeanStats,
    ProportionStats,
    SequentialTest,
    WelchTest,
    cumulate,
)

ALPHA = 0.05
DAYS = 28


def _allowance(n_experiments: int) -> float:
    return 3.0 * np.sqrt(ALPHA * (1 - ALPHA) / n_experiments)


def _daily_normal(
    rng: np.random.Generator, n_exp: int, mean: float, sd: float, traffic: float
) -> MeanStats:
    """Cumulative (n, sum, sum of squares) of normal data, generated exactly per day."""
    # weekly seasonality in traffic, Poisson noise per arm and day
    season = 1.0 + 0.3 * np.sin(2 * np.pi * np.arange(DAYS) / 7)
    n = rng.poisson(traffic * season, size=(n_exp, DAYS)).astype(float) + 2.0
    total = rng.normal(n * mean, sd * np.sqrt(n))
    within = sd**2 * rng.chisquare(n - 1.0)
    squares = within + total**2 / n
    return MeanStats(
        n=np.cumsum(n, axis=1), sum=np.cumsum(total, axis=1), sum_squares=np.cumsum(squares, axis=1)
    )


def _daily_binary(
    rng: np.random.Generator, n_exp: int, p: float, traffic: float
) -> ProportionStats:
    n = rng.poisson(traffic, size=(n_exp, DAYS)).astype(float) + 2.0
    successes = rng.binomial(n.astype(int), p).astype(float)
    return ProportionStats(n=np.cumsum(n, axis=1), successes=np.cumsum(successes, axis=1))


def _ever_rejects(p_values: np.ndarray) -> np.ndarray:
    return np.asarray(np.any(p_values < ALPHA, axis=1))


@pytest.mark.parametrize("metric", ["mean", "proportion"])
def test_aa_daily_looks_sequential_is_honest_naive_peeking_is_not(metric: str) -> None:
    n_exp = 2000
    rng = np.random.default_rng(20261001 if metric == "mean" else 20261002)
    if metric == "mean":
        control = _daily_normal(rng, n_exp, 0.7, 0.15, 300).moments()
        treatment = _daily_normal(rng, n_exp, 0.7, 0.15, 300).moments()
    else:
        control = _daily_binary(rng, n_exp, 0.1, 300).moments()
        treatment = _daily_binary(rng, n_exp, 0.1, 300).moments()
    seq = SequentialTest(alpha=ALPHA, n_star=5000).compute(control, treatment)
    naive = WelchTest(alpha=ALPHA).compute(control, treatment)
    limit = ALPHA + _allowance(n_exp)

    seq_fpr = _ever_rejects(seq.p_value).mean()
    assert seq_fpr <= limit, f"sequential false-positive rate {seq_fpr:.4f} > {limit:.4f}"
    # the always-valid p-value and the confidence sequence agree on every path
    cum = cumulate(seq, axis=1)
    excluded_zero = np.any((cum.ci_low > 0) | (cum.ci_high < 0), axis=1)
    assert np.array_equal(excluded_zero, _ever_rejects(seq.p_value))

    naive_fpr = _ever_rejects(naive.p_value).mean()
    assert naive_fpr > limit, f"daily peeking at a fixed test should inflate ({naive_fpr:.4f})"
    assert naive_fpr > 2 * ALPHA
    # ...while one planned look at the end is honest: the generator itself is unbiased
    last_look = (naive.p_value[:, -1] < ALPHA).mean()
    assert abs(last_look - ALPHA) <= _allowance(n_exp)


def test_sequential_finds_a_known_lift_and_covers_it() -> None:
    n_exp, lift = 500, 0.012
    rng = np.random.default_rng(77)
    control = _daily_normal(rng, n_exp, 0.70, 0.15, 300).moments()
    treatment = _daily_normal(rng, n_exp, 0.70 + lift, 0.15, 300).moments()
    seq = cumulate(SequentialTest(alpha=ALPHA, n_star=5000).compute(control, treatment), axis=1)
    detected = (seq.p_value[:, -1] < ALPHA) & (seq.effect[:, -1] > 0)
    assert detected.mean() >= 0.9
    # time-uniform coverage of the true lift over all 28 looks
    missed = np.any((seq.ci_low > lift) | (seq.ci_high < lift), axis=1)
    assert missed.mean() <= ALPHA + _allowance(n_exp)
    # detections come earlier than the end for most experiments (the point of stopping early)
    first = np.argmax(seq.p_value < ALPHA, axis=1)
    assert np.median(first[detected]) < DAYS - 1
    # the sequential sample-size solver is honest: by the first look with the required units,
    # about 80% of experiments have excluded 0 (exactly 80% at that look by construction; a
    # little more because earlier looks can stop first)
    var = 0.15**2
    need = SequentialTest(alpha=ALPHA, n_star=5000).required_n(var, var, lift, power=0.8)[0]
    at = np.argmax(control.n >= need, axis=1)
    assert np.all(control.n[np.arange(n_exp), at] >= need)
    found = np.array([np.any(seq.p_value[i, : at[i] + 1] < ALPHA) for i in range(n_exp)])
    assert 0.8 - 3 * np.sqrt(0.16 / n_exp) <= found.mean() <= 0.97
