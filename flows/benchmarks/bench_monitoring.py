"""Monitoring figures: false alarms, detection delays and the cost of a nightly pass.

``python -m flows.benchmarks.bench_monitoring [--quick]`` prints markdown tables and writes
``data/benchmarks/monitoring.json``:

1. **False alarms of the change detectors, run the nightly way**: stationary months of the four
   daily metrics; every night the last 28 days are standardised on their first 14 and an alarm
   is a two-detector consensus change in the last 3 days. Reported per metric-month and per use
   case-month (any of the four metrics).
2. **Full pipeline on stationary simulated worlds** (no drift, no spike, several seeds): alerts
   per use case-month from ``run_monitoring`` night by night (rules, drift, change; anomalies are
   reported only).
3. **Detection delay on the default world**: nights from the injected event to the first alert.
4. **Timings**: one ``run_monitoring`` night beside a bare DuckDB pass computing the same daily
   aggregates, with peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from typing import Any

import duckdb
import numpy as np

from tasks.settings import REPO_ROOT


def _warehouse(spec: Any) -> duckdb.DuckDBPyConnection:
    from tasks.monitoring import apply_monitoring_schema
    from tasks.simulator import load_simulated, simulate
    from tasks.warehouse import apply_schema

    con = duckdb.connect()
    apply_schema(con)
    apply_monitoring_schema(con)
    load_simulated(con, simulate(spec), label="bench")
    return con


def detector_false_alarms(months: int, seed: int = 2026) -> dict[str, Any]:
    from tasks.monitoring import MonitoringConfig, analyse_series

    config = MonitoringConfig()
    rng = np.random.default_rng(seed)
    metric_alarms = 0
    use_case_alarms = 0
    anomaly_metric_months = 0
    for _ in range(months):
        any_metric = False
        for _metric in range(4):
            x = rng.normal(0.0, 1.0, 30)
            alarm = anomaly = False
            for t in range(14, 30):
                window = x[max(0, t - config.series_days + 1) : t + 1]
                periods = [str(i) for i in range(t + 1 - window.size, t + 1)]
                result = analyse_series("m", periods, window, config)
                alarm |= bool(result.recent_change_points)
                anomaly |= any(a.period == periods[-1] for a in result.anomalies)
            metric_alarms += alarm
            anomaly_metric_months += anomaly
            any_metric |= alarm
        use_case_alarms += any_metric
    return {
        "months": months,
        "change_false_alarms_per_metric_month": metric_alarms / (4 * months),
        "change_false_alarms_per_use_case_month": use_case_alarms / months,
        "anomaly_flags_per_metric_month": anomaly_metric_months / (4 * months),
    }


def pipeline_false_alarms(seeds: int, rows_per_day: int) -> dict[str, Any]:
    from tasks.monitoring import load_monitoring_config, run_monitoring
    from tasks.simulator import SimulationSpec
    from tasks.simulator_world import USE_CASES

    config = load_monitoring_config(None)
    months = 0
    alarmed: dict[str, int] = dict.fromkeys(USE_CASES, 0)
    kinds: dict[str, int] = {}
    for seed in range(seeds):
        spec = SimulationSpec(
            seed=100 + seed,
            drift=False,
            cost_spike=False,
            include_cost=True,
            requests_per_day=dict.fromkeys(USE_CASES, rows_per_day),
        )
        con = _warehouse(spec)
        hit: set[str] = set()
        for night in range(14, spec.days):
            report = run_monitoring(con, as_of=spec.day(night), config=config)
            for alert in report.alerts:
                hit.add(alert.use_case)
                kinds[alert.kind] = kinds.get(alert.kind, 0) + 1
        con.close()
        months += 1
        for name in hit:
            alarmed[name] += 1
    return {
        "seeds": seeds,
        "rows_per_day_per_use_case": rows_per_day,
        "use_case_months": months * len(alarmed),
        "false_alarm_rate_per_use_case_month": sum(alarmed.values()) / (months * len(alarmed)),
        "by_use_case": {k: v / months for k, v in alarmed.items()},
        "alerts_by_kind": kinds,
    }


def detection_delays(rows_per_day: int) -> dict[str, Any]:
    from tasks.monitoring import load_monitoring_config, run_monitoring
    from tasks.simulator import SimulationSpec, ground_truth
    from tasks.simulator_world import USE_CASES

    spec = SimulationSpec(
        include_cost=True, requests_per_day=dict.fromkeys(USE_CASES, rows_per_day)
    )
    truth = ground_truth(spec)
    con = _warehouse(spec)
    config = load_monitoring_config(None)
    first: dict[tuple[str, str], dt.date] = {}
    timings = []
    for night in range(14, spec.days):
        started = time.perf_counter()
        report = run_monitoring(con, as_of=spec.day(night), config=config)
        timings.append(time.perf_counter() - started)
        for alert in report.alerts:
            first.setdefault((alert.use_case, alert.kind), report.as_of)
    assert truth.drift is not None and truth.cost_spike is not None
    drift_day = dt.date.fromisoformat(truth.drift.start_date)
    spike_day = dt.date.fromisoformat(truth.cost_spike.date)
    events = {
        "sales-email drift (quality -25%, input +40%)": ("sales-email", drift_day),
        "code-review cost spike (output x3)": ("code-review", spike_day),
    }
    delays = {}
    for label, (use_case, day) in events.items():
        delays[label] = {
            kind: (first[(use_case, kind)] - day).days if (use_case, kind) in first else None
            for kind in ("rule", "drift", "change")
        }
    # bare baseline: the same daily aggregates in one DuckDB pass, nothing else
    started = time.perf_counter()
    con.execute(
        """
        SELECT use_case, day, avg(quality), avg((status = 'success')::INT), avg(cost_usd),
               quantile_cont(latency_ms, 0.95), count(*)
        FROM usage_logs GROUP BY ALL
        """
    ).fetchall()
    bare = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM usage_logs").fetchone()
    con.close()
    return {
        "delays_nights": delays,
        "rows": int(rows[0]) if rows else 0,
        "run_monitoring_seconds_per_night_median": float(np.median(timings)),
        "bare_duckdb_daily_aggregates_seconds": bare,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = parser.parse_args(argv)
    months = 100 if args.quick else 500
    seeds = 2 if args.quick else 5
    rows = 300 if args.quick else 1000
    started = time.perf_counter()
    result: dict[str, Any] = {
        "quick": args.quick,
        "detectors": detector_false_alarms(months),
        "pipeline": pipeline_false_alarms(seeds, rows),
        "delays": detection_delays(rows),
    }
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["total_seconds"] = time.perf_counter() - started
    d, p, dl = result["detectors"], result["pipeline"], result["delays"]
    print("| false alarms (stationary) | rate |")
    print("|---|---|")
    print(
        f"| change detectors, per metric-month ({d['months']} months) | "
        f"{d['change_false_alarms_per_metric_month']:.2%} |"
    )
    print(
        f"| change detectors, per use case-month (4 metrics) | "
        f"{d['change_false_alarms_per_use_case_month']:.2%} |"
    )
    print(
        f"| anomaly flags (reported, not alerted), per metric-month | "
        f"{d['anomaly_flags_per_metric_month']:.2%} |"
    )
    print(
        f"| full pipeline, per use case-month ({p['use_case_months']} use case-months) | "
        f"{p['false_alarm_rate_per_use_case_month']:.2%} |"
    )
    print()
    print("| injected event | rule alert delay | drift alert delay | change alert delay |")
    print("|---|---|---|---|")
    for label, kinds in dl["delays_nights"].items():
        print(f"| {label} | {kinds['rule']} | {kinds['drift']} | {kinds['change']} |")
    print()
    print("| timing | seconds |")
    print("|---|---|")
    print(
        f"| run_monitoring, one night, 4 use cases, {dl['rows']} rows (median) | "
        f"{dl['run_monitoring_seconds_per_night_median']:.3f} |"
    )
    print(
        f"| bare DuckDB daily aggregates, whole month | "
        f"{dl['bare_duckdb_daily_aggregates_seconds']:.3f} |"
    )
    print(f"\npeak RSS {result['peak_rss_mib']:.0f} MiB, total {result['total_seconds']:.0f} s")
    out = REPO_ROOT / "data" / "benchmarks" / "monitoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
