"""Approval and publishing: the approval policy per use case, the request a person reads, and the
registry write (or leaving a proposal as a candidate).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tasks.core.settings import Settings
from tasks.nightly.night import UseCaseOutcome, _store
from tasks.nightly.use_case import _jsonable
from tasks.registry.errors import FourEyesError

log = logging.getLogger(__name__)

PROPOSER = "nightly-flow"  # the registry's proposer of every nightly version

# --------------------------------------------------------------------------------------------
# approval and publishing
# --------------------------------------------------------------------------------------------


def approval_mode_for(settings: Settings, use_case: str) -> str:
    """``auto`` or ``human``, from the registry's per-use-case approval policy."""
    from tasks.registry.policy import policy_for

    return str(policy_for(use_case, settings).approval)


def approval_request_markdown(outcome: UseCaseOutcome) -> str:
    """What a person sees in the Prefect UI before approving a new configuration."""
    lines = [
        f"### Approve a new configuration for `{outcome.use_case}`?",
        "",
        f"Night {outcome.as_of}: {outcome.headline}",
        "",
        "| guardrail | passed |",
        "|---|---|",
        *[f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in outcome.guardrails.items()],
        "",
        "Reasons:",
        *[f"- {reason}" for reason in outcome.reasons],
    ]
    return "\n".join(lines)


def publish_outcome(
    settings: Settings,
    outcome: UseCaseOutcome,
    *,
    approved_by: str,
    comment: str,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write tonight's plan as the next version, approve it, make it production, snapshot it.

    A rollback re-promotes the earlier approved version the monitoring chose, with the reason in
    the audit trail. A stale ``current_version`` (someone published meanwhile) fails clearly.
    """
    store = _store(settings)
    try:
        kept = _already_published(store, outcome)
        if kept is not None:
            return kept
        if outcome.registry_action == "rollback" and outcome.rollback_to_version is not None:
            version = store.rollback(
                outcome.use_case,
                actor=approved_by,
                reason=outcome.headline,
                to_version=outcome.rollback_to_version,
            )
        else:
            version = _publish_proposal(
                store,
                outcome,
                actor=_proposer_for(approved_by),
                reason=outcome.headline,
                run_id=mlflow_run_id,
                evidence=outcome.evidence,
            )
            try:
                store.approve(outcome.use_case, version.version, actor=approved_by, comment=comment)
            except FourEyesError as refused:  # a new configuration under four eyes: a person
                return _left_for_a_person(store, outcome, int(version.version), refused)
            version = store.promote(
                outcome.use_case, version.version, actor=approved_by, comment=comment
            )
        snapshot = store.write_snapshot(outcome.use_case)
        return {
            "status": outcome.registry_action,
            "version": int(version.version),
            "state": version.state.value,
            "snapshot": str(snapshot),
            "approved_by": approved_by,
        }
    finally:
        store.dispose()


def _publish_proposal(
    store: Any,
    outcome: UseCaseOutcome,
    *,
    actor: str,
    reason: str,
    run_id: str | None,
    evidence: Mapping[str, Any] | None = None,
) -> Any:
    """Store tonight's proposed configuration as the next (candidate) version of its use case,
    with the night's reasons and guardrails (and ``evidence``) as the registry evidence."""
    from tasks.registry.model import RegistryConfig

    return store.publish(
        outcome.use_case,
        RegistryConfig.from_dict(outcome.proposed_config),
        expected_version=outcome.base_version,
        actor=actor,
        reason=reason,
        run_id=run_id,
        evidence=_jsonable(
            {"reasons": outcome.reasons, "guardrails": outcome.guardrails} | dict(evidence or {})
        ),
    )


def _proposer_for(approved_by: str) -> str:
    """Who proposes the version: the flow when a person approves it (four eyes: the approver
    must differ from the proposer); the automated approver itself otherwise."""
    from tasks.registry.policy import is_automated

    return approved_by if is_automated(approved_by) else PROPOSER


def _left_for_a_person(
    store: Any, outcome: UseCaseOutcome, version: int, refused: Exception
) -> dict[str, Any]:
    """Four eyes refused the flow's approval: the plan waits as a candidate for a person."""
    current = store.production_versions().get(outcome.use_case)
    message = (
        f"{refused}; v{version} waits as a candidate for `llmopt registry approve "
        f"{outcome.use_case} {version}`; "
        + (f"v{current} keeps serving" if current is not None else "no production yet")
    )
    log.warning("%s: %s", outcome.use_case, message)
    return {"status": "candidate", "version": version, "state": "candidate", "message": message}


def _already_published(store: Any, outcome: UseCaseOutcome) -> dict[str, Any] | None:
    """A re-run of a night that already published keeps that version (no second rollout step)."""
    from tasks.registry.store import NotFoundError

    try:
        current = store.get(outcome.use_case, "production")
    except NotFoundError:
        return None
    if dict(current.config.metadata or {}).get("run_key") != outcome.run_key:
        return None
    return {
        "status": "kept: this night was already published",
        "version": int(current.version),
        "state": current.state.value,
        "snapshot": str(store.snapshot_file(outcome.use_case)),
        "approved_by": current.created_by,
    }


def leave_as_candidate(
    settings: Settings, outcome: UseCaseOutcome, *, reason: str, mlflow_run_id: str | None = None
) -> dict[str, Any]:
    """Publish the proposal as a candidate only (awaiting ``llmopt registry approve``)."""
    store = _store(settings)
    try:
        version = _publish_proposal(
            store,
            outcome,
            actor=PROPOSER,
            reason=f"{outcome.headline} ({reason})",
            run_id=mlflow_run_id,
        )
        return {"status": "candidate", "version": int(version.version), "reason": reason}
    finally:
        store.dispose()


def record_rejection(
    settings: Settings,
    outcome: UseCaseOutcome,
    *,
    rejected_by: str,
    reason: str,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """A person said no: store the proposal, reject it in their name; production stays.

    The proposal is written as a candidate (proposed by ``nightly-flow``) and then rejected with
    the person's name and reason, so the registry audit shows who refused what and why. The
    current production version keeps serving; on a first night there is none, and the result
    says so.

    Args:
        settings: the resolved settings.
        outcome: tonight's decision for the use case.
        rejected_by: the person who rejected (recorded in the audit).
        reason: why (recorded in the audit).
        mlflow_run_id: the night's MLflow parent run, linked from the registry entry.

    Returns:
        ``status`` ``rejected``, the rejected ``version``, ``rejected_by``, ``reason``,
        ``production_version`` (None on a first night) and a one-line ``message``.
    """
    from tasks.registry.store import NotFoundError

    store = _store(settings)
    try:
        version = _publish_proposal(
            store, outcome, actor=PROPOSER, reason=outcome.headline, run_id=mlflow_run_id
        )
        store.reject(outcome.use_case, version.version, actor=rejected_by, comment=reason)
        try:
            production: int | None = int(store.get(outcome.use_case, "production").version)
        except NotFoundError:
            production = None
    finally:
        store.dispose()
    if production is None:
        message = (
            f"rejected by {rejected_by}: {outcome.use_case} has no production version yet "
            "(first night); nothing is published until a proposal is approved"
        )
    else:
        message = f"rejected by {rejected_by}: production v{production} keeps serving"
    return {
        "status": "rejected",
        "version": int(version.version),
        "rejected_by": rejected_by,
        "reason": reason,
        "production_version": production,
        "message": message,
    }
