"""Figures for budget / bandits / off-policy evaluation, measured on the simulated world.

``python tests/benchmarks/bench_allocation.py [--quick]`` prints markdown tables and writes
``data/benchmarks/allocation.json``:

1. **Regret** of batch Thompson sampling against uniform allocation on each use case's true mean
   qualities (``tasks.simulation.evaluation.simulator_regret``), averaged over seeds.
2. **Closed loop**: nights of bandit_allocation on a warehouse fed by
   ``tasks.simulation.evaluation.simulate_closed_loop`` through the real ingest.
3. **OPE coverage**: share of 95% intervals (IPS, SNIPS, DR) covering the simulator's true policy
   value over seeds and candidate policies.
4. **Timings** of the entry points on a simulated warehouse beside a bare DuckDB aggregate and a
   bare scipy ``linprog``, with the process's peak RSS.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import Clock, bench_parser, peak_rss_mib, write_result
from scipy import optimize

from tasks.core.settings import REPO_ROOT, load_settings

START = dt.date(2026, 10, 1)


def _ingest(con: Any, table: pa.Table, folder: Path, name: str) -> None:
    from tasks.ingest.pipeline import ingest_paths

    path = folder / f"{name}.parquet"
    pq.write_table(table, path)
    settings = load_settings(env={"LLMOPT_HOME": str(folder)})
    ingest_paths([path], settings=settings, con=con, validate=False)


def _regret(seeds: int) -> list[dict[str, Any]]:
    from tasks.simulation.evaluation import simulator_regret
    from tasks.simulation.world import USE_CASE_NAMES

    rows = []
    for use_case in USE_CASE_NAMES:
        runs = [
            simulator_regret(use_case, nights=30, requests_per_night=1000, seed=s)
            for s in range(seeds)
        ]
        rows.append(
            {
                "use_case": use_case,
                "arms": len(runs[0].arms),
                "thompson_regret": float(np.mean([r.thompson.cumulative_regret[-1] for r in runs])),
                "uniform_regret": float(np.mean([r.uniform.cumulative_regret[-1] for r in runs])),
                "ratio": float(np.mean([r.regret_ratio for r in runs])),
                "late_to_early": float(np.mean([r.thompson.late_to_early_ratio for r in runs])),
            }
        )
    return rows


def _closed_loop(nights: int, per_night: int, workdir: Path) -> dict[str, Any]:
    from tasks.simulation.evaluation import simulate_closed_loop
    from tasks.warehouse.connection import connect

    con = connect(path=workdir / "loop.duckdb")
    try:
        loop = simulate_closed_loop(
            con,
            lambda table, night: _ingest(con, table, workdir, f"night{night:02d}"),
            use_case="code-review",
            nights=nights,
            requests_per_night=per_night,
        )
    finally:
        con.close()
    return {
        "use_case": loop.use_case,
        "nights": nights,
        "requests_per_night": per_night,
        "thompson_regret": loop.regret,
        "uniform_regret": loop.uniform_regret,
        "ratio": loop.regret / loop.uniform_regret,
        "first_night_regret": loop.night_regret[0],
        "last_night_regret": loop.night_regret[-1],
        "final_top_arm_is_best": loop.top_arm_is_best,
    }


def _coverage(seeds: int, workdir: Path) -> dict[str, Any]:
    from tasks.simulation.evaluation import offpolicy_checks

    checks = list(
        offpolicy_checks(
            lambda con, table, seed: _ingest(con, table, workdir, f"ope{seed}"), seeds=seeds
        )
    )
    total = len(checks)
    names = ("ips", "snips", "dr")
    widths = {
        k: sum(getattr(c.result.estimate, k).upper - getattr(c.result.estimate, k).lower
               for c in checks)
        for k in names
    }  # fmt: skip
    return {
        "intervals": total,
        "nominal": 0.95,
        **{f"{k}_coverage": sum(c.covered(k) for c in checks) / total for k in names},
        **{f"{k}_mean_width": widths[k] / total for k in names},
    }


def _timings(days: int, workdir: Path) -> list[dict[str, Any]]:
    from tasks.allocation.bandits import bandit_allocation, contextual_allocation
    from tasks.allocation.budget import budget_report, use_case_traffic_mix
    from tasks.allocation.offpolicy import evaluate_policy
    from tasks.core.config import load_config
    from tasks.simulation import SimulationSpec, simulate
    from tasks.simulation.world import exploration_configs
    from tasks.warehouse.connection import connect

    spec = SimulationSpec(seed=7, days=days, include_cost=True)
    con = connect(path=workdir / "timing.duckdb")
    _ingest(con, simulate(spec), workdir, "timing")
    rows = con.execute("SELECT count(*) FROM usage_logs").fetchone()
    n_rows = int(rows[0]) if rows else 0
    as_of = START + dt.timedelta(days=days - 1)
    demo_config = REPO_ROOT / "tasks" / "simulation" / "demo_config"
    config = load_config("budget", load_settings(env={"LLMOPT_CONFIG_DIR": str(demo_config)}))
    out = []

    def timed(name: str, fn: Any, repeat: int = 3) -> None:
        best = min(_clock(fn) for _ in range(repeat))
        out.append({"operation": name, "rows": n_rows, "seconds": best})

    timed(
        "baseline: DuckDB GROUP BY use_case, config (count, sums)",
        lambda: con.execute(
            "SELECT use_case, config_id, count(*), sum(quality), sum(cost_usd), "
            "sum(1 / propensity) FROM usage_logs GROUP BY ALL"
        ).fetchall(),
    )
    timed("budget_report (4 use cases)", lambda: budget_report(con, as_of=as_of, config=config))
    timed(
        "use_case_traffic_mix (code-review)",
        lambda: use_case_traffic_mix(con, use_case="code-review", as_of=as_of, config=config),
    )
    cands = 6
    rng = np.random.default_rng(0)
    timed(
        "baseline: scipy linprog, 6 candidates",
        lambda: optimize.linprog(
            -rng.random(cands),
            A_ub=rng.random((1, cands)),
            b_ub=[0.5],
            A_eq=np.ones((1, cands)),
            b_eq=[1.0],
            bounds=[(0.02, 1)] * cands,
            method="highs",
        ),
    )
    timed(
        "bandit_allocation (support-summarize, 20k draws)",
        lambda: bandit_allocation(con, use_case="support-summarize", as_of=as_of, window_days=days),
    )
    timed(
        "contextual_allocation (4 features)",
        lambda: contextual_allocation(
            con,
            use_case="support-summarize",
            as_of=as_of,
            window_days=days,
            features=["task_type", "user_segment", "input_bucket", "hour_bucket"],
        ),
    )
    target = exploration_configs("code-review")[0].config_id
    timed(
        "evaluate_policy (code-review, by task_type)",
        lambda: evaluate_policy(
            con, use_case="code-review", policy={target: 1.0}, start=START, end=as_of
        ),
    )
    con.close()
    return out


def _clock(fn: Any) -> float:
    with Clock() as clock:
        fn()
    return clock.seconds


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__).parse_args(argv)
    seeds_regret, seeds_ope, days = (2, 4, 7) if args.quick else (5, 12, 30)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        regret = _regret(seeds_regret)
        loop = _closed_loop(8 if args.quick else 14, 800, work)
        coverage = _coverage(seeds_ope, work)
        timings = _timings(days, work)
    peak_mib = peak_rss_mib()
    result = {
        "regret": regret,
        "closed_loop": loop,
        "ope_coverage": coverage,
        "timings": timings,
        "peak_rss_mib": peak_mib,
        "seconds": time.perf_counter() - started,
    }
    print("| use case | arms | Thompson regret | uniform regret | ratio | 2nd/1st half |")
    print("|---|---|---|---|---|---|")
    for r in regret:
        print(
            f"| {r['use_case']} | {r['arms']} | {r['thompson_regret']:.1f} | "
            f"{r['uniform_regret']:.1f} | {r['ratio']:.3f} | {r['late_to_early']:.2f} |"
        )
    print(
        f"\nClosed loop ({loop['use_case']}, {loop['nights']} nights x "
        f"{loop['requests_per_night']}): regret {loop['thompson_regret']:.1f} vs uniform "
        f"{loop['uniform_regret']:.1f} (ratio {loop['ratio']:.3f}); per-night regret "
        f"{loop['first_night_regret']:.1f} -> {loop['last_night_regret']:.1f}"
    )
    print(f"\nOPE coverage over {coverage['intervals']} intervals (nominal 95%):")
    print("| estimator | coverage | mean width |\n|---|---|---|")
    for name in ("ips", "snips", "dr"):
        print(
            f"| {name} | {coverage[name + '_coverage']:.3f} | "
            f"{coverage[name + '_mean_width']:.4f} |"
        )
    print("\n| operation | rows | seconds |\n|---|---|---|")
    for t in timings:
        print(f"| {t['operation']} | {t['rows']} | {t['seconds']:.3f} |")
    print(f"\npeak RSS {peak_mib:.0f} MiB, total {result['seconds']:.0f} s")
    write_result("allocation", result, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
