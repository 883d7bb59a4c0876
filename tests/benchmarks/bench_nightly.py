"""Nightly scale: one night over N rows (30 days, 20 use cases, 50 experiments) on this machine.

``python tests/benchmarks/bench_nightly.py [--sizes 1000000,3000000,10000000] [--quick]`` prints
a markdown table and writes ``data/benchmarks/nightly.json``. Per size, each phase runs in its
own child process, so peak RSS (``ru_maxrss``) belongs to that phase and sizes never pollute
each other:

1. **prepare**: simulate N rows (``tasks.simulation``, seed 7, 30 days), widen the world in DuckDB
   SQL (``use_case || '-' || h % 5`` and ``experiment_id || '-' || h % 25`` with ``h`` a hash of
   the unit, so a unit keeps its variant and every sub-experiment stays in one use case: 4 -> 20
   use cases, 2 -> 50 experiments), write one Parquet file per day and ingest them with the real
   ``tasks.ingest.pipeline.ingest_paths`` (timed on its own). The home is then copied for the
   next phases.
2. **bare**: a bare DuckDB script over the same warehouse doing the same aggregations the night
   needs: per use case x config sufficient statistics (history and window), per experiment x
   variant x unit x day sums, monitoring daily / hourly series, quantile bins and category counts,
   month-to-date spend, the night's metrics.
3. **steps** (the *data work*): the night's steps called directly, no Prefect: ``resolve_night``,
   ``analyse_experiments``, ``aggregate_night``, ``optimize_use_case`` for every use case
   (sequentially),
   ``summarize_night``; the strategies inside are timed by wrapping their entry points.
4. **flow**: the fixed overhead (importing ``flows.nightly``; the temporary Prefect server start,
   measured as a trivial ``@flow`` call) and the real ``nightly_optimization`` run on the last
   day (Prefect orchestration, two worker threads, MLflow tracking, registry publishing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, bench_parser, peak_rss_mib, write_result

from tasks.core.settings import REPO_ROOT

OUT = RESULTS_DIR / "nightly.json"
DAYS = 30
USE_CASE_SPLIT = 5  # 4 simulated use cases x 5 = 20
EXPERIMENT_SPLIT = 25  # 2 simulated experiments x 25 = 50 (25 is a multiple of 5: see docstring)
AIMS = {"data_work_seconds": 60.0, "peak_rss_mib": 2048.0, "ratio_to_bare": 1.5}

# {source} is filled per file; h % 25 % 5 == h % 5, so a sub-experiment stays in one use case.
WIDEN_SQL = (
    "SELECT * REPLACE ("
    " use_case || '-' || CAST(hash(coalesce(unit_id, request_id)) % "
    f"{EXPERIMENT_SPLIT} % {USE_CASE_SPLIT} AS VARCHAR) AS use_case,"
    " CASE WHEN experiment_id IS NOT NULL THEN experiment_id || '-' ||"
    f" CAST(hash(coalesce(unit_id, request_id)) % {EXPERIMENT_SPLIT} AS VARCHAR) END"
    " AS experiment_id) FROM read_parquet('{source}')"
)


def _peak_mib(*, children: bool = False) -> float:
    return peak_rss_mib(children=children)


def bench_config(out: Path) -> Path:
    """The repository's configs, with each use case's search space repeated for its 5 copies.

    Everything else falls back to ``[defaults]`` for the new names (experiments, budgets with
    status ``no_budget``, registry policy), as it would for a user's unlisted use case.
    """
    import tomllib

    out.mkdir(parents=True, exist_ok=True)
    for source in (REPO_ROOT / "tasks" / "simulation" / "demo_config").glob("*.toml"):
        shutil.copy(source, out / source.name)
    search = tomllib.loads((out / "search.toml").read_text(encoding="utf-8"))
    lines = [""]
    for name, table in search.get("use_cases", {}).items():
        space = table.get("space", {})
        for k in range(USE_CASE_SPLIT):
            lines.append(f'[use_cases."{name}-{k}".space]')
            lines += [f"{key} = {json.dumps(value)}" for key, value in space.items()]
            lines.append("")
    with (out / "search.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return out


def _env(home: Path, config_dir: Path, prefect_home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LLMOPT_HOME=str(home),
        LLMOPT_CONFIG_DIR=str(config_dir),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_LOGGING_LEVEL="WARNING",
        MPLBACKEND="Agg",
    )
    env.pop("PREFECT_API_URL", None)
    if prefect_home is not None:
        env["PREFECT_HOME"] = str(prefect_home)
    return env


# ------------------------------------------------------------------------------ phase: prepare


def prepare(size: int, work: Path) -> dict[str, Any]:
    import duckdb

    from tasks.core.settings import load_settings
    from tasks.ingest.pipeline import ingest_paths
    from tasks.simulation import SimulationSpec, write_simulation

    spec = SimulationSpec(seed=7, days=DAYS, total_rows=size)
    started = time.perf_counter()
    sim = write_simulation(spec, work / "sim", fmt="parquet")
    simulate_s = time.perf_counter() - started

    started = time.perf_counter()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    paths: list[str] = []
    for source in sorted(sim.paths):  # the simulator writes one file per UTC day
        path = logs / source.name
        con.execute(f"COPY ({WIDEN_SQL.format(source=source)}) TO '{path}' (FORMAT parquet)")
        paths.append(str(path))
    counts = con.execute(
        "SELECT count(DISTINCT use_case), count(DISTINCT experiment_id), count(*) "
        "FROM read_parquet($paths)",
        {"paths": paths},
    ).fetchone()
    con.close()
    widen_s = time.perf_counter() - started
    shutil.rmtree(work / "sim")

    settings = load_settings().ensure_dirs()
    started = time.perf_counter()
    report = ingest_paths(paths, settings=settings)
    ingest_s = time.perf_counter() - started
    totals = report.to_dict()["totals"]
    assert counts is not None
    return {
        "rows": int(counts[2]),
        "use_cases": int(counts[0]),
        "experiments": int(counts[1]),
        "as_of": (spec.start_date + dt.timedelta(days=DAYS - 1)).isoformat(),
        "simulate_seconds": simulate_s,
        "widen_seconds": widen_s,
        "ingest_seconds": ingest_s,
        "ingested": int(totals.get("ingested", 0)),
        "quarantined": int(totals.get("quarantined", 0)),
        "warehouse_mib": settings.warehouse_path.stat().st_size / 2**20,
        "peak_rss_mib": _peak_mib(),
    }


# --------------------------------------------------------------------------------- phase: bare


def bare_queries(as_of: dt.date) -> dict[str, tuple[str, dict[str, Any]]]:
    """The night's aggregations as plain DuckDB statements (results fetched, all small)."""
    from tasks.monitoring.run import CATEGORICAL_FIELDS, NUMERIC_FIELDS, SERIES_METRICS
    from tasks.warehouse.config_metrics import CONFIG_METRICS_SQL

    window = {"start": as_of - dt.timedelta(days=13), "end": as_of}
    ref = (as_of - dt.timedelta(days=14), as_of - dt.timedelta(days=1))
    series = ", ".join(f"{sql} AS {name}" for name, sql in SERIES_METRICS.items())
    levels = [i / 100 for i in range(1, 100)]
    window_of = (
        "CASE WHEN day = $as_of THEN 'current' WHEN day BETWEEN $ref_start AND $ref_end "
        "THEN 'reference' END"
    )
    bins = ", ".join(f"quantile_disc({c}, $levels) AS q_{c}" for c in NUMERIC_FIELDS)
    categories = " UNION ALL ".join(
        f"SELECT use_case, '{c}' AS field, CAST({c} AS VARCHAR) AS category, {window_of} AS w, "
        f"count(*) AS n FROM usage_logs WHERE day BETWEEN $ref_start AND $as_of GROUP BY ALL"
        for c in CATEGORICAL_FIELDS
    )
    drift = {"as_of": as_of, "ref_start": ref[0], "ref_end": ref[1]}
    return {
        "config stats, history": (CONFIG_METRICS_SQL, {"use_case": None, "start": None} | window),
        "config stats, 14-day window": (CONFIG_METRICS_SQL, {"use_case": None} | window),
        "experiment unit x day sums": (
            """
            WITH unit_day AS (
                SELECT experiment_id, variant_id, coalesce(unit_id, request_id) AS unit, day,
                    coalesce(sum(quality), 0) AS q, count(quality) AS qn,
                    count(*) FILTER (WHERE feedback = 1) AS f, count(feedback) AS fn,
                    count(*) FILTER (WHERE status <> 'success') AS e, count(*) AS r,
                    sum(cost_usd) AS c, sum(latency_ms) AS l, sum(input_tokens + output_tokens) AS t
                FROM usage_logs
                WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
                GROUP BY ALL)
            SELECT experiment_id, variant_id, day, count(*) AS units,
                sum(q), sum(q * q), sum(qn), sum(qn * qn), sum(q * qn),
                sum(f), sum(f * f), sum(fn), sum(fn * fn), sum(f * fn),
                sum(e), sum(e * e), sum(r), sum(r * r), sum(e * r),
                sum(c), sum(c * c), sum(c * r), sum(l), sum(l * l), sum(l * r),
                sum(t), sum(t * t), sum(t * r)
            FROM unit_day GROUP BY ALL
            """,
            {"as_of": as_of},
        ),
        "experiment p95, units, crossover": (
            """
            SELECT experiment_id, variant_id, quantile_cont(latency_ms, 0.95),
                   count(DISTINCT coalesce(unit_id, request_id)), min(day), any_value(use_case)
            FROM usage_logs
            WHERE experiment_id IS NOT NULL AND variant_id IS NOT NULL AND day <= $as_of
            GROUP BY ALL
            """,
            {"as_of": as_of},
        ),
        "monitoring daily series": (
            f"SELECT use_case, day, {series} FROM usage_logs "
            "WHERE day BETWEEN $start AND $end GROUP BY ALL",
            {"start": as_of - dt.timedelta(days=27), "end": as_of},
        ),
        "monitoring hourly series": (
            f"SELECT use_case, date_trunc('hour', timezone('UTC', ts)) AS hour, {series} "
            "FROM usage_logs WHERE day BETWEEN $start AND $end GROUP BY ALL",
            {"start": as_of - dt.timedelta(days=6), "end": as_of},
        ),
        "monitoring quantile bins": (
            f"SELECT use_case, {window_of} AS w, {bins} FROM usage_logs "
            "WHERE day BETWEEN $ref_start AND $as_of GROUP BY ALL",
            drift | {"levels": levels},
        ),
        "monitoring category counts": (categories, drift),
        "budget month-to-date per day": (
            "SELECT use_case, day, sum(cost_usd), count(*) FROM usage_logs "
            "WHERE day BETWEEN $start AND $end GROUP BY ALL",
            {"start": as_of.replace(day=1), "end": as_of},
        ),
        "night metrics": (
            "SELECT use_case, count(*), avg(quality), avg(cost_usd), "
            "quantile_cont(latency_ms, 0.95), avg((status = 'error')::INT), sum(cost_usd) "
            "FROM usage_logs WHERE day = $as_of GROUP BY ALL",
            {"as_of": as_of},
        ),
    }


def bare(as_of: dt.date) -> dict[str, Any]:
    import duckdb

    from tasks.core.settings import load_settings

    settings = load_settings()
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    con.execute("SET threads = 2")
    timings: dict[str, float] = {}
    result_rows = 0
    for name, (sql, params) in bare_queries(as_of).items():
        started = time.perf_counter()
        result_rows += len(con.execute(sql, params).fetchall())
        timings[name] = time.perf_counter() - started
    con.close()
    return {
        "seconds": sum(timings.values()),
        "by_query": timings,
        "result_rows": result_rows,
        "peak_rss_mib": _peak_mib(),
    }


# -------------------------------------------------------------------------------- phase: steps


# Entry points of the strategies inside optimize_use_case: (module, attribute).
PROFILED = (
    ("tasks.warehouse.config_metrics", "config_metrics"),
    ("tasks.nightly.inputs", "night_metrics"),
    ("tasks.nightly.inputs", "bootstrap_production"),
    ("tasks.monitoring.run", "run_monitoring"),
    ("tasks.monitoring.run", "plot_monitoring"),
    ("tasks.search.study", "run_search_round"),
    ("tasks.allocation.bandits", "bandit_allocation"),
    ("tasks.search.frontier", "compute_frontier"),
    ("tasks.search.frontier", "plot_frontier"),
    ("tasks.allocation.budget", "budget_report"),
    ("tasks.allocation.budget", "use_case_traffic_mix"),
    ("tasks.experiments.analyze", "analyze_experiments"),
    ("tasks.experiments.analyze", "plot_experiment_intervals"),
)


@contextmanager
def _profiled(totals: dict[str, float]) -> Iterator[None]:
    """Wrap each PROFILED function with a timer adding into ``totals`` (restored after)."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    for module_name, attr in PROFILED:
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
        saved.append((module, attr, original))
        setattr(module, attr, timed(f"{module_name.split('.')[-1]}.{attr}", original))
    try:
        yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)


@contextmanager
def _timed_warehouse(tally: Any) -> Iterator[None]:
    """Every warehouse connection the night's steps open adds its statements to ``tally``."""
    from tasks.nightly import steps as nightly_steps
    from tasks.nightly import warehouse

    original = warehouse.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        return warehouse.MeasuredConnection(original(*args, **kwargs), tally)

    warehouse.connect = connect
    nightly_steps.connect = connect
    try:
        yield
    finally:
        warehouse.connect = original
        nightly_steps.connect = original


def steps(as_of: dt.date) -> dict[str, Any]:
    started = time.perf_counter()
    from tasks.core.settings import load_settings
    from tasks.nightly import steps as st

    import_s = time.perf_counter() - started
    settings = load_settings().ensure_dirs()
    timings: dict[str, float] = {}
    inner: dict[str, float] = {}
    from tasks.warehouse.connection import StatementTally

    sql = StatementTally()
    with _profiled(inner), _timed_warehouse(sql):
        t0 = time.perf_counter()
        night = st.resolve_night(settings, as_of=as_of, use_cases=[])
        timings["resolve_night"] = time.perf_counter() - t0
        run_key = st.run_key_for(night)
        options = st.NightOptions.from_parameters({}, settings)
        t0 = time.perf_counter()
        experiments = st.analyse_experiments(settings, night, run_key=run_key)
        timings["analyse_experiments"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        inputs = st.aggregate_night(settings, night, options, run_key=run_key)
        timings["aggregate_night"] = time.perf_counter() - t0
        per_use_case: dict[str, float] = {}
        outcomes = []
        for use_case in night.use_cases:
            t0 = time.perf_counter()
            outcomes.append(
                st.optimize_use_case(
                    settings, night, use_case, options, experiments, inputs=inputs[use_case]
                )
            )
            per_use_case[use_case] = time.perf_counter() - t0
        timings["optimize_use_case (all)"] = sum(per_use_case.values())
        t0 = time.perf_counter()
        summary = st.summarize_night(
            night,
            run_key=run_key,
            ingest=None,
            experiments=experiments,
            outcomes=outcomes,
            failures={},
            published={},
        )
        st.summary_dict(summary)
        timings["summarize_night"] = time.perf_counter() - t0
    return {
        "seconds": sum(timings.values()),
        "import_seconds": import_s,
        "by_step": timings,
        "by_strategy": dict(sorted(inner.items(), key=lambda kv: -kv[1])),
        "sql_seconds": sql.seconds,
        "sql_statements": sql.statements,
        "slowest_use_case": max(per_use_case.items(), key=lambda kv: kv[1]),
        "use_cases": len(outcomes),
        "experiments": len(experiments),
        "peak_rss_mib": _peak_mib(),
    }


# --------------------------------------------------------------------------------- phase: flow


def flow(as_of: dt.date) -> dict[str, Any]:
    started = time.perf_counter()
    from prefect import flow as prefect_flow

    from flows.nightly import NightlyParameters, nightly_optimization

    import_s = time.perf_counter() - started

    @prefect_flow(name="bench-trivial")
    def trivial() -> int:
        return 1

    started = time.perf_counter()
    trivial()  # starts the temporary Prefect server (a subprocess) on first call
    server_s = time.perf_counter() - started
    started = time.perf_counter()
    trivial()
    trivial_flow_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = nightly_optimization(params=NightlyParameters(as_of=as_of))
    flow_s = time.perf_counter() - started
    return {
        "import_seconds": import_s,
        "server_start_seconds": server_s,
        "trivial_flow_seconds": trivial_flow_s,
        "flow_seconds": flow_s,
        "use_cases_ok": len(summary.get("use_cases", {})),
        "failures": summary.get("failures", {}),
        "peak_rss_mib": _peak_mib(),
        "children_peak_rss_mib": _peak_mib(children=True),
    }


# ------------------------------------------------------------------------------------- driver

PHASES: dict[str, Callable[..., dict[str, Any]]] = {"bare": bare, "steps": steps, "flow": flow}


def _child(phase: str, home: Path, *, size: int, work: Path, as_of: str, prefect: Path) -> Any:
    out = work / f"{phase}-{home.name}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        phase,
        "--size",
        str(size),
        "--work",
        str(work),
        "--as-of",
        as_of,
        "--child-out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=_env(home, work / "config", prefect),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} ({size} rows) failed:\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["process_seconds"] = time.perf_counter() - started
    return result


def run_size(size: int, root: Path, *, keep: bool = False) -> dict[str, Any]:
    """One size; with ``keep`` the prepared warehouse is reused from (and left in) ``root``."""
    work = root / f"n{size}"
    base = work / "home"
    prepared = work / "prepare.json"
    if keep and prepared.exists():
        prep = json.loads(prepared.read_text(encoding="utf-8"))
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        bench_config(work / "config")
        prep = _child("prepare", base, size=size, work=work, as_of="", prefect=work / "p-prepare")
        prepared.write_text(json.dumps(prep, indent=2), encoding="utf-8")
    for copy in ("steps-home", "flow-home"):
        shutil.rmtree(work / copy, ignore_errors=True)
        shutil.copytree(base, work / copy)
    as_of = prep["as_of"]
    result: dict[str, Any] = {"size": size, "prepare": prep}
    for phase, home in (
        ("bare", base),
        ("steps", work / "steps-home"),
        ("flow", work / "flow-home"),
    ):
        shutil.rmtree(work / f"p-{phase}", ignore_errors=True)
        result[phase] = _child(
            phase, home, size=size, work=work, as_of=as_of, prefect=work / f"p-{phase}"
        )
    data = result["steps"]["seconds"]
    fl = result["flow"]
    result["overhead_seconds"] = fl["import_seconds"] + fl["server_start_seconds"]
    result["data_work_seconds"] = data
    result["ratio_to_bare"] = data / result["bare"]["seconds"]
    result["sql_ratio_to_bare"] = result["steps"]["sql_seconds"] / result["bare"]["seconds"]
    result["orchestration_tracking_seconds"] = fl["flow_seconds"] - data
    if not keep:
        shutil.rmtree(work)
    return result


def _plots_seconds(result: dict[str, Any]) -> float:
    return sum(v for k, v in result["steps"]["by_strategy"].items() if ".plot_" in k)


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | ingest s | fixed overhead s (import + server) | data work s (of which plots) "
        "| SQL inside it s (statements) | bare DuckDB s | SQL / bare | data work / bare "
        "| flow run s | peak RSS MiB (data work / flow / bare) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p, fl, data, bare_s = r["prepare"], r["flow"], r["data_work_seconds"], r["bare"]["seconds"]
        st = r["steps"]
        sql = st.get("sql_seconds", float("nan"))
        lines.append(
            f"| {r['size']:,} | {p['ingest_seconds']:.1f} "
            f"| {r['overhead_seconds']:.1f} ({fl['import_seconds']:.1f} + "
            f"{fl['server_start_seconds']:.1f}) | {data:.1f} ({_plots_seconds(r):.1f}) "
            f"| {sql:.1f} ({st.get('sql_statements', 0)}) | {bare_s:.2f} | {sql / bare_s:.2f}x "
            f"| {data / bare_s:.1f}x | {fl['flow_seconds']:.1f} "
            f"| {st['peak_rss_mib']:.0f} / {fl['peak_rss_mib']:.0f} "
            f"/ {r['bare']['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        "| rows | top costs inside the data work (s, summed over use cases) |",
        "|---|---|",
    ]
    for r in results:
        top = list(r["steps"]["by_strategy"].items())[:6]
        lines.append(f"| {r['size']:,} | " + ", ".join(f"{k} {v:.1f}" for k, v in top) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--report", action="store_true", help="reprint the table of the JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="prepare each size once in this folder and reuse it on later runs",
    )
    parser.add_argument("--child", choices=["prepare", *PHASES], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.child == "prepare":
            payload = prepare(args.size, args.work)
        else:
            payload = PHASES[args.child](dt.date.fromisoformat(args.as_of))
        args.child_out.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        return 0

    if args.report:
        print(_table(json.loads(OUT.read_text(encoding="utf-8"))["results"]))
        return 0
    sizes = [200_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        for size in sizes:
            results.append(run_size(size, root, keep=args.keep is not None))
            print(f"done {size:,} rows", file=sys.stderr, flush=True)
    if not args.quick and OUT.exists():  # keep other sizes measured earlier (one size per run)
        done = {r["size"] for r in results}
        earlier = json.loads(OUT.read_text(encoding="utf-8"))
        if not earlier.get("quick"):
            results += [r for r in earlier.get("results", []) if r["size"] not in done]
    results.sort(key=lambda r: int(r["size"]))
    table = _table(results)
    print(table)
    payload = {
        "aims": AIMS,
        "note": "data work = night steps called directly, use cases sequential; "
        "each phase in its own process",
        "results": results,
    }
    print(f"wrote {write_result('nightly', payload, quick=args.quick, out=args.out)}")
    return 0


__all__ = ["AIMS", "WIDEN_SQL", "bare_queries", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
