"""Did a ramping configuration hold its guardrails on last night's traffic?

A staged rollout advances only on evidence. For each guardrail the two-sided (1 - alpha) Welch
interval of *candidate minus incumbent* (from the experiments engine) is compared with its
non-inferiority margin, on the harmful side:

* **held** when every interval lies inside its margin (non-inferiority shown for all),
* **failed** when any interval lies wholly beyond its margin (harm shown for one),
* **undecided** (None) otherwise, or when either side has fewer than ``min_requests``.

Guardrails: mean quality (higher is better, absolute margin), error rate (lower is better,
absolute margin) and mean latency (lower is better, relative margin ``latency_ratio_limit - 1``).
Fixed-horizon intervals are used on purpose: each night judges only that night's fresh traffic,
so nights do not re-use data the way a cumulative nightly peek would.

Example:
    >>> guard = RolloutGuard(min_requests=50)
    >>> quality = MeanStats(n=[400, 400], sum=[280.0, 284.0], sum_squares=[200.0, 205.0])
    >>> errors = ProportionStats(n=[400, 400], successes=[2, 2])
    >>> latency = MeanStats(n=[400, 400], sum=[4e5, 4.1e5], sum_squares=[4.1e8, 4.3e8])
    >>> guard.judge(quality=quality, errors=errors, latency=latency).held
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from strategies.experiments import MeanStats, ProportionStats, WelchTest

__all__ = ["GuardrailFinding", "RolloutGuard", "RolloutJudgement"]


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


@dataclass(frozen=True, kw_only=True)
class RolloutGuard:
    """Margins and evidence thresholds; arrays are [incumbent, candidate]."""

    min_requests: int = 200
    quality_margin: float = 0.02
    error_rate_margin: float = 0.01
    latency_ratio_limit: float = 1.25
    alpha: float = 0.05

    def judge(
        self, *, quality: MeanStats, errors: ProportionStats, latency: MeanStats
    ) -> RolloutJudgement:
        n = np.asarray(errors.n, dtype=float)
        if n.shape != (2,) or float(n.min()) < self.min_requests:
            return RolloutJudgement(
                None, f"fewer than {self.min_requests} requests on one side ({n.tolist()})"
            )
        test = WelchTest(alpha=self.alpha)
        findings = (
            self._finding("quality", test, quality, -self.quality_margin, higher_is_better=True),
            self._finding(
                "error_rate", test, errors, self.error_rate_margin, higher_is_better=False
            ),
            self._finding(
                "latency_ms", test, latency, self.latency_ratio_limit - 1.0, relative=True
            ),
        )
        failed = [f.metric for f in findings if f.verdict == "failed"]
        if failed:
            return RolloutJudgement(False, f"harm beyond margin on {', '.join(failed)}", findings)
        if all(f.verdict == "held" for f in findings):
            return RolloutJudgement(True, "every guardrail shown within its margin", findings)
        open_ = [f.metric for f in findings if f.verdict == "undecided"]
        return RolloutJudgement(None, f"not yet shown within margin: {', '.join(open_)}", findings)

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
