"""One experiment, end to end, from per-arm sufficient statistics to a report with a decision.

The warehouse task and the ``llmopt stats`` command both call :func:`analyze_experiment`, so a
CSV of sums from elsewhere gets exactly the nightly flow's statistics. Work is vectorized over
arms and looks: each metric is one call of the configured test on arrays of shape
``(treatment arms, looks)``; the sequential method then makes the look history always-valid
(running-min p-value, intersected intervals) and the last look is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from strategies.experiments.bayesian import BayesianTest
from strategies.experiments.cuped import cuped_adjust, variance_reduction
from strategies.experiments.decide import (
    Comparison,
    Decision,
    ExperimentReport,
    ExperimentSpec,
    SrmCheck,
    decide,
    guardrail_verdict,
    primary_verdict,
)
from strategies.experiments.effects import EffectResult, EffectTest
from strategies.experiments.frequentist import WelchTest
from strategies.experiments.multiple_testing import adjust_pvalues
from strategies.experiments.power import days_needed, required_n
from strategies.experiments.sequential import SequentialTest, cumulate
from strategies.experiments.srm import srm_test
from strategies.experiments.stats import (
    ArmStats,
    CupedStats,
    MeanStats,
    Moments,
    ProportionStats,
    RatioStats,
)

KINDS: dict[str, type] = {
    "mean": MeanStats,
    "proportion": ProportionStats,
    "ratio": RatioStats,
    "cuped": CupedStats,
}


@dataclass(frozen=True)
class MetricData:
    """One metric of one experiment: per-arm statistics over looks (time order, last = now)."""

    metric: str
    kind: str
    arms: tuple[str, ...]
    stats: tuple[ArmStats, ...]
    higher_is_better: bool = True
    p95: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.metric}: kind must be one of {sorted(KINDS)}")
        if len(self.arms) != len(self.stats):
            raise ValueError(f"{self.metric}: one statistics object per arm")
        for arm, st in zip(self.arms, self.stats, strict=True):
            if not isinstance(st, KINDS[self.kind]):
                raise ValueError(f"{self.metric}/{arm}: expected {KINDS[self.kind].__name__}")


def make_test(spec: ExperimentSpec) -> EffectTest:
    """The configured method as an :class:`EffectTest` instance."""
    if spec.method == "fixed":
        return WelchTest(alpha=spec.alpha)
    if spec.method == "bayesian":
        return BayesianTest(alpha=spec.alpha, prior_mean=spec.prior_mean, prior_sd=spec.prior_sd)
    return SequentialTest(alpha=spec.alpha, n_star=spec.n_star)


def stack_stats(items: Sequence[ArmStats]) -> ArmStats:
    """Stack same-kind statistics along a new leading axis (arms)."""
    cls = type(items[0])
    values = {f.name: np.stack([getattr(s, f.name) for s in items]) for f in fields(cls)}
    return cls(**values)


def metric_effects(
    test: EffectTest, data: MetricData, control_index: int
) -> tuple[EffectResult, list[str], dict[str, np.ndarray]]:
    """Compare every non-control arm with control, over all looks; return the last look."""
    treat_idx = [i for i in range(len(data.arms)) if i != control_index]
    control = stack_stats([data.stats[control_index]])
    treatment = stack_stats([data.stats[i] for i in treat_idx])
    extra: dict[str, np.ndarray] = {}
    if data.kind == "cuped":
        assert isinstance(control, CupedStats) and isinstance(treatment, CupedStats)
        mc, mt, theta = cuped_adjust(control, treatment)
        extra["cuped_theta"] = theta[..., -1]
        extra["cuped_variance_reduction"] = variance_reduction(control, treatment)[..., -1]
    else:
        mc, mt = control.moments(), treatment.moments()
    result = test.compute(mc, mt)
    if isinstance(test, SequentialTest):
        result = cumulate(result, axis=-1)
    last = _take_last(result)
    return last, [data.arms[i] for i in treat_idx], extra


def _take_last(result: EffectResult) -> EffectResult:
    values: dict[str, Any] = {}
    for f in fields(result):
        v = getattr(result, f.name)
        values[f.name] = v[..., -1] if isinstance(v, np.ndarray) and v.ndim > 1 else v
    return EffectResult(**values)


def _f(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def analyze_experiment(
    spec: ExperimentSpec,
    metrics: Sequence[MetricData],
    *,
    unit_counts: Mapping[str, float],
    days_elapsed: int | None = None,
    as_of: str | None = None,
) -> ExperimentReport:
    """Analyse one experiment: SRM, effects per metric and arm, correction, decision.

    ``unit_counts`` are randomization units per arm (for SRM and traffic rate);
    ``days_elapsed`` (None when unknown, e.g. a CSV) drives min/max duration and days needed.
    Never raises on degenerate data: the report says what could not be analysed.
    """
    notes: list[str] = []
    by_name = {m.metric: m for m in metrics}
    arms = list(dict.fromkeys(a for m in metrics for a in m.arms)) or list(unit_counts)
    control = spec.control if spec.control in arms else (arms[0] if arms else spec.control)
    if control != spec.control:
        notes.append(f"configured control {spec.control!r} has no data; using {control!r}")
    srm = _srm(spec, arms, unit_counts)
    test = make_test(spec)
    roles = {spec.primary: "primary"}
    roles.update({m: "secondary" for m in spec.secondary if m != spec.primary})
    guards = {g.metric: g for g in spec.guardrails}
    rows: list[dict[str, object]] = []
    for metric_name in [spec.primary, *spec.secondary, *guards]:
        if metric_name not in by_name:
            notes.append(f"metric {metric_name} has no data")
    for metric in metrics:
        data = metric
        if control not in data.arms or len(data.arms) < 2:
            notes.append(f"cannot analyse {data.metric}: needs control and at least one other arm")
            continue
        result, variants, extra = metric_effects(test, data, data.arms.index(control))
        role_list = []
        if data.metric in roles:
            role_list.append(roles[data.metric])
        if data.metric in guards:
            role_list.append("guardrail")
        for role in role_list or ["report"]:
            for i, variant in enumerate(variants):
                rows.append(
                    {
                        "data": data,
                        "role": role,
                        "variant": variant,
                        "rec": result.record(i),
                        "extra": {k: _f(v.ravel()[i]) for k, v in extra.items()},
                    }
                )
    # Multiple testing over primary + secondary comparisons of this experiment.
    family = [r for r in rows if r["role"] in ("primary", "secondary")]
    p_family = np.array([_f(r["rec"]["p_value"]) for r in family])  # type: ignore[index]
    adjusted = adjust_pvalues(p_family, method=spec.correction) if family else p_family
    p_adj = {id(r): float(a) for r, a in zip(family, adjusted, strict=True)}
    comparisons: list[Comparison] = []
    for r in rows:
        row_data = r["data"]
        assert isinstance(row_data, MetricData)
        data = row_data
        rec = r["rec"]
        assert isinstance(rec, dict)
        hib = data.higher_is_better
        win, loss = _f(rec["chance_to_win"]), _f(rec["expected_loss"])
        if not hib:
            win, loss = 1.0 - win, _f(rec["expected_loss_lower"])
        guard = guards.get(data.metric) if r["role"] == "guardrail" else None
        p95 = data.p95 or ()
        idx = {a: k for k, a in enumerate(data.arms)}
        comp = Comparison(
            metric=data.metric,
            role=str(r["role"]),
            kind=data.kind,
            variant=str(r["variant"]),
            control=control,
            method=spec.method,
            higher_is_better=hib,
            n_control=_f(rec["n_control"]),
            n_treatment=_f(rec["n_treatment"]),
            mean_control=_f(rec["mean_control"]),
            mean_treatment=_f(rec["mean_treatment"]),
            effect=_f(rec["effect"]),
            ci_low=_f(rec["ci_low"]),
            ci_high=_f(rec["ci_high"]),
            relative=_f(rec["relative"]),
            relative_ci_low=_f(rec["relative_ci_low"]),
            relative_ci_high=_f(rec["relative_ci_high"]),
            p_value=_f(rec["p_value"]),
            p_adjusted=p_adj.get(id(r), _f(rec["p_value"])),
            chance_to_win=win,
            expected_loss=loss,
            analysable=bool(rec["ok"]),
            message=str(rec["message"]),
            margin=guard.margin if guard else None,
            margin_relative=guard.relative if guard else None,
            p95_control=_opt(p95, idx.get(control)),
            p95_treatment=_opt(p95, idx.get(str(r["variant"]))),
            extra=r["extra"],  # type: ignore[arg-type]
        )
        verdict = guardrail_verdict(comp) if guard else primary_verdict(spec, comp)
        comparisons.append(_replace(comp, verdict=verdict))
    days, units = _days_needed(spec, by_name.get(spec.primary), control, days_elapsed)
    decision: Decision = decide(
        spec,
        tuple(comparisons),
        srm,
        days_elapsed=days_elapsed,
        days_needed=days,
        units_needed=units,
    )
    return ExperimentReport(
        experiment_id=spec.experiment_id,
        method=spec.method,
        alpha=spec.alpha,
        correction=spec.correction,
        as_of=as_of,
        days_elapsed=days_elapsed,
        decision=decision,
        srm=srm,
        comparisons=tuple(comparisons),
        notes=tuple(notes),
    )


def _opt(values: tuple[float | None, ...], index: int | None) -> float | None:
    if index is None or index >= len(values) or values[index] is None:
        return None
    return float(values[index])  # type: ignore[arg-type]


def _replace(comp: Comparison, **changes: object) -> Comparison:
    from dataclasses import replace

    return replace(comp, **changes)  # type: ignore[arg-type]


def _srm(spec: ExperimentSpec, arms: list[str], unit_counts: Mapping[str, float]) -> SrmCheck:
    configured = dict(spec.weights)
    weights = [configured.get(a, 0.0) if configured else 1.0 for a in arms]
    counts = [float(unit_counts.get(a, 0.0)) for a in arms]
    unconfigured = [a for a, w in zip(arms, weights, strict=True) if w <= 0]
    result = srm_test([counts], [weights], alpha=spec.srm_alpha)
    message = str(result.message[0])
    if unconfigured:
        message = (message + "; " if message else "") + f"arms without a weight: {unconfigured}"
    return SrmCheck(
        p_value=_f(result.p_value[0]),
        counts=dict(zip(arms, counts, strict=True)),
        expected={a: _f(e) for a, e in zip(arms, result.expected[0], strict=True)},
        mismatch=bool(result.mismatch[0])
        or bool(unconfigured and any(unit_counts.get(a, 0) > 0 for a in unconfigured)),
        analysable=bool(result.ok[0]),
        message=message,
    )


def _days_needed(
    spec: ExperimentSpec, data: MetricData | None, control: str, days_elapsed: int | None
) -> tuple[float | None, float | None]:
    """Days (and control-arm units) until the primary metric can decide, at current traffic."""
    if data is None or control not in data.arms:
        return None, None
    ci = data.arms.index(control)
    moments: list[Moments] = []
    for st in data.stats:
        m = st.moments()
        moments.append(Moments(m.n[..., -1], m.mean[..., -1], m.variance[..., -1], m.normal))
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


__all__ = [
    "KINDS",
    "MetricData",
    "analyze_experiment",
    "make_test",
    "metric_effects",
    "stack_stats",
]
