"""Approval policy: auto-approve only when every required guardrail passed, else a human."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tasks.core.config import ConfigError
from tasks.core.settings import Settings
from tasks.registry.model import ConfigValidationError
from tasks.registry.policy import ApprovalPolicy, load_policies, policy_for, submit
from tasks.registry.store import RegistryStore

ALL_PASS = {g: True for g in ("srm", "quality", "error_rate", "latency_p95", "cost_per_request")}


def _nightly_try(
    store: RegistryStore,
    make_config: Any,
    use_case: str,
    *,
    expected_version: int = 0,
    **kwargs: Any,
) -> Any:
    """Submit what the nightly flow proposes for ``use_case``: a fresh config, reason "try"."""
    return submit(
        store,
        use_case,
        make_config(use_case),
        expected_version=expected_version,
        actor="nightly",
        reason="try",
        **kwargs,
    )


def test_repository_policy_file_loads(settings: Settings) -> None:
    defaults, per_use_case = load_policies(settings)
    assert defaults.approval == "human"
    assert set(defaults.required_guardrails) == set(ALL_PASS)
    assert per_use_case["support-summarize"].approval == "auto"
    assert per_use_case["support-summarize"].required_guardrails == defaults.required_guardrails
    assert policy_for("sales-email", settings).approval == "human"
    assert policy_for("not-listed", settings) == defaults


def test_auto_policy_promotes_when_all_guardrails_pass(
    sqlite_store: RegistryStore, make_config: Any, settings: Settings
) -> None:
    result = submit(
        sqlite_store,
        "support-summarize",
        make_config(),
        expected_version=0,
        actor="nightly",
        reason="winner",
        guardrails=ALL_PASS,
        run_id="run-1",
        evidence={"lift": 0.02},
        settings=settings,
    )
    assert (result.decision, result.state, result.version) == ("auto_promoted", "production", 1)
    stored = sqlite_store.get("support-summarize")
    assert stored.evidence == {"lift": 0.02, "guardrails": ALL_PASS}
    assert [e.actor for e in sqlite_store.history("support-summarize")][1:] == ["policy:auto"] * 2


@pytest.mark.parametrize(
    ("guardrails", "failed", "missing"),
    [
        ({**ALL_PASS, "latency_p95": False}, ("latency_p95",), ()),
        ({k: v for k, v in ALL_PASS.items() if k != "srm"}, (), ("srm",)),
    ],
)
def test_auto_policy_rejects_failed_or_missing_guardrails(
    sqlite_store: RegistryStore,
    make_config: Any,
    settings: Settings,
    *,
    guardrails: dict[str, bool],
    failed: tuple[str, ...],
    missing: tuple[str, ...],
) -> None:
    result = _nightly_try(
        sqlite_store,
        make_config,
        "ticket-classify",
        guardrails=guardrails,
        settings=settings,
    )
    assert (result.decision, result.state) == ("auto_rejected", "rejected")
    assert (result.failed_guardrails, result.missing_guardrails) == (failed, missing)
    assert (failed or missing)[0] in sqlite_store.history("ticket-classify")[-1].reason


def test_human_policy_leaves_a_candidate(
    sqlite_store: RegistryStore, make_config: Any, settings: Settings
) -> None:
    result = _nightly_try(
        sqlite_store,
        make_config,
        "sales-email",
        guardrails=ALL_PASS,
        settings=settings,
    )
    assert (result.decision, result.state) == ("awaiting_human", "candidate")
    assert sqlite_store.get("sales-email", "candidate").version == 1
    with pytest.raises(ConfigValidationError, match="guardrails"):
        _nightly_try(
            sqlite_store,
            make_config,
            "sales-email",
            expected_version=1,
            guardrails={"srm": "yes"},
            policy=ApprovalPolicy(),
        )
    assert sqlite_store.latest_version("sales-email") == 1


@pytest.mark.parametrize(
    "text",
    [
        '[defaults]\napproval = "sometimes"\n',
        '[defaults]\nauto_promote = "yes"\n',
        '[use_cases.x]\napprovl = "auto"\n',
        '[defaults]\nrequired_guardrails = "srm"\n',
        "[defaults\n",
    ],
)
def test_malformed_policy_file_is_a_clear_error(
    settings: Settings, tmp_path: Path, text: str
) -> None:
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    (config_dir / "registry.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_policies(dataclasses.replace(settings, config_dir=config_dir))
