"""Ingest benchmark: our ingest vs a bare DuckDB load of the same files, in the same run.

Generates N canonical rows (DuckDB SQL, seeded arithmetic: no simulator needed) as Parquet, JSONL
and CSV, then measures, each in a fresh child process (so peak RSS is per method):

* bare DuckDB ``CREATE TABLE AS SELECT * FROM read_parquet / read_json(format =
  'newline_delimited') / read_csv``
* ``tasks.ingest.pipeline.ingest_paths`` (mapping, pricing, checks, dedupe, quarantine, manifest)

Both use ``threads=2`` and ``memory_limit=1500MB``. ``--stored N`` first loads N other rows
(untimed, same format) into each warehouse, so the timed load goes into a table that already
holds rows (bare: ``INSERT INTO ... SELECT``), as a nightly ingest does. Prints a markdown
table and writes ``data/benchmarks/ingest.json`` (``ingest.quick.json`` for ``--quick``) through
the shared harness.

    .venv/bin/python tests/benchmarks/bench_ingest.py --quick      # 1 M rows
    .venv/bin/python tests/benchmarks/bench_ingest.py              # 10 M rows
    .venv/bin/python tests/benchmarks/bench_ingest.py --quick --formats jsonl --stored 5000000
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness import Clock, bench_parser, markdown_table, peak_rss_mib, write_result

DUCKDB_SETTINGS = "SET threads = 2; SET memory_limit = '1500MB';"

ROWS_SQL = """
SELECT '{prefix}-' || i AS request_id,
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


_READERS = {
    "parquet": "read_parquet('{}')",
    "jsonl": "read_json('{}', format = 'newline_delimited')",
    "csv": "read_csv('{}')",
}
_SUFFIX = {"parquet": "parquet", "jsonl": "jsonl", "csv": "csv"}
_COPY = {"parquet": "(FORMAT parquet)", "jsonl": "(FORMAT json)", "csv": "(FORMAT csv, HEADER)"}


def _bare(kind: str, source: Path, db: Path, stored: Path | None) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(db))
    con.execute(DUCKDB_SETTINGS)
    load = f"SELECT * FROM {_READERS[kind].format(source)}"
    if stored is not None:
        con.execute(f"CREATE TABLE t AS SELECT * FROM {_READERS[kind].format(stored)}")
        con.execute("CHECKPOINT")
    with Clock() as clock:
        con.execute(f"INSERT INTO t {load}" if stored is not None else f"CREATE TABLE t AS {load}")
    rows = con.execute("SELECT count(*) FROM t").fetchone()
    con.close()
    return {
        "seconds": clock.seconds,
        "rows": int(rows[0]) if rows else 0,
        "peak_rss_mb": peak_rss_mib(),
    }


def _ours(source: Path, db: Path, stored: Path | None) -> dict[str, Any]:
    from tasks.ingest.pipeline import ingest_paths
    from tasks.warehouse.connection import connect

    con = connect(path=db)
    con.execute(DUCKDB_SETTINGS)
    if stored is not None:
        ingest_paths([stored], con=con, validate=False)
    with Clock() as clock:
        report = ingest_paths([source], con=con, validate=False)
    con.close()
    assert report.balanced and not report.failed and not report.duplicates, report.to_dict()
    return {"seconds": clock.seconds, "rows": report.ingested, "peak_rss_mb": peak_rss_mib()}


def _run(method: str, kind: str, source: Path, work: Path, stored: Path | None) -> dict[str, Any]:
    db = work / f"{method}-{kind}.duckdb"
    if method == "bare":
        return _bare(kind, source, db, stored)
    return _ours(source, db, stored)


def _in_child(
    method: str, kind: str, source: Path, work: Path, stored: Path | None
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_run, (method, kind, source, work, stored))
    for leftover in work.glob(f"{method}-{kind}.duckdb*"):
        leftover.unlink()
    return result


def _generate(n: int, work: Path, kinds: list[str], prefix: str = "req") -> dict[str, Path]:
    import duckdb

    con = duckdb.connect()
    con.execute(DUCKDB_SETTINGS)
    paths = {}
    for kind in kinds:
        path = work / f"{prefix}.{_SUFFIX[kind]}"
        con.execute(f"COPY ({ROWS_SQL.format(n=n, prefix=prefix)}) TO '{path}' {_COPY[kind]}")
        paths[kind] = path
    con.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = bench_parser(__doc__)
    parser.add_argument("--rows", type=int, default=None, help="rows (default 10 M, 1 M quick)")
    parser.add_argument("--formats", default="parquet,jsonl,csv")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--stored", type=int, default=0, help="rows already in the warehouse")
    args = parser.parse_args(argv)
    n = args.rows or (1_000_000 if args.quick else 10_000_000)
    kinds = [k for k in args.formats.split(",") if k]
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    results = []
    try:
        sources = _generate(n, work, kinds)
        stored = _generate(args.stored, work, kinds, prefix="old") if args.stored else {}
        for kind in kinds:
            bare = _in_child("bare", kind, sources[kind], work, stored.get(kind))
            ours = _in_child("ours", kind, sources[kind], work, stored.get(kind))
            results.append(
                {
                    "format": kind,
                    "rows": n,
                    "stored_rows": args.stored,
                    "file_mb": round(sources[kind].stat().st_size / 1e6, 1),
                    "bare_s": round(bare["seconds"], 2),
                    "ingest_s": round(ours["seconds"], 2),
                    "ratio_to_bare": round(ours["seconds"] / bare["seconds"], 2),
                    "ingest_rows_per_s": round(n / ours["seconds"]),
                    "bare_peak_rss_mb": round(bare["peak_rss_mb"]),
                    "ingest_peak_rss_mb": round(ours["peak_rss_mb"]),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(results))
    payload = {
        "rows": n,
        "stored_rows": args.stored,
        "duckdb_settings": DUCKDB_SETTINGS,
        "results": results,
    }
    print(write_result("ingest", payload, quick=args.quick, out=args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
