"""Did a ramping configuration hold its guardrails on last night's traffic?

A staged rollout advances only on evidence. For each guardrail the two-sided (1 - alpha) Welch
interval of *candidate minus incumbent* (from the experiments engine) is compared with its
non-inferiority margin, on the harmful side:

* **held** when every interval lies inside its margin (non-inferiority shown for all),
* **failed** when any interval lies wholly beyond its margin (harm shown for one),
* **undecided** (None) otherwise, or when either side has fewer than ``min_requests``.

Guardrails: mean quality (higher is better, absolute margin), error rate (lower is better,
absolute margin; Agresti-Caffo interval, one error and one success added per side, so two clean
arms with no errors at all still get an interval) and mean latency (lower is better, relative
margin ``latency_ratio_limit - 1``).
A step accumulates its traffic night after night (the statistics passed in cover every night
of the current stage), so a step looks at most ``max_nights`` times; each look uses
``alpha / max_nights`` (Bonferroni over the looks), which keeps the chance of a wrong "held" or a
wrong "failed" within ``alpha`` over the whole step.

How long a step holds follows the traffic (:meth:`RolloutGuard.required_requests`): from the
observed variances and the margins, the candidate requests each guardrail needs for its interval
to fit inside the margin when the two are equal (``(z_{1-a/2} + z_power)^2 (s_t^2 + s_c^2 / r) /
margin^2`` at the observed allocation ratio ``r = n_c / n_t``). :func:`step_verdict` turns a
judgement into what the step does: harm shown -> roll back; every guardrail held -> advance; not
yet -> hold while the sample can still arrive within ``max_nights`` at the observed rate, else
stop and say exactly that ("not enough traffic at 5%: 312 of 1,450 requests"), never a failed
guardrail.

Example:
    >>> guard = RolloutGuard(min_requests=50, max_nights=1)
    >>> quality = MeanStats(n=[400, 400], sum=[280.0, 284.0], sum_squares=[200.0, 205.0])
    >>> errors = ProportionStats(n=[400, 400], successes=[0, 0])  # no errors at all
    >>> latency = MeanStats(n=[400, 400], sum=[4e5, 4.1e5], sum_squares=[4.1e8, 4.3e8])
    >>> judgement = guard.judge(quality=quality, errors=errors, latency=latency)
    >>> judgement.held
    True
    >>> step_verdict(judgement, nights_at_stage=1, max_nights=3, stage_share=0.05).action
    'advance'
    >>> thin = RolloutJudgement(None, "not yet shown", candidate_requests=300, needed_requests=1450)
    >>> step_verdict(thin, nights_at_stage=3, max_nights=3, stage_share=0.05).reason[:51]
    'stopped: not enough traffic at 5%: 300 of 1,450 req'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from strategies._checks import require_open_interval
from strategies.experiments import MeanStats, ProportionStats, WelchTest

__all__ = ["GuardrailFinding", "RolloutGuard", "RolloutJudgement", "StepVerdict", "step_verdict"]


@dataclass(frozen=True)
class GuardrailFinding:
    metric: str
    incumbent: float
    candidate: float
    ci_low: float
    ci_high: float
    margin: float
    verdict: str  # held | failed | undecided


@dataclass(frozen=True)
class RolloutJudgement:
    held: bool | None
    reason: str
    findings: tuple[GuardrailFinding, ...] = ()
    candidate_requests: int = 0  # requests the candidate served in the judged stage
    needed_requests: float | None = None  # what the guardrails need (None: unknown / met)
    needed_for: str = ""  # the guardrail that needs the most


@dataclass(frozen=True, kw_only=True)
class StepVerdict:
    """What a rollout step does tonight, and the sentence that says why."""

    action: Literal["advance", "hold", "rollback", "stop"]
    reason: str


def step_verdict(
    judgement: RolloutJudgement, *, nights_at_stage: int, max_nights: int, stage_share: float
) -> StepVerdict:
    """Advance, hold, roll back (harm shown) or stop (evidence cannot arrive in time).

    Args:
        judgement: the guard's judgement of the stage's traffic so far.
        nights_at_stage: nights of traffic the judgement covers (>= 1).
        max_nights: the most nights a stage may take.
        stage_share: the candidate's share at this stage (for the message).
    """
    if nights_at_stage < 1 or max_nights < 1:
        raise ValueError("nights_at_stage and max_nights must be >= 1")
    at = f"at {stage_share:.0%}"
    if judgement.held is False:
        return StepVerdict(action="rollback", reason=f"harm shown {at}: {judgement.reason}")
    if judgement.held is True:
        return StepVerdict(action="advance", reason=f"guardrails held {at}")
    n, needed = judgement.candidate_requests, judgement.needed_requests
    have = f"{n:,} of {needed:,.0f} requests" if needed else f"{n:,} requests"
    left = max_nights - nights_at_stage
    rate = n / nights_at_stage
    if needed is not None and n < needed and (left <= 0 or n + rate * left < needed):
        return StepVerdict(
            action="stop",
            reason=f"stopped: not enough traffic {at}: {have}"
            f" ({judgement.needed_for or 'guardrails'}; {nights_at_stage} night(s),"
            f" at most {max_nights})",
        )
    if left <= 0:
        return StepVerdict(
            action="stop",
            reason=f"stopped: not shown within margin {at} after {nights_at_stage} night(s)"
            f" ({have}): {judgement.reason}",
        )
    return StepVerdict(
        action="hold",
        reason=f"holding {at} ({have}, night {nights_at_stage} of at most {max_nights}):"
        f" {judgement.reason}",
    )


@dataclass(frozen=True, kw_only=True)
class RolloutGuard:
    """Margins and evidence thresholds; arrays are [incumbent, candidate]."""

    min_requests: int = 200
    quality_margin: float = 0.02
    error_rate_margin: float = 0.01
    latency_ratio_limit: float = 1.25
    alpha: float = 0.05
    max_nights: int = 3  # looks per stage (Bonferroni) and the longest a stage may take
    power: float = 0.8  # for the required sample

    def __post_init__(self) -> None:
        require_open_interval("alpha", self.alpha, 0.0, 0.5)
        if self.max_nights < 1 or self.min_requests < 1:
            raise ValueError("max_nights and min_requests must be >= 1")
        if not 0.5 <= self.power < 1.0:
            raise ValueError(f"power must be in [0.5, 1), got {self.power}")
        if not (self.quality_margin > 0 and self.error_rate_margin > 0):
            raise ValueError("margins must be > 0")
        if not self.latency_ratio_limit > 1.0:
            raise ValueError("latency_ratio_limit must be > 1")

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.max_nights

    def judge(
        self, *, quality: MeanStats, errors: ProportionStats, latency: MeanStats
    ) -> RolloutJudgement:
        n = np.asarray(errors.n, dtype=float)
        cand_n = int(n[1]) if n.shape == (2,) else 0
        needed, needed_for = self.required_requests(quality=quality, errors=errors, latency=latency)
        extra = {"candidate_requests": cand_n, "needed_requests": needed, "needed_for": needed_for}
        if n.shape != (2,) or float(n.min()) < self.min_requests:
            needed = max(needed or 0.0, float(self.min_requests))
            extra["needed_requests"] = needed
            return RolloutJudgement(
                None,
                f"fewer than {self.min_requests} requests on one side ({n.tolist()})",
                **extra,  # type: ignore[arg-type]
            )
        test = WelchTest(alpha=self.alpha_per_look)
        findings = (
            self._finding("quality", test, quality, -self.quality_margin, higher_is_better=True),
            self._finding(
                "error_rate",
                test,
                _agresti_caffo(errors),
                self.error_rate_margin,
                higher_is_better=False,
            ),
            self._finding(
                "latency_ms", test, latency, self.latency_ratio_limit - 1.0, relative=True
            ),
        )
        failed = [f.metric for f in findings if f.verdict == "failed"]
        if failed:
            why = f"harm beyond margin on {', '.join(failed)}"
            return RolloutJudgement(False, why, findings, **extra)  # type: ignore[arg-type]
        if all(f.verdict == "held" for f in findings):
            why = "every guardrail shown within its margin"
            return RolloutJudgement(True, why, findings, **extra)  # type: ignore[arg-type]
        open_ = [f.metric for f in findings if f.verdict == "undecided"]
        why = f"not yet shown within margin: {', '.join(open_)}"
        return RolloutJudgement(None, why, findings, **extra)  # type: ignore[arg-type]

    def required_requests(
        self, *, quality: MeanStats, errors: ProportionStats, latency: MeanStats
    ) -> tuple[float | None, str]:
        """Candidate requests every guardrail needs (the largest, and which guardrail).

        From the observed per-request variances, the margins and the observed allocation ratio
        (module docstring). ``(None, "")`` when the variances are not known yet (no traffic).
        """
        z = float(sps.norm.ppf(1 - self.alpha_per_look / 2) + sps.norm.ppf(self.power))
        n = np.asarray(errors.n, dtype=float)
        if n.shape != (2,) or float(n.min()) < 2:
            return None, ""
        ratio = float(n[0] / n[1])
        q = quality.moments()
        lat = latency.moments()
        rates = np.asarray(errors.successes, dtype=float) / n
        floor = 1.0 / float(n.sum())  # zero observed errors: not zero variance
        err_var = np.maximum(rates, floor) * (1 - np.maximum(rates, floor))
        lat_margin = (self.latency_ratio_limit - 1.0) * float(lat.mean[0])
        need = {
            "quality": _needed(q.variance, self.quality_margin, z, ratio),
            "error_rate": _needed(err_var, self.error_rate_margin, z, ratio),
            "latency_ms": _needed(lat.variance, lat_margin, z, ratio),
        }
        known = {k: v for k, v in need.items() if math.isfinite(v)}
        if not known:
            return None, ""
        metric = max(known, key=known.__getitem__)
        return max(known[metric], float(self.min_requests)), metric

    @staticmethod
    def _finding(
        metric: str,
        test: WelchTest,
        stats: MeanStats | ProportionStats,
        margin: float,
        *,
        higher_is_better: bool = False,
        relative: bool = False,
    ) -> GuardrailFinding:
        moments = stats.moments()
        control = type(moments)(
            moments.n[:1], moments.mean[:1], moments.variance[:1], moments.normal
        )
        treated = type(moments)(
            moments.n[1:], moments.mean[1:], moments.variance[1:], moments.normal
        )
        result = test.compute(control, treated)
        low = float((result.relative_ci_low if relative else result.ci_low)[0])
        high = float((result.relative_ci_high if relative else result.ci_high)[0])
        if not (math.isfinite(low) and math.isfinite(high)):
            verdict = "undecided"
        elif higher_is_better:  # margin is negative: how far below the incumbent is tolerated
            verdict = "held" if low > margin else "failed" if high < margin else "undecided"
        else:
            verdict = "held" if high < margin else "failed" if low > margin else "undecided"
        return GuardrailFinding(
            metric,
            float(moments.mean[0]),
            float(moments.mean[1]),
            low,
            high,
            margin,
            verdict,
        )


def _needed(variance: np.ndarray, margin: float, z: float, ratio: float) -> float:
    """Candidate n for ``z * sqrt(s_t^2 / n + s_c^2 / (r n)) <= margin``."""
    var = np.asarray(variance, dtype=float)
    if var.shape != (2,) or not np.all(np.isfinite(var)) or not margin > 0:
        return math.nan
    return float(math.ceil(z * z * (var[1] + var[0] / ratio) / (margin * margin)))


def _agresti_caffo(errors: ProportionStats) -> ProportionStats:
    """Add one error and one success per side (Agresti & Caffo 2000): the Wald interval of the
    difference then keeps its coverage near 0 and exists when no side has an error."""
    n = np.asarray(errors.n, dtype=float)
    return ProportionStats(n=n + 2.0, successes=np.asarray(errors.successes, dtype=float) + 1.0)
