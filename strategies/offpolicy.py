"""Off-policy evaluation: what would a candidate policy have scored on the traffic we logged?

Before a new policy gets real traffic, its value can be estimated from logs that carry the
probability with which the serving policy chose each arm (``propensity``). A *policy* maps a
context cell (for example a task type) to a distribution over arms (config ids). Each logged row
gets the importance weight ``w = pi(arm | cell) / propensity``.

Because ``pi`` is constant within one (cell, logged arm) group, every estimator below needs only
per-group sums, :class:`LoggedCell`: ``n, sum r, sum 1/p, sum r/p, sum 1/p^2, sum r/p^2,
sum r^2/p^2`` (computed in SQL by the caller; :func:`aggregate_logged` does it in numpy for
tests and simulations). From them:

* **IPS** ``V = (1/N) sum w r``; standard error from the per-row terms ``w r``.
* **SNIPS** ``V = sum w r / sum w``; delta-method standard error
  ``sqrt(sum w^2 (r - V)^2) / sum w``. Biased but bounded, usually much tighter.
* **DR** with the reward model ``rhat(cell, arm)`` = mean logged reward of that group:
  ``V = (1/N) sum [ sum_a pi(a|cell) rhat(cell, a) + w (r - rhat(cell, arm)) ]``.
* **ESS** ``(sum w)^2 / sum w^2``: how many on-policy rows the log is worth.
* :func:`dr_difference`: the *paired* DR estimate of ``V(candidate) - V(baseline)`` on the same
  rows (the shared noise cancels, so the interval is much tighter than two separate intervals).

Intervals are normal (``level`` two-sided). The estimate is refused, with the reason, rather than
reported when it cannot be trusted: propensities missing or out of (0, 1], the policy puts mass
on an arm the log never served, on (cell, arm) pairs without logged support beyond
``max_unsupported_mass``, or the effective sample size is below ``min_ess``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.choice(["a", "b"], 4000)
    >>> rewards = np.where(arms == "b", 0.7, 0.5) + rng.normal(0, 0.05, 4000)
    >>> logged = aggregate_logged(np.full(4000, "all"), arms, rewards, np.full(4000, 0.5))
    >>> est = estimate_policy_value(logged, {"all": {"b": 1.0}})
    >>> est.status, round(est.dr.value, 2), est.dr.lower < 0.7 < est.dr.upper
    ('ok', 0.7, True)
    >>> gain = dr_difference(logged, {"all": {"b": 1.0}}, {"all": {"a": 1.0}})
    >>> round(gain.value, 2), gain.lower > 0
    (0.2, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "ANY_CELL",
    "Estimate",
    "LoggedCell",
    "Policy",
    "PolicyValueEstimate",
    "aggregate_logged",
    "dr_difference",
    "estimate_policy_value",
    "policy_true_value",
    "validate_policy",
]

ANY_CELL = "*"
Policy = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class LoggedCell:
    """Sufficient statistics of the logged rows of one context cell served by one arm."""

    cell: str
    arm: str
    n: float
    reward_sum: float
    inv_p_sum: float
    r_inv_p_sum: float
    inv_p2_sum: float
    r_inv_p2_sum: float
    r2_inv_p2_sum: float
    max_inv_p: float = 0.0

    @property
    def reward_mean(self) -> float:
        return self.reward_sum / self.n if self.n else math.nan


@dataclass(frozen=True)
class Estimate:
    """One estimator's value, standard error and two-sided interval."""

    value: float
    se: float
    lower: float
    upper: float


@dataclass(frozen=True)
class PolicyValueEstimate:
    """IPS, SNIPS and DR estimates of a policy, or ``status='cannot_estimate'`` with reasons."""

    status: Literal["ok", "cannot_estimate"]
    reasons: tuple[str, ...]
    n: int
    level: float
    ess: float | None = None
    ips: Estimate | None = None
    snips: Estimate | None = None
    dr: Estimate | None = None
    direct: float | None = None
    unsupported_mass: float | None = None
    max_weight: float | None = None
    logged_value: float | None = None
    details: dict[str, float] = field(default_factory=dict)


def validate_policy(policy: Policy) -> dict[str, dict[str, float]]:
    """Check every distribution sums to 1 with non-negative probabilities; return a plain copy."""
    if not policy:
        raise ValueError("policy is empty")
    clean: dict[str, dict[str, float]] = {}
    for cell, dist in policy.items():
        probs = {str(a): float(p) for a, p in dist.items()}
        if not probs or any(not math.isfinite(p) or p < 0 for p in probs.values()):
            raise ValueError(f"policy cell {cell!r}: probabilities must be finite and >= 0")
        if not math.isclose(math.fsum(probs.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"policy cell {cell!r}: probabilities sum to {sum(probs.values())}")
        clean[str(cell)] = {a: p for a, p in probs.items() if p > 0}
    return clean


def _target(policy: Mapping[str, Mapping[str, float]], cell: str) -> Mapping[str, float] | None:
    return policy.get(cell, policy.get(ANY_CELL))


def aggregate_logged(
    cells: ArrayLike, arms: ArrayLike, rewards: ArrayLike, propensities: ArrayLike
) -> list[LoggedCell]:
    """The :class:`LoggedCell` sums of row arrays (the numpy twin of the warehouse SQL)."""
    cell_arr = np.asarray(cells).astype(str)
    arm_arr = np.asarray(arms).astype(str)
    r = np.asarray(rewards, dtype=float)
    p = np.asarray(propensities, dtype=float)
    keys = np.char.add(np.char.add(cell_arr, "\x1f"), arm_arr)
    uniq, inverse = np.unique(keys, return_inverse=True)
    out = []
    inv_p = 1.0 / p
    columns = [np.ones_like(r), r, inv_p, r * inv_p, inv_p**2, r * inv_p**2, r**2 * inv_p**2]
    sums = [np.bincount(inverse, weights=c, minlength=uniq.size) for c in columns]
    max_inv_p = np.zeros(uniq.size)
    np.maximum.at(max_inv_p, inverse, inv_p)
    for i, key in enumerate(uniq.tolist()):
        cell, arm = key.split("\x1f")
        n, r_sum, ip, rip, ip2, rip2, r2ip2 = (float(s[i]) for s in sums)
        out.append(LoggedCell(cell, arm, n, r_sum, ip, rip, ip2, rip2, r2ip2, float(max_inv_p[i])))
    return out


def _normal(value: float, se: float, z: float) -> Estimate:
    return Estimate(value, se, value - z * se, value + z * se)


def _input_refusals(
    logged: Sequence[LoggedCell],
    target: Mapping[str, Mapping[str, float]],
    counts: tuple[int, int, int],
) -> list[str]:
    """Reasons to refuse before any arithmetic (unusable rows, uncovered cells, unseen arms)."""
    missing_p, invalid_p, missing_r = counts
    reasons: list[str] = []
    if missing_p:
        reasons.append(f"{missing_p} logged row(s) have no propensity")
    if invalid_p:
        reasons.append(f"{invalid_p} logged row(s) have a propensity outside (0, 1]")
    if missing_r:
        reasons.append(f"{missing_r} logged row(s) have no reward value")
    if round(math.fsum(c.n for c in logged)) == 0:
        reasons.append("no logged rows with a usable propensity and reward in the window")
    if reasons:
        return reasons
    cells = {c.cell for c in logged}
    uncovered = sorted(cell for cell in cells if _target(target, cell) is None)
    if uncovered:
        return [f"policy gives no distribution for cell(s) {uncovered} (add '*')"]
    wanted = {a for cell in cells for a in (_target(target, cell) or {})}
    never = sorted(wanted - {c.arm for c in logged})
    if never:
        return [f"target arm(s) {never} never served in the logged window"]
    return []


def _by_cell_and_pooled_means(
    logged: Sequence[LoggedCell],
) -> tuple[dict[str, dict[str, LoggedCell]], dict[str, float]]:
    """``by_cell[cell][arm]``, and each arm's mean reward pooled over the cells (arms with rows)."""
    by_cell: dict[str, dict[str, LoggedCell]] = {}
    arm_n: dict[str, float] = {}
    arm_sum: dict[str, float] = {}
    for c in logged:
        by_cell.setdefault(c.cell, {})[c.arm] = c
        arm_n[c.arm] = arm_n.get(c.arm, 0.0) + c.n
        arm_sum[c.arm] = arm_sum.get(c.arm, 0.0) + c.reward_sum
    return by_cell, {arm: arm_sum[arm] / n for arm, n in arm_n.items() if n}


def _weighted_sums(
    logged: Sequence[LoggedCell], target: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Importance-weight and DR sums over the (cell, arm) groups (reward model: group means)."""
    by_cell, pooled = _by_cell_and_pooled_means(logged)

    def rhat(cell: str, arm: str) -> float:
        group = by_cell[cell].get(arm)
        if group is not None and group.n > 0:
            return group.reward_mean
        return pooled[arm]  # the cell lacks the arm: its pooled mean

    t = dict.fromkeys(
        ("unsupported", "w", "w2", "wr", "w2r", "w2r2", "z", "z2", "direct", "max_w"), 0.0
    )
    for cell, groups in by_cell.items():
        dist = _target(target, cell) or {}
        n_cell = math.fsum(g.n for g in groups.values())
        t["unsupported"] += n_cell * math.fsum(p for a, p in dist.items() if a not in groups)
        dm = math.fsum(p * rhat(cell, a) for a, p in dist.items())
        t["direct"] += n_cell * dm
        t["z"] += n_cell * dm
        t["z2"] += n_cell * dm * dm
        for arm, g in groups.items():
            pi = dist.get(arm, 0.0)
            if pi == 0.0:
                continue
            m = rhat(cell, arm)
            t["w"] += pi * g.inv_p_sum
            t["w2"] += pi * pi * g.inv_p2_sum
            t["wr"] += pi * g.r_inv_p_sum
            t["w2r"] += pi * pi * g.r_inv_p2_sum
            t["w2r2"] += pi * pi * g.r2_inv_p2_sum
            resid = g.r_inv_p_sum - m * g.inv_p_sum  # sum (r - m)/p
            resid2 = g.r2_inv_p2_sum - 2 * m * g.r_inv_p2_sum + m * m * g.inv_p2_sum
            t["z"] += pi * resid
            t["z2"] += 2 * dm * pi * resid + pi * pi * resid2
            t["max_w"] = max(t["max_w"], pi * g.max_inv_p)
    return t


def estimate_policy_value(
    logged: Sequence[LoggedCell],
    policy: Policy,
    *,
    level: float = 0.95,
    min_ess: float = 100.0,
    max_unsupported_mass: float = 0.01,
    missing_propensity_rows: int = 0,
    invalid_propensity_rows: int = 0,
    missing_reward_rows: int = 0,
) -> PolicyValueEstimate:
    """IPS / SNIPS / DR estimates of ``policy`` from logged sufficient statistics.

    Args:
        logged: per (cell, arm) sums (:func:`aggregate_logged` or the warehouse SQL).
        policy: cell -> {arm: probability}; the key ``"*"`` covers cells not listed.
        level: two-sided level of the normal intervals.
        min_ess: refuse below this effective sample size.
        max_unsupported_mass: refuse when more of the policy's mass is on unlogged pairs.
        missing_propensity_rows: rows in the window without a propensity.
        invalid_propensity_rows: rows with a propensity outside (0, 1].
        missing_reward_rows: rows without a reward. Any such row makes the estimate refuse
            (dropping them would bias it silently).

    Returns:
        :class:`PolicyValueEstimate` (``cannot_estimate`` with the reasons when refused).
    """
    target = validate_policy(policy)
    n_total = round(math.fsum(c.n for c in logged))
    counts = (missing_propensity_rows, invalid_propensity_rows, missing_reward_rows)
    reasons = _input_refusals(logged, target, counts)
    if reasons:
        return PolicyValueEstimate("cannot_estimate", tuple(reasons), n_total, level)
    t = _weighted_sums(logged, target)
    unsupported_mass = t["unsupported"] / n_total
    ess = t["w"] ** 2 / t["w2"] if t["w2"] > 0 else 0.0
    common: dict[str, Any] = {
        "ess": ess,
        "unsupported_mass": unsupported_mass,
        "max_weight": t["max_w"],
        "logged_value": math.fsum(c.reward_sum for c in logged) / n_total,
    }
    if unsupported_mass > max_unsupported_mass:
        reasons.append(
            f"{unsupported_mass:.1%} of the target policy's mass falls on (cell, arm) pairs "
            f"never logged (limit {max_unsupported_mass:.1%})"
        )
    if ess < min_ess:
        reasons.append(f"effective sample size {ess:.1f} below the minimum {min_ess:.0f}")
    if n_total < 2:
        reasons.append("need at least 2 logged rows for an interval")
    if reasons:
        return PolicyValueEstimate("cannot_estimate", tuple(reasons), n_total, level, **common)

    z = float(stats.norm.ppf(0.5 + level / 2.0))
    n = float(n_total)
    ips_v = t["wr"] / n
    ips_var = max(t["w2r2"] - n * ips_v**2, 0.0) / (n - 1)
    sn_v = t["wr"] / t["w"]
    sn_num = max(t["w2r2"] - 2 * sn_v * t["w2r"] + sn_v**2 * t["w2"], 0.0)
    dr_v = t["z"] / n
    dr_var = max(t["z2"] - n * dr_v**2, 0.0) / (n - 1)
    return PolicyValueEstimate(
        "ok",
        (f"{n_total} logged rows, effective sample size {ess:.0f}",),
        n_total,
        level,
        ips=_normal(ips_v, math.sqrt(ips_var / n), z),
        snips=_normal(sn_v, math.sqrt(sn_num) / t["w"], z),
        dr=_normal(dr_v, math.sqrt(dr_var / n), z),
        direct=t["direct"] / n,
        details={"sum_w": t["w"], "sum_w2": t["w2"], "mean_w": t["w"] / n},
        **common,
    )


def policy_true_value(
    policy: Policy,
    cell_shares: Mapping[str, float],
    true_means: Mapping[tuple[str, str], float] | Mapping[str, float],
) -> float:
    """Ground-truth value: ``sum_cell share * sum_a pi(a|cell) * mu(cell, a)``.

    ``true_means`` is keyed by (cell, arm) or, when the reward does not depend on the cell, by
    arm. Used to validate the estimators on simulated data.
    """
    target = validate_policy(policy)
    total = 0.0
    for cell, share in cell_shares.items():
        dist = _target(target, cell)
        if dist is None:
            raise KeyError(f"policy has no distribution for cell {cell!r}")
        for arm, p in dist.items():
            mu = true_means.get((cell, arm), true_means.get(arm))  # type: ignore[call-overload]
            if mu is None:
                raise KeyError(f"no true mean for arm {arm!r} in cell {cell!r}")
            total += share * p * float(mu)
    return total


def dr_difference(
    logged: Sequence[LoggedCell],
    candidate: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    *,
    level: float = 0.95,
) -> Estimate | None:
    """Paired doubly-robust estimate of ``V(candidate) - V(baseline)`` on the same logged rows.

    Per row the DR term of a policy is ``sum_a pi(a|x) rhat(x, a) + pi(A|x) (r - rhat(x, A)) / p``
    with ``rhat`` the mean logged reward of the (cell, arm) group; the difference of the two
    terms is averaged and its standard error taken over rows, so the shared noise cancels.

    Args:
        logged: per (cell, arm) sums (``strategies.offpolicy.LoggedCell``).
        candidate: cell -> {arm: probability} (``*`` covers unlisted cells).
        baseline: the same for the policy compared against (production).
        level: two-sided level of the interval.

    Returns:
        The estimate, or ``None`` when the logs lack rows (fewer than 2).
    """
    n_total = math.fsum(c.n for c in logged)
    if n_total < 2:
        return None
    by_cell, pooled = _by_cell_and_pooled_means(logged)

    def rhat(groups: Mapping[str, LoggedCell], arm: str) -> float:
        if arm in groups and groups[arm].n > 0:
            return groups[arm].reward_mean
        return pooled.get(arm, 0.0)

    sum_z = sum_z2 = 0.0
    for cell, groups in by_cell.items():
        pi1 = candidate.get(cell, candidate.get(ANY_CELL, {}))
        pi0 = baseline.get(cell, baseline.get(ANY_CELL, {}))
        delta = {a: pi1.get(a, 0.0) - pi0.get(a, 0.0) for a in set(pi1) | set(pi0)}
        dm = math.fsum(d * rhat(groups, a) for a, d in delta.items())
        n_cell = math.fsum(g.n for g in groups.values())
        sum_z += n_cell * dm
        sum_z2 += n_cell * dm * dm
        for arm, g in groups.items():
            d = delta.get(arm, 0.0)
            m = g.reward_mean
            resid = g.r_inv_p_sum - m * g.inv_p_sum
            resid2 = g.r2_inv_p2_sum - 2 * m * g.r_inv_p2_sum + m * m * g.inv_p2_sum
            sum_z += d * resid
            sum_z2 += 2 * dm * d * resid + d * d * resid2
    value = sum_z / n_total
    var = max(sum_z2 - n_total * value**2, 0.0) / (n_total - 1)
    se = math.sqrt(var / n_total)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    return Estimate(value, se, value - z * se, value + z * se)
