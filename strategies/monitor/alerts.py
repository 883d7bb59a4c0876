"""Alerts and their de-duplication: one alert per incident, however many nights it lasts.

An incident (``use_case|kind|name``) stays *open* while it keeps being seen; a repeat within
``cooldown_days`` nights is suppressed with the reason, and an alert another run of the same night
already raised (the nightly flow, when ``llmopt monitor`` looks afterwards) is that run's alert of
the night, not an open incident.

Example:
    >>> import datetime as dt
    >>> a = AlertCandidate(incident_key="qa-bot|drift", use_case="qa-bot", kind="drift",
    ...                    name="drift", severity="warning", message="qa-bot: drift")
    >>> new, held = deduplicate([a, a], [], as_of=dt.date(2026, 11, 3), cooldown_days=7)
    >>> [x.incident_key for x in new], [h.kind for h in held]
    (['qa-bot|drift'], ['duplicate'])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class AlertCandidate:
    """Something worth telling a human; ``incident_key`` groups repeats of one incident."""

    incident_key: str
    use_case: str
    kind: Literal["rule", "drift", "change", "anomaly"]
    name: str
    severity: Literal["info", "warning", "critical"]
    message: str
    details: Mapping[str, float | str | int | bool | None] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PastAlert:
    """An incident seen by a run; ``raised`` is False when that run suppressed it.

    Args:
        incident_key: ``use_case|kind|name``, what de-duplication groups by.
        as_of: the night the run judged.
        raised: whether that run raised (stored and notified) the alert.
        run_id: the run that saw it (``None`` when unknown).
    """

    incident_key: str
    as_of: dt.date
    raised: bool = True
    run_id: str | None = None


SuppressedKind = Literal["duplicate", "open_incident", "raised_tonight"]


@dataclass(frozen=True, kw_only=True)
class Suppressed:
    """An alert not raised again, and why.

    ``kind``: ``duplicate`` (twice in one run), ``open_incident`` (seen on a night before and
    still within the cooldown) or ``raised_tonight`` (another run of the same night, e.g. the
    nightly flow, already raised it: it is tonight's alert, just not notified twice).
    """

    alert: AlertCandidate
    reason: str
    kind: SuppressedKind = "open_incident"
    run_id: str | None = None


def _history_index(
    history: Sequence[PastAlert], as_of: dt.date
) -> tuple[dict[str, dt.date], dict[str, dt.date], dict[str, str]]:
    """Last night seen and last night raised before ``as_of``; the run that raised it tonight."""
    last_seen: dict[str, dt.date] = {}
    last_raised: dict[str, dt.date] = {}
    tonight: dict[str, str] = {}
    for past in history:
        key = past.incident_key
        if past.as_of == as_of:
            if past.raised:
                tonight.setdefault(key, past.run_id or "another run")
            continue
        if past.as_of > as_of:
            continue
        if key not in last_seen or past.as_of > last_seen[key]:
            last_seen[key] = past.as_of
        if past.raised and (key not in last_raised or past.as_of > last_raised[key]):
            last_raised[key] = past.as_of
    return last_seen, last_raised, tonight


def deduplicate(
    candidates: Sequence[AlertCandidate],
    history: Sequence[PastAlert],
    *,
    as_of: dt.date,
    cooldown_days: int,
) -> tuple[list[AlertCandidate], list[Suppressed]]:
    """Keep one alert per incident: drop repeats within the batch and while the incident is open.

    An incident stays open while it keeps being seen: it is suppressed when it was seen (raised
    or suppressed) on any of the ``cooldown_days`` nights before ``as_of``. A drift that lasts
    three weeks is one alert; the same drift coming back after ``cooldown_days`` quiet nights is
    a new one. An alert another run raised for the same night ``as_of`` (the nightly flow, when
    ``llmopt monitor`` looks at that night afterwards) is tonight's alert: it comes back as
    ``raised_tonight`` naming that run, not as an open incident. The caller leaves its own run
    out of ``history`` (re-running a night re-raises its alerts).

    Args:
        candidates: tonight's alerts, in order.
        history: incidents seen by runs of this and earlier nights.
        as_of: the night judged.
        cooldown_days: quiet nights after which an incident is new again.

    Returns:
        ``(new, suppressed)``: the alerts to raise and the others with their reason.

    Raises:
        ValueError: ``cooldown_days < 0``.

    Example:
        >>> drift = AlertCandidate(incident_key="qa-bot|drift", use_case="qa-bot", kind="drift",
        ...                        name="drift", severity="warning", message="qa-bot: drift")
        >>> night = dt.date(2026, 11, 3)
        >>> earlier = [PastAlert(incident_key="qa-bot|drift", as_of=dt.date(2026, 11, 1))]
        >>> new, held = deduplicate([drift], earlier, as_of=night, cooldown_days=7)
        >>> len(new), held[0].kind
        (0, 'open_incident')
        >>> nightly = [PastAlert(incident_key="qa-bot|drift", as_of=night, run_id="nightly-1")]
        >>> new, held = deduplicate([drift], nightly, as_of=night, cooldown_days=7)
        >>> held[0].kind, held[0].run_id
        ('raised_tonight', 'nightly-1')
    """
    if cooldown_days < 0:
        raise ValueError("cooldown_days must be >= 0")
    last_seen, last_raised, tonight = _history_index(history, as_of)
    new: list[AlertCandidate] = []
    suppressed: list[Suppressed] = []
    seen: set[str] = set()
    for alert in candidates:
        key = alert.incident_key
        if key in seen:
            suppressed.append(
                Suppressed(alert=alert, reason="duplicate in this run", kind="duplicate")
            )
            continue
        seen.add(key)
        if key in tonight:
            suppressed.append(
                Suppressed(
                    alert=alert,
                    reason=f"raised tonight by run {tonight[key]}",
                    kind="raised_tonight",
                    run_id=tonight[key],
                )
            )
            continue
        last = last_seen.get(key)
        if last is not None and (as_of - last).days <= cooldown_days:
            raised = last_raised.get(key)
            since = f"raised on {raised.isoformat()}, " if raised else ""
            suppressed.append(
                Suppressed(
                    alert=alert,
                    reason=f"incident open ({since}last seen {last.isoformat()}; "
                    f"cooldown {cooldown_days} days)",
                )
            )
            continue
        new.append(alert)
    return new, suppressed


__all__ = [
    "AlertCandidate",
    "PastAlert",
    "Suppressed",
    "SuppressedKind",
    "deduplicate",
]
