"""Experiments the nightly flow creates: a promising candidate the logs cannot decide gets a
pre-registered A/B experiment (issue 12 item 2).

The decision and the design numbers are pure (:mod:`strategies.experiment_design`); this module
reads their arguments from the night and keeps the designs where the experiments capability finds
them. A design lives in the registry, in the proposed version's ``metadata.experiment_designs``
(``{experiment_id: design}``): it goes through the same approval policy as every plan (four eyes
included), it starts only when that version serves (its experiment arms are in the plan), and each
night carries it forward. :func:`planned_specs` reads the designs of the serving versions and
:func:`with_planned_specs` adds them to ``experiments.toml`` as ``[experiments."<id>"]`` tables
(a table the user wrote for the same id wins), so the nightly analysis tests them with the
existing sequential tests and a winner ships through the existing rollout path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.experiment_design import (
    CONTROL,
    TREATMENT,
    DesignPolicy,
    ExperimentDesign,
    ExperimentProposal,
    propose_experiment,
)
from strategies.objective import Objective
from strategies.promotion import PromotionDecision
from strategies.rollout_guard import RolloutGuard
from strategies.traffic import ExperimentArms
from tasks.core.config import ConfigNotFoundError, load_config
from tasks.core.settings import Settings

__all__ = [
    "DESIGNS_KEY",
    "design_policy_for",
    "experiment_arms",
    "planned_specs",
    "running_experiments",
    "tried_candidates",
    "with_planned_specs",
]

DESIGNS_KEY = "experiment_designs"  # registry metadata: experiment id -> design (as_dict)
_FINAL = frozenset({"ship", "stop: harm", "stop: srm", "inconclusive at max duration"})


def design_policy_for(
    settings: Settings, objective: Objective, guard: RolloutGuard
) -> DesignPolicy:
    """``[auto_experiments]`` of ``nightly.toml`` over the defaults.

    Alpha is the objective's (``1 - level``); the error-rate margin and the latency margin come
    from the rollout guard (``[rollout]``), so the experiment guards what the rollout will.

    Args:
        settings: where the configuration lives.
        objective: the use case's objective.
        guard: the rollout guard's margins.

    Returns:
        The design policy.
    """
    try:
        section = dict(load_config("nightly", settings).get("auto_experiments", {}))
    except ConfigNotFoundError:
        section = {}
    return DesignPolicy(
        alpha=1.0 - objective.level,
        error_rate_margin=guard.error_rate_margin,
        latency_margin=max(guard.latency_ratio_limit - 1.0, 0.01),
        **section,
    )


def planned_specs(settings: Settings, use_cases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The designs of the serving (production) versions, by use case (``{}`` when none).

    Args:
        settings: where the registry lives.
        use_cases: the night's use cases.

    Returns:
        use case -> experiment id -> stored design dict.
    """
    from tasks.registry.store import NotFoundError, RegistryStore

    # read only, once per use case and night: the night's first store (resolve_night) has
    # already reconciled the snapshots, so this one does not rewrite them again
    store = RegistryStore.from_settings(settings, reconcile=False)
    out: dict[str, dict[str, Any]] = {}
    try:
        for use_case in use_cases:
            try:
                production = store.get(use_case, "production")
            except NotFoundError:
                continue
            designs = dict(production.config.metadata or {}).get(DESIGNS_KEY) or {}
            if designs:
                out[use_case] = dict(designs)
    finally:
        store.dispose()
    return out


def with_planned_specs(
    config: Mapping[str, Any], designs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``experiments.toml`` with each planned design as its ``[experiments."<id>"]`` table.

    Args:
        config: the parsed ``experiments.toml``.
        designs: :func:`planned_specs`' result.

    Returns:
        A new mapping; a table the user configured for the same id is kept as it is.
    """
    merged = dict(config)
    experiments = dict(merged.get("experiments", {}))
    for by_id in designs.values():
        for exp_id, stored in by_id.items():
            if exp_id not in experiments:
                experiments[exp_id] = ExperimentDesign.from_dict(stored).spec_table()
    merged["experiments"] = experiments
    return merged


def running_experiments(
    analysed: Sequence[Mapping[str, Any]], designs: Mapping[str, Any]
) -> list[str]:
    """Experiment ids of the use case that run, or were published and wait for traffic.

    Args:
        analysed: tonight's analysed experiments of the use case.
        designs: the use case's planned designs (registry metadata).
    """
    seen = {str(e["experiment_id"]): str(e["decision"]["action"]) for e in analysed}
    running = [i for i, action in seen.items() if action not in _FINAL]
    return sorted(set(running) | {i for i in designs if i not in seen})


def tried_candidates(designs: Mapping[str, Any], production_id: str) -> frozenset[str]:
    """Candidates already given an experiment against ``production_id``.

    Args:
        designs: the use case's planned designs.
        production_id: tonight's production.
    """
    return frozenset(
        str(d["treatment_config_id"])
        for d in designs.values()
        if str(d.get("control_config_id")) == production_id
    )


def experiment_arms(design: ExperimentDesign) -> ExperimentArms:
    """The plan's arms of a new experiment (control and treatment, equal weights)."""
    return ExperimentArms(
        design.experiment_id,
        ((design.control_config_id, 0.5), (design.treatment_config_id, 0.5)),
        design.traffic_share,
        (CONTROL, TREATMENT),
    )


def propose_for(
    promotion: PromotionDecision | None,
    *,
    use_case: str,
    objective: Objective,
    stats: Mapping[str, Any],
    production_id: str,
    requests_per_day: float,
    policy: DesignPolicy,
    running: Sequence[str],
    tried: frozenset[str],
    offpolicy_possible: bool,
) -> ExperimentProposal:
    """The most promising candidate's experiment proposal (pure decision, night arguments).

    Args:
        promotion: tonight's promotion decision (its promising candidates).
        use_case: the use case.
        objective: the objective.
        stats: configuration id -> cumulative :class:`ConfigStats`.
        production_id: tonight's production.
        requests_per_day: tonight's requests of the use case.
        policy: the design policy.
        running: experiments of the use case that run or wait to start.
        tried: candidates already tested against this production.
        offpolicy_possible: every logged row carries a propensity.
    """
    promising = [] if promotion is None else list(promotion.promising)
    best = max(promising, key=lambda c: c.difference) if promising else None
    return propose_experiment(
        use_case=use_case,
        objective=objective,
        production=stats.get(production_id),
        candidate=None if best is None else stats.get(best.config_key),
        requests_per_day=requests_per_day,
        policy=policy,
        running=running,
        tried=tried,
        offpolicy_possible=offpolicy_possible,
    )
