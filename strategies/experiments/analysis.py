"""One experiment, end to end, from per-arm sufficient statistics to a report with a decision.

The warehouse task and the ``llmopt stats`` command both call :func:`analyze_experiment`, so a
CSV of sums from elsewhere gets exactly the nightly flow's statistics. Work is vectorized over
arms and looks: each metric is one call of the configured test on arrays of shape
``(treatment arms, looks)``; the sequential method then makes the look history always-valid
(running-min p-value, intersected intervals) and the last look is reported.

``looks="nightly"`` (the warehouse) adds what repeated looks need: the always-valid SRM test,
the per-method nightly rules and sticky stops (:mod:`strategies.experiments.nightly`).

Example:
    >>> from strategies.experiments.report import ExperimentSpec
    >>> from strategies.experiments.stats import ProportionStats
    >>> arms = ("control", "b")
    >>> data = MetricData(metric="success", kind="proportion", arms=arms,
    ...     stats=(ProportionStats(n=[4000], successes=[2000]),
    ...            ProportionStats(n=[4000], successes=[2200])))
    >>> spec = ExperimentSpec(experiment_id="e", primary="success", method="fixed", max_days=14)
    >>> report = analyze_experiment(spec, [data], unit_counts={"control": 4000, "b": 4000})
    >>> report.decision.label, round(report.comparisons[0].relative, 3)
    ('ship b', 0.1)
    >>> nightly = analyze_experiment(spec, [data], unit_counts={"control": 4000, "b": 4000},
    ...                              days_elapsed=3, looks="nightly")
    >>> nightly.decision.action, nightly.srm.method
    ('keep running', 'sequential')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from strategies.experiments.bayesian import BayesianTest
from strategies.experiments.cuped import (
    cuped_adjust,
    observed_control_base,
    variance_reduction,
)
from strategies.experiments.decide import decide, guardrail_verdict, primary_verdict
from strategies.experiments.duration import days_to_decision
from strategies.experiments.effects import EffectResult, EffectTest
from strategies.experiments.frequentist import WelchTest
from strategies.experiments.multiple_testing import adjust_pvalues
from strategies.experiments.nightly import (
    LOOKS,
    NIGHTLY_LOOKS,
    SINGLE_LOOK,
    ActiveStop,
    nightly_decision,
    sticky_decision,
)
from strategies.experiments.report import (
    Comparison,
    Decision,
    ExperimentReport,
    ExperimentSpec,
)
from strategies.experiments.sequential import SequentialTest, cumulate
from strategies.experiments.srm import srm_check
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


@dataclass(frozen=True, kw_only=True)
class MetricData:
    """One metric of one experiment: per-arm statistics over looks (time order, last = now).

    Args:
        metric: the metric's name.
        kind: ``mean`` | ``proportion`` | ``ratio`` | ``cuped`` (the statistics' class).
        arms: variant ids, one per statistics object.
        stats: per-arm statistics, arrays over looks.
        higher_is_better: the metric's direction.
        p95: per-arm 95th percentile to report beside the mean (latency), or None.
    """

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
    """The configured method as an :class:`EffectTest` instance.

    Args:
        spec: the experiment's configuration (method, alpha, n_star, prior).
    """
    if spec.method == "fixed":
        return WelchTest(alpha=spec.alpha)
    if spec.method == "bayesian":
        return BayesianTest(
            alpha=spec.alpha,
            prior_mean=spec.prior_mean,
            prior_sd=spec.prior_sd,
            scale=spec.prior_scale,
        )
    return SequentialTest(alpha=spec.alpha, n_star=spec.n_star)


def stack_stats(items: Sequence[ArmStats]) -> ArmStats:
    """Stack same-kind statistics along a new leading axis (arms).

    Args:
        items: statistics of one kind, one per arm.
    """
    cls = type(items[0])
    values = {f.name: np.stack([getattr(s, f.name) for s in items]) for f in fields(cls)}
    return cls(**values)


def _run(test: EffectTest, control: Moments, treatment: Moments, **kw: Any) -> EffectResult:
    result = test.compute(control, treatment, **kw)
    if isinstance(test, SequentialTest):
        result = cumulate(result, axis=-1)
    return _take_last(result)


def metric_effects(
    test: EffectTest, data: MetricData, control_index: int
) -> tuple[EffectResult, list[str], dict[str, np.ndarray]]:
    """Compare every non-control arm with control, over all looks; return the last look.

    For CUPED the effect is the adjusted one, its relative lift divides by the observed control
    mean, and ``extra`` carries the unadjusted effect, interval, relative lift and p-value.

    Args:
        test: the configured method.
        data: one metric's per-arm statistics over looks.
        control_index: position of control in ``data.arms``.

    Returns:
        The last look's results (one entry per treatment arm), the treatment arms, and extras.
    """
    treat_idx = [i for i in range(len(data.arms)) if i != control_index]
    control = stack_stats([data.stats[control_index]])
    treatment = stack_stats([data.stats[i] for i in treat_idx])
    extra: dict[str, np.ndarray] = {}
    if data.kind != "cuped":
        last = _run(test, control.moments(), treatment.moments())
        return last, [data.arms[i] for i in treat_idx], extra
    assert isinstance(control, CupedStats) and isinstance(treatment, CupedStats)
    mc, mt, theta = cuped_adjust(control, treatment)
    last = _run(test, mc, mt, reference=observed_control_base(control, treatment))
    raw = _run(test, control.moments(), treatment.moments())
    extra["cuped_theta"] = theta[..., -1]
    extra["cuped_variance_reduction"] = variance_reduction(control, treatment)[..., -1]
    for name in ("effect", "ci_low", "ci_high", "relative", "p_value"):
        extra[f"unadjusted_{name}"] = getattr(raw, name)
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


@dataclass(frozen=True, kw_only=True)
class _Row:
    """One comparison before correction: metric data, role, arm, the test's record, extras."""

    data: MetricData
    role: str
    variant: str
    rec: dict[str, Any]
    extra: dict[str, float]


def _rows(
    spec: ExperimentSpec, metrics: Sequence[MetricData], control: str, notes: list[str]
) -> list[_Row]:
    """Every comparison of every metric (a metric that is also a guardrail gives two rows)."""
    test = make_test(spec)
    roles = {spec.primary: "primary"}
    roles.update({m: "secondary" for m in spec.secondary if m != spec.primary})
    guards = {g.metric for g in spec.guardrails}
    rows: list[_Row] = []
    for data in metrics:
        if control not in data.arms or len(data.arms) < 2:
            notes.append(f"cannot analyse {data.metric}: needs control and at least one other arm")
            continue
        result, variants, extra = metric_effects(test, data, data.arms.index(control))
        role_list = [roles[data.metric]] if data.metric in roles else []
        role_list += ["guardrail"] if data.metric in guards else []
        for role in role_list or ["report"]:
            for i, variant in enumerate(variants):
                rows.append(
                    _Row(
                        data=data,
                        role=role,
                        variant=variant,
                        rec=result.record(i),
                        extra={k: _f(v.ravel()[i]) for k, v in extra.items()},
                    )
                )
    return rows


def _adjusted(spec: ExperimentSpec, rows: Sequence[_Row]) -> dict[int, float]:
    """Holm / BH over primary + secondary comparisons, on the scale the spec names."""
    key = "relative_p_value" if spec.correction_scale == "relative" else "p_value"
    family = [r for r in rows if r.role in ("primary", "secondary")]
    if not family:
        return {}
    adjusted = adjust_pvalues(np.array([_f(r.rec[key]) for r in family]), method=spec.correction)
    return {id(r): float(a) for r, a in zip(family, adjusted, strict=True)}


def _comparison(spec: ExperimentSpec, r: _Row, control: str, p_adj: float) -> Comparison:
    data, rec = r.data, r.rec
    hib = data.higher_is_better
    win, loss = _f(rec["chance_to_win"]), _f(rec["expected_loss"])
    if not hib:
        win, loss = 1.0 - win, _f(rec["expected_loss_lower"])
    guard = {g.metric: g for g in spec.guardrails}.get(data.metric)
    guard = guard if r.role == "guardrail" else None
    p95 = data.p95 or ()
    idx = {a: k for k, a in enumerate(data.arms)}
    comp = Comparison(
        metric=data.metric,
        role=r.role,
        kind=data.kind,
        variant=r.variant,
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
        relative_p_value=_f(rec["relative_p_value"]),
        p_adjusted=p_adj,
        chance_to_win=win,
        expected_loss=loss,
        analysable=bool(rec["ok"]),
        message=str(rec["message"]),
        margin=guard.margin if guard else None,
        margin_relative=guard.relative if guard else None,
        p95_control=_opt(p95, idx.get(control)),
        p95_treatment=_opt(p95, idx.get(r.variant)),
        extra=r.extra,
    )
    verdict = guardrail_verdict(comp) if guard else primary_verdict(spec, comp)
    return replace(comp, verdict=verdict)


def analyze_experiment(
    spec: ExperimentSpec,
    metrics: Sequence[MetricData],
    *,
    unit_counts: Mapping[str, float],
    days_elapsed: int | None = None,
    as_of: str | None = None,
    looks: str = SINGLE_LOOK,
    stop: ActiveStop | None = None,
) -> ExperimentReport:
    """Analyse one experiment: SRM, effects per metric and arm, correction, decision.

    Never raises on degenerate data: the report says what could not be analysed.

    Args:
        spec: the experiment's configuration.
        metrics: per-metric, per-arm statistics over looks (last look = now).
        unit_counts: randomization units per arm (SRM and traffic rate); for nightly looks
            the units since the last reset of a stop (the SRM test restarts there).
        days_elapsed: days since the first traffic (None when unknown, e.g. a CSV); drives
            min/max duration and days needed.
        as_of: the last day analysed (ISO date), for the report.
        looks: ``single`` (one look: chi-square SRM, every method decides) or ``nightly``
            (repeated looks: sequential SRM and :mod:`strategies.experiments.nightly` rules).
        stop: a stop from an earlier night that nobody has reset (reported instead).

    Returns:
        The report, with the decision and its reasons.
    """
    if looks not in LOOKS:
        raise ValueError(f"looks must be one of {LOOKS}, got {looks!r}")
    notes: list[str] = []
    by_name = {m.metric: m for m in metrics}
    arms = list(dict.fromkeys(a for m in metrics for a in m.arms)) or list(unit_counts)
    control = spec.control if spec.control in arms else (arms[0] if arms else spec.control)
    if control != spec.control:
        notes.append(f"configured control {spec.control!r} has no data; using {control!r}")
    srm = srm_check(spec, arms, unit_counts, sequential=looks == NIGHTLY_LOOKS)
    for metric_name in [spec.primary, *spec.secondary, *(g.metric for g in spec.guardrails)]:
        if metric_name not in by_name:
            notes.append(f"metric {metric_name} has no data")
    rows = _rows(spec, metrics, control, notes)
    p_adj = _adjusted(spec, rows)
    key = "relative_p_value" if spec.correction_scale == "relative" else "p_value"
    comparisons = tuple(
        _comparison(spec, r, control, p_adj.get(id(r), _f(r.rec[key]))) for r in rows
    )
    days, units = days_to_decision(spec, by_name.get(spec.primary), control, days_elapsed)
    decision: Decision = decide(
        spec, comparisons, srm, days_elapsed=days_elapsed, days_needed=days, units_needed=units
    )
    if looks == NIGHTLY_LOOKS:
        decision = nightly_decision(spec, decision, days_elapsed=days_elapsed)
        decision = sticky_decision(decision, stop, experiment_id=spec.experiment_id)
    return ExperimentReport(
        experiment_id=spec.experiment_id,
        method=spec.method,
        alpha=spec.alpha,
        correction=spec.correction,
        correction_scale=spec.correction_scale,
        as_of=as_of,
        days_elapsed=days_elapsed,
        decision=decision,
        srm=srm,
        comparisons=comparisons,
        notes=tuple(notes),
        looks=looks,
    )


def _opt(values: tuple[float | None, ...], index: int | None) -> float | None:
    if index is None or index >= len(values) or values[index] is None:
        return None
    return float(values[index])  # type: ignore[arg-type]


__all__ = [
    "KINDS",
    "MetricData",
    "analyze_experiment",
    "make_test",
    "metric_effects",
    "stack_stats",
]
