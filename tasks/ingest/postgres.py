"""Pull LiteLLM's spend logs from its PostgreSQL database, incrementally and idempotently.

LiteLLM's proxy keeps one row per call in ``"LiteLLM_SpendLogs"`` (schema.prisma: request_id
primary key, ``"startTime"`` TIMESTAMP(3) in UTC, index on ``("startTime", request_id)``). A pull
reads the rows after the watermark minus an overlap window, ordered by that index, under a
REPEATABLE READ READ ONLY snapshot, with a server-side cursor in batches. Each row becomes its
JSON (``row_to_json``) and goes through the same mapping as a LiteLLM file export (shape
``litellm``), so nothing differs between a file and a pull.

Why it is safe to re-run, and to kill: each batch is one DuckDB transaction holding its rows,
quarantine, manifest entry and the new watermark (the batch's last ``(startTime, request_id)``).
A crash loses at most the open batch, which the next pull reads again. The overlap window
re-reads recent rows so that calls committed late (LiteLLM writes spend logs in batches; a long
call commits after shorter ones that started later) are not skipped; rows already stored count
as duplicates. A row committed later than the overlap behind the newest row it precedes is not
seen: keep the overlap above LiteLLM's flush interval plus the longest call.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from tasks.core.settings import Settings
from tasks.ingest.chunks import Counts, process_chunk, tag_chunk
from tasks.ingest.errors import SourceError
from tasks.ingest.log_formats import LITELLM
from tasks.ingest.pricing import apply_ingest_schema, overrides_path, sync_price_overrides
from tasks.ingest.readers import CHUNK_BYTES
from tasks.ingest.report import FileIngestReport, IngestReport
from tasks.ingest.session import MemoryLimit, ingest_settings
from tasks.ingest.sql_records import UseCaseRules
from tasks.ingest.validation import validate_ingest_run
from tasks.warehouse.connection import connect
from tasks.warehouse.lake import commit_ingests, staging

__all__ = ["DEFAULT_OVERLAP", "SPEND_LOGS_TABLE", "pull_litellm", "source_key"]

SPEND_LOGS_TABLE = "LiteLLM_SpendLogs"
DEFAULT_OVERLAP = dt.timedelta(hours=1)
DEFAULT_BATCH_ROWS = 50_000
FETCH_ROWS = 2048  # rows per round trip of the server-side cursor


def source_key(url: str) -> str:
    """The URL without its password (what the warehouse records as the source).

    Args:
        url: a ``postgresql://`` URL (``+psycopg`` driver suffixes are accepted).

    >>> source_key("postgresql+psycopg://bob:secret@db:5432/litellm")
    'postgresql://bob@db:5432/litellm'
    """
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(("postgresql", netloc, parts.path, parts.query, ""))


def _libpq_url(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


@dataclass(frozen=True, kw_only=True)
class _Pull:
    key: str
    run_id: str
    now: dt.datetime
    validate: bool
    use_cases: UseCaseRules | None


def _watermark(con: duckdb.DuckDBPyConnection, key: str) -> tuple[dt.datetime, str] | None:
    row = con.execute(
        "SELECT watermark_ts, watermark_id FROM source_watermarks WHERE source = ?", [key]
    ).fetchone()
    return None if row is None or row[0] is None else (row[0], str(row[1]))


def _query(table: str, since: dt.datetime | None) -> tuple[sql.Composed, list[Any]]:
    select = sql.SQL('SELECT row_to_json(s)::text, s."startTime", s.request_id FROM {} s').format(
        sql.Identifier(table)
    )
    order = sql.SQL(' ORDER BY s."startTime", s.request_id')
    if since is None:
        return select + order, []
    naive = since.astimezone(dt.UTC).replace(tzinfo=None)  # startTime is naive UTC
    return select + sql.SQL(' WHERE s."startTime" >= %s') + order, [naive]


def _commit_batch(
    con: duckdb.DuckDBPyConnection,
    rows: list[tuple[str, dt.datetime, str]],
    *,
    number: int,
    first_line: int,
    pull: _Pull,
) -> Counts:
    """One batch in one transaction: rows, quarantine, manifest, watermark, validation."""
    started_at = dt.datetime.now(dt.UTC)
    table = pa.table(
        {
            "line_no": pa.array(np.arange(first_line, first_line + len(rows), dtype=np.int64)),
            "raw": pa.array([r[0] for r in rows], pa.large_string()),
            "pre": pa.nulls(len(rows), pa.string()),
        }
    )
    counts = {number: Counts()}
    last_ts, last_id = rows[-1][1].replace(tzinfo=dt.UTC), rows[-1][2]
    ingest_id = f"{pull.run_id}-{number:06d}"
    con.execute("BEGIN TRANSACTION")
    try:
        process_chunk(
            con,
            tag_chunk(table, pull.key, number),
            shape=LITELLM,
            run_id=pull.run_id,
            now=pull.now,
            counts=counts,
            use_cases=pull.use_cases,
            by_line=False,
        )
        c = counts[number]
        con.execute(
            "INSERT INTO ingest_manifest BY NAME SELECT ? AS ingest_id, ? AS run_id, ? AS path,"
            " 0 AS size_bytes, ? AS content_hash, 'postgresql' AS file_format,"
            " 'litellm' AS shape, ? AS lines_read, 0 AS blank_lines, ? AS ingested,"
            " ? AS duplicates, ? AS quarantined, ? AS started_at, now() AS finished_at",
            [
                ingest_id,
                pull.run_id,
                pull.key,
                f"pull:{pull.key}:{last_ts.isoformat()}:{last_id}",
                c.lines_read,
                c.ingested,
                c.duplicates,
                c.quarantined,
                started_at,
            ],
        )
        con.execute("DELETE FROM source_watermarks WHERE source = ?", [pull.key])
        con.execute(
            "INSERT INTO source_watermarks VALUES (?, ?, ?, now())", [pull.key, last_ts, last_id]
        )
        if pull.validate and c.ingested:
            validate_ingest_run(con, pull.run_id, ingest_ids=[ingest_id])
        commit_ingests(con, {ingest_id: c})  # lake mode: the batch's rows -> Parquet parts
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts[number]


def _next_batch(cursor: Any, batch_rows: int) -> list[tuple[str, dt.datetime, str]]:
    """Up to ``batch_rows`` rows, fewer once they hold ``CHUNK_BYTES`` of text.

    Spend logs with stored prompts (``messages``, ``response``) are 6 KB a row: 50,000 of them
    were 300 MB in one transaction and 3.2 GB peak RSS for a 60,000-row pull.
    """
    rows: list[tuple[str, dt.datetime, str]] = []
    size = 0
    while len(rows) < batch_rows and size < CHUNK_BYTES:
        part = cursor.fetchmany(min(FETCH_ROWS, batch_rows - len(rows)))
        if not part:
            break
        rows.extend(part)
        size += sum(len(row[0]) for row in part)
    return rows


def _stream(
    con: duckdb.DuckDBPyConnection,
    url: str,
    pull: _Pull,
    *,
    overlap: dt.timedelta,
    batch_rows: int,
    on_batch: Callable[[int], None] | None,
) -> Counts:
    mark = _watermark(con, pull.key)
    query, params = _query(SPEND_LOGS_TABLE, None if mark is None else mark[0] - overlap)
    total = Counts()
    # a batch that runs out of the ingest's memory is rolled back and run again under the
    # larger limit, which then stays for the rest of the pull (its later batches would run out
    # the same way)
    with MemoryLimit(con) as limit, psycopg.connect(_libpq_url(url), connect_timeout=10) as pg:
        pg.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        pg.read_only = True
        with pg.transaction(), pg.cursor(name=f"llmopt_pull_{pull.run_id}") as cursor:
            cursor.execute(query, params)
            number = 0
            while rows := _next_batch(cursor, batch_rows):
                first_line = total.lines_read + 1
                try:
                    part = _commit_batch(con, rows, number=number, first_line=first_line, pull=pull)
                except duckdb.OutOfMemoryException:
                    if not limit.raise_once():
                        raise
                    part = _commit_batch(con, rows, number=number, first_line=first_line, pull=pull)
                total.add(part)
                number += 1
                if on_batch is not None:
                    on_batch(number)
    return total


def pull_litellm(
    url: str,
    *,
    settings: Settings | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    validate: bool = True,
    use_cases: UseCaseRules | None = None,
    price_overrides: Any = None,
    now: dt.datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Pull new ``LiteLLM_SpendLogs`` rows into the warehouse (see the module docstring).

    Args:
        url: the LiteLLM database, ``postgresql://user[:password]@host[:port]/db``.
        settings: where the warehouse is (when ``con`` is None).
        con: an open warehouse connection to use instead (left open).
        overlap: how far before the watermark each pull starts reading again.
        batch_rows: rows per DuckDB transaction at most (fewer once they hold
            ``CHUNK_BYTES`` of text; the cursor fetches ``FETCH_ROWS`` at a time).
        validate: run the expectation suite on each batch before its COMMIT.
        use_cases: where rows without a use case get one.
        price_overrides: an overrides CSV instead of the configured one.
        now: the clock for the future-timestamp rule (tests).
        on_batch: called with the number of batches committed so far.

    Returns:
        A report with one entry for the source (all batches of this pull).

    Raises:
        SourceError: the database or its spend-log table cannot be read (one line).
    """
    started = time.perf_counter()
    own = con is None
    con = connect(settings) if con is None else con
    pull = _Pull(
        key=source_key(url),
        run_id=uuid.uuid4().hex[:16],
        now=now or dt.datetime.now(dt.UTC),
        validate=validate,
        use_cases=use_cases,
    )
    try:
        apply_ingest_schema(con)
        sync_price_overrides(con, price_overrides or overrides_path(settings))
        try:
            with ingest_settings(con), staging(con):
                total = _stream(
                    con, url, pull, overlap=overlap, batch_rows=batch_rows, on_batch=on_batch
                )
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"{pull.key}: cannot read {SPEND_LOGS_TABLE}: {first}") from None
        except duckdb.OutOfMemoryException as exc:  # even under the larger limit
            first = str(exc).splitlines()[0]
            raise SourceError(
                f"{pull.key}: {first}; the batches committed before stay, the next pull resumes"
                " after them"
            ) from None
    finally:
        if own:
            con.close()
    report = FileIngestReport(
        path=pull.key,
        file_format="postgresql",
        shape="litellm",
        size_bytes=0,
        content_hash="",
        ingest_id=pull.run_id,
        seconds=time.perf_counter() - started,
        **total.report_fields(),
    )
    return IngestReport(run_id=pull.run_id, files=(report,), seconds=report.seconds)
