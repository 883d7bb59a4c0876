"""Degradation rules, recovery decisions, cooldown and de-duplication (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from scipy import stats

from strategies.monitor.degradation import (
    AlertCandidate,
    ApprovedConfig,
    DegradationRules,
    PastAlert,
    RecoveryPolicy,
    WindowStats,
    deduplicate,
    evaluate_rules,
)
from strategies.monitor.recovery import decide_recovery, hold_open_incident

BASE = WindowStats(
    n=14_000,
    successes=13_860,
    quality_n=13_860,
    quality_sum=0.8 * 13_860,
    cost_sum=28.0,
    latency_p95=9000.0,
)
APPROVED = [
    ApprovedConfig(
        config_id="prod",
        quality=0.80,
        cost_per_request=0.0020,
        approved_at="2026-09-20",
        is_production=True,
    ),
    ApprovedConfig(
        config_id="old-good", quality=0.78, cost_per_request=0.0030, approved_at="2026-09-01"
    ),
    ApprovedConfig(
        config_id="newer-good", quality=0.75, cost_per_request=0.0025, approved_at="2026-09-10"
    ),
    ApprovedConfig(
        config_id="cheap-good", quality=0.70, cost_per_request=0.0004, approved_at="2026-08-01"
    ),
    ApprovedConfig(
        config_id="cheap-bad", quality=0.40, cost_per_request=0.0001, approved_at="2026-09-15"
    ),
]


def _now(
    *,
    n: int = 1000,
    errors: int = 10,
    quality: float = 0.8,
    cost: float = 0.002,
    p95: float = 9000.0,
) -> WindowStats:
    ok = n - errors
    return WindowStats(
        n=n,
        successes=ok,
        quality_n=ok,
        quality_sum=quality * ok,
        cost_sum=cost * n,
        latency_p95=p95,
    )


def _fired(stats_now: WindowStats, rules: DegradationRules | None = None) -> list[str]:
    return [e.rule for e in evaluate_rules(stats_now, BASE, rules or DegradationRules()) if e.fired]


def test_healthy_night_fires_nothing() -> None:
    rules = DegradationRules(latency_p95_slo_ms=10_000)
    evaluations = evaluate_rules(_now(), BASE, rules)
    assert {e.rule for e in evaluations} == {
        "quality_drop",
        "error_rate",
        "cost_spike",
        "latency_slo",
    }
    assert all(e.analysable and not e.fired for e in evaluations)
    assert decide_recovery("uc", evaluations, production_config_id="prod") is None


def test_each_rule_fires_on_its_own_breach() -> None:
    assert _fired(_now(quality=0.63)) == ["quality_drop"]  # 21% below 0.8
    assert _fired(_now(quality=0.65)) == []  # 18.75% below
    assert _fired(_now(cost=0.0041)) == ["cost_spike"]
    assert _fired(_now(errors=40)) == ["error_rate"]
    assert _fired(_now(p95=12_000), DegradationRules(latency_p95_slo_ms=10_000)) == ["latency_slo"]


def test_error_rate_rule_needs_statistical_evidence_not_a_noisy_night() -> None:
    # 13 errors in 1000 is above 1% but well within noise of a 1% process
    assert stats.binomtest(13, 1000, 0.01, alternative="greater").pvalue > 0.01
    assert "error_rate" not in _fired(_now(errors=13))
    assert "error_rate" in _fired(_now(errors=30))


def test_too_few_requests_is_not_analysable_with_a_reason() -> None:
    evaluations = evaluate_rules(_now(n=20, errors=10), BASE, DegradationRules())
    assert evaluations and all(not e.analysable and not e.fired for e in evaluations)
    assert all("need 50" in e.reason for e in evaluations)


def test_missing_baseline_skips_relative_rules_but_not_absolute_ones() -> None:
    evaluations = {e.rule: e for e in evaluate_rules(_now(errors=60), None, DegradationRules())}
    assert not evaluations["quality_drop"].analysable
    assert "no baseline" in evaluations["cost_spike"].reason
    assert evaluations["error_rate"].fired


def test_registry_baseline_overrides_the_rolling_window() -> None:
    # the rolling window already absorbed the drop; the registry still knows 0.8
    absorbed = WindowStats(n=1000, successes=1000, quality_n=1000, quality_sum=650.0, cost_sum=2.0)
    now = _now(quality=0.62)
    assert not any(e.fired for e in evaluate_rules(now, absorbed, DegradationRules()))
    fired = [
        e.rule
        for e in evaluate_rules(now, absorbed, DegradationRules(), baseline_quality=0.8)
        if e.fired
    ]
    assert fired == ["quality_drop"]


def test_quality_drop_rolls_back_to_the_most_recent_good_config() -> None:
    evaluations = evaluate_rules(_now(quality=0.55), BASE, DegradationRules())
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=APPROVED
    )
    assert action is not None and action.kind == "rollback"
    # floor = 0.8 * 0.8 = 0.64: newer-good (0.75, approved 09-10) is the last good one
    assert action.target_config_id == "newer-good"
    assert action.quality_floor == pytest.approx(0.64)
    assert action.pause_optimizer and action.from_config_id == "prod"
    assert action.observed == pytest.approx(0.55) and action.baseline == pytest.approx(0.8)
    assert "newer-good" in action.reason and "drop" in action.reason


def test_cost_spike_trips_the_circuit_breaker_to_the_cheapest_config_meeting_the_floor() -> None:
    evaluations = evaluate_rules(_now(cost=0.006), BASE, DegradationRules())
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=APPROVED
    )
    assert action is not None and action.kind == "circuit_breaker"
    assert action.target_config_id == "cheap-good"  # cheap-bad is cheaper but under the floor
    assert action.target_cost_per_request == pytest.approx(0.0004)


def test_rollback_outranks_the_circuit_breaker_when_both_fire() -> None:
    evaluations = evaluate_rules(_now(cost=0.006, quality=0.5), BASE, DegradationRules())
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=APPROVED
    )
    assert action is not None and action.kind == "rollback"
    assert set(action.rules_fired) == {"quality_drop", "cost_spike"}


def test_no_target_falls_back_to_pausing_the_optimizer_and_says_why() -> None:
    evaluations = evaluate_rules(_now(quality=0.3), BASE, DegradationRules())
    only_bad = [APPROVED[0], APPROVED[-1]]
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=only_bad
    )
    assert action is not None and action.kind == "pause_optimizer"
    assert action.target_config_id is None and "no rollback target" in action.reason


def test_policy_can_forbid_automatic_changes() -> None:
    policy = RecoveryPolicy(on_quality_drop="alert_only", pause_optimizer=False)
    evaluations = evaluate_rules(_now(quality=0.3), BASE, DegradationRules())
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=APPROVED, policy=policy
    )
    assert action is not None and action.kind == "alert_only" and not action.pause_optimizer


def test_hold_open_incident_never_repeats_a_rollback() -> None:
    evaluations = evaluate_rules(_now(quality=0.5), BASE, DegradationRules())
    action = decide_recovery(
        "uc", evaluations, production_config_id="prod", approved_configs=APPROVED
    )
    assert action is not None
    held = hold_open_incident(action, "raised yesterday")
    assert held.kind == "pause_optimizer" and held.target_config_id is None
    assert held.pause_optimizer and "raised yesterday" in held.reason


def _alert(key: str) -> AlertCandidate:
    return AlertCandidate(
        incident_key=key,
        use_case="uc",
        kind="rule",
        name=key,
        severity="warning",
        message=f"message {key}",
    )


def test_dedup_one_alert_per_incident_however_long_it_lasts() -> None:
    start = dt.date(2026, 10, 21)
    history: list[PastAlert] = []
    raised_on = []
    for day in range(20):
        as_of = start + dt.timedelta(days=day)
        new, suppressed = deduplicate(
            [_alert("uc|rule|quality_drop")], history, as_of=as_of, cooldown_days=7
        )
        raised_on += [as_of for _ in new]
        history += [PastAlert(incident_key=a.incident_key, as_of=as_of, raised=True) for a in new]
        history += [
            PastAlert(incident_key=s.alert.incident_key, as_of=as_of, raised=False)
            for s in suppressed
        ]
    assert raised_on == [start]


def test_dedup_raises_again_after_a_quiet_cooldown() -> None:
    history = [PastAlert(incident_key="k", as_of=dt.date(2026, 10, 1))]
    assert deduplicate([_alert("k")], history, as_of=dt.date(2026, 10, 8), cooldown_days=7)[0] == []
    new, _ = deduplicate([_alert("k")], history, as_of=dt.date(2026, 10, 9), cooldown_days=7)
    assert [a.incident_key for a in new] == ["k"]


def test_dedup_same_night_and_within_a_batch() -> None:
    # another run of the same night (the nightly flow) raised k: it is tonight's alert, named
    # with that run, not an "incident open"
    history = [PastAlert(incident_key="k", as_of=dt.date(2026, 10, 1), run_id="nightly-x")]
    new, suppressed = deduplicate(
        [_alert("k"), _alert("j"), _alert("j")],
        history,
        as_of=dt.date(2026, 10, 1),
        cooldown_days=0,
    )
    assert [a.incident_key for a in new] == ["j"]
    assert [(s.kind, s.reason) for s in suppressed] == [
        ("raised_tonight", "raised tonight by run nightly-x"),
        ("duplicate", "duplicate in this run"),
    ]
    assert suppressed[0].run_id == "nightly-x"


def test_dedup_an_incident_open_from_an_earlier_night_stays_open() -> None:
    history = [
        PastAlert(incident_key="k", as_of=dt.date(2026, 9, 29), run_id="nightly-a"),
        PastAlert(incident_key="k", as_of=dt.date(2026, 9, 30), raised=False, run_id="nightly-b"),
    ]
    new, suppressed = deduplicate(
        [_alert("k")], history, as_of=dt.date(2026, 10, 1), cooldown_days=7
    )
    assert new == []
    assert suppressed[0].kind == "open_incident"
    assert suppressed[0].reason == (
        "incident open (raised on 2026-09-29, last seen 2026-09-30; cooldown 7 days)"
    )
