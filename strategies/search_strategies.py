"""Search strategies: which Optuna sampler, single or multi objective, and the best so far.

:class:`SearchStrategy` (``TPESearch``, ``NSGAIISearch``, ``RandomSearch``, by name through
:func:`make_strategy`): the seed is owned by the instance and mixed with the study's trial count,
so a study reloaded every night does not replay the same random draws. :mod:`strategies.search`
runs a nightly round with one of these and re-exports every public name here.

Example:
    >>> s = make_strategy("tpe", objective="multi", seed=3)
    >>> s.name, s.objective_names
    ('tpe', ('quality', 'cost_usd', 'latency_p95_ms'))
    >>> s.round_seed(0) == s.round_seed(0) != s.round_seed(1)
    True
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from strategies.config_stats import PRESETS, ConfigStats, RewardWeights
from strategies.search_space import CandidateParams

__all__ = [
    "ATTR_ASKED_ON",
    "ATTR_CONFIG_ID",
    "ATTR_REASON",
    "MULTI_OBJECTIVE_NAMES",
    "BestConfig",
    "NSGAIISearch",
    "Objective",
    "RandomSearch",
    "SearchStrategy",
    "TPESearch",
    "make_strategy",
]

Objective = Literal["single", "multi"]
MULTI_OBJECTIVE_NAMES: tuple[str, ...] = ("quality", "cost_usd", "latency_p95_ms")

# User attributes stored on every trial (the study is the record of the search).
ATTR_CONFIG_ID = "config_id"
ATTR_ASKED_ON = "asked_on"
ATTR_REASON = "reason"


@dataclass(frozen=True)
class BestConfig:
    trial_number: int
    config_id: str
    params: dict[str, Any]
    values: tuple[float, ...]
    score: float
    n: int


# --------------------------------------------------------------------------- strategies
class SearchStrategy(abc.ABC):
    """Which sampler and which objective(s); the seed belongs to the instance.

    A nightly study is reloaded with a fresh sampler each night. Seeding that sampler with the
    same number every night would replay the same random start-up draws, so the sampler of a
    round is seeded from ``(seed, round_index)`` (round index = trials already in the study).
    """

    name: ClassVar[str] = "base"

    def __init__(
        self,
        *,
        objective: Objective = "single",
        weights: RewardWeights | None = None,
        seed: int | None = None,
    ) -> None:
        if objective not in ("single", "multi"):
            raise ValueError(f"objective must be 'single' or 'multi', got {objective!r}")
        self.objective: Objective = objective
        self.weights = weights or PRESETS["balanced"]
        self.seed = seed

    @property
    def directions(self) -> list[StudyDirection]:
        if self.objective == "single":
            return [StudyDirection.MAXIMIZE]
        return [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]

    @property
    def objective_names(self) -> tuple[str, ...]:
        return ("reward",) if self.objective == "single" else MULTI_OBJECTIVE_NAMES

    def values(self, stats: ConfigStats) -> tuple[float, ...]:
        """Objective value(s) of an observed configuration."""
        if self.objective == "single":
            return (self.weights.score_stats(stats),)
        return (stats.quality_mean, stats.cost_mean, stats.latency_p95)

    def round_seed(self, round_index: int) -> int | None:
        if self.seed is None:
            return None
        return int(np.random.SeedSequence([self.seed, round_index]).generate_state(1)[0])

    @abc.abstractmethod
    def sampler(self, round_index: int) -> optuna.samplers.BaseSampler:
        """A sampler for one round (see the class docstring for seeding)."""

    def best(self, study: optuna.Study) -> BestConfig | None:
        """Best told configuration so far (multi-objective: best weighted among the Pareto set)."""
        complete = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)
        ]
        if not complete:
            return None
        if self.objective == "single":
            pool = complete
        else:
            pool = [t for t in study.best_trials if t.values is not None] or complete
        chosen = max(pool, key=lambda t: (self._trial_score(t), -t.number))
        return BestConfig(
            trial_number=chosen.number,
            config_id=str(chosen.user_attrs.get(ATTR_CONFIG_ID, "")),
            params=_clean_params(chosen.params),
            values=tuple(float(v) for v in chosen.values),
            score=self._trial_score(chosen),
            n=int(chosen.user_attrs.get("n", 0)),
        )

    def _trial_score(self, trial: FrozenTrial) -> float:
        attrs = trial.user_attrs
        if self.objective == "single":
            return float(trial.values[0])
        score = self.weights.score(
            float(attrs.get("quality_mean", math.nan)),
            float(attrs.get("cost_mean", math.nan)),
            float(attrs.get("latency_p95", math.nan)),
            float(attrs.get("error_rate", 0.0)),
        )
        return score if math.isfinite(score) else -math.inf


class TPESearch(SearchStrategy):
    """Multivariate TPE; constant liar keeps a batch of pending candidates apart."""

    name = "tpe"

    def __init__(
        self,
        *,
        objective: Objective = "single",
        weights: RewardWeights | None = None,
        seed: int | None = None,
        n_startup_trials: int = 8,
    ) -> None:
        super().__init__(objective=objective, weights=weights, seed=seed)
        self.n_startup_trials = n_startup_trials

    def sampler(self, round_index: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=self.round_seed(round_index),
            n_startup_trials=self.n_startup_trials,
            multivariate=True,
            constant_liar=True,
        )


class NSGAIISearch(SearchStrategy):
    """NSGA-II for the multi-objective study (quality up, cost down, latency down)."""

    name = "nsga2"

    def __init__(
        self,
        *,
        objective: Objective = "multi",
        weights: RewardWeights | None = None,
        seed: int | None = None,
        population_size: int = 8,
    ) -> None:
        super().__init__(objective=objective, weights=weights, seed=seed)
        if population_size < 2:
            raise ValueError("population_size must be >= 2")
        self.population_size = population_size

    def sampler(self, round_index: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(
            seed=self.round_seed(round_index), population_size=self.population_size
        )


class RandomSearch(SearchStrategy):
    """Uniform random suggestions: the baseline the other strategies must beat."""

    name = "random"

    def sampler(self, round_index: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.round_seed(round_index))


def make_strategy(
    sampler: str,
    *,
    objective: Objective,
    weights: RewardWeights | None = None,
    seed: int | None = None,
    n_startup_trials: int = 8,
    population_size: int = 8,
) -> SearchStrategy:
    """Strategy by name (``tpe``, ``nsga2``, ``random``), as named in ``search.toml``."""
    if sampler == "tpe":
        return TPESearch(
            objective=objective, weights=weights, seed=seed, n_startup_trials=n_startup_trials
        )
    if sampler == "nsga2":
        return NSGAIISearch(
            objective=objective, weights=weights, seed=seed, population_size=population_size
        )
    if sampler == "random":
        return RandomSearch(objective=objective, weights=weights, seed=seed)
    raise ValueError(f"unknown sampler {sampler!r}; choose tpe, nsga2 or random")


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return CandidateParams.from_mapping(params).as_dict()
    except (ValueError, TypeError):
        return dict(params)
