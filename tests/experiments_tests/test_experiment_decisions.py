"""The decision policy on hand-built statistics: each branch, with its reasons."""

from __future__ import annotations

import numpy as np

from strategies.experiments import (
    ExperimentSpec,
    Guardrail,
    MeanStats,
    MetricData,
    ProportionStats,
    analyze_experiment,
)


def _mean(n: float, mean: float, sd: float) -> MeanStats:
    # exact sums for a sample with this mean and standard deviation
    return MeanStats(n=[n], sum=[n * mean], sum_squares=[(n - 1) * sd**2 + n * mean**2])


def _quality(control: float, treatment: float, n: float = 5000) -> MetricData:
    return MetricData(
        metric="quality",
        kind="mean",
        arms=("control", "treatment"),
        stats=(_mean(n, control, 0.2), _mean(n, treatment, 0.2)),
    )


def _errors(control: float, treatment: float, n: float = 5000) -> MetricData:
    return MetricData(
        metric="error_rate",
        kind="proportion",
        arms=("control", "treatment"),
        stats=(
            ProportionStats(n=[n], successes=[n * control]),
            ProportionStats(n=[n], successes=[n * treatment]),
        ),
        higher_is_better=False,
    )


UNITS = {"control": 5000.0, "treatment": 5000.0}


def test_ship_needs_guardrails_proven_and_minimum_days() -> None:
    spec = ExperimentSpec(
        experiment_id="e",
        guardrails=(Guardrail(metric="error_rate", margin=0.01, relative=False),),
        min_days=7,
        method="fixed",
    )
    metrics = [_quality(0.70, 0.73), _errors(0.02, 0.02)]
    early = analyze_experiment(spec, metrics, unit_counts=UNITS, days_elapsed=3)
    assert early.decision.action == "keep running"
    assert any("minimum duration" in r for r in early.decision.reasons)
    ready = analyze_experiment(spec, metrics, unit_counts=UNITS, days_elapsed=8)
    assert ready.decision.label == "ship treatment"
    assert any("non-inferior" in r for r in ready.decision.reasons)
    # a guardrail whose interval straddles the margin blocks shipping
    noisy = [_quality(0.70, 0.73), _errors(0.02, 0.025, n=2000)]
    blocked = analyze_experiment(spec, noisy, unit_counts=UNITS, days_elapsed=8)
    assert blocked.decision.action == "keep running"
    assert blocked.comparison("error_rate", "treatment").verdict == "undetermined"


def test_primary_harm_and_inconclusive_at_max_duration() -> None:
    spec = ExperimentSpec(experiment_id="e", max_days=28, method="sequential", mde=0.01)
    worse = analyze_experiment(spec, [_quality(0.70, 0.66)], unit_counts=UNITS, days_elapsed=10)
    assert worse.decision.action == "stop: harm"
    assert "primary metric significantly worse" in worse.decision.reasons[0]
    flat = [_quality(0.70, 0.7005, n=800)]
    running = analyze_experiment(spec, flat, unit_counts=UNITS, days_elapsed=10)
    assert running.decision.action == "keep running"
    assert running.decision.days_needed is not None and running.decision.days_needed > 0
    done = analyze_experiment(spec, flat, unit_counts=UNITS, days_elapsed=28)
    assert done.decision.action == "inconclusive at max duration"


def test_bayesian_ships_on_chance_to_win_and_reports_no_p_values() -> None:
    spec = ExperimentSpec(experiment_id="e", method="bayesian", chance_threshold=0.95)
    report = analyze_experiment(
        spec, [_quality(0.70, 0.72, n=1000)], unit_counts={"control": 1000, "treatment": 1000}
    )
    comp = report.comparison("quality", "treatment")
    assert comp.chance_to_win > 0.95 and np.isnan(comp.p_value)
    assert report.decision.label == "ship treatment"
    assert report.to_dict()["comparisons"][0]["p_value"] is None  # JSON null, not NaN


def test_lower_is_better_metric_flips_chance_to_win() -> None:
    spec = ExperimentSpec(experiment_id="e", primary="error_rate", method="fixed")
    report = analyze_experiment(spec, [_errors(0.05, 0.03)], unit_counts=UNITS)
    comp = report.comparison("error_rate", "treatment")
    assert comp.effect < 0 and comp.chance_to_win > 0.99
    assert report.decision.label == "ship treatment"


def test_one_arm_and_unconfigured_arm() -> None:
    spec = ExperimentSpec(experiment_id="e", weights=(("control", 0.5), ("treatment", 0.5)))
    one = MetricData(
        metric="quality", kind="mean", arms=("control",), stats=(_mean(100, 0.7, 0.2),)
    )
    report = analyze_experiment(spec, [one], unit_counts={"control": 100})
    assert report.decision.action == "cannot analyse"
    three = MetricData(
        metric="quality", kind="mean", arms=("control", "treatment", "rogue"),
        stats=(_mean(5000, 0.7, 0.2), _mean(5000, 0.7, 0.2), _mean(300, 0.7, 0.2)),
    )  # fmt: skip
    units = {"control": 5000.0, "treatment": 5000.0, "rogue": 300.0}
    rogue = analyze_experiment(spec, [three], unit_counts=units)
    assert rogue.decision.action == "stop: SRM"
    assert "rogue" in rogue.srm.message
