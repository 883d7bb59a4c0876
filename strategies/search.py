"""Optuna ask / tell over real traffic: suggest candidate configurations, judge them on their logs.

Classic Optuna calls an objective function and gets a number back at once. Here the "objective"
is a night (or several) of real traffic: a trial is *asked* today, its configuration is served to
a slice of exploration traffic, and the trial is *told* only when the warehouse holds enough
requests for it (``min_requests``). Until then it stays RUNNING in Optuna and never gets a
made-up value. This module is pure: it works on an :class:`optuna.Study` whatever its storage and
on :class:`ConfigStats` built from the warehouse's sufficient statistics.

* :class:`ConfigStats` — per-configuration sufficient statistics with derived means and standard
  errors (latency p95 by a documented lognormal approximation).
* :class:`RewardWeights` and :data:`PRESETS` — the scalar reward used by single-objective studies
  and by the frontier's weighted selection.
* :class:`SearchStrategy` (``TPESearch``, ``NSGAIISearch``, ``RandomSearch``) — which sampler,
  single or multi objective; the seed is owned by the instance and mixed with the study's trial
  count so a study reloaded every night does not replay the same random draws.
* :func:`tell_ready_trials` and :func:`ask_candidates` — one nightly round.

Example (a seeded toy round on an in-memory study):
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> space = SearchSpace(models=("m",), prompt_ids=("p",), max_tokens=(256,))
    >>> strategy = RandomSearch(seed=1)
    >>> study = optuna.create_study(directions=strategy.directions)
    >>> asked = ask_candidates(study, space, strategy=strategy, n=2, as_of=dt.date(2026, 10, 1))
    >>> len(asked.candidates), asked.candidates[0].config_id.startswith("m|p|t=")
    (2, True)
"""

from __future__ import annotations

import abc
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy import stats as sps

from strategies.search_space import (
    CandidateParams,
    ForbiddenCombination,
    SearchSpace,
    candidate_config_id,
)

__all__ = [
    "PRESETS",
    "AskResult",
    "BestConfig",
    "Candidate",
    "CandidateParams",
    "ConfigStats",
    "ForbiddenCombination",
    "NSGAIISearch",
    "Objective",
    "RandomSearch",
    "Rejection",
    "RewardWeights",
    "SearchSpace",
    "SearchStrategy",
    "TPESearch",
    "TrialOutcome",
    "ask_candidates",
    "candidate_config_id",
    "make_strategy",
    "pending_candidates",
    "stats_by_key",
    "tell_ready_trials",
    "weights_for",
]

Objective = Literal["single", "multi"]
MULTI_OBJECTIVE_NAMES: tuple[str, ...] = ("quality", "cost_usd", "latency_p95_ms")

# User attributes stored on every trial (the study is the record of the search).
ATTR_CONFIG_ID = "config_id"
ATTR_ASKED_ON = "asked_on"
ATTR_REASON = "reason"


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class ConfigStats:
    """Sufficient statistics of one configuration over a window (from ``config_metrics``).

    Standard errors come from the sums (no rows needed). Latency p95 has no sum to lean on, so
    :attr:`latency_p95_se` uses the asymptotic variance of a sample quantile,
    ``Var(q_p) ≈ p(1-p) / (n f(q_p)^2)``, with the density ``f`` of a lognormal fitted to the
    observed mean and p95 (``ln p95 = mu + z95 sigma``, ``ln mean = mu + sigma^2 / 2``), which
    gives ``se = q sigma sqrt(p(1-p)/n) / phi(z95)``. LLM latency is right-skewed and close to
    lognormal; when the fit is impossible (p95 below the mean) sigma falls back to a small value.
    """

    config_key: str
    n: int
    successes: int
    quality_n: int
    quality_sum: float
    quality_sum_squares: float
    cost_sum: float
    cost_sum_squares: float
    latency_mean: float
    latency_p95: float
    params: CandidateParams | None = None

    @property
    def error_rate(self) -> float:
        return 1.0 - self.successes / self.n if self.n else math.nan

    @property
    def error_rate_se(self) -> float:
        rate = self.error_rate
        return math.sqrt(rate * (1.0 - rate) / self.n) if self.n else math.nan

    @property
    def quality_mean(self) -> float:
        return self.quality_sum / self.quality_n if self.quality_n else math.nan

    @property
    def quality_se(self) -> float:
        return _mean_se(self.quality_n, self.quality_sum, self.quality_sum_squares)

    @property
    def cost_mean(self) -> float:
        return self.cost_sum / self.n if self.n else math.nan

    @property
    def cost_se(self) -> float:
        return _mean_se(self.n, self.cost_sum, self.cost_sum_squares)

    @property
    def latency_p95_se(self) -> float:
        if self.n < 2 or not self.latency_p95 > 0 or not self.latency_mean > 0:
            return math.nan
        z = float(sps.norm.ppf(0.95))
        log_ratio = math.log(self.latency_p95 / self.latency_mean)
        disc = z * z - 2.0 * log_ratio
        sigma = z - math.sqrt(disc) if disc >= 0 else z  # disc < 0: heavier tail than any fit
        sigma = max(sigma, 0.05)
        return self.latency_p95 * sigma * math.sqrt(0.95 * 0.05 / self.n) / float(sps.norm.pdf(z))

    @property
    def analysable(self) -> bool:
        return self.n > 0 and self.quality_n > 0 and math.isfinite(self.latency_p95)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConfigStats:
        """Build from one row of ``tasks.warehouse.config_metrics.config_metrics`` (dict / Series).

        Args:
            row: the row, with ``config_key``, ``n``, ``successes``, the quality and cost sums
                and sums of squares, ``latency_mean`` and ``latency_p95``.
        """
        params = None
        try:
            params = CandidateParams.from_mapping(row)
        except (ValueError, TypeError):
            params = None  # logs without full sampling parameters still have statistics
        return cls(
            config_key=str(row["config_key"]),
            n=int(row["n"]),
            successes=int(row["successes"]),
            quality_n=int(row["quality_n"]),
            quality_sum=float(row["quality_sum"]),
            quality_sum_squares=float(row["quality_sum_squares"]),
            cost_sum=_float_or_nan(row["cost_sum"]),
            cost_sum_squares=_float_or_nan(row["cost_sum_squares"]),
            latency_mean=_float_or_nan(row["latency_mean"]),
            latency_p95=_float_or_nan(row["latency_p95"]),
            params=params,
        )

    @classmethod
    def from_samples(
        cls,
        config_key: str,
        *,
        quality: np.ndarray,
        cost: np.ndarray,
        latency: np.ndarray,
        success: np.ndarray,
        params: CandidateParams | None = None,
    ) -> ConfigStats:
        """Sufficient statistics of raw arrays (tests and simulations; NaN quality = missing)."""
        q = quality[~np.isnan(quality)]
        return cls(
            config_key=config_key,
            n=len(success),
            successes=int(np.sum(success)),
            quality_n=len(q),
            quality_sum=float(q.sum()),
            quality_sum_squares=float((q * q).sum()),
            cost_sum=float(cost.sum()),
            cost_sum_squares=float((cost * cost).sum()),
            latency_mean=float(latency.mean()) if len(latency) else math.nan,
            latency_p95=float(np.quantile(latency, 0.95)) if len(latency) else math.nan,
            params=params,
        )


def _float_or_nan(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _mean_se(n: int, total: float, squares: float) -> float:
    if n < 2 or not math.isfinite(total):
        return math.nan
    mean = total / n
    var = max(squares - n * mean * mean, 0.0) / (n - 1)
    return math.sqrt(var / n)


# --------------------------------------------------------------------------- reward
@dataclass(frozen=True)
class RewardWeights:
    """Scalar reward ``quality - cost - latency - errors``, each term weighted and scaled.

    ``reward = w_q * quality - w_c * cost_usd / cost_scale_usd
    - w_l * latency_p95_ms / latency_scale_ms - w_e * error_rate``.

    Scales make the weights readable: with the defaults (1 cent, 1 second) the balanced preset
    says "one cent more per request is worth 0.1 quality points, one more second of p95 latency
    is worth 0.02", so the weights are exchange rates, not magic numbers.
    """

    quality: float = 1.0
    cost: float = 0.1
    latency: float = 0.02
    errors: float = 1.0
    cost_scale_usd: float = 0.01
    latency_scale_ms: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("quality", "cost", "latency", "errors"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"weight {name} must be finite and >= 0, got {value}")
        if not (self.cost_scale_usd > 0 and self.latency_scale_ms > 0):
            raise ValueError("cost_scale_usd and latency_scale_ms must be > 0")

    def score(
        self, quality: float, cost_usd: float, latency_p95_ms: float, error_rate: float = 0.0
    ) -> float:
        """The reward; NaN only if an input is NaN (callers decide what 'cannot analyse' means)."""
        return (
            self.quality * quality
            - self.cost * cost_usd / self.cost_scale_usd
            - self.latency * latency_p95_ms / self.latency_scale_ms
            - self.errors * error_rate
        )

    def score_stats(self, stats: ConfigStats) -> float:
        return self.score(stats.quality_mean, stats.cost_mean, stats.latency_p95, stats.error_rate)


# The reward presets of the decision layer (issue 12): weights over quality / cost / latency, with
# explicit scales (one unit of cost = ``PRESET_COST_SCALE_USD`` per request, one unit of latency =
# ``PRESET_LATENCY_SCALE_MS`` of p95) and an error weight equal to the quality weight (a failed
# request is worth no quality). ``strategies.objective`` builds every objective from this one table.
PRESET_COST_SCALE_USD = 0.1
PRESET_LATENCY_SCALE_MS = 5000.0


def _preset(quality: float, cost: float, latency: float) -> RewardWeights:
    return RewardWeights(
        quality=quality,
        cost=cost,
        latency=latency,
        errors=quality,
        cost_scale_usd=PRESET_COST_SCALE_USD,
        latency_scale_ms=PRESET_LATENCY_SCALE_MS,
    )


PRESETS: dict[str, RewardWeights] = {
    "quality-focused": _preset(0.8, 0.15, 0.05),
    "balanced": _preset(0.6, 0.3, 0.1),
    "cost-focused": _preset(0.4, 0.5, 0.1),
    "latency-focused": _preset(0.4, 0.3, 0.3),
}


def weights_for(
    preset: str = "balanced", overrides: Mapping[str, float] | None = None
) -> RewardWeights:
    """A preset, optionally with some weights / scales replaced (custom weights)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    if not overrides:
        return base
    known = {f for f in RewardWeights.__dataclass_fields__}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown weight keys {unknown}; known: {sorted(known)}")
    return replace(base, **{k: float(v) for k, v in overrides.items()})


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


# --------------------------------------------------------------------------- one round
@dataclass(frozen=True)
class TrialOutcome:
    """What happened to one pending trial at ``tell`` time."""

    trial_number: int
    config_id: str
    status: Literal["told", "pending", "failed"]
    n: int
    values: tuple[float, ...] | None = None
    reason: str = ""


@dataclass(frozen=True)
class Candidate:
    """A configuration that should receive exploration traffic (new or still collecting)."""

    trial_number: int
    config_id: str
    params: dict[str, Any]
    asked_on: str
    new: bool


@dataclass(frozen=True)
class Rejection:
    """A suggestion that was not served, and why (forbidden, duplicate)."""

    trial_number: int
    config_id: str
    params: dict[str, Any]
    state: str
    reason: str


@dataclass(frozen=True)
class AskResult:
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...] = field(default=())
    shortfall_reason: str = ""


@dataclass(frozen=True)
class BestConfig:
    trial_number: int
    config_id: str
    params: dict[str, Any]
    values: tuple[float, ...]
    score: float
    n: int


def _trial_handle(study: optuna.Study, trial: FrozenTrial) -> optuna.trial.Trial:
    # A RUNNING trial reloaded from storage: the handle lets us set user attrs before telling.
    return optuna.trial.Trial(study, trial._trial_id)


def tell_ready_trials(
    study: optuna.Study,
    stats: Mapping[str, ConfigStats],
    *,
    strategy: SearchStrategy,
    min_requests: int,
    as_of: dt.date,
    max_pending_days: int | None = None,
) -> tuple[TrialOutcome, ...]:
    """Tell every RUNNING trial whose configuration has ``min_requests`` observed requests.

    Trials below the threshold stay RUNNING (no value is invented). A trial still without enough
    traffic ``max_pending_days`` after it was asked is marked FAIL with the reason (the serving
    side never routed it); failed trials are ignored by the samplers.
    """
    outcomes: list[TrialOutcome] = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        config_id = str(frozen.user_attrs.get(ATTR_CONFIG_ID, ""))
        handle = _trial_handle(study, frozen)
        if not config_id:
            reason = "trial has no config_id user attribute (not asked by the search loop)"
            handle.set_user_attr(ATTR_REASON, reason)
            study.tell(handle, state=TrialState.FAIL)
            outcomes.append(TrialOutcome(frozen.number, "", "failed", 0, reason=reason))
            continue
        observed = stats.get(config_id)
        n = observed.n if observed else 0
        values = _ready_values(observed, strategy, min_requests)
        if values is not None and observed is not None:
            for key, value in _observation_attrs(observed, as_of).items():
                handle.set_user_attr(key, value)
            study.tell(handle, list(values))
            outcomes.append(TrialOutcome(frozen.number, config_id, "told", n, values=values))
            continue
        if observed is not None and n >= min_requests:
            reason = "enough requests but no quality scores / latency to judge it yet"
        else:
            reason = f"{n} of {min_requests} requests observed"
        asked_on = _parse_day(frozen.user_attrs.get(ATTR_ASKED_ON))
        if max_pending_days is not None and asked_on and (as_of - asked_on).days > max_pending_days:
            reason = f"no verdict after {max_pending_days} days ({reason}); not served?"
            handle.set_user_attr(ATTR_REASON, reason)
            study.tell(handle, state=TrialState.FAIL)
            outcomes.append(TrialOutcome(frozen.number, config_id, "failed", n, reason=reason))
            continue
        outcomes.append(TrialOutcome(frozen.number, config_id, "pending", n, reason=reason))
    return tuple(outcomes)


def _ready_values(
    observed: ConfigStats | None, strategy: SearchStrategy, min_requests: int
) -> tuple[float, ...] | None:
    """Objective values when ``observed`` is enough to judge (else None: keep waiting)."""
    if observed is None or observed.n < min_requests or not observed.analysable:
        return None
    values = strategy.values(observed)
    return values if all(math.isfinite(v) for v in values) else None


def _observation_attrs(stats: ConfigStats, as_of: dt.date) -> dict[str, Any]:
    return {
        "n": stats.n,
        "quality_mean": stats.quality_mean,
        "quality_se": _finite_or_none(stats.quality_se),
        "cost_mean": stats.cost_mean,
        "latency_p95": stats.latency_p95,
        "error_rate": stats.error_rate,
        "told_on": as_of.isoformat(),
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _parse_day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def ask_candidates(
    study: optuna.Study,
    space: SearchSpace,
    *,
    strategy: SearchStrategy,
    n: int,
    as_of: dt.date,
    max_attempts: int | None = None,
    observed: Mapping[str, ConfigStats] | None = None,
    min_requests: int | None = None,
) -> AskResult:
    """Ask the sampler for ``n`` new, servable, distinct configurations.

    * A forbidden / out-of-space suggestion is told PRUNED with the reason as a user attribute
      (the sampler learns to avoid the region) and never served.
    * A suggestion equal to a configuration already judged is told that configuration's observed
      values at once (Optuna's usual answer to duplicates): real data, no traffic wasted.
    * A suggestion whose configuration already has ``min_requests`` requests in ``observed``
      (say, the production config, or one from an earlier study) is told those values at once.
    * A suggestion equal to a configuration still collecting traffic is told FAIL (neutral for
      the samplers) with the reason.
    Stops after ``max_attempts`` (default ``10 n``) and says why if fewer than ``n`` came out.
    """
    if observed is not None and min_requests is None:
        raise ValueError("ask_candidates: min_requests is required with observed")
    if n <= 0:
        return AskResult(candidates=())
    study.sampler = strategy.sampler(len(study.get_trials(deepcopy=False)))
    pending_ids = {
        str(t.user_attrs.get(ATTR_CONFIG_ID))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    judged: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        judged[str(t.user_attrs.get(ATTR_CONFIG_ID))] = t
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    attempts = max_attempts if max_attempts is not None else 10 * n
    for _ in range(attempts):
        if len(candidates) >= n:
            break
        trial = study.ask()
        params = space.suggest(trial)
        config_id = params.config_id
        trial.set_user_attr(ATTR_CONFIG_ID, config_id)
        trial.set_user_attr(ATTR_ASKED_ON, as_of.isoformat())
        violations = space.violations(params)
        if violations:
            reason = "; ".join(violations)
            trial.set_user_attr(ATTR_REASON, reason)
            study.tell(trial, state=TrialState.PRUNED)
            rejected.append(Rejection(trial.number, config_id, params.as_dict(), "pruned", reason))
        elif config_id in judged:
            previous = judged[config_id]
            for key in ("n", "quality_mean", "cost_mean", "latency_p95", "error_rate"):
                if key in previous.user_attrs:
                    trial.set_user_attr(key, previous.user_attrs[key])
            reason = f"duplicate of judged trial {previous.number}; told its observed values"
            trial.set_user_attr(ATTR_REASON, reason)
            study.tell(trial, list(previous.values))
            rejected.append(
                Rejection(trial.number, config_id, params.as_dict(), "complete", reason)
            )
        elif (
            values := _ready_values((observed or {}).get(config_id), strategy, min_requests or 0)
        ) is not None and observed is not None:
            for key, value in _observation_attrs(observed[config_id], as_of).items():
                trial.set_user_attr(key, value)
            reason = "already observed in the warehouse; told its observed values at once"
            trial.set_user_attr(ATTR_REASON, reason)
            study.tell(trial, list(values))
            rejected.append(
                Rejection(trial.number, config_id, params.as_dict(), "complete", reason)
            )
        elif config_id in pending_ids:
            reason = "duplicate of a configuration still collecting traffic"
            trial.set_user_attr(ATTR_REASON, reason)
            study.tell(trial, state=TrialState.FAIL)
            rejected.append(Rejection(trial.number, config_id, params.as_dict(), "failed", reason))
        else:
            pending_ids.add(config_id)
            candidates.append(
                Candidate(trial.number, config_id, params.as_dict(), as_of.isoformat(), True)
            )
    shortfall = ""
    if len(candidates) < n:
        shortfall = (
            f"only {len(candidates)} of {n} new candidates after {attempts} suggestions "
            "(space exhausted or mostly forbidden / duplicate)"
        )
    return AskResult(tuple(candidates), tuple(rejected), shortfall)


def pending_candidates(study: optuna.Study) -> tuple[Candidate, ...]:
    """Every trial still collecting traffic (what serving must keep routing exploration to)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        out.append(
            Candidate(
                trial_number=t.number,
                config_id=str(t.user_attrs.get(ATTR_CONFIG_ID, "")),
                params=_clean_params(t.params),
                asked_on=str(t.user_attrs.get(ATTR_ASKED_ON, "")),
                new=False,
            )
        )
    return tuple(out)


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return CandidateParams.from_mapping(params).as_dict()
    except (ValueError, TypeError):
        return dict(params)


def stats_by_key(rows: Sequence[ConfigStats]) -> dict[str, ConfigStats]:
    return {row.config_key: row for row in rows}
