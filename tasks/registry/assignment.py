"""Deterministic variant assignment: every serving process splits traffic the same way.

A unit (user, session, conversation) is mapped to an arm by hashing, never by a random draw, so
any process, on any machine, in any language that implements SHA-256, agrees without talking to
anyone. We use *weighted rendezvous hashing*: for each arm, ``u = sha256(salt, arm_id, unit_id)``
mapped to a uniform in (0, 1), score ``-ln(u) / weight`` (an exponential draw with rate =
weight), lowest score wins. So:

- P(arm) = weight / sum(weights), exactly, for every arm;
- changing one arm's weight moves only units into or out of *that* arm (the minimum possible:
  the change in its share), and adding or removing an exploration arm leaves every experiment
  unit where it was; with cumulative intervals, shrinking an early arm would shift every later
  boundary and reshuffle units between arms that did not change;
- arms are keyed by ``arm_id``, not by position, so reordering the list changes nothing;
- :func:`assign_arm` first picks a group (an experiment, or the ``base`` group of production,
  exploration, bandit and rollout arms), then an arm in it, so tonight's exploration mix never
  moves a unit that is in a running experiment.

Example:
    >>> assign_weighted([("control", 0.5), ("treatment", 0.5)], salt="exp-1", unit_id="user-42")
    'control'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from tasks.registry.model import Arm, RegistryConfig

__all__ = ["assign_arm", "assign_weighted", "uniform_hash"]

_SCALE = float(1 << 53)


def uniform_hash(*parts: str) -> float:
    """A uniform number in the open interval (0, 1) determined by ``parts`` (SHA-256, 53 bits)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return ((int.from_bytes(digest[:8], "big") >> 11) + 0.5) / _SCALE


def assign_weighted(weights: Sequence[tuple[str, float]], *, salt: str, unit_id: str) -> str:
    """The arm id ``unit_id`` falls into, given ``(arm_id, weight)`` pairs (weights > 0)."""
    best_id: str | None = None
    best_score = math.inf
    for arm_id, weight in weights:
        if weight <= 0.0:
            continue
        score = -math.log(uniform_hash(salt, arm_id, unit_id)) / weight
        if score < best_score:
            best_id, best_score = arm_id, score
    if best_id is None:
        raise ValueError("no arm has a positive weight")
    return best_id


def assign_arm(config: RegistryConfig, unit_id: str) -> Arm:
    """The arm of ``config`` that serves ``unit_id`` (the production arm when there is no plan).

    Two levels, so experiments are insulated from the rest of the plan: first a group (each
    experiment is one group weighing its arms' total; every other arm is in the ``base`` group),
    hashed with ``config.salt``; then an arm inside the group, hashed with the experiment id
    (experiments) or ``config.salt`` (base). Moving weight between production, exploration,
    bandit and rollout arms therefore never moves a unit into, out of, or within an experiment.
    """
    arms = config.arms
    if len(arms) == 1:
        return arms[0]
    groups: dict[str, list[Arm]] = {}
    for arm in arms:
        key = f"experiment/{arm.experiment_id}" if arm.experiment_id else "base"
        groups.setdefault(key, []).append(arm)
    if len(groups) == 1:
        members, salt = list(arms), config.salt
    else:
        weights = [(key, math.fsum(a.weight for a in group)) for key, group in groups.items()]
        key = assign_weighted(weights, salt=config.salt, unit_id=unit_id)
        members = groups[key]
        salt = key.removeprefix("experiment/") if key != "base" else config.salt
    chosen = assign_weighted([(a.arm_id, a.weight) for a in members], salt=salt, unit_id=unit_id)
    return next(arm for arm in members if arm.arm_id == chosen)
