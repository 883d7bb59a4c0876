"""Benchmark: simulate + write canonical logs, against a bare DuckDB generate-and-write baseline.

Run: ``.venv/bin/python tests/benchmarks/bench_simulator.py [--quick]`` (quick: 1 M rows instead
of 10 M). Each measurement runs in its own spawned process so peak RSS (``ru_maxrss``) is its own.
Prints a markdown table and writes ``data/benchmarks/simulator.json``.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness import Clock, bench_parser, write_result


def _simulator(rows: int, fmt: str, compress: bool) -> dict[str, Any]:
    from tasks.simulation import SimulationSpec, write_simulation

    out = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        with Clock() as clock:
            result = write_simulation(
                SimulationSpec(total_rows=rows), out, fmt=fmt, compress=compress
            )
        seconds = clock.seconds
        size = sum(p.stat().st_size for p in result.paths)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"rows": result.rows, "seconds": seconds, "bytes": size, "files": len(result.paths)}


def _duckdb_baseline(rows: int, fmt: str, compress: bool) -> dict[str, Any]:
    """Same row count and a similar column mix, generated and written by DuckDB alone."""
    import duckdb

    out = Path(tempfile.mkdtemp(prefix="bench-duck-"))
    path = out / f"base.{fmt}"
    options = {"parquet": "FORMAT parquet", "jsonl": "FORMAT json", "csv": "FORMAT csv"}[fmt]
    if compress and fmt != "parquet":
        options += ", COMPRESSION gzip"
    query = f"""
        COPY (
          SELECT 'r-' || lpad(i::VARCHAR, 9, '0') AS request_id,
                 TIMESTAMPTZ '2026-10-01 00:00:00+00'
                   + to_microseconds((random() * 2.592e12)::BIGINT) AS timestamp,
                 ['support-summarize', 'ticket-classify', 'sales-email', 'code-review'][1 + i % 4]
                   AS use_case,
                 ['gpt-4o-mini', 'gpt-4o', 'claude-haiku-4-5', 'claude-sonnet-4-5']
                   [1 + (i // 4) % 4] AS model,
                 'u' || lpad((random() * 20000)::INT::VARCHAR, 6, '0') AS unit_id,
                 random() AS propensity, (random() * 3000)::BIGINT AS input_tokens,
                 (random() * 500)::BIGINT AS output_tokens, random() * 5000 AS latency_ms,
                 random() AS quality, (random() * 3)::TINYINT - 1 AS feedback,
                 CASE WHEN random() < 0.01 THEN 'error' ELSE 'success' END AS status
          FROM range({rows}) t(i)
        ) TO '{path}' ({options})
    """
    con = duckdb.connect(":memory:")
    try:
        with Clock() as clock:
            con.execute(query)
        seconds = clock.seconds
        size = path.stat().st_size
    finally:
        con.close()
        shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": seconds, "bytes": size, "files": 1}


def _measure(target: str, rows: int, fmt: str, compress: bool) -> dict[str, Any]:
    func = _simulator if target == "simulator" else _duckdb_baseline
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = func(rows, fmt, compress)
    after = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds are steadier than wall time on a shared machine
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["peak_rss_mb"] = after.ru_maxrss / 1024
    return result


def run(quick: bool) -> list[dict[str, Any]]:
    big = 1_000_000 if quick else 10_000_000
    text = 200_000 if quick else 1_000_000
    plan = [
        ("simulator", big, "parquet", False),
        ("duckdb baseline", big, "parquet", False),
        ("simulator", text, "jsonl", True),
        ("duckdb baseline", text, "jsonl", True),
        ("simulator", text, "csv", True),
    ]
    ctx = mp.get_context("spawn")
    results = []
    for target, rows, fmt, compress in plan:  # one process at a time: the machine is shared
        with ctx.Pool(1) as pool:
            res = pool.apply(_measure, (target, rows, fmt, compress))
        res.update(
            target=target,
            format=fmt + (".gz" if compress else ""),
            rows_per_second=res["rows"] / res["seconds"],
        )
        results.append(res)
    return results


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| target | format | rows | wall s | CPU s | rows/s (wall) | MB written | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['target']} | {r['format']} | {r['rows']:,} | {r['seconds']:.1f} | "
            f"{r['cpu_seconds']:.1f} | "
            f"{r['rows_per_second']:,.0f} | {r['bytes'] / 1e6:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__).parse_args(argv)
    results = run(args.quick)
    print(_table(results))
    payload = {
        "note": "includes the ground truth (about 2 s); each row runs in its own process",
        "results": results,
    }
    print(f"\nwrote {write_result('simulator', payload, quick=args.quick, out=args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "run"]
