"""How a planned file is read: its reader and chunk size, and a group of small files read whole.

A file's chunks come from :mod:`tasks.ingest.readers` (Parquet slices scanned in place, text as
Arrow tables of raw lines); a group of small text files is read and tagged before the
transaction that inserts it (:func:`read_group`), so that a file that cannot be read fails
alone and the others go in together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import duckdb
import pyarrow as pa

from tasks.ingest.chunks import tag_chunk
from tasks.ingest.errors import IngestFileError
from tasks.ingest.paths import sniff_json
from tasks.ingest.plans import Plan
from tasks.ingest.readers import (
    CHUNK_BYTES,
    ParquetGroup,
    ParquetSlice,
    TextCursor,
    iter_csv,
    iter_json_objects,
    iter_jsonl,
    iter_parquet,
    iter_plain_csv,
    plain_csv,
)

__all__ = [
    "OTEL_CHUNK_BYTES",
    "PARQUET_CHUNK_ROWS",
    "TEXT_CHUNK_ROWS",
    "file_chunks",
    "parquet_runs",
    "read_group",
]

# whole DuckDB row groups (122,880 rows): no partial row group for the CHECKPOINT to merge
# again (1.5 s of a 1 M-line JSONL ingest with 131,072-line chunks); bounded memory
TEXT_CHUNK_ROWS, PARQUET_CHUNK_ROWS = 122_880, 16 * 122_880
OTEL_CHUNK_BYTES = 16 * 2**20


def file_chunks(
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


def read_group(
    con: duckdb.DuckDBPyConnection, plans: Sequence[Plan], chunk_rows: int | None
) -> tuple[list[pa.Table], dict[int, str]]:
    """Every chunk of a group of small files, read before their shared transaction."""
    tables: list[pa.Table] = []
    failed: dict[int, str] = {}
    for plan in plans:
        try:
            for chunk in file_chunks(con, plan, chunk_rows, TextCursor()):
                tagged = tag_chunk(chunk, str(plan.path), plan.file_no)
                assert isinstance(tagged, pa.Table)
                tables.append(tagged)
        except IngestFileError as exc:
            failed[plan.file_no] = str(exc)
    return tables, failed


def parquet_runs(plans: Sequence[Plan]) -> Iterator[tuple[list[Plan], ParquetGroup | None]]:
    """A group of small Parquet files as runs of consecutive files with one schema.

    Each run comes with one scan of all its files, or None for a lone file (streamed as any
    file is). Schemas are compared without their metadata (pandas writes its index there).

    Raises:
        IngestFileError: a file is not readable Parquet (the group then runs file by file).
    """
    import pyarrow.parquet as pq  # only Parquet files need it

    run: list[Plan] = []
    schema = pa.schema([])
    for plan in plans:
        try:
            file_schema = pq.read_schema(plan.path)
        except (OSError, pa.ArrowException) as exc:
            raise IngestFileError(f"{plan.path}: unreadable Parquet ({exc})") from exc
        if run and not file_schema.equals(schema, check_metadata=False):
            yield run, _scan(run, schema)
            run = []
        if not run:
            schema = file_schema
        run.append(plan)
    if run:
        yield run, _scan(run, schema)


def _scan(run: list[Plan], schema: pa.Schema) -> ParquetGroup | None:
    if len(run) == 1:
        return None
    return ParquetGroup(tuple(p.path for p in run), tuple(p.file_no for p in run), schema)
