from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from strategies.experiments import MeanStats, ProportionStats
from strategies.rollout_guard import RolloutGuard


def _night(
    rng: np.random.Generator,
    n: int,
    quality: tuple[float, float],
    error: tuple[float, float],
    latency: tuple[float, float],
) -> dict[str, MeanStats | ProportionStats]:
    q = [rng.normal(m, 0.15, n).clip(0, 1) for m in quality]
    e = [rng.random(n) < p for p in error]
    lat = [rng.lognormal(np.log(m), 0.3, n) for m in latency]
    return {
        "quality": MeanStats(
            n=[n, n], sum=[x.sum() for x in q], sum_squares=[(x * x).sum() for x in q]
        ),
        "errors": ProportionStats(n=[n, n], successes=[int(x.sum()) for x in e]),
        "latency": MeanStats(
            n=[n, n], sum=[x.sum() for x in lat], sum_squares=[(x * x).sum() for x in lat]
        ),
    }


def test_equal_configurations_hold_with_enough_traffic() -> None:
    night = _night(np.random.default_rng(1), 20_000, (0.7, 0.7), (0.002, 0.002), (900, 900))
    judgement = RolloutGuard().judge(**night)  # type: ignore[arg-type]
    assert judgement.held is True
    assert {f.verdict for f in judgement.findings} == {"held"}


def test_clear_quality_harm_fails() -> None:
    night = _night(np.random.default_rng(2), 5_000, (0.7, 0.6), (0.002, 0.002), (900, 900))
    judgement = RolloutGuard().judge(**night)  # type: ignore[arg-type]
    assert judgement.held is False
    assert "quality" in judgement.reason


def test_too_little_traffic_is_undecided_not_a_verdict() -> None:
    night = _night(np.random.default_rng(3), 50, (0.7, 0.2), (0.0, 0.5), (900, 5000))
    judgement = RolloutGuard(min_requests=200).judge(**night)  # type: ignore[arg-type]
    assert judgement.held is None
    assert "fewer than 200" in judgement.reason


def test_quality_interval_matches_scipy_welch_on_raw_samples() -> None:
    rng = np.random.default_rng(4)
    incumbent, candidate = rng.normal(0.70, 0.15, 3_000), rng.normal(0.69, 0.2, 2_500)
    quality = MeanStats(
        n=[incumbent.size, candidate.size],
        sum=[incumbent.sum(), candidate.sum()],
        sum_squares=[(incumbent**2).sum(), (candidate**2).sum()],
    )
    errors = ProportionStats(n=[3_000, 2_500], successes=[3, 3])
    latency = MeanStats(n=[3_000, 2_500], sum=[2.7e6, 2.25e6], sum_squares=[2.5e9, 2.1e9])
    welch = stats.ttest_ind(candidate, incumbent, equal_var=False)
    for looks in (1, 3):  # each look of a stage spends alpha / max_nights (Bonferroni)
        guard = RolloutGuard(max_nights=looks)
        finding = guard.judge(quality=quality, errors=errors, latency=latency).findings[0]
        ci = welch.confidence_interval(1 - 0.05 / looks)
        assert finding.ci_low == pytest.approx(ci.low, abs=1e-10)
        assert finding.ci_high == pytest.approx(ci.high, abs=1e-10)


def test_required_requests_match_statsmodels_power() -> None:
    from statsmodels.stats.power import NormalIndPower

    rng = np.random.default_rng(5)
    night = _night(rng, 4_000, (0.7, 0.7), (0.01, 0.01), (900, 900))
    # a 5% stage: incumbent 19 times the candidate's traffic
    q = night["quality"]
    quality = MeanStats(
        n=[19 * 400, 400],
        sum=[19 * q.sum[0] / 10, q.sum[1] / 10],
        sum_squares=[19 * q.sum_squares[0] / 10, q.sum_squares[1] / 10],
    )
    errors = ProportionStats(n=[19 * 400, 400], successes=[76, 4])
    latency = MeanStats(
        n=[19 * 400, 400],
        sum=[19 * 400 * 900.0, 400 * 900.0],
        sum_squares=[19 * 400 * 900.0**2 * 1.1, 400 * 900.0**2 * 1.1],
    )
    guard = RolloutGuard(max_nights=3)
    needed, metric = guard.required_requests(quality=quality, errors=errors, latency=latency)
    assert metric == "error_rate" and needed is not None
    p = 0.01
    expected = NormalIndPower().solve_power(
        effect_size=0.01 / np.sqrt(p * (1 - p)),
        alpha=0.05 / 3 / 2,  # the one side of the two-sided interval at alpha / looks
        power=0.8,
        ratio=19.0,
        alternative="larger",
    )
    assert needed == pytest.approx(expected, rel=0.01)


def test_step_verdicts_follow_the_evidence() -> None:
    from strategies.rollout_guard import RolloutJudgement, step_verdict

    harm = RolloutJudgement(False, "harm beyond margin on quality", candidate_requests=900)
    assert step_verdict(harm, nights_at_stage=1, max_nights=3, stage_share=0.25).action == (
        "rollback"
    )
    # enough traffic is on its way: hold
    early = RolloutJudgement(None, "not yet", candidate_requests=600, needed_requests=1_500)
    hold = step_verdict(early, nights_at_stage=1, max_nights=3, stage_share=0.05)
    assert hold.action == "hold" and "600 of 1,500" in hold.reason
    # the rate cannot reach the sample in the nights left: stop now, and say so
    slow = RolloutJudgement(None, "not yet", candidate_requests=300, needed_requests=1_500)
    stop = step_verdict(slow, nights_at_stage=2, max_nights=3, stage_share=0.05)
    assert stop.action == "stop"
    assert stop.reason.startswith("stopped: not enough traffic at 5%: 300 of 1,500 requests")
    assert "guardrails failed" not in stop.reason
    # enough sample, still undecided at the last night: stop, not a failure
    late = RolloutJudgement(
        None, "not yet: latency", candidate_requests=2_000, needed_requests=1_500
    )
    done = step_verdict(late, nights_at_stage=3, max_nights=3, stage_share=0.05)
    assert done.action == "stop" and "not shown within margin" in done.reason


def test_a_true_winner_at_low_traffic_is_held_then_stopped_never_rolled_back() -> None:
    """Issue 14's case: ~500 requests per arm can never fit a 0.01 error-rate margin."""
    from strategies.rollout_guard import step_verdict

    rng = np.random.default_rng(6)
    guard = RolloutGuard(max_nights=3, min_requests=200)
    actions = []
    for nights in (1, 2, 3):
        night = _night(rng, 170 * nights, (0.70, 0.74), (0.02, 0.02), (900, 900))
        judgement = guard.judge(**night)  # type: ignore[arg-type]
        verdict = step_verdict(judgement, nights_at_stage=nights, max_nights=3, stage_share=0.05)
        actions.append(verdict.action)
        if verdict.action != "hold":
            break
    assert "rollback" not in actions and actions[-1] == "stop"


def test_error_rate_interval_is_agresti_caffo_and_exists_without_errors() -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    quality = MeanStats(n=[3_000, 600], sum=[2_100.0, 430.0], sum_squares=[1_540.0, 320.0])
    latency = MeanStats(n=[3_000, 600], sum=[2.7e6, 5.4e5], sum_squares=[2.5e9, 5.0e8])
    for errs in ([0, 0], [12, 5]):
        errors = ProportionStats(n=[3_000, 600], successes=errs)
        judgement = RolloutGuard(max_nights=1).judge(
            quality=quality, errors=errors, latency=latency
        )
        finding = judgement.findings[1]
        low, high = confint_proportions_2indep(
            errs[1], 600, errs[0], 3_000, method="agresti-caffo", compare="diff", alpha=0.05
        )
        assert finding.metric == "error_rate"
        assert finding.ci_low == pytest.approx(low, abs=1e-4)
        assert finding.ci_high == pytest.approx(high, abs=1e-4)
    assert finding.verdict in {"held", "undecided"}
