"""Decisions that stay honest when the warehouse is analysed every night, and sticky stops.

Why: a nightly flow looks at every running experiment every night. A rule that is valid for one
look then gets ~28 chances a month to fire on noise. Measured on A/A experiments over 28 nights
(``tests/benchmarks/bench_aa_nightly.py``): re-testing with the fixed Welch test shipped or
stopped a few percent of them, the Bayesian chance-to-win rule far more. So, per method:

- ``sequential``: always valid (confidence sequences); nothing changes.
- ``fixed``: one planned look, at the horizon ``max_days``. Before it the decision is ``keep
  running`` (only the always-valid SRM check may stop it); from the horizon on, the analysis
  uses the data up to the horizon day only (:func:`analysis_days`), so every later night repeats
  the same single look instead of adding one.
- ``bayesian``: refused for nightly looks (:func:`nightly_refusal`): a chance-to-win or
  expected-loss threshold has no error guarantee under optional stopping. Use it for a one-off
  look (``llmopt stats --method bayesian``).

Sticky stops: once the nightly flow stops an experiment (SRM or harm), later nights report the
stop, with tonight's own reading beside it, until a person resets it
(:func:`sticky_decision`); the warehouse keeps the audit trail.

Example:
    >>> from strategies.experiments.report import Decision, ExperimentSpec, KEEP_RUNNING
    >>> fixed = ExperimentSpec(experiment_id="e", method="fixed", max_days=14)
    >>> analysis_days(fixed, days_elapsed=20), analysis_days(fixed, days_elapsed=9)
    (14, None)
    >>> nightly_refusal(ExperimentSpec(experiment_id="e", method="bayesian"))[:40]
    'method "bayesian" is refused for nightly'
    >>> d = Decision(action=KEEP_RUNNING)
    >>> stop = ActiveStop(action="stop: SRM", since="2026-10-03", reasons=("p=1e-05",))
    >>> sticky_decision(d, stop, experiment_id="e").action
    'stop: SRM'
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.experiments.report import (
    CANNOT_ANALYSE,
    KEEP_RUNNING,
    STOP_HARM,
    STOP_SRM,
    Decision,
    ExperimentSpec,
)

SINGLE_LOOK = "single"
NIGHTLY_LOOKS = "nightly"
LOOKS: tuple[str, ...] = (SINGLE_LOOK, NIGHTLY_LOOKS)
STICKY_ACTIONS: tuple[str, ...] = (STOP_SRM, STOP_HARM)

__all__ = [
    "LOOKS",
    "NIGHTLY_LOOKS",
    "SINGLE_LOOK",
    "STICKY_ACTIONS",
    "ActiveStop",
    "analysis_days",
    "nightly_decision",
    "nightly_refusal",
    "reset_command",
    "sticky_decision",
]


@dataclass(frozen=True, kw_only=True)
class ActiveStop:
    """A stop recorded on an earlier night and not reset.

    Args:
        action: ``stop: SRM`` or ``stop: harm``.
        since: the night (ISO date) it was first decided.
        variant: the harmful arm (harm stops).
        reasons: the reasons given that night.
    """

    action: str
    since: str
    variant: str | None = None
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in STICKY_ACTIONS:
            raise ValueError(f"a sticky stop is one of {STICKY_ACTIONS}, got {self.action!r}")


def reset_command(experiment_id: str) -> str:
    """The command a person runs to lift a stop (quoted in every sticky reason).

    Args:
        experiment_id: the stopped experiment.
    """
    return f'llmopt experiments reset {experiment_id} --reason "..."'


def nightly_refusal(spec: ExperimentSpec) -> str | None:
    """Why ``spec`` cannot decide on nightly looks (one line), or None when it can.

    Args:
        spec: the experiment's configuration.
    """
    if spec.method == "bayesian":
        return (
            'method "bayesian" is refused for nightly looks (its chance-to-win rule has no error '
            'guarantee when looked at every night): use "sequential", or "fixed" with max_days '
            "as its horizon; `llmopt stats --method bayesian` gives a one-off Bayesian look"
        )
    if spec.method == "fixed" and spec.max_days is None:
        return (
            'method "fixed" needs max_days (its one planned look) for nightly runs: set '
            'max_days, or use "sequential"'
        )
    return None


def analysis_days(spec: ExperimentSpec, *, days_elapsed: int | None) -> int | None:
    """Days of data to analyse: the horizon for ``fixed`` once reached, else None (all).

    Args:
        spec: the experiment's configuration.
        days_elapsed: days since the experiment's first traffic, this night included.
    """
    if spec.method != "fixed" or spec.max_days is None or days_elapsed is None:
        return None
    return spec.max_days if days_elapsed >= spec.max_days else None


def nightly_decision(
    spec: ExperimentSpec, decision: Decision, *, days_elapsed: int | None
) -> Decision:
    """Apply the nightly rules of the module docstring to tonight's single-look decision.

    Args:
        spec: the experiment's configuration.
        decision: what :func:`~strategies.experiments.decide.decide` says for tonight's data.
        days_elapsed: days since the experiment's first traffic, this night included.

    Returns:
        The decision a nightly run may act on (SRM stops always pass: that test is sequential).
    """
    if decision.action in (STOP_SRM, CANNOT_ANALYSE):
        return decision
    refusal = nightly_refusal(spec)
    if refusal is not None:
        return Decision(action=CANNOT_ANALYSE, reasons=(refusal,))
    if spec.method == "fixed" and spec.max_days is not None:
        elapsed = days_elapsed or 0
        if elapsed < spec.max_days:
            left = spec.max_days - elapsed
            return Decision(
                action=KEEP_RUNNING,
                reasons=(
                    f"fixed horizon: the one look is on day {spec.max_days} ({left} more "
                    "day(s)); earlier nights only check the sample ratio",
                ),
                days_needed=float(left),
            )
    return decision


def sticky_decision(decision: Decision, stop: ActiveStop | None, *, experiment_id: str) -> Decision:
    """Tonight's decision, or the earlier stop (with tonight's reading) while it is not reset.

    Args:
        decision: tonight's decision.
        stop: the active stop, if any.
        experiment_id: the experiment (named in the reset command).
    """
    if stop is None:
        return decision
    return Decision(
        action=stop.action,
        variant=stop.variant,
        since=stop.since,
        reasons=(
            f"stopped since {stop.since}; stays stopped until a person resets it: "
            + reset_command(experiment_id),
            *stop.reasons,
            f"tonight's analysis alone: {decision.label}",
        ),
    )
