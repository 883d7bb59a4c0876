"""Ingest usage-log files into the DuckDB warehouse: map, price, check, dedupe, quarantine.

Why this shape:

* **Streaming, bounded memory.** Files are read in chunks (``chunk_rows``,
  :mod:`tasks.ingest.readers`) and each chunk is classified in SQL
  (:mod:`tasks.ingest.sql_records`, :mod:`tasks.ingest.sql_classify`); rows never become
  Python objects.
* **All or nothing per file.** One DuckDB transaction per file (or per group of small files of
  one shape, :func:`tasks.ingest.plans.transaction_groups`) covers the rows, the quarantine,
  the price rows it needed, the validation result and the manifest entry. A crash leaves no
  partial file; re-running ingests it again. A file whose content hash is in the manifest is
  skipped; a JSONL file that grew since (same bytes up to the recorded offset) is read from
  there.
* **Nothing lost silently.** Every record is ingested, counted as a duplicate (its request_id is
  already in the warehouse or earlier in the file: first occurrence wins) or quarantined with a
  reason code. ``lines_read == ingested + duplicates + quarantined`` for every file (blank lines
  are counted apart). Input keys that do not land in a column are kept in ``metadata``.

Entry points: :func:`ingest_paths` (files / globs / folders), :func:`ingest_source` (paths or a
LiteLLM PostgreSQL URL) and :func:`warehouse_status`.

Example::

    report = ingest_paths(["logs/*.jsonl.gz"], settings=load_settings())
    assert report.balanced
    print(report.ingested, report.quarantine_by_reason)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tasks.core.settings import Settings
from tasks.ingest.chunks import Counts, dedupe_file, dedupe_group, process_chunk, tag_chunk
from tasks.ingest.errors import IngestError, IngestFileError
from tasks.ingest.file_reads import file_chunks, parquet_runs, read_group
from tasks.ingest.log_formats import FIELD_NAMES, SHAPE_BY_NAME, SHAPES
from tasks.ingest.paths import resolve_paths
from tasks.ingest.plans import Plan, plan_file, transaction_groups, write_manifest
from tasks.ingest.prefetch import prefetch
from tasks.ingest.pricing import apply_ingest_schema, overrides_path, sync_price_overrides
from tasks.ingest.readers import TextCursor
from tasks.ingest.report import FileIngestReport, IngestReport, WarehouseStatus, warehouse_status
from tasks.ingest.session import MemoryLimit, ingest_settings
from tasks.ingest.sql_classify import REASON_CODES
from tasks.ingest.sql_records import UseCaseRules
from tasks.ingest.validation import merge_validations, validate_ingest_run
from tasks.warehouse.connection import connect
from tasks.warehouse.lake import commit_ingests, staging

__all__ = [
    "FIELD_NAMES",
    "REASON_CODES",
    "FileIngestReport",
    "IngestError",
    "IngestFileError",
    "IngestReport",
    "UseCaseRules",
    "WarehouseStatus",
    "ingest_paths",
    "resolve_paths",
    "warehouse_status",
]


@dataclass(frozen=True)
class _Options:
    """What every transaction of one call shares."""

    run_id: str
    now: dt.datetime
    chunk_rows: int | None
    validate: bool
    use_cases: UseCaseRules | None
    on_chunk: Callable[[str, int], None] | None
    on_file: Callable[[FileIngestReport], None] | None = None


def _report(plan: Plan, status: str, **values: Any) -> FileIngestReport:
    return FileIngestReport(
        path=str(plan.path),
        status=status,
        file_format=plan.fmt,
        shape=plan.shape,
        size_bytes=plan.size,
        content_hash=plan.digest,
        resumed_at_byte=plan.resume_offset,
        **values,
    )


def _text_group(plans: Sequence[Plan]) -> bool:
    """Several text files: read before their transaction, inserted as one table."""
    return len(plans) > 1 and plans[0].fmt != "parquet"


def _load(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[Plan],
    tables: list[pa.Table],
    options: _Options,
    counts: dict[int, Counts],
) -> dict[int, int | None]:
    """Insert a text group (read already), a Parquet group (runs of one schema scanned
    together) or one streamed file; the last line read per file where it can resume."""
    common: dict[str, Any] = {
        "shape": SHAPE_BY_NAME[plans[0].shape],
        "run_id": options.run_id,
        "now": options.now,
        "counts": counts,
        "use_cases": options.use_cases,
    }
    if _text_group(plans):
        if tables:
            process_chunk(con, pa.concat_tables(tables), **common)
        return {plan.file_no: None for plan in plans}
    if len(plans) == 1:
        return {plans[0].file_no: _stream(con, plans[0], options, common)}
    for run, scan in parquet_runs(plans):
        if scan is None:
            _stream(con, run[0], options, common)
            continue
        process_chunk(con, scan, **common)
        dedupe_group(con, options.run_id, counts, list(scan.file_nos))
    return {plan.file_no: None for plan in plans}


def _stream(
    con: duckdb.DuckDBPyConnection, plan: Plan, options: _Options, common: dict[str, Any]
) -> int | None:
    """Insert one file chunk by chunk; its last line read when it can resume there."""
    counts = common["counts"][plan.file_no]
    cursor = TextCursor(next_line=plan.resume_line, offset=plan.resume_offset)
    if plan.size > plan.resume_offset:
        # the next chunk is read in a thread while this one is inserted; that thread reads JSON
        # arrays through its own DuckDB connection, closed (with the thread) on any exit
        reader = con.cursor()
        tag = functools.partial(tag_chunk, path=str(plan.path), file_no=plan.file_no)
        chunks = file_chunks(reader, plan, options.chunk_rows, cursor, csv_lines=True)
        try:
            with contextlib.closing(prefetch(chunks, tag)) as tagged:
                for chunk in tagged:
                    process_chunk(con, chunk, **common)
                    if options.on_chunk is not None:
                        options.on_chunk(str(plan.path), counts.lines_read + counts.blank_lines)
        finally:
            reader.close()
        typed = plan.fmt == "parquet"
        dedupe_file(con, common["shape"], options.run_id, plan.file_no, counts, typed=typed)
    resumable = plan.fmt == "jsonl" and not plan.compressed
    return cursor.next_line - 1 if resumable else None


def _validate(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[Plan],
    counts: dict[int, Counts],
    options: _Options,
) -> dict[str, Any] | None:
    ids = [f"{options.run_id}-{p.file_no:06d}" for p in plans if counts[p.file_no].ingested]
    if not options.validate or not ids:
        return None
    return validate_ingest_run(con, options.run_id, ingest_ids=ids)


def _ingest_plans(
    con: duckdb.DuckDBPyConnection, plans: Sequence[Plan], options: _Options, limit: MemoryLimit
) -> tuple[list[FileIngestReport], list[dict[str, Any]]]:
    """One transaction for one file or a group of small files; their reports and validations.

    The validation runs inside the transaction, before the COMMIT that records the files in
    the manifest: a crash between the two cannot leave unvalidated rows behind. A transaction
    that runs out of the ingest's memory limit is rolled back and run once more under a larger
    one, kept for the rest of the run (:class:`tasks.ingest.session.MemoryLimit`). A group
    whose transaction fails is rolled back and run again file by file, so that one bad file
    fails alone.
    """
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    counts = {plan.file_no: Counts() for plan in plans}
    tables, failed = read_group(con, plans, options.chunk_rows) if _text_group(plans) else ([], {})
    good = [plan for plan in plans if plan.file_no not in failed]
    validation = None
    con.execute("BEGIN TRANSACTION")
    try:
        end_lines = _load(con, plans, tables, options, counts)
        for plan in good:
            write_manifest(
                con,
                plan,
                counts[plan.file_no],
                run_id=options.run_id,
                started_at=started_at,
                end_line=end_lines[plan.file_no],
            )
        validation = _validate(con, good, counts, options)
        commit_ingests(con, {f"{options.run_id}-{p.file_no:06d}": counts[p.file_no] for p in good})
        con.execute("COMMIT")
    except duckdb.OutOfMemoryException as exc:
        con.execute("ROLLBACK")
        if limit.raise_once():
            return _ingest_plans(con, plans, options, limit)
        if len(good) > 1:
            return _one_by_one(con, plans, failed, options, limit)
        for plan in good:  # one line: DuckDB's message goes on with tuning hints
            failed[plan.file_no] = f"{plan.path}: {str(exc).splitlines()[0]}"
    except (IngestFileError, duckdb.Error, UnicodeError, ValueError) as exc:
        con.execute("ROLLBACK")
        if len(good) > 1:
            return _one_by_one(con, plans, failed, options, limit)
        for plan in good:
            message = str(exc) if isinstance(exc, IngestFileError) else f"{plan.path}: {exc}"
            failed[plan.file_no] = message
    except BaseException:
        con.execute("ROLLBACK")
        raise
    seconds = (time.perf_counter() - started) / max(len(plans), 1)
    reports = [_done(plan, counts[plan.file_no], failed, options, seconds) for plan in plans]
    return reports, [validation] if validation else []


def _one_by_one(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[Plan],
    failed: dict[int, str],
    options: _Options,
    limit: MemoryLimit,
) -> tuple[list[FileIngestReport], list[dict[str, Any]]]:
    """A failed group again, one transaction per file (files that could not be read fail)."""
    reports: list[FileIngestReport] = []
    validations: list[dict[str, Any]] = []
    for plan in plans:
        if plan.file_no in failed:
            reports.append(_done(plan, Counts(), failed, options, 0.0))
            continue
        done, checked = _ingest_plans(con, [plan], options, limit)
        reports += done
        validations += checked
    return reports, validations


def _done(
    plan: Plan, c: Counts, failed: dict[int, str], options: _Options, seconds: float
) -> FileIngestReport:
    """The report of one file of a transaction that ended (``failed``: file_no -> why)."""
    if plan.file_no in failed:
        return _report(plan, "failed", ingest_id=None, error=failed[plan.file_no], seconds=seconds)
    fields = c.report_fields()
    ingest_id = f"{options.run_id}-{plan.file_no:06d}"
    return _report(plan, fields.pop("status"), ingest_id=ingest_id, seconds=seconds, **fields)


def ingest_paths(
    paths: Sequence[str | Path],
    *,
    settings: Settings | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    shape: str = "auto",
    validate: bool = True,
    price_overrides: Path | None = None,
    chunk_rows: int | None = None,
    now: dt.datetime | None = None,
    on_chunk: Callable[[str, int], None] | None = None,
    use_cases: UseCaseRules | None = None,
    on_file: Callable[[FileIngestReport], None] | None = None,
) -> IngestReport:
    """Ingest files / globs / folders; the nightly flow's entry point.

    Small text files of one shape are grouped into one transaction (a folder of thousands of
    tiny files); a larger file gets its own and is streamed. Bad data never raises.

    Args:
        paths: files, globs (``**`` allowed) or folders.
        settings: where the warehouse and the price overrides are (when ``con`` is None).
        con: an open warehouse connection to use instead (left open).
        shape: ``auto`` (detected per file) or one of ``canonical | litellm | otel``.
        validate: run the Great Expectations suite on a bounded sample of each transaction's
            rows, before its COMMIT, and store the result.
        price_overrides: an overrides CSV instead of the configured one.
        chunk_rows: records per chunk (memory bound); the defaults suit 1-2 GB.
        now: the clock for the future-timestamp rule (tests).
        on_chunk: called with (file, lines done) after each chunk of a streamed file.
        use_cases: where records without a use case get one (a default, or a mapping from
            LiteLLM model group / key alias / tag).
        on_file: called with each file's report as soon as its transaction ends.

    Returns:
        The per-file reports, their totals and the (merged) validation summary.

    Raises:
        IngestError: a path that does not exist, an unsupported file or an unknown shape.
        WarehouseBusyError: another process holds the warehouse (one line naming it).
    """
    if shape not in ("auto", *SHAPES):
        raise IngestError(f"unknown format {shape!r}: use auto, {', '.join(SHAPES)}")
    files = resolve_paths(paths)
    options = _Options(
        run_id=uuid.uuid4().hex[:16],
        now=now or dt.datetime.now(dt.UTC),
        chunk_rows=chunk_rows,
        validate=validate,
        use_cases=use_cases,
        on_chunk=on_chunk,
        on_file=on_file,
    )
    own = con is None
    con = connect(settings) if con is None else con
    try:
        with ingest_settings(con):
            with staging(con):  # lake mode: usage_logs is the table
                overrides = price_overrides or overrides_path(settings)
                report = _ingest_files(
                    con, files, shape=shape, overrides=overrides, options=options
                )
            # write the new rows to the file now, under the ingest's memory limit: left to the
            # connection's close, the checkpoint ran with the caller's limit (1.6 GB RSS at 10 M)
            with contextlib.suppress(duckdb.Error):  # another transaction open: the close does it
                con.execute("CHECKPOINT")
            return report
    finally:
        if own:
            con.close()


def _ingest_files(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    *,
    shape: str,
    overrides: Path,
    options: _Options,
) -> IngestReport:
    """The body of :func:`ingest_paths` once the connection is set up."""
    started = time.perf_counter()
    apply_ingest_schema(con)
    sync_price_overrides(con, overrides)
    plans = [plan_file(con, path, index, shape) for index, path in enumerate(files)]
    reports: dict[int, FileIngestReport] = {}
    validations: list[dict[str, Any]] = []

    def skipped(plan: Plan, holder: str) -> None:
        reports[plan.file_no] = _report(plan, "skipped", ingest_id=holder)

    with MemoryLimit(con) as limit:
        for group in transaction_groups(con, plans, skipped):
            done, checked = _ingest_plans(con, group, options, limit)
            validations += checked
            for item, report in zip(group, done, strict=True):
                reports[item.file_no] = report
                if options.on_file is not None:
                    options.on_file(report)
    return IngestReport(
        run_id=options.run_id,
        files=tuple(reports[plan.file_no] for plan in plans),
        validation=merge_validations(validations),
        seconds=time.perf_counter() - started,
    )
