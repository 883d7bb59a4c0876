"""Monitoring figures: false alarms, detection delays and the cost of a nightly pass.

``python tests/benchmarks/bench_monitoring.py [--quick] [--only SECTION ...] [--warehouse PATH
--as-of DAY] [--out DIR]`` prints markdown tables and writes ``data/benchmarks/monitoring.json``
(``monitoring.quick.json`` with ``--quick``; with ``--only``: ``monitoring-<sections>.json``),
through the shared harness (``tests/benchmarks/harness.py``). Simulated worlds are judged with the
simulator's configuration (``tasks/simulation/demo_config``: its use cases' rules).

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
5. **Many use cases** (``many``): one ``run_monitoring`` night over every use case of a
   warehouse (``--warehouse``, copied to a temporary directory first, e.g. the 10 M-row bench
   warehouse with 20 use cases; else a simulated world widened to 20 use cases), the same
   night use case by use case (one ``run_monitoring`` call each, as the nightly flow calls it),
   and the bare DuckDB monitoring aggregations grouped by use case (``bare_queries`` of
   ``bench_nightly``: daily and hourly series, quantile bins, category counts). Also the SQL
   statements each way issues. ``SET threads = 2``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from harness import Clock, bench_parser, peak_rss_mib, write_result

from strategies.monitor.analysis import analyse_series
from strategies.monitor.settings import MonitoringConfig
from tasks.core.settings import load_settings
from tasks.monitoring import apply_monitoring_schema, load_monitoring_config, run_monitoring
from tasks.simulation import SimulationSpec, ground_truth, load_simulated, simulate
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.world import USE_CASES
from tasks.warehouse.connection import MeasuredConnection, StatementTally, apply_schema
from tasks.warehouse.queries import latest_day


def _demo_config() -> MonitoringConfig:
    """The monitoring configuration the simulated worlds are meant for (the demo's)."""
    home = tempfile.mkdtemp(prefix="bench-monitoring-home-")
    env = {"LLMOPT_HOME": home, "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)}
    return load_monitoring_config(load_settings(env=env))


def _warehouse(spec: Any) -> duckdb.DuckDBPyConnection:

    con = duckdb.connect()
    apply_schema(con)
    apply_monitoring_schema(con)
    load_simulated(con, simulate(spec), label="bench")
    return con


def detector_false_alarms(months: int, seed: int = 2026) -> dict[str, Any]:

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

    config = _demo_config()
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

    spec = SimulationSpec(
        include_cost=True, requests_per_day=dict.fromkeys(USE_CASES, rows_per_day)
    )
    truth = ground_truth(spec)
    con = _warehouse(spec)
    config = _demo_config()
    first: dict[tuple[str, str], dt.date] = {}
    timings = []
    for night in range(14, spec.days):
        with Clock() as clock:
            report = run_monitoring(con, as_of=spec.day(night), config=config)
        timings.append(clock.seconds)
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
    with Clock() as bare_clock:
        con.execute(
            """
            SELECT use_case, day, avg(quality), avg((status = 'success')::INT), avg(cost_usd),
                   quantile_cont(latency_ms, 0.95), count(*)
            FROM usage_logs GROUP BY ALL
            """
        ).fetchall()
    bare = bare_clock.seconds
    rows = con.execute("SELECT count(*) FROM usage_logs").fetchone()
    con.close()
    return {
        "delays_nights": delays,
        "rows": int(rows[0]) if rows else 0,
        "run_monitoring_seconds_per_night_median": float(np.median(timings)),
        "bare_duckdb_daily_aggregates_seconds": bare,
    }


def _widened_world(rows: int) -> duckdb.DuckDBPyConnection:
    """A simulated month (4 use cases) widened to 20 use cases as bench_nightly does."""

    con = duckdb.connect()
    apply_schema(con)
    apply_monitoring_schema(con)
    load_simulated(con, simulate(SimulationSpec(total_rows=rows, include_cost=True)), label="bench")
    con.execute(
        "UPDATE usage_logs SET use_case = use_case || '-' || "
        "CAST(hash(coalesce(unit_id, request_id)) % 5 AS VARCHAR)"
    )
    return con


def many_use_cases(
    *, warehouse: Path | None, as_of: dt.date | None, rows: int, repeat: int
) -> dict[str, Any]:
    """Section 5: one night over all use cases, batched vs one by one vs bare DuckDB."""
    from bench_nightly import bare_queries  # lazy: only section 5 needs the nightly bench

    work = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    try:
        if warehouse is not None:
            copy = work / "warehouse.duckdb"
            shutil.copy(warehouse, copy)  # run_monitoring applies the monitoring schema
            con = duckdb.connect(str(copy))
        else:
            con = _widened_world(rows)
        con.execute("SET threads = 2")
        night = as_of or latest_day(con)
        assert night is not None, "empty warehouse"
        names = [
            str(r[0])
            for r in con.execute("SELECT DISTINCT use_case FROM usage_logs ORDER BY 1").fetchall()
        ]
        n_rows = con.execute("SELECT count(*) FROM usage_logs").fetchall()[0][0]
        config = _demo_config()
        options: dict[str, Any] = {"as_of": night, "config": config, "record": False}
        run_monitoring(con, use_cases=names[:1], **options)  # warm: schema, caches

        queries = {k: v for k, v in bare_queries(night).items() if k.startswith("monitoring")}
        counting = MeasuredConnection(con)
        batched: list[float] = []
        bare_runs: list[dict[str, float]] = []
        for _ in range(repeat):  # interleaved: a busy neighbour slows both alike
            counting.tally = StatementTally()
            with Clock() as clock:
                run_monitoring(counting, use_cases=names, **options)  # type: ignore[arg-type]
            batched.append(clock.seconds)
            timings = {}
            for name, (sql, params) in queries.items():
                with Clock() as clock:
                    con.execute(sql, params).fetchall()
                timings[name] = clock.seconds
            bare_runs.append(timings)
        batched_statements = counting.tally.statements

        counting.tally = StatementTally()
        with Clock() as clock:
            for name in names:
                run_monitoring(counting, use_cases=[name], **options)  # type: ignore[arg-type]
        one_by_one = clock.seconds
        one_by_one_statements = counting.tally.statements
        con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bare_totals = [sum(t.values()) for t in bare_runs]
    return {
        "warehouse": str(warehouse) if warehouse else f"simulated, {rows} rows, widened",
        "rows": int(n_rows),
        "use_cases": len(names),
        "as_of": night.isoformat(),
        "numeric_fields": list(config.numeric_fields),
        "categorical_fields": list(config.categorical_fields),
        "hourly": config.hourly,
        "run_monitoring_all_seconds": batched,
        "run_monitoring_all_seconds_median": statistics.median(batched),
        "run_monitoring_all_seconds_min": min(batched),
        "run_monitoring_all_statements": batched_statements,
        "run_monitoring_one_by_one_seconds": one_by_one,
        "run_monitoring_one_by_one_statements": one_by_one_statements,
        "bare_monitoring_seconds": bare_totals,
        "bare_monitoring_seconds_median": statistics.median(bare_totals),
        "bare_monitoring_seconds_min": min(bare_totals),
        "bare_monitoring_by_query_median": {
            k: statistics.median(t[k] for t in bare_runs) for k in queries
        },
        "ratio_to_bare": statistics.median(batched) / statistics.median(bare_totals),
        "ratio_to_bare_min": min(batched) / min(bare_totals),
    }


SECTIONS = ("detectors", "pipeline", "delays", "many")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run"
    )
    parser.add_argument(
        "--warehouse", type=Path, help="many: a warehouse file (copied first; never written)"
    )
    parser.add_argument("--as-of", type=dt.date.fromisoformat, help="many: the night")
    args = parser.parse_args(argv)
    months = 100 if args.quick else 500
    seeds = 2 if args.quick else 5
    rows = 300 if args.quick else 1000
    result: dict[str, Any] = {}
    with Clock() as total:
        if "detectors" in args.only:
            result["detectors"] = detector_false_alarms(months)
        if "pipeline" in args.only:
            result["pipeline"] = pipeline_false_alarms(seeds, rows)
        if "delays" in args.only:
            result["delays"] = detection_delays(rows)
        if "many" in args.only:
            result["many"] = many_use_cases(
                warehouse=args.warehouse,
                as_of=args.as_of,
                rows=200_000 if args.quick else 1_000_000,
                repeat=1 if args.quick else 5,
            )
    result["peak_rss_mib"] = peak_rss_mib()
    result["total_seconds"] = total.seconds
    _print_tables(result)
    name = "monitoring" if set(args.only) == set(SECTIONS) else "-".join(["monitoring", *args.only])
    print(f"wrote {write_result(name, result, quick=args.quick, out=args.out)}")
    return 0


def _print_tables(result: dict[str, Any]) -> None:
    if "many" in result:
        m = result["many"]
        print(
            f"| one night, {m['use_cases']} use cases, {m['rows']:,} rows ({m['as_of']}) "
            "| seconds | SQL statements |"
        )
        print("|---|---|---|")
        print(
            f"| run_monitoring, all use cases at once (median; min) | "
            f"{m['run_monitoring_all_seconds_median']:.2f}; "
            f"{m['run_monitoring_all_seconds_min']:.2f} | {m['run_monitoring_all_statements']} |"
        )
        print(
            f"| run_monitoring, one call per use case | "
            f"{m['run_monitoring_one_by_one_seconds']:.2f} | "
            f"{m['run_monitoring_one_by_one_statements']} |"
        )
        print(
            f"| bare DuckDB monitoring aggregations, grouped by use case (median; min) | "
            f"{m['bare_monitoring_seconds_median']:.2f}; {m['bare_monitoring_seconds_min']:.2f} | "
            f"{len(m['bare_monitoring_by_query_median'])} |"
        )
        print(
            f"\nall at once / bare: {m['ratio_to_bare']:.2f}x (medians), "
            f"{m['ratio_to_bare_min']:.2f}x (minima)\n"
        )
    if not {"detectors", "pipeline", "delays"} <= set(result):
        print(f"peak RSS {result['peak_rss_mib']:.0f} MiB, total {result['total_seconds']:.0f} s")
        return
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


if __name__ == "__main__":
    raise SystemExit(main())
