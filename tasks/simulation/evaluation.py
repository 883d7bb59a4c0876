"""Grading the platform's strategies against the simulator's truth (tests and benchmarks only).

The simulated nightly search loop (:func:`simulate_search`), the bandit regret replay
(:func:`simulator_regret`) and the closed bandit loop through a warehouse
(:func:`simulate_closed_loop`) and off-policy estimates of candidate policies on simulated logs
(:func:`offpolicy_checks`) grade what the production code decides with the truth the simulator
knows. Production modules never import this package (a layout test checks it).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import optuna
import pyarrow as pa
from optuna.trial import TrialState

from strategies.bandits import RegretReport, ThompsonSampling, UniformAllocation, simulate_regret
from strategies.search import (
    ConfigStats,
    RewardWeights,
    SearchSpace,
    SearchStrategy,
    ask_candidates,
    pending_candidates,
    tell_ready_trials,
)
from strategies.search_space import CandidateParams
from tasks import simulation as sim
from tasks.allocation.bandits import bandit_allocation
from tasks.allocation.offpolicy import OffPolicyEstimate, evaluate_policy
from tasks.simulation import world
from tasks.simulation.truth import UseCaseTruth
from tasks.warehouse.connection import connect

__all__ = [
    "OPE_REQUESTS_PER_DAY",
    "ClosedLoop",
    "OffPolicyCheck",
    "SimulatedRegret",
    "SimulatedSearch",
    "offpolicy_checks",
    "simulate_closed_loop",
    "simulate_search",
    "simulator_regret",
    "true_best",
    "true_reward",
]


@dataclass(frozen=True)
class SimulatedSearch:
    """Outcome of :func:`simulate_search`: what the loop picked and how far from the truth."""

    use_case: str
    sampler: str
    seed: int
    nights: int
    n_trials_told: int
    best_config_id: str
    best_observed_reward: float
    best_true_reward: float
    optimum_config_id: str
    optimum_true_reward: float
    gap: float
    best_true_by_night: tuple[float, ...]


def true_reward(use_case: str, params: Mapping[str, Any], weights: RewardWeights) -> float:
    """Simulator truth of the reward (latency weight must be 0: p95 truth is Monte Carlo)."""
    if weights.latency != 0:
        raise ValueError("true_reward needs weights.latency == 0 (p95 truth is Monte Carlo)")
    p = CandidateParams.from_mapping(params)
    quality = sim.true_quality(use_case, p.model, p.prompt_id, p.temperature, p.top_p, p.max_tokens)
    cost, errors = _true_cost_and_errors(use_case, p.model, p.prompt_id, p.max_tokens)
    return weights.score(quality, cost, 0.0, errors)


@functools.cache
def _true_cost_and_errors(
    use_case: str, model: str, prompt_id: str, max_tokens: int
) -> tuple[float, float]:
    return (
        sim.true_mean_cost_usd(use_case, model, prompt_id, max_tokens),
        sim.true_error_rate(use_case, model, max_tokens),
    )


def true_best(use_case: str, space: SearchSpace, weights: RewardWeights) -> tuple[str, float]:
    """Brute-force optimum of :func:`true_reward` over the space's grid (the test oracle)."""
    best = max(space.grid(), key=lambda p: true_reward(use_case, p.as_dict(), weights))
    return best.config_id, true_reward(use_case, best.as_dict(), weights)


def simulate_search(
    *,
    use_case: str,
    strategy: SearchStrategy,
    space: SearchSpace,
    nights: int = 12,
    n_candidates: int = 4,
    requests_per_candidate: int = 300,
    seed: int = 0,
    optimum: tuple[str, float] | None = None,
) -> SimulatedSearch:
    """Run the nightly loop on the simulator: ask, serve each candidate, tell the next morning.

    Candidates are served with ``tasks.simulation.simulate_config_traffic`` and judged on the
    sufficient statistics of their rows exactly as the warehouse path would judge them (same
    :class:`ConfigStats`, same ``tell_ready_trials``). The study lives in memory and gets a fresh
    sampler every night, like the persistent one.
    """
    spec = sim.SimulationSpec(seed=seed, include_cost=True)
    study = optuna.create_study(directions=strategy.directions, sampler=strategy.sampler(0))
    collected: dict[str, ConfigStats] = {}
    best_by_night: list[float] = []
    day0 = spec.start_date
    for night in range(nights):
        as_of = day0 + dt.timedelta(days=night)
        tell_ready_trials(
            study, collected, strategy=strategy, min_requests=requests_per_candidate, as_of=as_of
        )
        best = strategy.best(study)
        if best is not None:
            best_by_night.append(true_reward(use_case, best.params, strategy.weights))
        pending = len(pending_candidates(study))
        ask_candidates(study, space, strategy=strategy, n=n_candidates - pending, as_of=as_of)
        for cand in pending_candidates(study):
            table = sim.simulate_config_traffic(
                spec,
                use_case,
                {**cand.params, "config_id": cand.config_id},
                requests_per_candidate,
                night,
                seed,
            )
            quality = np.asarray(table.column("quality").to_numpy(zero_copy_only=False), float)
            collected[cand.config_id] = ConfigStats.from_samples(
                cand.config_id,
                quality=quality,
                cost=np.asarray(table.column("cost_usd").to_numpy(zero_copy_only=False), float),
                latency=np.asarray(table.column("latency_ms").to_numpy(), float),
                success=np.asarray(table.column("status").to_numpy(zero_copy_only=False))
                == "success",
            )
    as_of = day0 + dt.timedelta(days=nights)
    tell_ready_trials(
        study, collected, strategy=strategy, min_requests=requests_per_candidate, as_of=as_of
    )
    best = strategy.best(study)
    if best is None:
        raise RuntimeError("no trial was told: the simulated loop produced no observation")
    best_true = true_reward(use_case, best.params, strategy.weights)
    best_by_night.append(best_true)
    opt_id, opt_value = optimum or true_best(use_case, space, strategy.weights)
    return SimulatedSearch(
        use_case=use_case,
        sampler=strategy.name,
        seed=seed,
        nights=nights,
        n_trials_told=len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
        best_config_id=best.config_id,
        best_observed_reward=best.score,
        best_true_reward=best_true,
        optimum_config_id=opt_id,
        optimum_true_reward=opt_value,
        gap=opt_value - best_true,
        best_true_by_night=tuple(best_by_night),
    )


@dataclass(frozen=True)
class SimulatedRegret:
    """Thompson vs uniform on the simulated world's true mean qualities for one use case."""

    use_case: str
    arms: tuple[str, ...]
    true_means: tuple[float, ...]
    thompson: RegretReport
    uniform: RegretReport

    @property
    def regret_ratio(self) -> float:
        return self.thompson.cumulative_regret[-1] / self.uniform.cumulative_regret[-1]


def simulator_regret(
    use_case: str,
    *,
    nights: int = 30,
    requests_per_night: int = 1000,
    floor: float = 0.02,
    noise_sd: float = 0.1,
    seed: int = 0,
) -> SimulatedRegret:
    """Replay ``nights`` of batch Thompson sampling over the use case's production and
    exploration configurations; rewards are drawn around the simulator's true mean quality
    (``noise_sd`` matches its Beta(20) per-call spread)."""
    configs = (world.production_config(use_case), *world.exploration_configs(use_case))
    means = tuple(
        world.true_quality(use_case, c.model, c.prompt_id, c.temperature, c.top_p, c.max_tokens)
        for c in configs
    )
    common: dict[str, Any] = {
        "nights": nights,
        "requests_per_night": requests_per_night,
        "noise_sd": noise_sd,
        "seed": seed,
    }
    thompson = simulate_regret(
        ThompsonSampling(floor=floor, draws=4000, seed=seed), means, **common
    )
    uniform = simulate_regret(UniformAllocation(), means, **common)
    return SimulatedRegret(use_case, tuple(c.config_id for c in configs), means, thompson, uniform)


@dataclass(frozen=True)
class ClosedLoop:
    """Outcome of :func:`simulate_closed_loop`: the expected regret of each night's weights.

    Regret is counted against the best arm's true mean quality, in requests x quality.
    """

    use_case: str
    true_means: Mapping[str, float]
    night_regret: tuple[float, ...]
    uniform_regret: float
    statuses: tuple[str, ...]
    final_weights: Mapping[str, float]

    @property
    def regret(self) -> float:
        """Cumulative regret of the served weights over every night."""
        return math.fsum(self.night_regret)

    @property
    def top_arm_is_best(self) -> bool:
        """Whether the last night's heaviest arm is the truly best configuration."""
        top = max(self.final_weights, key=self.final_weights.__getitem__)
        return self.true_means[top] == max(self.true_means.values())


def simulate_closed_loop(
    con: duckdb.DuckDBPyConnection,
    load: Callable[[pa.Table, int], object],
    *,
    use_case: str = "code-review",
    nights: int = 8,
    requests_per_night: int = 800,
    seed: int = 5,
) -> ClosedLoop:
    """Nights of ``bandit_allocation`` on a warehouse fed with the traffic its weights served.

    Each night the simulator serves every production and exploration configuration of the use
    case at the current weights (propensity = weight), ``load`` puts those rows into ``con``'s
    warehouse, and ``bandit_allocation`` reads them back for the next night's weights.

    Args:
        con: the warehouse the allocation reads.
        load: ``load(table, night)`` inserts one night's simulated rows into that warehouse
            (directly, or through the real ingest).
        use_case: the simulated use case.
        nights: nights to run, starting uniform.
        requests_per_night: requests served each night over all arms.
        seed: the simulated world's seed.

    Returns:
        The regret per night, uniform allocation's regret, each night's allocation status and the
        final weights.
    """
    spec = sim.SimulationSpec(
        seed=seed, days=nights, requests_per_day={use_case: requests_per_night}
    )
    configs = (world.production_config(use_case), *world.exploration_configs(use_case))
    truth = sim.ground_truth(spec).use_cases[use_case]
    means = {c.config_id: truth.config(c.config_id).true_mean_quality for c in configs}
    best = max(means.values())
    weights = {c.config_id: 1 / len(configs) for c in configs}
    night_regret: list[float] = []
    statuses: list[str] = []
    for night in range(nights):
        night_regret.append(
            requests_per_night * sum(w * (best - means[k]) for k, w in weights.items())
        )
        tables = [
            sim.simulate_config_traffic(
                spec,
                use_case,
                cfg,
                round(weights[cfg.config_id] * requests_per_night),
                night,
                seed=100 + night,
                propensity=max(weights[cfg.config_id], 1e-6),
            )
            for cfg in configs
        ]
        load(pa.concat_tables(tables), night)
        allocation = bandit_allocation(
            con,
            use_case=use_case,
            as_of=spec.start_date + dt.timedelta(days=night),
            window_days=night + 1,
            floor=0.02,
            seed=night,
            draws=4000,
        )
        statuses.append(allocation.status)
        weights = allocation.weights()
    uniform = nights * requests_per_night * sum(best - m for m in means.values()) / len(means)
    return ClosedLoop(
        use_case=use_case,
        true_means=means,
        night_regret=tuple(night_regret),
        uniform_regret=uniform,
        statuses=tuple(statuses),
        final_weights=weights,
    )


OPE_REQUESTS_PER_DAY: Mapping[str, int] = {"ticket-classify": 1500, "code-review": 1500}


@dataclass(frozen=True)
class OffPolicyCheck:
    """One off-policy estimate on simulated logs beside the policy's true value."""

    seed: int
    use_case: str
    policy: Mapping[str, float]
    true_value: float
    result: OffPolicyEstimate

    def covered(self, estimator: str) -> bool:
        """Whether the ``ips`` / ``snips`` / ``dr`` interval contains the true value."""
        interval = getattr(self.result.estimate, estimator)
        return bool(interval.lower <= self.true_value <= interval.upper)


def _candidate_policies(truth: UseCaseTruth) -> list[dict[str, float]]:
    prod = truth.production_config_id
    others = [c.config_id for c in truth.configs if c.config_id != prod]
    return [
        {others[0]: 1.0},  # an exploration config alone: ESS ~ its logged count
        {prod: 0.5, others[1]: 0.5},
        {c.config_id: 1 / len(truth.configs) for c in truth.configs},
    ]


def offpolicy_checks(
    load: Callable[[duckdb.DuckDBPyConnection, pa.Table, int], object],
    *,
    seeds: int,
    days: int = 7,
    requests_per_day: Mapping[str, int] = OPE_REQUESTS_PER_DAY,
) -> Iterator[OffPolicyCheck]:
    """Off-policy estimates of three candidate policies per use case, one simulated log per seed.

    Each seed's logs go into a fresh in-memory warehouse; the policies are an exploration
    configuration alone, production half and half with another one, and uniform over every
    logged configuration.

    Args:
        load: ``load(con, table, seed)`` inserts the seed's simulated rows into ``con``.
        seeds: how many simulated logs (seeds ``0 .. seeds - 1``).
        days: days per log.
        requests_per_day: the simulated use cases and their daily requests.

    Yields:
        One check per (seed, use case, policy), with ``evaluate_policy``'s result.
    """
    truth = sim.ground_truth(
        sim.SimulationSpec(seed=0, days=days, requests_per_day=dict(requests_per_day))
    )
    for seed in range(seeds):
        spec = sim.SimulationSpec(
            seed=seed, days=days, requests_per_day=dict(requests_per_day), include_cost=True
        )
        con = connect(path=":memory:")
        try:
            load(con, sim.simulate(spec), seed)
            for use_case in requests_per_day:
                uc = truth.use_cases[use_case]
                for policy in _candidate_policies(uc):
                    result = evaluate_policy(
                        con,
                        use_case=use_case,
                        policy=policy,
                        start=spec.start_date,
                        end=spec.start_date + dt.timedelta(days=days - 1),
                    )
                    yield OffPolicyCheck(seed, use_case, policy, uc.policy_value(policy), result)
        finally:
            con.close()
