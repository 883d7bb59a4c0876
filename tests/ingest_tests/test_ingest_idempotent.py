"""Idempotency and atomicity: re-ingest adds nothing, duplicates are counted, a killed ingest
leaves no partial file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.settings import REPO_ROOT
from tasks.ingest.chunks import PRICE_SAMPLE_ROWS
from tasks.ingest.pipeline import ingest_paths
from tasks.warehouse.connection import apply_schema


def test_reingesting_the_same_file_adds_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = kit.write_jsonl(tmp_path / "a.jsonl", [kit.record(i) for i in range(50)])
    first = kit.ingest(con, [path])
    assert first.ingested == 50
    second = ingest_paths([path, str(tmp_path / "*.jsonl")], con=con, validate=False, now=kit.NOW)
    assert [f.status for f in second.files] == ["skipped"]
    assert kit.counts(con) == (50, 0)


def test_duplicates_within_and_across_files_are_counted_first_occurrence_wins(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    a = kit.write_jsonl(
        tmp_path / "a.jsonl",
        [kit.record(1, prompt_id="first"), kit.record(2), kit.record(1, prompt_id="second")],
    )
    b = kit.write_jsonl(tmp_path / "b.jsonl", [kit.record(2), kit.record(3), kit.record(3)])
    report = kit.ingest(con, [a, b], chunk_rows=2)
    assert [(f.ingested, f.duplicates) for f in report.files] == [(2, 1), (1, 2)]
    assert kit.counts(con) == (3, 0)
    kept = con.execute("SELECT prompt_id FROM usage_logs WHERE request_id = 'r-1'").fetchall()
    assert kept == [("first",)]
    distinct = con.execute("SELECT count(DISTINCT request_id) FROM usage_logs").fetchone()
    assert distinct == (3,)


def test_a_copy_of_a_file_under_another_name_is_skipped_by_content_hash(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    a = kit.write_jsonl(tmp_path / "a.jsonl", [kit.record(i) for i in range(5)])
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(a.read_bytes())
    ingest_paths([a], con=con, validate=False, now=kit.NOW)
    report = ingest_paths([copy], con=con, validate=False, now=kit.NOW)
    assert report.files[0].status == "skipped"
    assert kit.counts(con) == (5, 0)


@pytest.mark.slow
def test_two_thousand_tiny_files_in_a_folder(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    folder = tmp_path / "many" / "deep"
    folder.mkdir(parents=True)
    for i in range(2000):
        rows = [kit.record(i)] if i % 500 else [kit.record(i), "not json"]
        kit.write_jsonl(folder / f"part-{i:05d}.jsonl", rows)
    report = kit.ingest(con, [tmp_path / "many"])
    assert len(report.files) == 2000
    assert report.ingested == 2000 and report.quarantine_by_reason == {"malformed_json": 4}
    assert kit.counts(con) == (2000, 4)


def test_small_parquet_files_share_a_transaction_and_a_bad_one_fails_alone(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """A day of Parquet files per use case is one transaction (one validation), not one each."""
    days = tmp_path / "days"
    days.mkdir()
    for day in range(6):
        rows = [kit.record(10 * day + i) for i in range(10)]
        pq.write_table(pa.Table.from_pylist(rows), days / f"day-{day}.parquet")
    report = ingest_paths([days], con=con, now=kit.NOW)  # validated
    kit.assert_balanced(report)
    assert [f.ingested for f in report.files] == [10] * 6
    assert report.validation is not None and report.validation["total_rows"] == 60
    validations = "SELECT count(*) FROM validation_results WHERE run_id = ?"
    assert con.execute(validations, [report.run_id]).fetchone() == (1,)
    manifest = "SELECT count(*), sum(ingested) FROM ingest_manifest WHERE run_id = ?"
    assert con.execute(manifest, [report.run_id]).fetchone() == (6, 60)

    more = tmp_path / "more"
    more.mkdir()
    for day in range(3):
        rows = [kit.record(100 + 10 * day + i) for i in range(10)]
        pq.write_table(pa.Table.from_pylist(rows), more / f"day-{day}.parquet")
    whole = (more / "day-1.parquet").read_bytes()
    (more / "day-1.parquet").write_bytes(whole[: len(whole) // 2] + whole[-8:])  # cut short
    report = ingest_paths([more], con=con, now=kit.NOW)
    kit.assert_balanced(report)
    assert [f.status for f in report.files] == ["ingested", "failed", "ingested"]
    assert "unreadable Parquet" in str(report.files[1].error)
    # the group was rolled back and run again file by file: two transactions went in
    assert con.execute(validations, [report.run_id]).fetchone() == (2,)
    assert kit.counts(con) == (80, 0)


@pytest.mark.parametrize("same_schema", [True, False])
def test_a_parquet_group_keeps_the_first_occurrence_of_an_id_across_its_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, same_schema: bool
) -> None:
    """One scan for files of one schema, or one file at a time: the same rows and counts."""
    stored = kit.write_jsonl(tmp_path / "stored.jsonl", [kit.record(9, prompt_id="stored")])
    kit.ingest(con, [stored])
    folder = tmp_path / "group"
    folder.mkdir()
    files = {
        "a": [kit.record(1, prompt_id="a"), kit.record(2, prompt_id="a")],
        "b": [kit.record(2, prompt_id="b"), kit.record(3, prompt_id="b"), kit.record(3)],
        "c": [kit.record(9, prompt_id="c"), kit.record(1, prompt_id="c"), kit.record(4)],
    }
    for name, rows in files.items():
        table = pa.Table.from_pylist(rows)
        if not same_schema and name == "c":  # another schema: a and b scanned, then c alone
            table = table.append_column("extra", pa.array(["x"] * len(rows)))
        pq.write_table(table, folder / f"{name}.parquet")
    report = kit.ingest(con, [folder])
    assert [(f.ingested, f.duplicates) for f in report.files] == [(2, 0), (1, 2), (1, 2)]
    kept = con.execute("SELECT request_id, prompt_id FROM usage_logs ORDER BY 1").fetchall()
    assert kept == [("r-1", "a"), ("r-2", "a"), ("r-3", "b"), ("r-4", "p1"), ("r-9", "stored")]


def test_a_parquet_group_gives_what_its_files_give_one_by_one(tmp_path: Path, kit: Any) -> None:
    """Counts, reasons, rows and quarantine lines of one scan equal four separate ingests."""
    folder = tmp_path / "group"
    folder.mkdir()
    files = {
        "a": [
            kit.record(1),
            kit.record(2, input_tokens=-5),
            kit.record(3, timestamp="2026-10-01T00:00:00"),
        ],
        "b": [],
        "c": [
            kit.record(2),
            kit.record(4, model="no-such-model"),
            kit.record(5, status="weird"),
            kit.record(1),
        ],
        "d": [kit.record(6), kit.record(6), kit.record(7, input_tokens=-1)],
    }
    schema = pa.Table.from_pylist(files["a"]).schema
    for name, rows in files.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{name}.parquet")

    def ingested(batches: list[list[Path]]) -> tuple[list[Any], ...]:
        con = duckdb.connect()
        apply_schema(con)
        reports = [kit.ingest(con, batch) for batch in batches]
        counts = [
            (Path(f.path).name, f.status, f.ingested, f.duplicates, f.quarantine_by_reason)
            for report in reports
            for f in report.files
        ]
        rows = con.execute(
            "SELECT request_id, source_file, source_line, prompt_id, cost_usd FROM usage_logs"
            " ORDER BY ALL"
        ).fetchall()
        held = con.execute("SELECT source_file, source_line, reason FROM quarantine ORDER BY ALL")
        return counts, rows, held.fetchall()

    together = ingested([[folder]])
    alone = ingested([[folder / f"{name}.parquet"] for name in files])
    assert together == alone
    assert together[0] == [
        ("a.parquet", "ingested", 1, 0, {"missing_timezone": 1, "negative_tokens": 1}),
        ("b.parquet", "empty", 0, 0, {}),
        ("c.parquet", "ingested", 1, 1, {"out_of_range": 1, "unknown_model": 1}),
        ("d.parquet", "ingested", 1, 1, {"negative_tokens": 1}),
    ]


@pytest.mark.slow  # ~1.9 s: a child process killed mid-file, then a re-run
def test_sigkill_mid_file_then_rerun_gives_no_partial_file_and_no_duplicate(
    tmp_path: Path, kit: Any
) -> None:
    small = kit.write_jsonl(tmp_path / "1-small.jsonl", [kit.record(i) for i in range(10)])
    big_rows = [kit.record(i) for i in range(10, 4010)]
    big = kit.write_jsonl(tmp_path / "2-big.jsonl", big_rows)
    warehouse = tmp_path / "wh.duckdb"
    script = textwrap.dedent(
        f"""
        import sys, time
        from tasks.ingest.pipeline import ingest_paths
        from tasks.warehouse.connection import connect

        def progress(path, lines):
            print(path, lines, flush=True)
            if path.endswith("2-big.jsonl"):
                time.sleep(0.5)  # give the parent time to kill us mid-file

        con = connect(path={str(warehouse)!r})
        ingest_paths({[str(small), str(big)]!r}, con=con, validate=False, chunk_rows=500,
                     on_chunk=progress)
        print("FINISHED", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.rstrip().endswith(
            "2-big.jsonl 1000"
        ):  # two chunks of the big file are in its transaction
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    assert not any("FINISHED" in s for s in seen)

    from tasks.warehouse.connection import connect

    con = connect(path=warehouse)
    try:
        before = con.execute("SELECT count(*) FROM usage_logs").fetchone()
        assert before == (10,)  # the small file committed; nothing of the big one
        report = kit.ingest(con, [small, big])
        assert [f.status for f in report.files] == ["skipped", "ingested"]
        assert report.files[1].ingested == 4000 and report.files[1].duplicates == 0
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM usage_logs"
        ).fetchone() or (0, 0)
        assert total == distinct == 4010
        manifest = con.execute("SELECT path FROM ingest_manifest ORDER BY path").fetchall()
        assert [Path(p).name for (p,) in manifest] == ["1-small.jsonl", "2-big.jsonl"]
    finally:
        con.close()
    assert json.loads(json.dumps(report.to_dict()))["totals"]["balanced"] is True


def test_one_streamed_file_keeps_the_first_occurrence_within_and_across_chunks(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    stored = kit.write_jsonl(tmp_path / "stored.jsonl", [kit.record(9, prompt_id="stored")])
    ingest_paths([stored], con=con, validate=False, now=kit.NOW)
    lines: list[Any] = [
        kit.record(1, prompt_id="first"),
        kit.record(2),
        kit.record(1, prompt_id="same chunk"),  # chunk 1: a repeat of line 1
        kit.record(9, prompt_id="again"),  # chunk 2: stored by the earlier ingest
        "{broken",
        kit.record(2, prompt_id="next chunk"),  # chunk 2: a repeat of line 2
        kit.record(3),
    ]
    path = kit.write_jsonl(tmp_path / "one.jsonl", lines)
    report = kit.ingest(con, [path], chunk_rows=3)
    (item,) = report.files
    assert (item.lines_read, item.ingested, item.duplicates, item.quarantined) == (7, 3, 3, 1)
    kept = dict(con.execute("SELECT request_id, prompt_id FROM usage_logs").fetchall())
    assert kept == {"r-1": "first", "r-2": "p1", "r-3": "p1", "r-9": "stored"}
    lines_kept = con.execute(
        "SELECT source_line FROM usage_logs WHERE source_file = ? ORDER BY 1", [str(path)]
    ).fetchall()
    assert lines_kept == [(1,), (2,), (7,)]


def test_an_id_stored_before_and_repeated_in_later_chunks_keeps_only_the_stored_row(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """Ids stored before and repeats in the file are both checked once per file (dedupe_file)."""
    stored = kit.write_jsonl(tmp_path / "stored.jsonl", [kit.record(9, prompt_id="stored")])
    ingest_paths([stored], con=con, validate=False, now=kit.NOW)
    lines = [
        kit.record(9, prompt_id="chunk 1"),  # stored before
        kit.record(1),
        kit.record(2),
        kit.record(9, prompt_id="chunk 2"),  # stored before, and a repeat of line 1
        kit.record(1, prompt_id="repeat"),  # a repeat of line 2, from the previous chunk
        kit.record(3),
        kit.record(9, prompt_id="chunk 3"),  # once more
    ]
    path = kit.write_jsonl(tmp_path / "later.jsonl", lines)
    report = kit.ingest(con, [path], chunk_rows=3)
    (item,) = report.files
    assert (item.lines_read, item.ingested, item.duplicates) == (7, 3, 4)
    kept = dict(con.execute("SELECT request_id, prompt_id FROM usage_logs").fetchall())
    assert kept == {"r-9": "stored", "r-1": "p1", "r-2": "p1", "r-3": "p1"}
    manifest = con.execute(
        "SELECT ingested, duplicates FROM ingest_manifest WHERE path = ?",
        [str(path)],
    ).fetchall()
    assert manifest == [(3, 4)]


def test_first_occurrence_wins_when_its_model_is_first_priced_in_the_same_chunk(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    known = kit.write_jsonl(tmp_path / "known.jsonl", [kit.record(9)])  # prices gpt-4o-mini
    ingest_paths([known], con=con, validate=False, now=kit.NOW)
    # the models of a file's first lines are priced before its first one pass: the new model
    # comes after them, so only the full path (after the one pass) prices it
    pad = [kit.record(100 + i) for i in range(PRICE_SAMPLE_ROWS)]
    lines = [
        *pad,
        kit.record(1, model="claude-haiku-4-5", provider="anthropic"),  # not priced yet
        kit.record(2),
        kit.record(1, prompt_id="later"),  # priced already: the one pass would take it
    ]
    path = kit.write_jsonl(tmp_path / "new_model.jsonl", lines)
    report = kit.ingest(con, [path])
    (item,) = report.files
    n = len(pad)
    counted = (item.lines_read, item.ingested, item.duplicates, item.quarantined)
    assert counted == (n + 3, n + 2, 1, 0)
    kept = con.execute("SELECT model, source_line FROM usage_logs WHERE request_id = 'r-1'")
    assert kept.fetchall() == [("claude-haiku-4-5", n + 1)]
