"""Experiment statistics: sufficient statistics in, effects, intervals and decisions out.

Pure numpy / scipy, vectorized over many comparisons. Start with
:func:`~strategies.experiments.analysis.analyze_experiment` for a whole experiment, or use a
test directly (:class:`WelchTest`, :class:`SequentialTest`, :class:`BayesianTest`) on
:class:`Moments` built from :class:`MeanStats`, :class:`ProportionStats`, :class:`RatioStats`
(or :func:`cuped_adjust` on :class:`CupedStats`). Repeated (nightly) looks:
:mod:`strategies.experiments.nightly` and :func:`sequential_srm_test`.

Example:
    >>> c = MeanStats(n=[2000], sum=[1400.0], sum_squares=[1060.0]).moments()
    >>> t = MeanStats(n=[2000], sum=[1440.0], sum_squares=[1120.0]).moments()
    >>> r = WelchTest(alpha=0.05).compute(c, t)
    >>> round(float(r.relative[0]), 4), bool(r.relative_p_value[0] < 0.05)
    (0.0286, True)
"""

from __future__ import annotations

from strategies.experiments.analysis import (
    KINDS,
    MetricData,
    analyze_experiment,
    make_test,
    metric_effects,
    stack_stats,
)
from strategies.experiments.bayesian import BayesianTest
from strategies.experiments.cuped import cuped_adjust, observed_control_base, variance_reduction
from strategies.experiments.decide import decide
from strategies.experiments.duration import days_to_decision
from strategies.experiments.effects import EffectResult, EffectTest, RelativeBase, prepare
from strategies.experiments.frequentist import WelchTest
from strategies.experiments.multiple_testing import adjust_pvalues
from strategies.experiments.nightly import (
    LOOKS,
    NIGHTLY_LOOKS,
    SINGLE_LOOK,
    STICKY_ACTIONS,
    ActiveStop,
    analysis_days,
    nightly_decision,
    nightly_refusal,
    reset_command,
    sticky_decision,
)
from strategies.experiments.power import (
    days_needed,
    detection_power,
    minimum_detectable_effect,
    required_n,
)
from strategies.experiments.report import (
    ACTIONS,
    CANNOT_ANALYSE,
    INCONCLUSIVE,
    KEEP_RUNNING,
    METHODS,
    SCALES,
    SHIP,
    STOP_HARM,
    STOP_SRM,
    Comparison,
    Decision,
    ExperimentReport,
    ExperimentSpec,
    Guardrail,
    SrmCheck,
)
from strategies.experiments.sequential import DEFAULT_N_STAR, SequentialTest, cumulate
from strategies.experiments.srm import (
    DEFAULT_SRM_ALPHA,
    SrmResult,
    sequential_srm_test,
    srm_check,
    srm_test,
)
from strategies.experiments.stats import (
    ArmStats,
    CupedStats,
    MeanStats,
    Moments,
    ProportionStats,
    RatioStats,
)

__all__ = [
    "ACTIONS",
    "CANNOT_ANALYSE",
    "DEFAULT_N_STAR",
    "DEFAULT_SRM_ALPHA",
    "INCONCLUSIVE",
    "KEEP_RUNNING",
    "KINDS",
    "LOOKS",
    "METHODS",
    "NIGHTLY_LOOKS",
    "SCALES",
    "SHIP",
    "SINGLE_LOOK",
    "STICKY_ACTIONS",
    "STOP_HARM",
    "STOP_SRM",
    "ActiveStop",
    "ArmStats",
    "BayesianTest",
    "Comparison",
    "CupedStats",
    "Decision",
    "EffectResult",
    "EffectTest",
    "ExperimentReport",
    "ExperimentSpec",
    "Guardrail",
    "MeanStats",
    "MetricData",
    "Moments",
    "ProportionStats",
    "RatioStats",
    "RelativeBase",
    "SequentialTest",
    "SrmCheck",
    "SrmResult",
    "WelchTest",
    "adjust_pvalues",
    "analysis_days",
    "analyze_experiment",
    "cumulate",
    "cuped_adjust",
    "days_needed",
    "days_to_decision",
    "decide",
    "detection_power",
    "make_test",
    "metric_effects",
    "minimum_detectable_effect",
    "nightly_decision",
    "nightly_refusal",
    "observed_control_base",
    "prepare",
    "required_n",
    "reset_command",
    "sequential_srm_test",
    "srm_check",
    "srm_test",
    "stack_stats",
    "sticky_decision",
    "variance_reduction",
]
