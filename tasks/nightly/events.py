"""Prefect events for what operators act on: alerts raised, configurations published or rejected.

Events go to the Prefect server's event stream (``prefect.events.emit_event``), where Prefect
automations can match them and notify, pause a deployment or start another flow. An example
automation lives in ``deployments/automations/alert-raised.yaml``. Outside a Prefect server (a
plain ``llmopt nightly run`` on a temporary server still has one) ``emit_event`` does nothing.
Emitted from a flow run, Prefect relates each event to that flow run, its flow and deployment.

Event names (resource ``llmopt.use-case.<name>``, related to the nightly run's resource):

* ``llmopt.alert.raised``: one per new monitoring alert (payload: kind, name, severity, message;
  label ``llmopt.severity``)
* ``llmopt.config.published``: a new production version (payload: version, approved_by, status)
* ``llmopt.config.rejected``: a person rejected tonight's proposal (payload: by, reason)
* ``llmopt.config.pending``: a proposal left as a candidate for a person to approve
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prefect.events import emit_event

log = logging.getLogger(__name__)

ALERT_RAISED = "llmopt.alert.raised"
CONFIG_PUBLISHED = "llmopt.config.published"
CONFIG_REJECTED = "llmopt.config.rejected"
CONFIG_PENDING = "llmopt.config.pending"


def use_case_resource(use_case: str, as_of: str, **labels: str) -> dict[str, str]:
    """The Prefect resource an event is about: one use case, with labels automations match on.

    Args:
        use_case: the use case name.
        as_of: the night (ISO date).
        **labels: extra labels, each stored as ``llmopt.<name>`` (e.g. ``severity``).

    Returns:
        A resource dict with ``prefect.resource.id`` ``llmopt.use-case.<use_case>``.
    """
    return {
        "prefect.resource.id": f"llmopt.use-case.{use_case}",
        "prefect.resource.name": use_case,
        "llmopt.use_case": use_case,
        "llmopt.night": as_of,
        **{f"llmopt.{name}": str(value) for name, value in labels.items()},
    }


def emit(event: str, use_case: str, as_of: str, payload: Mapping[str, Any], **labels: str) -> bool:
    """Emit one event; a failure to emit is logged, never fails the night.

    Args:
        event: the event name (one of the module constants).
        use_case: the use case the event is about.
        as_of: the night (ISO date).
        payload: JSON-friendly details.
        **labels: extra resource labels (``llmopt.<name>``) for automations to match.

    Returns:
        True when Prefect accepted the event for sending.
    """
    try:
        resource = use_case_resource(use_case, as_of, **labels)
        sent = emit_event(event=event, resource=resource, payload=dict(payload))
    except Exception as exc:  # events are a notification channel: never fatal
        log.warning("could not emit %s for %s: %s", event, use_case, exc)
        return False
    return sent is not None


def alerts_of(strategies: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The new monitoring alerts in a use case's (JSON-friendly) strategy results.

    Args:
        strategies: ``UseCaseOutcome.strategies``.

    Returns:
        The alerts as dicts (``kind``, ``name``, ``severity``, ``message``, ...), maybe empty.
    """
    report = strategies.get("monitoring") or {}
    if not isinstance(report, Mapping):
        return []
    alerts: list[dict[str, Any]] = []
    for use_case in report.get("use_cases") or []:
        alerts.extend(dict(a) for a in (use_case.get("alerts") or []) if isinstance(a, Mapping))
    return alerts


def emit_alerts(use_case: str, as_of: str, alerts: Iterable[Mapping[str, Any]]) -> int:
    """Emit ``llmopt.alert.raised`` for each alert; returns how many were sent."""
    keys = ("kind", "name", "severity", "message", "incident_key")
    return sum(
        emit(
            ALERT_RAISED,
            use_case,
            as_of,
            {k: alert.get(k) for k in keys},
            severity=str(alert.get("severity") or "warning"),
        )
        for alert in alerts
    )


def decision_event(status: str) -> str | None:
    """The event name for a publish step's ``status`` (None: not a decision worth an event).

    Args:
        status: ``publish`` / ``rollback`` (published), ``rejected``, ``candidate`` (pending).

    Returns:
        The event name, or None (dry run, a night already published).
    """
    if status in ("publish", "rollback"):
        return CONFIG_PUBLISHED
    if status == "rejected":
        return CONFIG_REJECTED
    if status == "candidate":
        return CONFIG_PENDING
    return None


def emit_decision(use_case: str, as_of: str, result: Mapping[str, Any]) -> str | None:
    """Emit the event matching a publish result (published, rejected, pending); its name.

    Args:
        use_case: the use case.
        as_of: the night (ISO date).
        result: what the publish step returned (``status``, ``version``, ``approved_by`` /
            ``rejected_by``, ``reason``).

    Returns:
        The event name emitted, or None for results that are not a decision (dry run, kept).
    """
    status = str(result.get("status", ""))
    event = decision_event(status)
    if event is None:
        return None
    emit(
        event,
        use_case,
        as_of,
        {k: v for k, v in result.items() if k != "snapshot"},
        status=status,
    )
    return event


__all__ = [
    "ALERT_RAISED",
    "CONFIG_PENDING",
    "CONFIG_PUBLISHED",
    "CONFIG_REJECTED",
    "alerts_of",
    "decision_event",
    "emit",
    "emit_alerts",
    "emit_decision",
    "use_case_resource",
]
