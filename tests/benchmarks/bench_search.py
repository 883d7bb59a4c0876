"""Figures for the Optuna search and the Pareto frontier, measured on the simulated world.

``python tests/benchmarks/bench_search.py [--quick]`` prints markdown tables and writes
``data/benchmarks/search.json``:

1. **Convergence**: the nightly loop (``tasks.simulation.evaluation.simulate_search``: 12 nights
   x 4 candidates x 300 simulated requests) with TPE against random search with the same budget,
   over seeds; gap = true reward of the optimum minus true reward of the configuration the loop
   would pick.
2. **Timings**: a nightly ``run_search_round`` on a SQLite study, and ``compute_frontier`` on a
   simulated warehouse beside the bare DuckDB aggregate it is built on; peak RSS of the process.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from typing import Any

from harness import bench_parser, peak_rss_mib, write_result

from tasks.core.settings import REPO_ROOT, load_settings

UC = "support-summarize"


def _convergence(seeds: int) -> list[dict[str, Any]]:
    from strategies.search import RandomSearch, RewardWeights, SearchSpace, TPESearch
    from tasks import simulation as sim
    from tasks.simulation.evaluation import simulate_search, true_best

    weights = RewardWeights(quality=1.0, cost=0.1, latency=0.0, errors=1.0)
    rows = []
    for use_case in (UC, "sales-email"):
        bounds = sim.search_space(use_case)
        space = SearchSpace(
            models=bounds.models, prompt_ids=bounds.prompt_ids, max_tokens=bounds.max_tokens
        )
        optimum = true_best(use_case, space, weights)
        for make in (TPESearch, RandomSearch):
            runs = []
            started = time.perf_counter()
            for seed in range(seeds):
                runs.append(
                    simulate_search(
                        use_case=use_case,
                        strategy=make(weights=weights, seed=seed),
                        space=space,
                        seed=seed,
                        optimum=optimum,
                    )
                )
            gaps = [r.gap for r in runs]
            rows.append(
                {
                    "use_case": use_case,
                    "sampler": runs[0].sampler,
                    "seeds": seeds,
                    "optimum_reward": optimum[1],
                    "median_gap": statistics.median(gaps),
                    "mean_gap": statistics.fmean(gaps),
                    "max_gap": max(gaps),
                    "within_0.02": sum(g <= 0.02 for g in gaps) / len(gaps),
                    "seconds_per_run": (time.perf_counter() - started) / seeds,
                }
            )
    return rows


def _timings(rows_per_day: int) -> dict[str, Any]:
    from tasks import simulation as sim
    from tasks.search.frontier import compute_frontier
    from tasks.search.study import run_search_round
    from tasks.warehouse.config_metrics import config_metrics
    from tasks.warehouse.connection import connect

    spec = sim.SimulationSpec(
        days=7, requests_per_day={UC: rows_per_day}, include_cost=True, experiments=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            env={
                "LLMOPT_HOME": tmp,
                "LLMOPT_CONFIG_DIR": str(REPO_ROOT / "tasks" / "simulation" / "demo_config"),
            }
        )
        con = connect(settings)
        rows = sim.load_simulated(con, sim.simulate(spec), label="bench")
        end = spec.start_date + dt.timedelta(days=spec.days - 1)

        started = time.perf_counter()
        con.execute(
            "SELECT config_id, count(*), avg(quality), avg(cost_usd), "
            "quantile_cont(latency_ms, 0.95) FROM usage_logs WHERE use_case = ? GROUP BY 1",
            [UC],
        ).fetchall()
        bare = time.perf_counter() - started
        started = time.perf_counter()
        config_metrics(con, use_case=UC, start=spec.start_date, end=end)
        metrics = time.perf_counter() - started
        started = time.perf_counter()
        result = compute_frontier(con, use_case=UC, start=spec.start_date, end=end)
        frontier = time.perf_counter() - started

        rounds = []
        for night in range(3):
            started = time.perf_counter()
            run_search_round(
                settings, con, use_case=UC, as_of=end + dt.timedelta(days=night), n_candidates=4
            )
            rounds.append(time.perf_counter() - started)
        con.close()
    return {
        "rows": rows,
        "configs": len(result.points),
        "bare_duckdb_aggregate_s": bare,
        "config_metrics_s": metrics,
        "compute_frontier_s": frontier,
        "search_round_s": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__).parse_args(argv)
    seeds = 4 if args.quick else 10
    rows_per_day = 50_000 if args.quick else 300_000

    convergence = _convergence(seeds)
    timings = _timings(rows_per_day)
    peak_mb = peak_rss_mib()

    print(
        "| use case | sampler | seeds | optimum reward | median gap | mean gap | max gap "
        "| share within 0.02 | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in convergence:
        print(
            f"| {r['use_case']} | {r['sampler']} | {r['seeds']} | {r['optimum_reward']:.4f} "
            f"| {r['median_gap']:.4f} | {r['mean_gap']:.4f} | {r['max_gap']:.4f} "
            f"| {r['within_0.02']:.0%} | {r['seconds_per_run']:.2f} |"
        )
    t = timings
    print()
    print(
        "| rows | configs | bare DuckDB aggregate | config_metrics | compute_frontier "
        "| search round (3 nights) | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {t['rows']:,} | {t['configs']} | {t['bare_duckdb_aggregate_s']:.3f} s "
        f"| {t['config_metrics_s']:.3f} s | {t['compute_frontier_s']:.3f} s "
        f"| {', '.join(f'{x:.2f}' for x in t['search_round_s'])} s | {peak_mb:.0f} MB |"
    )
    payload = {"convergence": convergence, "timings": timings, "peak_rss_mb": peak_mb}
    out = write_result("search", payload, quick=args.quick, out=args.out)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
