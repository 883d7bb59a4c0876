"""The approval path: publish a candidate, then approve it automatically or wait for a human.

The policy per use case lives in ``data/config/registry.toml``. ``approval = "auto"`` approves a
candidate when every guardrail passed *and* every required guardrail was evaluated (a guardrail
nobody computed is not a pass); a failure rejects it, naming the guardrails. ``approval = "human"``
leaves it as a candidate: the CLI (``llmopt registry approve|reject``) or the nightly flow's
pause-for-input decides. Either way the guardrail results are in the audit reason.

:func:`submit` is the one entry point the nightly flow calls per use case; it never raises for a
guardrail outcome, it returns a :class:`SubmissionResult` saying what happened and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings
from tasks.registry.model import ConfigState, ConfigValidationError, RegistryConfig
from tasks.registry.store import RegistryStore

__all__ = ["ApprovalPolicy", "SubmissionResult", "load_policies", "policy_for", "submit"]

Decision = Literal["auto_promoted", "auto_approved", "auto_rejected", "awaiting_human"]


@dataclass(frozen=True, kw_only=True)
class ApprovalPolicy:
    approval: Literal["auto", "human"] = "human"
    auto_promote: bool = False
    required_guardrails: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.approval not in {"auto", "human"}:
            raise ConfigError(f"approval must be 'auto' or 'human', got {self.approval!r}")
        if not isinstance(self.auto_promote, bool):
            raise ConfigError("auto_promote must be true or false")
        names = self.required_guardrails
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise ConfigError("required_guardrails must be a list of names")


@dataclass(frozen=True, kw_only=True)
class SubmissionResult:
    """What :func:`submit` did: the version written, its state now, the decision and why."""

    use_case: str
    version: int
    state: str
    decision: Decision
    policy: str
    failed_guardrails: tuple[str, ...]
    missing_guardrails: tuple[str, ...]
    reason: str


def _policy(raw: Mapping[str, Any], base: ApprovalPolicy, where: str) -> ApprovalPolicy:
    unknown = set(raw) - {"approval", "auto_promote", "required_guardrails"}
    if unknown:
        raise ConfigError(f"registry.toml [{where}]: unknown key(s) {sorted(unknown)}")
    required = raw.get("required_guardrails", list(base.required_guardrails))
    if not isinstance(required, list):
        raise ConfigError(f"registry.toml [{where}]: required_guardrails must be a list")
    return ApprovalPolicy(
        approval=raw.get("approval", base.approval),
        auto_promote=raw.get("auto_promote", base.auto_promote),
        required_guardrails=tuple(required),
    )


def load_policies(
    settings: Settings | None = None,
) -> tuple[ApprovalPolicy, dict[str, ApprovalPolicy]]:
    """``(defaults, per use case)`` from ``registry.toml``; a clear ConfigError if malformed."""
    raw = load_config("registry", settings)
    defaults = _policy(raw.get("defaults", {}), ApprovalPolicy(), "defaults")
    per_use_case = {
        name: _policy(section, defaults, f"use_cases.{name}")
        for name, section in raw.get("use_cases", {}).items()
    }
    return defaults, per_use_case


def policy_for(use_case: str, settings: Settings | None = None) -> ApprovalPolicy:
    defaults, per_use_case = load_policies(settings)
    return per_use_case.get(use_case, defaults)


def submit(
    store: RegistryStore,
    use_case: str,
    config: RegistryConfig,
    *,
    expected_version: int,
    actor: str,
    reason: str,
    guardrails: Mapping[str, bool],
    run_id: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    policy: ApprovalPolicy | None = None,
    settings: Settings | None = None,
) -> SubmissionResult:
    """Publish ``config`` as a candidate and apply the use case's approval policy.

    ``guardrails`` maps guardrail name -> passed. The guardrail outcome is also stored in the
    evidence (key ``guardrails``) so the registry alone explains every decision.
    """
    if not isinstance(guardrails, Mapping) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in guardrails.items()
    ):
        raise ConfigValidationError("guardrails must map guardrail names to true/false")
    policy = policy or policy_for(use_case, settings)
    failed = tuple(sorted(name for name, ok in guardrails.items() if not ok))
    missing = tuple(sorted(set(policy.required_guardrails) - set(guardrails)))
    full_evidence = {**dict(evidence or {}), "guardrails": dict(guardrails)}
    published = store.publish(
        use_case,
        config,
        expected_version=expected_version,
        actor=actor,
        reason=reason,
        run_id=run_id,
        evidence=full_evidence,
    )
    version = published.version
    summary = (
        f"failed={list(failed)} missing={list(missing)} passed={len(guardrails) - len(failed)}"
    )
    decision: Decision
    if policy.approval == "human":
        decision, state = "awaiting_human", ConfigState.CANDIDATE
        why = f"policy requires a human; guardrails {summary}"
    elif failed or missing:
        store.reject(use_case, version, actor="policy:auto", comment=f"guardrails {summary}")
        decision, state = "auto_rejected", ConfigState.REJECTED
        why = f"auto policy rejected: guardrails {summary}"
    else:
        store.approve(
            use_case, version, actor="policy:auto", comment=f"all guardrails passed ({summary})"
        )
        decision, state = "auto_approved", ConfigState.APPROVED
        why = "every guardrail passed"
        if policy.auto_promote:
            store.promote(
                use_case, version, actor="policy:auto", comment="auto_promote after approval"
            )
            decision, state = "auto_promoted", ConfigState.PRODUCTION
            why += "; promoted by policy"
    return SubmissionResult(
        use_case=use_case,
        version=version,
        state=state.value,
        decision=decision,
        policy=policy.approval,
        failed_guardrails=failed,
        missing_guardrails=missing,
        reason=why,
    )
