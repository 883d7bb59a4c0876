"""How long until an experiment can decide: units and days at the current traffic.

For the primary metric, per treatment arm: the control-arm units needed to detect the configured
``mde`` (else the observed effect) with the configured power, by the method's own rule (the
sequential sample-size solver for confidence sequences, the fixed-horizon formula otherwise),
and the days that takes at the traffic seen so far. The worst arm counts.

Example:
    >>> from strategies.experiments.analysis import MetricData
    >>> from strategies.experiments.report import ExperimentSpec
    >>> from strategies.experiments.stats import MeanStats
    >>> arm = MeanStats(n=[1000], sum=[700.0], sum_squares=[530.0])
    >>> data = MetricData(metric="quality", kind="mean", arms=("control", "b"), stats=(arm, arm))
    >>> spec = ExperimentSpec(experiment_id="e", method="fixed", mde=0.01)
    >>> days, units = days_to_decision(spec, data, "control", days_elapsed=10)
    >>> round(units), round(days)  # 2 (1.96 + 0.84)^2 0.04 / 0.01^2 = 6272 per arm
    (6285, 53)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from strategies.experiments.power import days_needed, required_n
from strategies.experiments.report import ExperimentSpec
from strategies.experiments.sequential import SequentialTest
from strategies.experiments.stats import Moments

if TYPE_CHECKING:  # analysis imports this module
    from strategies.experiments.analysis import MetricData

__all__ = ["days_to_decision"]


def days_to_decision(
    spec: ExperimentSpec, data: MetricData | None, control: str, days_elapsed: int | None
) -> tuple[float | None, float | None]:
    """Days (and control-arm units) until the primary metric can decide, at current traffic.

    Args:
        spec: the experiment's configuration (method, alpha, power, mde, n_star).
        data: the primary metric's statistics (None: nothing to say).
        control: the control arm.
        days_elapsed: days of traffic so far (None: no rate, units only).

    Returns:
        ``(days, units)``; either may be None when it cannot be estimated.
    """
    if data is None or control not in data.arms:
        return None, None
    ci = data.arms.index(control)
    moments: list[Moments] = []
    for st in data.stats:
        m = st.moments()
        moments.append(
            Moments(
                n=m.n[..., -1], mean=m.mean[..., -1], variance=m.variance[..., -1], normal=m.normal
            )
        )
    mc = moments[ci]
    worst_units, worst_days = 0.0, 0.0
    for i, mt in enumerate(moments):
        if i == ci or not (mc.n[0] > 1 and mt.n[0] > 1):
            continue
        target = spec.mde if spec.mde is not None else abs(float(mt.mean[0] - mc.mean[0]))
        ratio = float(mt.n[0] / mc.n[0])
        if spec.method == "sequential":
            seq = SequentialTest(alpha=spec.alpha, n_star=spec.n_star)
            need = seq.required_n(
                mc.variance, mt.variance, np.array([target]), power=spec.power, ratio=ratio
            )
        else:
            need = required_n(
                mc.variance, mt.variance, target, ratio=ratio, alpha=spec.alpha, power=spec.power
            )
        units = float(need[0])
        worst_units = max(worst_units, units)
        if days_elapsed:
            rate = float(mc.n[0]) / days_elapsed
            worst_days = max(worst_days, float(days_needed(units, mc.n[0], rate)[0]))
    if days_elapsed is None:
        return None, worst_units
    return worst_days, worst_units
