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

The statistics and the reward live in :mod:`strategies.config_stats` (no Optuna) and the
strategies in :mod:`strategies.search_strategies`; this module runs the round and re-exports
their public names, so ``from strategies.search import ...`` is the one import for a search.

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

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from strategies.config_stats import (
    PRESETS,
    ConfigStats,
    RewardWeights,
    weights_for,
)
from strategies.search_space import (
    CandidateParams,
    ForbiddenCombination,
    SearchSpace,
    candidate_config_id,
)
from strategies.search_strategies import (
    ATTR_ASKED_ON,
    ATTR_CONFIG_ID,
    ATTR_REASON,
    BestConfig,
    NSGAIISearch,
    Objective,
    RandomSearch,
    SearchStrategy,
    TPESearch,
    _clean_params,
    make_strategy,
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
    "SuggestedTrial",
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
class SuggestedTrial:
    """A configuration the sampler suggested: its trial, its id and its parameters."""

    trial_number: int
    config_id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Candidate(SuggestedTrial):
    """A configuration that should receive exploration traffic (new or still collecting)."""

    asked_on: str
    new: bool


@dataclass(frozen=True)
class Rejection(SuggestedTrial):
    """A suggestion that was not served, and why (forbidden, duplicate)."""

    state: str
    reason: str


@dataclass(frozen=True)
class AskResult:
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...] = field(default=())
    shortfall_reason: str = ""


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
        trial.set_user_attr(ATTR_CONFIG_ID, params.config_id)
        trial.set_user_attr(ATTR_ASKED_ON, as_of.isoformat())
        rejection = _reject_suggestion(
            study,
            trial,
            params,
            space=space,
            judged=judged,
            ready=_ready_values(
                (observed or {}).get(params.config_id), strategy, min_requests or 0
            ),
            observed=observed,
            pending_ids=pending_ids,
            as_of=as_of,
        )
        if rejection is not None:
            rejected.append(rejection)
            continue
        pending_ids.add(params.config_id)
        candidates.append(
            Candidate(
                trial_number=trial.number,
                config_id=params.config_id,
                params=params.as_dict(),
                asked_on=as_of.isoformat(),
                new=True,
            )
        )
    shortfall = ""
    if len(candidates) < n:
        shortfall = (
            f"only {len(candidates)} of {n} new candidates after {attempts} suggestions "
            "(space exhausted or mostly forbidden / duplicate)"
        )
    return AskResult(
        candidates=tuple(candidates), rejected=tuple(rejected), shortfall_reason=shortfall
    )


def _reject_suggestion(
    study: optuna.Study,
    trial: optuna.trial.Trial,
    params: CandidateParams,
    *,
    space: SearchSpace,
    judged: Mapping[str, FrozenTrial],
    ready: tuple[float, ...] | None,
    observed: Mapping[str, ConfigStats] | None,
    pending_ids: set[str],
    as_of: dt.date,
) -> Rejection | None:
    """Tell a suggestion that must not be served (see :func:`ask_candidates`), or None to serve it.

    Args:
        study: the study the trial was asked from.
        trial: the asked trial (its config id and ask day already set).
        params: the suggested configuration.
        space: the search space (its forbidden combinations).
        judged: the COMPLETE trials by configuration id.
        ready: the observed objective values of this configuration if it already has enough
            requests in the warehouse (see :func:`_ready_values`), else None.
        observed: the warehouse statistics by configuration id (None: not consulted).
        pending_ids: configuration ids still collecting traffic.
        as_of: the night.

    Returns:
        The rejection (the trial is told PRUNED, COMPLETE or FAIL with the reason), or None.
    """
    config_id = params.config_id
    violations = space.violations(params)
    if violations:
        state, reason = "pruned", "; ".join(violations)
        trial.set_user_attr(ATTR_REASON, reason)
        study.tell(trial, state=TrialState.PRUNED)
    elif config_id in judged:
        previous = judged[config_id]
        for key in ("n", "quality_mean", "cost_mean", "latency_p95", "error_rate"):
            if key in previous.user_attrs:
                trial.set_user_attr(key, previous.user_attrs[key])
        state = "complete"
        reason = f"duplicate of judged trial {previous.number}; told its observed values"
        trial.set_user_attr(ATTR_REASON, reason)
        study.tell(trial, list(previous.values))
    elif ready is not None and observed is not None:
        for key, value in _observation_attrs(observed[config_id], as_of).items():
            trial.set_user_attr(key, value)
        state = "complete"
        reason = "already observed in the warehouse; told its observed values at once"
        trial.set_user_attr(ATTR_REASON, reason)
        study.tell(trial, list(ready))
    elif config_id in pending_ids:
        state, reason = "failed", "duplicate of a configuration still collecting traffic"
        trial.set_user_attr(ATTR_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
    else:
        return None
    return Rejection(
        trial_number=trial.number,
        config_id=config_id,
        params=params.as_dict(),
        state=state,
        reason=reason,
    )


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


def stats_by_key(rows: Sequence[ConfigStats]) -> dict[str, ConfigStats]:
    return {row.config_key: row for row in rows}
