"""One chunk into the warehouse: extract, classify, price, dedupe, insert, quarantine, count.

Runs inside the caller's transaction. Text chunks are Arrow tables read by DuckDB's replacement
scan of the local name ``_chunk`` (``con.register`` would keep each chunk alive until the
file's COMMIT); ``_cls`` is a temp table dropped at the end, so memory stays bounded by the
chunk whatever the file size. Parquet slices, and groups of small Parquet files of one schema,
are scanned in place.

Size: one concept (a chunk into the tables) with its three ways in: the one-pass insert for
the usual text chunk (and its end-of-file dedupe), the full path for the lines it leaves, and
the typed (Parquet) path for a slice or a group (and the group's one-pass dedupe).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tasks.ingest.log_formats import Shape
from tasks.ingest.pricing import ensure_model_prices
from tasks.ingest.readers import ParquetGroup, ParquetSlice, csv_as_json, csv_header
from tasks.ingest.sql_classify import (
    USAGE_COLUMNS,
    candidates_sql,
    classify_sql,
    priced_sql,
    quarantine_sql,
)
from tasks.ingest.sql_records import (
    UseCaseRules,
    csv_records_sql,
    text_records_sql,
    typed_records_sql,
    use_case_sql,
)

__all__ = [
    "PRICE_SAMPLE_ROWS",
    "Counts",
    "dedupe_file",
    "process_chunk",
    "tag_chunk",
]

# rows per Arrow record batch of a text chunk: a few batches per thread for DuckDB's scan, and
# text per batch at most (long lines: see tag_chunk), less on the full path (_classify_text)
_BATCH_ROWS = 16_384
_BATCH_BYTES = 2 * 2**20
_CLASSIFY_BATCH_BYTES = 2**20

# lines of a text file whose models are priced before its first one-pass insert
PRICE_SAMPLE_ROWS = 1_024

_INSERT_SQL = f"INSERT INTO usage_logs ({USAGE_COLUMNS}) SELECT * EXCLUDE (__file_no) FROM"


@dataclass
class Counts:
    """Running counts of one file."""

    lines_read: int = 0
    blank_lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, part: Counts) -> None:
        """Add the counts of ``part`` (a chunk's, or a batch's) to these.

        Args:
            part: the counts to add.
        """
        self.lines_read += part.lines_read
        self.blank_lines += part.blank_lines
        self.ingested += part.ingested
        self.duplicates += part.duplicates
        self.quarantined += part.quarantined
        for reason, count in part.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def report_fields(self) -> dict[str, Any]:
        """These counts as the keyword arguments of a ``FileIngestReport`` (and its status)."""
        return {
            "status": "ingested" if self.lines_read else "empty",
            "lines_read": self.lines_read,
            "blank_lines": self.blank_lines,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_by_reason": dict(sorted(self.reasons.items())),
        }


def tag_chunk(table: pa.Table | ParquetSlice, path: str, file_no: int) -> pa.Table | ParquetSlice:
    """Add the file name (a one-entry dictionary: no per-row string) and the file number.

    Args:
        table: a text chunk or a Parquet slice.
        path: the file's name as stored in ``source_file``.
        file_no: its number in this run.
    """
    if isinstance(table, ParquetSlice):
        return replace(table, file_no=file_no)
    n = table.num_rows
    name = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([path], pa.string())
    )
    table = table.append_column("__file", name)
    table = table.append_column("__file_no", pa.array(np.full(n, file_no, dtype=np.int32)))
    # DuckDB scans an Arrow table one record batch per thread: a chunk read as one batch kept
    # the whole per-line SQL on one core. Long lines make smaller batches: a 64 MiB chunk of
    # LiteLLM rows with stored prompts (6 KB) was one batch; in 2 MiB batches 50,000 of them
    # 4.1 -> 3.3 s and 1.7 -> 0.8 GB RSS without the larger memory limit (LiteLLM lines of 1.7 KB
    # 3.7-3.9 -> 4.2 s, 1.35 -> 0.75 GB; canonical lines keep 16,384-line batches)
    return _batched(table, _BATCH_BYTES)


def _batched(table: pa.Table, max_bytes: int) -> pa.Table:
    """``table`` in record batches of at most ``_BATCH_ROWS`` rows and about ``max_bytes`` of
    ``raw`` text (zero-copy slices; the schema keeps its metadata)."""
    rows = _BATCH_ROWS
    if table.num_rows and "raw" in table.column_names:
        rows = max(1, min(rows, max_bytes * table.num_rows // max(1, table.column("raw").nbytes)))
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), table.schema)


def _mark_seen(con: duckdb.DuckDBPyConnection, source: str, key: str) -> str:
    """Positions in ``_rec`` whose request_id is already stored; the anti-join clause for them.

    The join carries only the key, so it stays cheap; the wide insert then anti-joins against
    this (usually empty) table instead of dragging every column through a hash join.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _seen AS SELECT __file_no, line_no, rec_no FROM {source} r"
        f" WHERE {key} IS NOT NULL AND EXISTS (SELECT 1 FROM usage_logs u"
        f" WHERE u.request_id = CAST(r.{key} AS VARCHAR))"
    )
    row = con.execute("SELECT count(*) FROM _seen").fetchone()
    if not row or not row[0]:
        return ""
    return (
        "AND NOT EXISTS (SELECT 1 FROM _seen s WHERE s.__file_no = c.__file_no"
        " AND s.line_no = c.line_no AND s.rec_no = c.rec_no)"
    )


def _models_sql(source: str = "_rec", prefix: str = "x_") -> str:
    """The distinct models of ``source`` with a provider seen for each."""
    return (
        f"SELECT CAST({prefix}model AS VARCHAR), any_value(CAST({prefix}provider AS VARCHAR))"
        f" FROM {source} WHERE {prefix}model IS NOT NULL GROUP BY 1"
    )


def _price(con: duckdb.DuckDBPyConnection, models: list[tuple[str, str | None]]) -> None:
    ensure_model_prices(con, [m for m, _ in models], {m: p for m, p in models if p})


def _price_models(con: duckdb.DuckDBPyConnection, source: str = "_rec", prefix: str = "x_") -> None:
    _price(con, con.execute(_models_sql(source, prefix)).fetchall())


def _price_first_lines(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, records: Callable[[str], str]
) -> None:
    """Price the models of a file's first lines, before its first chunk's one-pass insert.

    The first chunk into a new warehouse (or of a file with a new model) then goes in whole
    instead of being classified again in full (0.4 s of a 1 M-line ingest); a model first
    seen further into the file still takes the full path for its chunk.
    """
    _sample = chunk.slice(0, PRICE_SAMPLE_ROWS)  # read by DuckDB's replacement scan
    _price(con, con.execute(_models_sql(f"({records('_sample')})")).fetchall())


def _insert_typed(
    con: duckdb.DuckDBPyConnection, chunk: ParquetSlice, run_id: str, now: dt.datetime
) -> Counts:
    """Typed (Parquet) chunk of one file: counts come from the two inserts' row counts.

    Every valid row goes in; repeated and already stored ids are removed once per file, after
    its last slice (:func:`dedupe_file`; per slice they cost 2.2 s of a 10 M-row file).
    """
    row = con.execute(f"{_INSERT_SQL} ({candidates_sql('', '')})", [run_id])
    inserted = int((row.fetchone() or [0])[0])
    if inserted == chunk.num_rows:  # every row went in: no classification pass for quarantine
        return Counts(lines_read=inserted, ingested=inserted)
    row = con.execute(quarantine_sql(typed=True), [run_id, now])
    quarantined = int((row.fetchone() or [0])[0])
    counts = Counts(lines_read=chunk.num_rows, ingested=inserted, quarantined=quarantined)
    counts.duplicates = chunk.num_rows - inserted - quarantined
    if quarantined:
        counts.reasons = {
            str(reason): int(n)
            for reason, n in con.execute(
                "SELECT reason, count(*) FROM _cls WHERE reason IS NOT NULL GROUP BY 1"
            ).fetchall()
        }
    return counts


def _insert_typed_group(
    con: duckdb.DuckDBPyConnection, run_id: str, now: dt.datetime
) -> dict[int, Counts]:
    """Typed rows of several files (:class:`ParquetGroup`): counts per file from ``_cls``.

    As for one file, every valid row goes in and :func:`dedupe_group` removes repeated ids
    after.
    """
    per_file = con.execute(
        "SELECT __file_no, count(*), count(*) FILTER (WHERE reason IS NULL) FROM _cls GROUP BY 1"
    ).fetchall()
    con.execute(f"{_INSERT_SQL} ({candidates_sql('', '')})", [run_id])
    result = {
        int(f): Counts(lines_read=int(n), ingested=int(ok), quarantined=int(n) - int(ok))
        for f, n, ok in per_file
    }
    if any(c.quarantined for c in result.values()):
        con.execute(quarantine_sql(typed=True), [run_id, now])
        for file_no, reason, count in con.execute(
            "SELECT __file_no, reason, count(*) FROM _cls WHERE reason IS NOT NULL GROUP BY 1, 2"
        ).fetchall():
            result[int(file_no)].reasons[str(reason)] = int(count)
    return result


def _insert_text(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, run_id: str, now: dt.datetime, by_line: bool
) -> dict[int, Counts]:
    """Classified text records (``_cls``, priced by the view ``_fin``) into the tables."""
    _chunk = chunk  # the quarantine joins the lines back (replacement scan)
    per_file = con.execute(
        "SELECT __file_no, count(*), count(*) FILTER (WHERE reason IS NULL) FROM _fin GROUP BY 1"
    ).fetchall()
    n_ok, n_distinct = con.execute(
        "SELECT count(*), count(DISTINCT request_id) FROM _cls WHERE reason IS NULL"
    ).fetchone()  # type: ignore[misc]
    first_only = (
        "QUALIFY row_number() OVER (PARTITION BY request_id"
        " ORDER BY __file_no, line_no, rec_no) = 1"
        if n_distinct < n_ok
        else ""
    )
    candidates = candidates_sql(first_only, _mark_seen(con, "_cls", "request_id"), "_fin")
    inserted: dict[int, int] = {}
    if len(per_file) == 1:
        row = con.execute(f"{_INSERT_SQL} ({candidates})", [run_id]).fetchone()
        inserted[int(per_file[0][0])] = int(row[0]) if row else 0
    elif per_file:  # several small files: count per file before inserting
        con.execute(f"CREATE OR REPLACE TEMP TABLE _ins AS {candidates}", [run_id])
        con.execute(f"{_INSERT_SQL} _ins")
        by_file = "SELECT __file_no, count(*) FROM _ins GROUP BY 1"
        inserted = {int(k): int(v) for k, v in con.execute(by_file).fetchall()}
        con.execute("DROP TABLE _ins")
    result = {int(f): Counts() for f, _, _ in per_file}
    for file_no, n_records, ok in per_file:
        entry = result[int(file_no)]
        done = inserted.get(int(file_no), 0)
        entry.lines_read, entry.ingested = int(n_records), done
        entry.duplicates, entry.quarantined = int(ok) - done, int(n_records) - int(ok)
    if any(entry.quarantined for entry in result.values()):
        con.execute(quarantine_sql(typed=False, by_line=by_line, source="_fin"), [run_id, now])
        for file_no, reason, count in con.execute(
            "SELECT __file_no, reason, count(*) FROM _fin WHERE reason IS NOT NULL GROUP BY 1, 2"
        ).fetchall():
            result[int(file_no)].reasons[str(reason)] = int(count)
    return result


def _classify_text(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, shape: Shape, use_case: str, now: dt.datetime
) -> None:
    """``_cls`` (materialized, unpriced) and its priced view ``_fin`` from the chunk.

    The chunk is scanned in record batches of about 1 MiB of text: DuckDB scans an Arrow table
    one batch per thread, and a 16 MiB chunk of OTel lines (14,000 lines of one span) was one
    batch, so one core flattened every span. 100,000 spans one a line 4.0-4.2 -> 2.9 s, and
    the first chunk no longer needs the larger memory limit (RSS 1.2 -> 0.65 GB; in 2 MiB
    batches it still did). The one-pass path keeps 2 MiB batches: 150,000 LiteLLM lines took
    12% longer in 1 MiB ones.
    """
    _chunk = _batched(chunk, _CLASSIFY_BATCH_BYTES)  # read by DuckDB's replacement scan
    classify = classify_sql(
        shape,
        "text",
        now,
        use_case,
        source=f"({text_records_sql(shape)})",
        priced=False,
        keep_raw=shape.name == "otel",  # a span is not its line: keep its own text
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cls AS {classify}")
    _price_models(con, "_cls", "")
    con.execute(f"CREATE OR REPLACE TEMP VIEW _fin AS {priced_sql('_cls')}")


def _single_file(chunk: pa.Table) -> bool:
    numbers = chunk.column("__file_no")
    return len(numbers) > 0 and numbers[0] == numbers[len(numbers) - 1]


def _insert_clean(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    *,
    shape: Shape,
    use_case: str,
    run_id: str,
    now: dt.datetime,
    blanks: int,
    counts: dict[int, Counts],
    header: list[str] | None = None,
) -> pa.Table | None:
    """One pass for the usual chunk: insert every valid record straight from the lines.

    The records that pass every rule and are priced already go in with one INSERT (no
    intermediate table). Then the rows that repeat the request_id of an earlier line of the
    file are taken out again (first occurrence wins); ids stored by other ingests are taken
    out once per file, after its last chunk (:func:`dedupe_file`).
    When every non-blank line went in, the chunk is done
    (None); otherwise the lines that did not go in are returned, for the full path (which
    quarantines, prices new models and counts duplicates). A chunk of physical CSV lines
    (``header`` given) is read from its split fields; its left-over lines are returned as
    physical lines too.
    """
    _chunk = chunk  # read by DuckDB's replacement scan
    file_no = int(chunk.column("__file_no")[0].as_py())
    lines = chunk.column("line_no")
    first, last = int(lines[0].as_py()), int(lines[len(lines) - 1].as_py())
    ingest_id = f"{run_id}-{file_no:06d}"

    def records(source: str = "_chunk") -> str:
        if header is None:
            return text_records_sql(shape, source)
        return csv_records_sql(shape, header, source)

    if not counts[file_no].lines_read:  # the file's first chunk (20 ms each: not every chunk)
        _price_first_lines(con, chunk, records)
    classify = classify_sql(
        shape, "text", now, use_case, source=f"({records()})", priced=False, keep_raw=False
    )
    candidates = candidates_sql("", "", f"({priced_sql(f'({classify})')})")
    (row,) = con.execute(f"{_INSERT_SQL} ({candidates})", [run_id]).fetchall()
    inserted = int(row[0])
    # a request_id repeated inside the file, or stored by another ingest: the later rows go
    # once per file, after its last chunk (dedupe_file)
    mine = "ingest_id = $id AND source_line BETWEEN $first AND $last"
    params = {"id": ingest_id, "first": first, "last": last}
    done = counts[file_no]
    done.lines_read += inserted
    done.ingested += inserted
    if inserted == chunk.num_rows - blanks:
        return None
    rest = con.sql(
        f"SELECT * FROM _chunk WHERE NOT ({_blank_sql(header)}) AND line_no NOT IN"
        f" (SELECT source_line FROM usage_logs WHERE {mine})",
        params=params,
    ).to_arrow_table()
    return rest if header is None else rest.replace_schema_metadata(chunk.schema.metadata)


def _one_pass(shape: Shape) -> bool:
    """Whether a text chunk of this shape may take the one-pass insert (spans do not)."""
    return shape.name != "otel"


def dedupe_file(
    con: duckdb.DuckDBPyConnection,
    shape: Shape,
    run_id: str,
    file_no: int,
    counts: Counts,
    *,
    typed: bool = False,
) -> None:
    """After a streamed file's last chunk: its rows whose request_id came earlier go.

    Earlier means in an earlier line of the file, or stored by another ingest; the first
    occurrence wins either way. Once per file, not per chunk: with no index on
    ``request_id`` (an ART index cost ~1.5x at 10 M rows) a check per 122,880-line chunk read
    every id stored or inserted before it, so it grew with the warehouse and with the file
    (the in-file check alone: 9.9 s of a 10 M-line ingest; 0.6 s once at the end).

    The one-pass text insert and Parquet slices leave these checks to the end of the file;
    the other paths (text spans, left-over lines, groups of small files) check ids as they
    insert.

    Args:
        con: the warehouse, inside the file's transaction.
        shape: the file's log shape (text spans never take the one-pass insert: nothing to do).
        run_id: this ingest run.
        file_no: the file's number in the run.
        counts: the file's running counts (rows moved from ingested to duplicates).
        typed: a Parquet file (its slices never check ids as they insert).
    """
    if not (typed or _one_pass(shape)):
        return
    params = {"id": f"{run_id}-{file_no:06d}"}
    repeated = (
        "SELECT request_id FROM usage_logs WHERE ingest_id = $id"
        " GROUP BY request_id HAVING count(*) > 1"
    )
    (found,) = con.execute(f"SELECT count(*) FROM ({repeated})", params).fetchall()
    if found[0]:
        (row,) = con.execute(
            "DELETE FROM usage_logs WHERE ingest_id = $id AND (request_id, source_line) IN ("
            " SELECT request_id, source_line FROM usage_logs WHERE ingest_id = $id"
            f" AND request_id IN ({repeated}) QUALIFY row_number() OVER"
            " (PARTITION BY request_id ORDER BY source_line) > 1)",
            params,
        ).fetchall()
        _moved_to_duplicates(counts, int(row[0]))
    # the file's ids are the hash join's build side, every stored id only probes it
    stored = (
        "SELECT u.request_id FROM usage_logs u WHERE u.ingest_id <> $id AND u.request_id IN"
        " (SELECT request_id FROM usage_logs WHERE ingest_id = $id)"
    )
    (found,) = con.execute(f"SELECT count(*) FROM ({stored})", params).fetchall()
    if not found[0]:
        return
    (row,) = con.execute(
        f"DELETE FROM usage_logs WHERE ingest_id = $id AND request_id IN ({stored})", params
    ).fetchall()
    _moved_to_duplicates(counts, int(row[0]))


def dedupe_group(
    con: duckdb.DuckDBPyConnection, run_id: str, counts: dict[int, Counts], file_nos: list[int]
) -> None:
    """:func:`dedupe_file` for a :class:`ParquetGroup` inserted in one statement, in one pass.

    Earlier means in an earlier file of the group (file order), an earlier line of the same
    file, or stored by an ingest outside the group. Two statements for the group instead of
    two per file (200 files: 14 s of 19).

    Args:
        con: the warehouse, inside the group's transaction.
        run_id: this ingest run.
        counts: per file number, the running counts (rows moved from ingested to duplicates).
        file_nos: the group's files.
    """
    params = {"ids": [f"{run_id}-{no:06d}" for no in file_nos]}
    group = "list_contains(CAST($ids AS VARCHAR[]), ingest_id)"
    gone = con.execute(
        f"DELETE FROM usage_logs WHERE {group} AND (ingest_id, source_line) IN ("
        f" SELECT ingest_id, source_line FROM usage_logs WHERE {group} QUALIFY row_number()"
        " OVER (PARTITION BY request_id ORDER BY ingest_id, source_line) > 1) RETURNING ingest_id",
        params,
    ).fetchall()
    gone += con.execute(
        f"DELETE FROM usage_logs WHERE {group} AND request_id IN (SELECT u.request_id"
        " FROM usage_logs u WHERE NOT list_contains(CAST($ids AS VARCHAR[]), u.ingest_id)"
        f" AND u.request_id IN (SELECT request_id FROM usage_logs WHERE {group}))"
        " RETURNING ingest_id",
        params,
    ).fetchall()
    for (ingest_id,) in gone:
        _moved_to_duplicates(counts[int(str(ingest_id).rsplit("-", 1)[1])], 1)


def _moved_to_duplicates(counts: Counts, rows: int) -> None:
    counts.ingested -= rows
    counts.duplicates += rows


def _blank_sql(header: list[str] | None) -> str:
    """Whether a line of ``_chunk`` is blank (a CSV row of empty cells is blank too)."""
    if header is None:
        return "NOT regexp_matches(raw, '\\S')"
    return (
        "CASE WHEN pre IS NOT NULL THEN NOT regexp_matches(rtrim(raw, chr(13)), '\\S')"
        " ELSE NOT regexp_matches(raw, '[^\\s,]') END"
    )


def _undo_clean(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, run_id: str, counts: dict[int, Counts]
) -> bool:
    """Whether a left-over line, valid once its model is priced, precedes a row the clean
    pass inserted with the same request_id; if so that pass is undone (first line wins).

    Rare: it takes a model first seen in this chunk and an id repeated across models.
    """
    file_no = int(chunk.column("__file_no")[0].as_py())
    lines = chunk.column("line_no")
    params = [f"{run_id}-{file_no:06d}", int(lines[0].as_py()), int(lines[len(lines) - 1].as_py())]
    (row,) = con.execute(
        "SELECT count(*) FROM _fin f JOIN usage_logs u ON u.request_id = f.request_id"
        " WHERE f.reason IS NULL AND u.ingest_id = ? AND u.source_line BETWEEN ? AND ?"
        " AND u.source_line > f.line_no",
        params,
    ).fetchall()
    if not row[0]:
        return False
    (row,) = con.execute(
        "DELETE FROM usage_logs WHERE ingest_id = ? AND source_line BETWEEN ? AND ?", params
    ).fetchall()
    counts[file_no].lines_read -= int(row[0])
    counts[file_no].ingested -= int(row[0])
    return True


def _process_typed(
    con: duckdb.DuckDBPyConnection,
    chunk: ParquetSlice | ParquetGroup,
    *,
    shape: Shape,
    use_case: str,
    run_id: str,
    now: dt.datetime,
    counts: dict[int, Counts],
) -> None:
    """A Parquet slice or group through the typed views into the tables."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW _chunk AS {chunk.view_sql()}")
    rec_sql, ts_mode = typed_records_sql(shape, chunk.schema)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _rec AS {rec_sql}")
    _price_models(con)
    classify = classify_sql(shape, ts_mode, now, use_case)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _cls AS {classify}")
    if isinstance(chunk, ParquetSlice):
        counts[chunk.file_no].add(_insert_typed(con, chunk, run_id, now))
        return
    for file_no, part in _insert_typed_group(con, run_id, now).items():
        counts[file_no].add(part)


# size: one dispatch over the three ways in (typed, one-pass, full) and one cleanup (finally)
def process_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table | ParquetSlice | ParquetGroup,
    *,
    shape: Shape,
    run_id: str,
    now: dt.datetime,
    counts: dict[int, Counts],
    use_cases: UseCaseRules | None = None,
    by_line: bool = True,
) -> None:
    """Classify, price, dedupe and insert one chunk (of one file, or of many small files).

    Args:
        con: the warehouse, inside the file's transaction.
        chunk: a tagged text chunk (:func:`tag_chunk`), a Parquet slice or a group of
            small Parquet files.
        shape: the records' log shape.
        run_id: this ingest run (ingest ids are ``<run_id>-<file_no>``).
        now: the clock for the future-timestamp rule.
        counts: per file number, the running counts (updated).
        use_cases: where records without a use case get one.
        by_line: a quarantined record is "already held" when its file, line and text match
            (files); False matches on source and text only (a pull re-reads rows at other
            positions).
    """
    use_case = use_case_sql(shape, use_cases)
    kind = "VIEW" if isinstance(chunk, ParquetSlice | ParquetGroup) else "TABLE"
    try:
        if isinstance(chunk, ParquetSlice | ParquetGroup):
            _process_typed(
                con, chunk, shape=shape, use_case=use_case, run_id=run_id, now=now, counts=counts
            )
            return
        clean = by_line and _one_pass(shape) and _single_file(chunk)
        header = csv_header(chunk) if clean else None
        if not clean:
            chunk = csv_as_json(con, chunk)  # physical CSV lines: as JSON records
        # DuckDB's replacement scan reads the local name ``_chunk`` (no copy); a registered
        # view would keep every chunk alive until the file's COMMIT
        _chunk = chunk
        blank_lines = con.execute(
            f"SELECT __file_no, count(*) FROM _chunk WHERE {_blank_sql(header)} GROUP BY 1"
        ).fetchall()
        for file_no, blanks in blank_lines:
            counts[int(file_no)].blank_lines += int(blanks)
        if clean:
            blanks = sum(int(n) for _, n in blank_lines)
            rest = _insert_clean(
                con,
                chunk,
                shape=shape,
                use_case=use_case,
                run_id=run_id,
                now=now,
                blanks=blanks,
                counts=counts,
                header=header,
            )
            if rest is None:
                return
            rest = csv_as_json(con, rest)
            _classify_text(con, rest, shape, use_case, now)  # prices the models it meets
            if _undo_clean(con, chunk, run_id, counts):
                chunk = csv_as_json(con, chunk)
                _classify_text(con, chunk, shape, use_case, now)  # the whole chunk, in full
            else:
                chunk = rest  # only the lines the clean pass did not insert
        else:
            _classify_text(con, chunk, shape, use_case, now)
        for file_no, part in _insert_text(con, chunk, run_id, now, by_line).items():
            counts[file_no].add(part)
    finally:
        # after a failed statement the transaction is aborted: its rollback drops these
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("DROP TABLE IF EXISTS _seen")
            con.execute("DROP VIEW IF EXISTS _fin")
            for name in ("_cls", "_rec"):
                con.execute(f"DROP {kind} IF EXISTS {name}")
            if kind == "VIEW":
                con.execute("DROP VIEW IF EXISTS _chunk")
