"""The approval path: publish a candidate, then approve it automatically or wait for a human.

The policy per use case lives in ``data/config/registry.toml``. ``approval = "auto"`` approves a
candidate when every guardrail passed *and* every required guardrail was evaluated (a guardrail
nobody computed is not a pass); a failure rejects it, naming the guardrails. ``approval = "human"``
leaves it as a candidate: the CLI (``llmopt registry approve|reject``) or the nightly flow's
pause-for-input decides. Either way the guardrail results are in the audit reason.
``four_eyes = true`` (only with ``approval = "human"``) makes the store refuse an approval by the
principal who proposed the version or by an automated principal (:data:`AUTOMATED_PRINCIPALS`).

:func:`submit` is the one entry point the nightly flow calls per use case; it never raises for a
guardrail outcome, it returns a :class:`SubmissionResult` saying what happened and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings
from tasks.registry.model import ConfigState, ConfigValidationError, RegistryConfig

if TYPE_CHECKING:  # the store imports this module for its policy book
    from tasks.registry.store import RegistryStore

__all__ = [
    "AUTOMATED_PRINCIPALS",
    "ApprovalPolicy",
    "PolicyBook",
    "SubmissionResult",
    "is_automated",
    "load_policies",
    "policy_for",
    "submit",
]

AUTOMATED_PRINCIPALS = frozenset({"nightly-flow", "auto-approval", "policy:auto"})


def is_automated(principal: str) -> bool:
    """True for the principals machines act as (the nightly flow, the auto policy).

    Args:
        principal: an actor name as recorded in the audit.

    Returns:
        Whether a four-eyes policy refuses this principal as an approver.
    """
    return principal in AUTOMATED_PRINCIPALS or principal.startswith(("policy:", "service:"))


Decision = Literal["auto_promoted", "auto_approved", "auto_rejected", "awaiting_human"]


@dataclass(frozen=True, kw_only=True)
class ApprovalPolicy:
    approval: Literal["auto", "human"] = "human"
    auto_promote: bool = False
    required_guardrails: tuple[str, ...] = ()
    four_eyes: bool = False

    def __post_init__(self) -> None:
        if self.approval not in {"auto", "human"}:
            raise ConfigError(f"approval must be 'auto' or 'human', got {self.approval!r}")
        if not isinstance(self.auto_promote, bool):
            raise ConfigError("auto_promote must be true or false")
        names = self.required_guardrails
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise ConfigError("required_guardrails must be a list of names")
        if not isinstance(self.four_eyes, bool):
            raise ConfigError("four_eyes must be true or false")
        if self.four_eyes and self.approval != "human":
            raise ConfigError(
                'four_eyes = true needs approval = "human" (a policy is not a person)'
            )


@dataclass(frozen=True, kw_only=True)
class PolicyBook:
    """The approval policy of every use case: per-use-case sections over the defaults."""

    defaults: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    per_use_case: Mapping[str, ApprovalPolicy] = field(default_factory=dict)

    def for_use_case(self, use_case: str) -> ApprovalPolicy:
        """The policy of ``use_case``.

        Args:
            use_case: the use-case name.

        Returns:
            Its own section if ``registry.toml`` has one, else the defaults.
        """
        return self.per_use_case.get(use_case, self.defaults)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PolicyBook:
        """Read ``registry.toml`` once.

        Args:
            settings: where the configuration lives (default: the environment's).

        Returns:
            The policy book; a one-line ConfigError if the file is malformed.
        """
        defaults, per_use_case = load_policies(settings)
        return cls(defaults=defaults, per_use_case=per_use_case)


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
    unknown = set(raw) - {"approval", "auto_promote", "required_guardrails", "four_eyes"}
    if unknown:
        raise ConfigError(f"registry.toml [{where}]: unknown key(s) {sorted(unknown)}")
    required = raw.get("required_guardrails", list(base.required_guardrails))
    if not isinstance(required, list):
        raise ConfigError(f"registry.toml [{where}]: required_guardrails must be a list")
    return ApprovalPolicy(
        approval=raw.get("approval", base.approval),
        auto_promote=raw.get("auto_promote", base.auto_promote),
        required_guardrails=tuple(required),
        # an "auto" section does not inherit four eyes from the defaults (it could never pass)
        four_eyes=raw.get(
            "four_eyes", base.four_eyes and raw.get("approval", base.approval) == "human"
        ),
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
    """The approval policy of one use case.

    Args:
        use_case: the use-case name.
        settings: where ``registry.toml`` is read from.

    Returns:
        Its section of ``registry.toml``, else the defaults.
    """
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
