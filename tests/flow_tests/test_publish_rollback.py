"""The publish step applies monitoring's rollback to the registry, with the reason audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from tasks.core.settings import Settings
from tasks.nightly import steps
from tasks.registry.model import ModelParams, RegistryConfig
from tasks.registry.store import RegistryStore

UC = "sales-email"


def _config(model: str) -> RegistryConfig:
    return RegistryConfig(use_case=UC, params=ModelParams(model=model, temperature=0.7))


def _promote(store: RegistryStore, config: RegistryConfig, expected: int) -> int:
    version = store.publish(UC, config, expected_version=expected, actor="t", reason="seed")
    store.approve(UC, version.version, actor="t", comment="ok")
    store.promote(UC, version.version, actor="t", comment="ok")
    return int(version.version)


def _outcome(**changes: Any) -> steps.UseCaseOutcome:
    base = steps.UseCaseOutcome(
        use_case=UC,
        as_of=dt.date(2026, 10, 21),
        run_key="night-2026-10-21",
        current_version=2,
        base_version=2,
        production_config_id="good",
        plan={"arms": [], "exploration_share": 0.0},
        proposed_config={},
        needs_approval=False,
        guardrails_passed=True,
        guardrails={},
        registry_action="rollback",
        rollback_to_version=1,
        headline="rollback to good: quality 0.52 vs baseline 0.70 (25% drop)",
        reasons=(),
        metrics={},
        strategies={},
        plots=(),
        evidence={},
    )
    return dataclasses.replace(base, **changes)


def test_rollback_repromotes_the_last_good_version_and_audits_why(settings: Settings) -> None:
    store = RegistryStore.from_settings(settings)
    try:
        good = _promote(store, _config("claude-sonnet-4-5"), 0)
        bad = _promote(store, _config("claude-haiku-4-5"), good)
        assert store.get(UC, "production").version == bad

        result = steps.publish_outcome(
            settings, _outcome(), approved_by="nightly-flow", comment="monitoring"
        )

        production = store.get(UC, "production")
        assert result["status"] == "rollback" and result["version"] == good
        assert production.version == good
        assert production.config.params.model == "claude-sonnet-4-5"
        last = store.history(UC)[-1]
        assert last.action == "rollback" and "25% drop" in last.reason
    finally:
        store.dispose()


def test_stale_plan_is_refused_rather_than_overwriting_a_newer_version(settings: Settings) -> None:
    import pytest

    from tasks.registry.store import StaleVersionError

    store = RegistryStore.from_settings(settings)
    try:
        first = _promote(store, _config("gpt-4o"), 0)
        _promote(store, _config("gpt-4o-mini"), first)  # someone published meanwhile
        outcome = _outcome(
            registry_action="publish",
            rollback_to_version=None,
            base_version=first,
            proposed_config=_config("claude-haiku-4-5").to_dict()
            | {"metadata": {"run_key": "night-2026-10-21"}},
        )
        with pytest.raises(StaleVersionError):
            steps.publish_outcome(settings, outcome, approved_by="t", comment="c")
        assert store.get(UC, "production").config.params.model == "gpt-4o-mini"
    finally:
        store.dispose()
