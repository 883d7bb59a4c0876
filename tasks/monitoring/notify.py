"""Telling people: every alert to the log, the important ones through Apprise, and the lines the
printed summaries (``llmopt monitor``, ``llmopt nightly run``) show for each alert."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apprise

from strategies.monitor.degradation import AlertCandidate
from strategies.monitor.report import MonitoringReport, UseCaseReport
from strategies.monitor.settings import SEVERITY_RANK, NotifierConfig

LOG = logging.getLogger("llmopt.monitoring")


def alert_lines(report: MonitoringReport | UseCaseReport) -> list[str]:
    """One line per alert of the night, those another run already raised included.

    Args:
        report: a run's report or one use case's.

    Returns:
        Lines such as ``[critical] claims-triage: cost per request ... (raised by run nightly-x)``.
    """
    use_cases = report.use_cases if isinstance(report, MonitoringReport) else (report,)
    lines = []
    for uc in use_cases:
        for alert, run_id in uc.night_alerts:
            by = f" (raised by run {run_id})" if run_id else ""
            lines.append(f"[{alert.severity}] {alert.message}{by}")
    return lines


def _send(alerts: Sequence[AlertCandidate], notifier: NotifierConfig) -> str:
    sender = apprise.Apprise()
    for url in notifier.urls:
        if not sender.add(url):
            LOG.error("notifier: unusable Apprise URL %s", url.split("://", 1)[0] + "://...")
    by_use_case: dict[str, list[AlertCandidate]] = {}
    for alert in alerts:
        by_use_case.setdefault(alert.use_case, []).append(alert)
    ok = True
    for use_case, items in by_use_case.items():
        worst = max(items, key=lambda a: SEVERITY_RANK[a.severity]).severity
        title = f"{notifier.title_prefix} {worst}: {use_case} ({len(items)} alert(s))"
        body = "\n".join(f"- [{a.severity}] {a.message}" for a in items)
        notify_type = (
            apprise.NotifyType.FAILURE if worst == "critical" else apprise.NotifyType.WARNING
        )
        ok = bool(sender.notify(title=title, body=body, notify_type=notify_type)) and ok
    if not ok:
        LOG.error("notifier: Apprise delivery failed for at least one alert")
    return f"apprise:{len(sender)}" if ok else "apprise-failed"


def notify(alerts: Sequence[AlertCandidate], notifier: NotifierConfig) -> tuple[str, ...]:
    """Log every alert; send those at or above ``min_severity`` through Apprise.

    One message per use case. A failed delivery is logged and reported as ``apprise-failed``
    (the alert is still stored), never raised mid-run.

    Args:
        alerts: the alerts raised by this run.
        notifier: Apprise URLs, severity floor, title prefix.

    Returns:
        The channels used (``log``, ``apprise:<n>`` or ``apprise-failed``).
    """
    channels = ["log"]
    for alert in alerts:
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        LOG.log(level, "%s alert %s: %s", alert.severity, alert.incident_key, alert.message)
    floor = SEVERITY_RANK[notifier.min_severity]
    selected = [a for a in alerts if SEVERITY_RANK[a.severity] >= floor]
    if notifier.urls and selected:
        channels.append(_send(selected, notifier))
    return tuple(channels)


__all__ = ["LOG", "alert_lines", "notify"]
