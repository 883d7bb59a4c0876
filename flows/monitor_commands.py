"""``llmopt monitor``: drift / change / anomaly status of every use case, and the alerts.

Read-only by default (nothing stored, nobody notified): it shows what tonight's run would say.
``--record`` stores the alerts and sends the notifications, as the nightly flow does. Alerts that
another run of the same night (the nightly flow) already raised are listed as that night's alerts,
naming the run, not as suppressed.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from flows.cli_support import CommandError, add_json_flag, emit, guarded


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="drift, change points, anomalies and degradation rules per use case",
        description=__doc__,
    )
    parser.add_argument("--as-of", help="UTC day to judge (YYYY-MM-DD; default: latest day)")
    parser.add_argument("--use-case", action="append", help="only this use case (repeatable)")
    parser.add_argument("--plot-dir", help="write one PNG per use case with the series")
    parser.add_argument("--run-id", help="run id when recording (default monitor-<as-of>)")
    parser.add_argument(
        "--record", action="store_true", help="store alerts in the warehouse and notify"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=guarded(_monitor))


def _human(payload: dict[str, Any]) -> str:
    lines = [f"monitoring as of {payload['as_of']} (run {payload['run_id']})"]
    for uc in payload["use_cases"]:
        lines.append(f"\n{uc['use_case']}: {uc['status'].upper()}  production={uc['production']}")
        drift = ", ".join(
            f"{d['feature']} PSI={d['psi']:.3f} ({d['psi_band']})" if d["psi"] is not None
            else f"{d['feature']} n/a"
            for d in uc["drift"]
        )  # fmt: skip
        lines.append(f"  drift: {drift or 'none analysed'}")
        if uc["drifted"]:
            lines.append(f"  DRIFT in: {', '.join(uc['drifted'])}")
        for s in uc["changes"]:
            lines.append(f"  change: {s}")
        for a in uc["anomalies"]:
            lines.append(f"  anomaly: {a}")
        for r in uc["rules_fired"]:
            lines.append(f"  rule fired: {r}")
        for a in uc["alerts"]:
            by = f" (raised by run {a['raised_by']})" if a.get("raised_by") else ""
            lines.append(f"  ALERT [{a['severity']}] {a['message']}{by}")
        for s in uc["suppressed"]:
            lines.append(f"  (suppressed) {s}")
        if uc["action"]:
            lines.append(f"  ACTION {uc['action']['kind']}: {uc['action']['reason']}")
        for n in uc["notes"]:
            lines.append(f"  note: {n}")
    if payload.get("plots"):
        lines.append("\nplots: " + ", ".join(payload["plots"]))
    return "\n".join(lines)


def _monitor(args: argparse.Namespace) -> int:
    # lazy: `llmopt --help` and the other commands must not import DuckDB and the monitoring
    from flows.cli_support import to_jsonable
    from tasks.core.settings import load_settings
    from tasks.monitoring import load_monitoring_config, plot_monitoring, run_monitoring
    from tasks.warehouse.connection import open_existing
    from tasks.warehouse.queries import latest_day

    settings = load_settings()
    try:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError as exc:
        raise CommandError(f"--as-of: {exc}") from exc
    config = load_monitoring_config(settings)  # a ConfigError is printed as one line
    con = open_existing(settings)
    try:
        as_of = as_of or latest_day(con)
        if as_of is None:
            raise CommandError("the warehouse has no usage logs yet")
        report = run_monitoring(
            con,
            settings,
            as_of=as_of,
            run_id=args.run_id,
            config=config,
            use_cases=args.use_case,
            record=args.record,
        )
    finally:
        con.close()
    plots = [str(p) for p in plot_monitoring(report, args.plot_dir)] if args.plot_dir else []
    payload: dict[str, Any] = {
        "run_id": report.run_id,
        "as_of": report.as_of.isoformat(),
        "recorded": bool(args.record),
        "alerts_stored": report.alerts_stored,
        "notified": list(report.notified),
        "plots": plots,
        "use_cases": [
            {
                "use_case": uc.use_case,
                "status": uc.status,
                "production": uc.production_config_id,
                "drifted": list(uc.drifted_fields),
                "drift": to_jsonable(list(uc.drift)),
                "changes": [
                    f"{s.metric} ({s.granularity}) at {', '.join(s.change_points)}"
                    for s in uc.series
                    if s.change_points
                ],
                "anomalies": [
                    f"{a.metric} on {a.period}: {a.value:.4g} ({'+'.join(a.methods)})"
                    for s in uc.series
                    for a in s.anomalies
                ],
                "rules_fired": [r.reason for r in uc.rules if r.fired],
                "rules": to_jsonable(list(uc.rules)),
                "alerts": [
                    to_jsonable(alert) | {"raised_by": run_id} for alert, run_id in uc.night_alerts
                ],
                "suppressed": [
                    f"{s.alert.incident_key}: {s.reason}"
                    for s in uc.suppressed
                    if s.kind != "raised_tonight"
                ],
                "action": to_jsonable(uc.action),
                "notes": list(uc.notes),
            }
            for uc in report.use_cases
        ],
    }
    emit(payload, as_json=args.json, human=_human)
    return 0


__all__ = ["register"]
