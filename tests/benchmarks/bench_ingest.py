"""Ingest benchmark: our ingest vs a bare DuckDB load of the same files, in the same run.

Generates N canonical rows (DuckDB SQL, seeded arithmetic: no simulator needed) as Parquet and
JSONL, then measures, each in a fresh child process (so peak RSS is per method):

* bare DuckDB ``CREATE TABLE AS SELECT * FROM read_parquet(...)`` / ``read_json(...)``
* ``tasks.ingest.pipeline.ingest_paths`` (mapping, pricing, checks, dedupe, quarantine, manifest)

Both use ``threads=2`` and ``memory_limit=1500MB``. Prints a markdown table and writes
``data/benchmarks/ingest.json``.

    .venv/bin/python tests/benchmarks/bench_ingest.py --quick      # 1 M rows
    .venv/bin/python tests/benchmarks/bench_ingest.py              # 10 M rows
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.core.settings import REPO_ROOT

OUT = REPO_ROOT / "data" / "benchmarks" / "ingest.json"
DUCKDB_SETTINGS = "SET threads = 2; SET memory_limit = '1500MB';"

ROWS_SQL = """
SELECT 'req-' || i AS request_id,
       TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_milliseconds(i * 250) AS timestamp,
       ['support-summarize', 'ticket-classify', 'sales-email', 'code-review'][1 + i % 4]
           AS use_case,
       ['gpt-4o-mini', 'gpt-4o', 'claude-haiku-4-5', 'claude-sonnet-4-5'][1 + (i // 7) % 4]
           AS model,
       ['openai', 'openai', 'anthropic', 'anthropic'][1 + (i // 7) % 4] AS provider,
       'p-' || (i % 3) AS prompt_id, 'cfg-' || (i % 11) AS config_id,
       CASE WHEN i % 4 = 0 THEN 'exp-1' END AS experiment_id,
       CASE WHEN i % 4 = 0 THEN ['control', 'treatment'][1 + i % 2] END AS variant_id,
       'u-' || (i % 50000) AS unit_id, 0.5 AS propensity, 0.7 AS temperature, 1.0 AS top_p,
       512 AS max_tokens, (200 + i % 1000)::BIGINT AS input_tokens,
       (50 + i % 300)::BIGINT AS output_tokens, 100.0 + (i % 900) AS latency_ms,
       20.0 AS ttft_ms, NULL::DOUBLE AS cost_usd,
       CASE WHEN i % 50 = 0 THEN 'error' ELSE 'success' END AS status,
       ((i * 37) % 100) / 100.0 AS quality, [-1, 0, 1][1 + i % 3] AS feedback,
       'summary' AS task_type, 'pro' AS user_segment, 'eu' AS region, 'en' AS language
FROM range({n}) t(i)
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _bare(kind: str, source: Path, db: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(db))
    con.execute(DUCKDB_SETTINGS)
    reader = (
        f"read_parquet('{source}')"
        if kind == "parquet"
        else f"read_json('{source}', format = 'newline_delimited')"
    )
    start = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}")
    seconds = time.perf_counter() - start
    rows = con.execute("SELECT count(*) FROM t").fetchone()
    con.close()
    return {"seconds": seconds, "rows": int(rows[0]) if rows else 0, "peak_rss_mb": _peak_mb()}


def _ours(source: Path, db: Path) -> dict[str, Any]:
    from tasks.ingest.pipeline import ingest_paths
    from tasks.warehouse.connection import connect

    con = connect(path=db)
    con.execute(DUCKDB_SETTINGS)
    start = time.perf_counter()
    report = ingest_paths([source], con=con, validate=False)
    seconds = time.perf_counter() - start
    con.close()
    assert report.balanced and not report.failed, report.to_dict()
    return {"seconds": seconds, "rows": report.ingested, "peak_rss_mb": _peak_mb()}


def _run(method: str, kind: str, source: Path, work: Path) -> dict[str, Any]:
    db = work / f"{method}-{kind}.duckdb"
    if method == "bare":
        return _bare(kind, source, db)
    return _ours(source, db)


def _in_child(method: str, kind: str, source: Path, work: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_run, (method, kind, source, work))
    for leftover in work.glob(f"{method}-{kind}.duckdb*"):
        leftover.unlink()
    return result


def _generate(n: int, work: Path, kinds: list[str]) -> dict[str, Path]:
    import duckdb

    con = duckdb.connect()
    con.execute(DUCKDB_SETTINGS)
    paths = {}
    for kind in kinds:
        path = work / f"rows.{'parquet' if kind == 'parquet' else 'jsonl'}"
        fmt = "parquet" if kind == "parquet" else "json"
        con.execute(f"COPY ({ROWS_SQL.format(n=n)}) TO '{path}' (FORMAT {fmt})")
        paths[kind] = path
    con.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 M rows instead of 10 M")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--formats", default="parquet,jsonl")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    n = args.rows or (1_000_000 if args.quick else 10_000_000)
    kinds = [k for k in args.formats.split(",") if k]
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        sources = _generate(n, work, kinds)
        results = []
        for kind in kinds:
            bare = _in_child("bare", kind, sources[kind], work)
            ours = _in_child("ours", kind, sources[kind], work)
            results.append(
                {
                    "format": kind,
                    "rows": n,
                    "file_mb": round(sources[kind].stat().st_size / 1e6, 1),
                    "bare_seconds": round(bare["seconds"], 2),
                    "bare_rows_per_s": round(n / bare["seconds"]),
                    "bare_peak_rss_mb": round(bare["peak_rss_mb"]),
                    "ingest_seconds": round(ours["seconds"], 2),
                    "ingest_rows_per_s": round(n / ours["seconds"]),
                    "ingest_peak_rss_mb": round(ours["peak_rss_mb"]),
                    "ratio_to_bare": round(ours["seconds"] / bare["seconds"], 2),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| format | rows | file MB | bare s | ingest s | ingest rows/s | ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['format']} | {r['rows']:,} | {r['file_mb']} | {r['bare_seconds']} |"
            f" {r['ingest_seconds']} | {r['ingest_rows_per_s']:,} | {r['ratio_to_bare']}x |"
            f" {r['ingest_peak_rss_mb']} (bare {r['bare_peak_rss_mb']}) |"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"rows": n, "duckdb_settings": DUCKDB_SETTINGS, "results": results}, indent=2),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
