"""Ingest usage-log files into the DuckDB warehouse: map, price, check, dedupe, quarantine.

Why this shape:

* **Streaming, bounded memory.** Files are read in chunks (``chunk_rows``,
  :mod:`tasks.ingest.readers`) and each chunk is classified in SQL
  (:mod:`tasks.ingest.sql_records`, :mod:`tasks.ingest.sql_classify`); rows never become
  Python objects.
* **All or nothing per file.** One DuckDB transaction per file covers the rows, the quarantine,
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tasks.core.settings import Settings
from tasks.ingest.chunks import Counts, dedupe_file, process_chunk, tag_chunk
from tasks.ingest.errors import IngestError, IngestFileError
from tasks.ingest.log_formats import FIELD_NAMES, SHAPE_BY_NAME, SHAPES
from tasks.ingest.paths import resolve_paths, sniff_json
from tasks.ingest.plans import Plan, plan_file, transaction_groups, write_manifest
from tasks.ingest.prefetch import prefetch
from tasks.ingest.pricing import apply_ingest_schema, overrides_path, sync_price_overrides
from tasks.ingest.readers import (
    CHUNK_BYTES,
    ParquetSlice,
    TextCursor,
    iter_csv,
    iter_json_objects,
    iter_jsonl,
    iter_parquet,
    iter_plain_csv,
    plain_csv,
)
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

# whole DuckDB row groups (122,880 rows): no partial row group for the CHECKPOINT to merge
# again (1.5 s of a 1 M-line JSONL ingest with 131,072-line chunks); bounded memory
TEXT_CHUNK_ROWS, PARQUET_CHUNK_ROWS = 122_880, 16 * 122_880
OTEL_CHUNK_BYTES = 16 * 2**20


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


def _chunks(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    chunk_rows: int | None,
    cursor: TextCursor,
    *,
    csv_lines: bool = False,
) -> Iterator[pa.Table] | Iterator[ParquetSlice]:
    """The file's chunks; ``csv_lines``: a plain CSV file as physical lines (streamed files)."""
    if plan.fmt == "parquet":
        return iter_parquet(plan.path, chunk_rows or PARQUET_CHUNK_ROWS)
    rows = chunk_rows or TEXT_CHUNK_ROWS
    if plan.fmt == "csv":
        if plain_csv(plan.path, plan.compressed):
            return iter_plain_csv(con, plan.path, rows, lines=csv_lines)
        return iter_csv(plan.path, plan.compressed, rows)
    if plan.fmt == "json":
        layout = sniff_json(plan.path, plan.compressed)
        if layout != "jsonl":
            return iter_json_objects(con, plan.path, layout, rows)
    # spans: DuckDB's buffers while it flattens a 16 MiB chunk of them peak at 320-730 MB
    # (smaller chunks avoided no retry and took longer: 8 MiB 3.9-6.3 s against 2.8-4.2 s)
    limit = OTEL_CHUNK_BYTES if plan.shape == "otel" else CHUNK_BYTES
    return iter_jsonl(plan.path, plan.compressed, rows, cursor, chunk_bytes=limit)


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


def _read_small(
    con: duckdb.DuckDBPyConnection, plans: Sequence[Plan], chunk_rows: int | None
) -> tuple[list[pa.Table], dict[int, str]]:
    """Every chunk of a group of small files, read before their shared transaction."""
    tables: list[pa.Table] = []
    failed: dict[int, str] = {}
    for plan in plans:
        try:
            for chunk in _chunks(con, plan, chunk_rows, TextCursor()):
                tagged = tag_chunk(chunk, str(plan.path), plan.file_no)
                assert isinstance(tagged, pa.Table)
                tables.append(tagged)
        except IngestFileError as exc:
            failed[plan.file_no] = str(exc)
    return tables, failed


def _load(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[Plan],
    tables: list[pa.Table],
    options: _Options,
    counts: dict[int, Counts],
) -> dict[int, int | None]:
    """Insert the rows of a group (read already) or stream one file; end lines per file."""
    shape = SHAPE_BY_NAME[plans[0].shape]
    common: dict[str, Any] = {
        "shape": shape,
        "run_id": options.run_id,
        "now": options.now,
        "counts": counts,
        "use_cases": options.use_cases,
    }
    if len(plans) > 1:
        if tables:
            process_chunk(con, pa.concat_tables(tables), **common)
        return {plan.file_no: None for plan in plans}
    plan = plans[0]
    cursor = TextCursor(next_line=plan.resume_line, offset=plan.resume_offset)
    if plan.size > plan.resume_offset:
        # the next chunk is read in a thread while this one is inserted; that thread reads JSON
        # arrays through its own DuckDB connection, closed (with the thread) on any exit
        reader = con.cursor()
        tag = functools.partial(tag_chunk, path=str(plan.path), file_no=plan.file_no)
        chunks = _chunks(reader, plan, options.chunk_rows, cursor, csv_lines=True)
        try:
            with contextlib.closing(prefetch(chunks, tag)) as tagged:
                for chunk in tagged:
                    process_chunk(con, chunk, **common)
                    if options.on_chunk is not None:
                        done = counts[plan.file_no]
                        options.on_chunk(str(plan.path), done.lines_read + done.blank_lines)
        finally:
            reader.close()
        typed = plan.fmt == "parquet"
        dedupe_file(con, shape, options.run_id, plan.file_no, counts[plan.file_no], typed=typed)
    resumable = plan.fmt == "jsonl" and not plan.compressed
    return {plan.file_no: cursor.next_line - 1 if resumable else None}


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
) -> tuple[list[FileIngestReport], dict[str, Any] | None]:
    """One transaction for one file (streamed) or for a group of small files (read first).

    The validation runs inside the transaction, before the COMMIT that records the files in
    the manifest: a crash between the two cannot leave unvalidated rows behind. A transaction
    that runs out of the ingest's memory limit is rolled back and run once more under a larger
    one, kept for the rest of the run (:class:`tasks.ingest.session.MemoryLimit`).
    """
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    counts = {plan.file_no: Counts() for plan in plans}
    tables, failed = _read_small(con, plans, options.chunk_rows) if len(plans) > 1 else ([], {})
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
        for plan in good:  # one line: DuckDB's message goes on with tuning hints
            failed[plan.file_no] = f"{plan.path}: {str(exc).splitlines()[0]}"
    except (IngestFileError, duckdb.Error, UnicodeError, ValueError) as exc:
        con.execute("ROLLBACK")
        for plan in good:
            message = str(exc) if isinstance(exc, IngestFileError) else f"{plan.path}: {exc}"
            failed[plan.file_no] = message
    except BaseException:
        con.execute("ROLLBACK")
        raise
    seconds = (time.perf_counter() - started) / max(len(plans), 1)
    reports = []
    for plan in plans:
        if plan.file_no in failed:
            reports.append(
                _report(plan, "failed", ingest_id=None, error=failed[plan.file_no], seconds=seconds)
            )
            continue
        c = counts[plan.file_no]
        reports.append(
            _report(
                plan,
                "ingested" if c.lines_read else "empty",
                ingest_id=f"{options.run_id}-{plan.file_no:06d}",
                lines_read=c.lines_read,
                blank_lines=c.blank_lines,
                ingested=c.ingested,
                duplicates=c.duplicates,
                quarantined=c.quarantined,
                quarantine_by_reason=dict(sorted(c.reasons.items())),
                seconds=seconds,
            )
        )
    return reports, validation


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
            done, validation = _ingest_plans(con, group, options, limit)
            validations += [validation] if validation else []
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
