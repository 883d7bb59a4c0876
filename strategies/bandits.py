"""Batch bandits: turn one night's per-arm sufficient statistics into tomorrow's traffic weights.

The nightly loop is a *batch* bandit: traffic is served all day with fixed weights, then the
statistics are re-aggregated. So a strategy here is a function from sufficient statistics to a
weight vector, never a per-request loop.

* :class:`ThompsonSampling` gives each arm the posterior probability that it is the best arm
  (randomised probability matching), estimated from seeded, vectorised posterior draws, then
  mixes in a per-arm ``floor`` so no arm starves and the estimates stay fresh. Rewards are
  Beta-Bernoulli (success, positive feedback: :class:`BernoulliStats`) or Gaussian (quality:
  :class:`GaussianStats`, normal posterior of the mean with a weak normal prior).
* :class:`LinUCB` (disjoint, Li et al. 2010) scores each arm per *context cell* (one-hot
  task type, segment, input-length bucket, hour bucket) as ``theta'x + alpha*sqrt(x'A^-1 x)``.
  With one-hot features, ``A = ridge*I + X'X`` and ``b = X'r`` are sums over cells of
  ``n_c * x_c x_c'`` and ``s_c * x_c``, so they are built from per arm x cell counts and reward
  sums (aggregated in SQL), never from rows.
* :func:`simulate_regret` replays a sequence of nights against known true means and reports the
  cumulative regret of a strategy beside uniform allocation.

Example:
    >>> ts = ThompsonSampling(floor=0.05, draws=20_000, seed=1)
    >>> w = ts.allocate([BernoulliStats(30, 70), BernoulliStats(60, 40)])
    >>> [round(float(x), 2) for x in w]
    [0.05, 0.95]
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ArmStats",
    "BanditStrategy",
    "BernoulliStats",
    "CellStats",
    "GaussianStats",
    "LinUCB",
    "LinUCBAllocation",
    "RegretReport",
    "ThompsonSampling",
    "UniformAllocation",
    "apply_floor",
    "simulate_regret",
]


@dataclass(frozen=True)
class BernoulliStats:
    """Successes and failures of one arm (success rate, share of positive feedback)."""

    successes: float
    failures: float

    def __post_init__(self) -> None:
        if self.successes < 0 or self.failures < 0:
            raise ValueError("successes and failures must be >= 0")

    @property
    def n(self) -> float:
        return self.successes + self.failures

    @property
    def mean(self) -> float:
        return self.successes / self.n if self.n else math.nan


@dataclass(frozen=True)
class GaussianStats:
    """Count, sum and sum of squares of a continuous reward (quality in [0, 1])."""

    n: float
    total: float
    total_squares: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        if self.n < 2:
            return math.nan
        return max(self.total_squares - self.total**2 / self.n, 0.0) / (self.n - 1)


ArmStats = BernoulliStats | GaussianStats


def apply_floor(probabilities: np.ndarray, floor: float) -> np.ndarray:
    """``floor + (1 - k*floor) * p``: every arm gets at least ``floor``, still summing to 1."""
    k = probabilities.size
    if not 0.0 <= floor * k <= 1.0:
        raise ValueError(f"floor {floor} is too large for {k} arms")
    return floor + (1.0 - k * floor) * probabilities


class BanditStrategy(abc.ABC):
    """A batch strategy: per-arm statistics in, traffic weights (summing to 1) out."""

    @abc.abstractmethod
    def allocate(self, arms: Sequence[ArmStats]) -> np.ndarray:
        """Weights for tomorrow, one per arm, in the order given."""


class UniformAllocation(BanditStrategy):
    """The baseline: equal traffic to every arm whatever was seen."""

    def allocate(self, arms: Sequence[ArmStats]) -> np.ndarray:
        return np.full(len(arms), 1.0 / len(arms))


class ThompsonSampling(BanditStrategy):
    """Probability-best weights from posterior draws, with a per-arm floor.

    Priors: Beta(``prior_alpha``, ``prior_beta``) for Bernoulli arms; for Gaussian arms a normal
    prior on the mean centred at ``prior_mean`` worth ``prior_n`` pseudo-observations, with the
    observation variance estimated from the arm (``prior_variance`` when it has < 2 values).
    The random generator belongs to the instance: same seed, same statistics, same weights.
    """

    def __init__(
        self,
        *,
        floor: float = 0.02,
        draws: int = 10_000,
        seed: int | None = None,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        prior_mean: float = 0.5,
        prior_n: float = 1.0,
        prior_variance: float = 0.0833,  # variance of Uniform(0, 1)
    ) -> None:
        if draws < 1:
            raise ValueError("draws must be >= 1")
        if prior_alpha <= 0 or prior_beta <= 0 or prior_n <= 0 or prior_variance <= 0:
            raise ValueError("priors must be positive")
        self.floor = floor
        self.draws = draws
        self.seed = seed
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.prior_mean = prior_mean
        self.prior_n = prior_n
        self.prior_variance = prior_variance
        self._rng = np.random.default_rng(seed)

    def posterior_draws(self, arms: Sequence[ArmStats]) -> np.ndarray:
        """Array (draws, arms) of posterior draws of each arm's mean reward."""
        out = np.empty((self.draws, len(arms)))
        for j, arm in enumerate(arms):
            if isinstance(arm, BernoulliStats):
                out[:, j] = self._rng.beta(
                    self.prior_alpha + arm.successes, self.prior_beta + arm.failures, self.draws
                )
            else:
                loc, scale = self.gaussian_posterior(arm)
                out[:, j] = self._rng.normal(loc, scale, self.draws)
        return out

    def gaussian_posterior(self, arm: GaussianStats) -> tuple[float, float]:
        """Mean and standard deviation of the normal posterior of the arm's mean reward."""
        var = arm.variance if arm.n >= 2 and arm.variance > 0 else self.prior_variance
        n_post = self.prior_n + arm.n
        loc = (self.prior_n * self.prior_mean + arm.total) / n_post
        return loc, math.sqrt(var / n_post)

    def probability_best(self, arms: Sequence[ArmStats]) -> np.ndarray:
        """Share of posterior draws in which each arm has the highest mean (ties split)."""
        if not arms:
            raise ValueError("need at least one arm")
        samples = self.posterior_draws(arms)
        best = samples == samples.max(axis=1, keepdims=True)
        return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)

    def allocate(self, arms: Sequence[ArmStats]) -> np.ndarray:
        return apply_floor(self.probability_best(arms), self.floor)


@dataclass(frozen=True)
class CellStats:
    """One arm in one context cell: count and sum of rewards. ``features`` name the cell."""

    arm: str
    features: tuple[tuple[str, str], ...]
    n: float
    reward_sum: float


@dataclass(frozen=True)
class LinUCBAllocation:
    """Per-cell weights, scores and the arm LinUCB would pick, plus the feature layout used."""

    arms: tuple[str, ...]
    feature_names: tuple[str, ...]
    cells: tuple[tuple[tuple[str, str], ...], ...]
    weights: tuple[tuple[float, ...], ...]
    scores: tuple[tuple[float, ...], ...]
    chosen: tuple[str, ...]
    extra: dict[str, float] = field(default_factory=dict)

    def for_cell(self, features: Mapping[str, str]) -> dict[str, float]:
        """The weights of the cell with exactly these feature values."""
        key = tuple(sorted(features.items()))
        for cell, row in zip(self.cells, self.weights, strict=True):
            if tuple(sorted(cell)) == key:
                return dict(zip(self.arms, row, strict=True))
        raise KeyError(f"no cell {dict(key)}")


class LinUCB:
    """Disjoint LinUCB over one-hot context features, fitted from per arm x cell aggregates.

    The chosen arm per cell (highest upper confidence bound) gets ``1 - (k-1)*floor``; the others
    get ``floor``. ``alpha`` widens exploration; ``ridge`` is the prior precision.
    """

    def __init__(self, *, alpha: float = 1.0, ridge: float = 1.0, floor: float = 0.02) -> None:
        if alpha < 0 or ridge <= 0:
            raise ValueError("alpha must be >= 0 and ridge > 0")
        self.alpha = alpha
        self.ridge = ridge
        self.floor = floor

    @staticmethod
    def _layout(cells: Sequence[CellStats]) -> tuple[str, ...]:
        names = sorted({f"{k}={v}" for c in cells for k, v in c.features})
        return ("intercept", *names)

    @staticmethod
    def _vector(features: Sequence[tuple[str, str]], layout: Sequence[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(layout)}
        x = np.zeros(len(layout))
        x[0] = 1.0
        for k, v in features:
            x[index[f"{k}={v}"]] = 1.0
        return x

    def fit(
        self, cells: Sequence[CellStats]
    ) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray, np.ndarray]:
        """``A`` (arms, d, d) and ``b`` (arms, d) from the aggregates; arms and layout too."""
        arms = tuple(sorted({c.arm for c in cells}))
        layout = self._layout(cells)
        d = len(layout)
        a_mat = np.repeat(self.ridge * np.eye(d)[None, :, :], len(arms), axis=0)
        b_vec = np.zeros((len(arms), d))
        arm_index = {a: i for i, a in enumerate(arms)}
        for cell in cells:
            x = self._vector(cell.features, layout)
            i = arm_index[cell.arm]
            a_mat[i] += cell.n * np.outer(x, x)
            b_vec[i] += cell.reward_sum * x
        return arms, layout, a_mat, b_vec

    def allocate(
        self,
        cells: Sequence[CellStats],
        *,
        contexts: Sequence[Sequence[tuple[str, str]]] | None = None,
    ) -> LinUCBAllocation:
        """Weights for every context cell seen in ``cells`` (or the ``contexts`` given)."""
        if not cells:
            raise ValueError("need per arm x cell statistics")
        arms, layout, a_mat, b_vec = self.fit(cells)
        if contexts is None:
            seen = sorted({tuple(sorted(c.features)) for c in cells})
            contexts = seen
        a_inv = np.linalg.inv(a_mat)
        theta = np.einsum("kij,kj->ki", a_inv, b_vec)
        xs = np.array([self._vector(ctx, layout) for ctx in contexts])  # (cells, d)
        mean = xs @ theta.T  # (cells, arms)
        width = np.sqrt(np.einsum("ci,kij,cj->ck", xs, a_inv, xs))
        scores = mean + self.alpha * width
        k = len(arms)
        if self.floor * k > 1.0:
            raise ValueError(f"floor {self.floor} is too large for {k} arms")
        best = scores.argmax(axis=1)
        weights = np.full((len(contexts), k), self.floor)
        weights[np.arange(len(contexts)), best] = 1.0 - (k - 1) * self.floor
        return LinUCBAllocation(
            arms=arms,
            feature_names=layout,
            cells=tuple(tuple(ctx) for ctx in contexts),
            weights=tuple(tuple(row) for row in weights.tolist()),
            scores=tuple(tuple(row) for row in scores.tolist()),
            chosen=tuple(arms[i] for i in best),
        )


@dataclass(frozen=True)
class RegretReport:
    """Cumulative regret per night (expected, against the best arm) of a strategy and uniform."""

    nights: int
    requests_per_night: int
    best_arm: int
    cumulative_regret: tuple[float, ...]
    uniform_cumulative_regret: tuple[float, ...]
    final_weights: tuple[float, ...]

    @property
    def regret_ratio(self) -> float:
        """Final regret of the strategy divided by that of uniform allocation."""
        return self.cumulative_regret[-1] / self.uniform_cumulative_regret[-1]

    @property
    def late_to_early_ratio(self) -> float:
        """Regret added in the second half over the first half (< 1 looks sublinear)."""
        half = self.nights // 2
        regret = self.cumulative_regret
        return (regret[-1] - regret[half - 1]) / max(regret[half - 1], 1e-12)


def simulate_regret(
    strategy: BanditStrategy,
    true_means: Sequence[float],
    *,
    nights: int,
    requests_per_night: int,
    noise_sd: float | None = None,
    seed: int = 0,
) -> RegretReport:
    """Replay ``nights`` batches: the strategy sets weights, the environment returns rewards.

    Rewards are Bernoulli(true mean) when ``noise_sd`` is None, otherwise normal around the true
    mean clipped to [0, 1] (quality-like). The strategy sees cumulative statistics per arm.
    Regret is expected regret: ``requests * sum(w * (best - mean))`` per night.
    """
    if nights < 2:
        raise ValueError("nights must be >= 2")
    means = np.asarray(true_means, dtype=float)
    rng = np.random.default_rng(seed)
    k = means.size
    gap = means.max() - means
    counts = np.zeros(k)
    sums = np.zeros(k)
    squares = np.zeros(k)
    regret: list[float] = []
    uniform: list[float] = []
    weights = np.full(k, 1.0 / k)
    for night in range(nights):
        if night > 0:
            arms: list[ArmStats]
            if noise_sd is None:
                arms = [BernoulliStats(sums[j], counts[j] - sums[j]) for j in range(k)]
            else:
                arms = [GaussianStats(counts[j], sums[j], squares[j]) for j in range(k)]
            weights = strategy.allocate(arms)
        served = rng.multinomial(requests_per_night, weights)
        for j in range(k):
            if served[j] == 0:
                continue
            if noise_sd is None:
                rewards = rng.binomial(1, means[j], served[j]).astype(float)
            else:
                rewards = np.clip(rng.normal(means[j], noise_sd, served[j]), 0.0, 1.0)
            counts[j] += served[j]
            sums[j] += rewards.sum()
            squares[j] += (rewards**2).sum()
        previous = regret[-1] if regret else 0.0
        regret.append(previous + requests_per_night * float(weights @ gap))
        uniform.append(requests_per_night * float(gap.mean()) * (night + 1))
    return RegretReport(
        nights=nights,
        requests_per_night=requests_per_night,
        best_arm=int(means.argmax()),
        cumulative_regret=tuple(regret),
        uniform_cumulative_regret=tuple(uniform),
        final_weights=tuple(float(w) for w in weights),
    )
