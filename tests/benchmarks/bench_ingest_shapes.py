"""Ingest benchmark of the shapes users export: OTel spans and LiteLLM spend logs, beside DuckDB.

``bench_ingest`` measures our canonical record; this one the shapes that cost more per line:

* OTLP JSON as the collector's file exporter writes it, 1, 10 and 100 spans a line (the spans
  of ``tests/ingest_tests/fixtures/otel_old_semconv_file_exporter.jsonl`` with new ids);
* LiteLLM spend-log lines (``tests/ingest_tests/fixtures/litellm_spend_logs.json`` rows with new
  ids), with an 800-character ``messages`` (1.7 KB a line) and with stored prompts
  (``messages`` and ``response``, as ``store_prompts_in_spend_logs`` writes them: 6 KB a line);
  the fixture's first three rows, all of which go in;
* a folder of 200 small Parquet files of ``bench_ingest``'s canonical rows (a day and use case
  each, as the simulator and many exporters write them), ingested **with** validation, as the
  nightly flow does: small files share a transaction, so the Great Expectations suite runs once
  per group and not once per file (bare DuckDB: ``read_parquet`` of the folder's glob).

Each file is loaded in a fresh child process by bare DuckDB (``CREATE TABLE AS SELECT * FROM
read_json(format = 'newline_delimited')``: nested types auto-detected, nothing flattened, priced
or checked) and by ``ingest_paths`` (``validate=False``), both with ``threads=2`` and
``memory_limit=1500MB``; for ours also how often the run needed the larger memory limit.
Prints a markdown table and writes ``data/benchmarks/ingest_shapes.json``.

    .venv/bin/python tests/benchmarks/bench_ingest_shapes.py --quick   # 20,000 records each
    .venv/bin/python tests/benchmarks/bench_ingest_shapes.py           # 100,000 records each
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_ingest import ROWS_SQL
from harness import REPO_ROOT, Clock, bench_parser, markdown_table, peak_rss_mib, write_result

FIXTURES = REPO_ROOT / "tests" / "ingest_tests" / "fixtures"
SETTINGS = "SET threads = 2; SET memory_limit = '1500MB';"
PROMPT = [{"role": "user", "content": "Summarise this ticket. " * 180}]
_READ = "read_json('{}', format = 'newline_delimited')"
ANSWER = {"choices": [{"message": {"content": "The customer asks for a refund. " * 60}}]}
FOLDER_FILES = 200


def _otlp_lines(n: int, per_line: int) -> Iterator[str]:
    line = json.loads(
        (FIXTURES / "otel_old_semconv_file_exporter.jsonl").read_text().split("\n")[0]
    )
    template = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for start in range(0, n, per_line):
        spans = []
        for i in range(start, min(n, start + per_line)):
            span = json.loads(json.dumps(template))
            span["spanId"] = f"{i:016x}"
            for attribute in span["attributes"]:
                if attribute["key"] == "gen_ai.response.id":
                    attribute["value"]["stringValue"] = f"resp-{i}"
            spans.append(span)
        line["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans
        yield json.dumps(line)


def _litellm_lines(n: int, *, stored_prompts: bool) -> Iterator[str]:
    # the fixture's first three rows (the fourth is an unpriced model, quarantined by design)
    rows = json.loads((FIXTURES / "litellm_spend_logs.json").read_text())[:3]
    for i in range(n):
        row = dict(rows[i % len(rows)], request_id=f"lite-{i}")
        if stored_prompts:
            row.update(messages=PROMPT, response=ANSWER)
        else:
            row["messages"] = [{"role": "user", "content": "x" * 800}]
        yield json.dumps(row)


def _files(n: int, work: Path) -> dict[str, tuple[Path, int]]:
    """name -> (file, records in it)."""
    made: dict[str, Iterator[str]] = {
        f"OTLP, {k} span{'s' if k > 1 else ''} a line": _otlp_lines(n, k) for k in (1, 10, 100)
    }
    made["LiteLLM, 1.7 KB lines"] = _litellm_lines(n, stored_prompts=False)
    made["LiteLLM, stored prompts (6 KB)"] = _litellm_lines(n // 2, stored_prompts=True)
    files = {_PARQUET_FOLDER: (_parquet_folder(n, work / "folder"), n)}
    for number, (name, lines) in enumerate(made.items()):
        path = work / f"shape{number}.jsonl"
        # line by line: a spawned child starts from this process's peak RSS on Linux, so the
        # files are never held in memory here
        with path.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
        files[name] = (path, n // 2 if "stored" in name else n)
    return files


_PARQUET_FOLDER = f"Parquet folder, {FOLDER_FILES} files (validated)"


def _parquet_folder(n: int, folder: Path) -> Path:
    """``n`` canonical rows in ``FOLDER_FILES`` Parquet files of one folder."""
    import duckdb

    folder.mkdir()
    con = duckdb.connect()
    con.execute(f"CREATE TABLE rows AS {ROWS_SQL.format(n=n, prefix='pq')}")
    for part in range(FOLDER_FILES):
        con.execute(
            f"COPY (SELECT * FROM rows WHERE hash(request_id) % {FOLDER_FILES} = {part})"
            f" TO '{folder / f'part-{part:03d}.parquet'}' (FORMAT parquet)"
        )
    con.close()
    return folder


def _files_of(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else [path]


def _bare(source: Path, db: Path) -> dict[str, Any]:
    import duckdb

    read = (
        f"read_parquet('{source}/*.parquet')"
        if source.is_dir()
        else f"read_json('{source}', format = 'newline_delimited')"
    )
    con = duckdb.connect(str(db))
    con.execute(SETTINGS)
    with Clock() as clock:
        con.execute(f"CREATE TABLE t AS SELECT * FROM {read}")
    con.close()
    return {"seconds": clock.seconds, "peak_rss_mb": peak_rss_mib(), "raises": 0}


def _ours(source: Path, db: Path) -> dict[str, Any]:
    from tasks.ingest import session
    from tasks.ingest.pipeline import UseCaseRules, ingest_paths
    from tasks.warehouse.connection import connect

    raises: list[bool] = []
    real = session.MemoryLimit.raise_once

    def counted(limit: session.MemoryLimit) -> bool:
        raised = real(limit)
        raises.append(raised)
        return raised

    setattr(session.MemoryLimit, "raise_once", counted)  # noqa: B010 (counted, in this child only)
    con = connect(path=db)
    con.execute(SETTINGS)
    with Clock() as clock:
        report = ingest_paths(
            [source],
            con=con,
            validate=source.is_dir(),
            use_cases=UseCaseRules(default="bench"),
        )
    con.close()
    assert report.balanced and not report.failed, report.to_dict()
    return {
        "seconds": clock.seconds,
        "peak_rss_mb": peak_rss_mib(),
        "raises": sum(raises),
        "ingested": report.ingested,
        "validations": (report.validation or {}).get("transactions", 1 if report.validation else 0),
    }


def _run(method: str, source: Path, db: Path) -> dict[str, Any]:
    return _bare(source, db) if method == "bare" else _ours(source, db)


def _in_child(method: str, source: Path, work: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    db = work / f"{method}.duckdb"
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_run, (method, source, db))
    for leftover in work.glob(f"{method}.duckdb*"):
        leftover.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = bench_parser(__doc__)
    parser.add_argument("--records", type=int, default=None, help="default 100,000 (quick 20,000)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    n = args.records or (20_000 if args.quick else 100_000)
    work = Path(tempfile.mkdtemp(prefix="bench_shapes_", dir=args.workdir))
    results = []
    try:
        for name, (path, records) in _files(n, work).items():
            bare = _in_child("bare", path, work)
            ours = _in_child("ours", path, work)
            assert ours["ingested"] == records, (name, ours)
            results.append(
                {
                    "shape": name,
                    "records": records,
                    "file_mb": round(sum(f.stat().st_size for f in _files_of(path)) / 1e6, 1),
                    "bare_s": round(bare["seconds"], 2),
                    "ingest_s": round(ours["seconds"], 2),
                    "ratio_to_bare": round(ours["seconds"] / bare["seconds"], 2),
                    "bare_peak_rss_mb": round(bare["peak_rss_mb"]),
                    "ingest_peak_rss_mb": round(ours["peak_rss_mb"]),
                    "larger_memory_limit": bool(ours["raises"]),
                    "validations": ours["validations"],
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(results))
    payload = {"records": n, "duckdb_settings": SETTINGS, "results": results}
    print(write_result("ingest_shapes", payload, quick=args.quick, out=args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
