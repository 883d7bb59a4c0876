"""Ingest usage-log files into the DuckDB warehouse: map, price, check, dedupe, quarantine.

Why this shape:

* **Streaming, bounded memory.** Files are read in chunks (``chunk_rows``): text lines for JSONL
  (raw bytes, so invalid UTF-8 is caught per line), rows for CSV, Arrow batches for Parquet,
  DuckDB's ``read_json_objects`` for JSON arrays / documents. Each chunk is classified in SQL
  (``json_valid``, ``json_extract_string``, ``try_cast``); rows never become Python objects.
* **All or nothing per file.** One DuckDB transaction per file covers the rows, the quarantine,
  the price rows it needed and the manifest entry. A crash leaves no partial file; re-running
  ingests it again. A file whose content hash is in the manifest is skipped.
* **Nothing lost silently.** Every record is ingested, counted as a duplicate (its request_id is
  already in the warehouse or earlier in the file: first occurrence wins) or quarantined with a
  reason code. ``lines_read == ingested + duplicates + quarantined`` for every file (blank lines
  are counted apart, in ``blank_lines``). An unreadable file (truncated gzip, corrupt Parquet) is
  rolled back and reported with one message naming the file and line.
* **Priced in SQL.** Rows without ``cost_usd`` are priced by a join on the price table
  (tasks/ingest/pricing.py), materialized for the batch's distinct models; an unknown model is
  quarantined (``unknown_model``), never priced at zero.

Entry points: :func:`ingest_paths` (files / globs / folders) and :func:`warehouse_status`.

Example::

    report = ingest_paths(["logs/*.jsonl.gz"], settings=load_settings())
    assert report.balanced
    print(report.ingested, report.quarantine_by_reason)
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import gzip
import hashlib
import io
import json
import os
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.ingest.log_formats import (
    CANONICAL_FIELDS,
    FIELD_NAMES,
    SHAPE_BY_NAME,
    SHAPES,
    Shape,
    detect_shape,
)
from tasks.ingest.pricing import (
    apply_ingest_schema,
    cost_sql,
    ensure_model_prices,
    overrides_path,
    price_join_sql,
    sync_price_overrides,
)

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
TEXT_CHUNK_ROWS = 100_000  # ~0.6-1 GB peak RSS whatever the file size
PARQUET_CHUNK_ROWS = 2_000_000  # scanned in place by DuckDB: memory stays ~0.5 GB
SMALL_FILE_BYTES = 1024 * 1024  # text files up to this size are grouped ...
GROUP_BYTES = 32 * 1024 * 1024  # ... into one transaction of at most this many bytes
MAX_TOKENS_PER_CALL = 10_000_000  # above this a token count is "absurd": out_of_range
MAX_LATENCY_MS = 86_400_000.0  # one day
FUTURE_TOLERANCE = dt.timedelta(minutes=5)  # clock skew allowed before future_timestamp
REASON_CODES = (
    "invalid_utf8",
    "malformed_json",
    "malformed_row",
    "not_genai_span",
    "missing_field",
    "bad_type",
    "non_finite",
    "missing_timezone",
    "negative_tokens",
    "out_of_range",
    "future_timestamp",
    "unknown_model",
)
_BLOCK = 16 * 1024 * 1024
_USAGE_COLUMNS = (
    "request_id, ts, day, use_case, model, provider, prompt_id, config_id, experiment_id,"
    " variant_id, unit_id, propensity, temperature, top_p, max_tokens, input_tokens,"
    " output_tokens, latency_ms, ttft_ms, cost_usd, cost_source, status, error_type, quality,"
    " feedback, task_type, user_segment, region, language, metadata, source_file, source_line,"
    " ingest_id"
)


class IngestError(LlmoptError):
    """A path cannot be ingested at all (missing, unsupported); the message names it."""


class IngestFileError(LlmoptError):
    """A file cannot be read to the end; the message names the file and line."""


@dataclass(frozen=True)
class FileIngestReport:
    """What happened to one file. ``status``: ingested | skipped | empty | failed."""

    path: str
    status: str
    file_format: str
    shape: str
    size_bytes: int
    content_hash: str
    ingest_id: str | None
    lines_read: int = 0
    blank_lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def balanced(self) -> bool:
        """The accounting identity: every record read is accounted for."""
        return self.lines_read == self.ingested + self.duplicates + self.quarantined


@dataclass(frozen=True)
class IngestReport:
    """All files of one ``ingest_paths`` call, their totals and the validation outcome."""

    run_id: str
    files: tuple[FileIngestReport, ...]
    validation: dict[str, Any] | None = None
    seconds: float = 0.0

    def _total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files)

    @property
    def lines_read(self) -> int:
        return self._total("lines_read")

    @property
    def ingested(self) -> int:
        return self._total("ingested")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")

    @property
    def quarantined(self) -> int:
        return self._total("quarantined")

    @property
    def failed(self) -> tuple[FileIngestReport, ...]:
        return tuple(f for f in self.files if f.status == "failed")

    @property
    def balanced(self) -> bool:
        return all(f.balanced for f in self.files)

    @property
    def quarantine_by_reason(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for report in self.files:
            for reason, count in report.quarantine_by_reason.items():
                totals[reason] = totals.get(reason, 0) + count
        return dict(sorted(totals.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (per file and totals) for the CLI and MLflow."""
        return {
            "run_id": self.run_id,
            "totals": {
                "files": len(self.files),
                "failed_files": len(self.failed),
                "lines_read": self.lines_read,
                "ingested": self.ingested,
                "duplicates": self.duplicates,
                "quarantined": self.quarantined,
                "quarantine_by_reason": self.quarantine_by_reason,
                "balanced": self.balanced,
                "seconds": round(self.seconds, 3),
            },
            "files": [
                {
                    "path": f.path,
                    "status": f.status,
                    "format": f.file_format,
                    "shape": f.shape,
                    "size_bytes": f.size_bytes,
                    "lines_read": f.lines_read,
                    "blank_lines": f.blank_lines,
                    "ingested": f.ingested,
                    "duplicates": f.duplicates,
                    "quarantined": f.quarantined,
                    "quarantine_by_reason": f.quarantine_by_reason,
                    "seconds": round(f.seconds, 3),
                    "error": f.error,
                }
                for f in self.files
            ],
            "validation": self.validation,
        }


@dataclass(frozen=True)
class WarehouseStatus:
    """What the warehouse holds: for ``llmopt status`` and the nightly flow's summary."""

    rows: int
    first_day: dt.date | None
    last_day: dt.date | None
    days: int
    use_cases: dict[str, int]
    quarantine_by_reason: dict[str, int]
    files_ingested: int
    last_ingest: dict[str, Any] | None
    last_validation: dict[str, Any] | None


# ----------------------------------------------------------------------------- paths, formats


def resolve_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Expand files, globs (``**`` allowed) and folders (recursively) into supported files."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        text = str(pattern)
        matches = [Path(p) for p in glob.glob(text, recursive=True)] if glob.has_magic(text) else []
        if not glob.has_magic(text):
            path = Path(text)
            if not path.exists():
                raise IngestError(f"no such file or directory: {text}")
            matches = [path]
        if not matches:
            raise IngestError(f"no file matches {text}")
        for match in matches:
            if match.is_dir():
                for root, _, names in os.walk(match):
                    for name in names:
                        candidate = Path(root) / name
                        if _file_format(candidate) is not None:
                            found[str(candidate.resolve())] = candidate.resolve()
            elif match.is_file():
                if _file_format(match) is None:
                    raise IngestError(
                        f"{match}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)},"
                        " optionally .gz)"
                    )
                found[str(match.resolve())] = match.resolve()
    return [found[key] for key in sorted(found)]


def _file_format(path: Path) -> tuple[str, bool] | None:
    """(format, gzip-compressed) from the file name, or None when unsupported."""
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            fmt = {".ndjson": "jsonl", ".jsonl": "jsonl"}.get(suffix, suffix[1:])
            return fmt, compressed
    return None


def _open_binary(path: Path, compressed: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _head(path: Path, compressed: bool, size: int = 65536) -> bytes:
    try:
        with _open_binary(path, compressed) as handle:
            return handle.read(size)
    except (EOFError, OSError, zlib.error):
        return b""  # the full read reports the problem with a line number


def _sniff_json(path: Path, compressed: bool) -> str:
    """``jsonl`` when the first line is a whole JSON value, else ``array`` / ``document``."""
    head = _head(path, compressed).lstrip()
    if head.startswith(b"["):
        return "array"
    first = head.split(b"\n", 1)[0]
    try:
        json.loads(first)
    except ValueError:
        return "document" if b"\n" in head or len(head) < 65536 else "jsonl"
    return "jsonl"


def _detect_text_shape(path: Path, compressed: bool) -> str:
    head = _head(path, compressed)
    if b'"resourceSpans"' in head:
        return "otel"
    keys: set[str] = set()
    for line in head.split(b"\n")[:50]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            keys.update(value)
    if keys:
        return detect_shape(keys)
    text = head.decode("utf-8", "replace")
    if '"startTime"' in text and ('"spend"' in text or '"prompt_tokens"' in text):
        return "litellm"
    return "canonical"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- chunk readers


def _text_table(start: int, lines: list[str], pre: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "line_no": pa.array(np.arange(start, start + len(lines), dtype=np.int64)),
            "raw": pa.array(lines, pa.string()),
            "pre": pa.array(pre, pa.string()),
        }
    )


def _iter_jsonl(path: Path, compressed: bool, chunk_rows: int) -> Iterator[pa.Table]:
    """Raw lines as (line_no, raw, pre); invalid UTF-8 lines are flagged, never dropped."""
    lines: list[str] = []
    pre: list[str | None] = []
    start = next_line = 1
    pending = b""
    with _open_binary(path, compressed) as handle:
        while True:
            try:
                block = handle.read(_BLOCK)
            except (EOFError, OSError, zlib.error) as exc:
                raise IngestFileError(
                    f"{path}: truncated or corrupt compressed data after line {next_line - 1}"
                    f" ({exc})"
                ) from exc
            if not block:
                break
            block = pending + block
            cut = block.rfind(b"\n")
            if cut < 0:
                pending = block
                continue
            complete, pending = block[:cut], block[cut + 1 :]
            try:
                decoded = complete.decode("utf-8").split("\n")
                lines.extend(decoded)
                pre.extend([None] * len(decoded))
            except UnicodeDecodeError:
                for part in complete.split(b"\n"):
                    try:
                        lines.append(part.decode("utf-8"))
                        pre.append(None)
                    except UnicodeDecodeError:
                        lines.append(part.decode("utf-8", "replace"))
                        pre.append("invalid_utf8")
            while len(lines) >= chunk_rows:
                yield _text_table(start, lines[:chunk_rows], pre[:chunk_rows])
                start += chunk_rows
                lines, pre = lines[chunk_rows:], pre[chunk_rows:]
            next_line = start + len(lines)
    if pending:
        try:
            lines.append(pending.decode("utf-8"))
            pre.append(None)
        except UnicodeDecodeError:
            lines.append(pending.decode("utf-8", "replace"))
            pre.append("invalid_utf8")
    if lines:
        yield _text_table(start, lines, pre)


def _iter_csv(path: Path, compressed: bool, chunk_rows: int) -> Iterator[pa.Table]:
    """CSV rows as JSON objects keyed by the header (empty cell = absent), with line numbers."""
    opener: Any = gzip.open if compressed else open
    lines: list[str] = []
    pre: list[str | None] = []
    numbers: list[int] = []
    line_no = 0
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            for row in reader:
                line_no = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue
                reason: str | None = None
                text = json.dumps(
                    {k: v for k, v in zip(header, row, strict=False) if v != ""},
                    ensure_ascii=False,
                )
                if len(row) != len(header):
                    reason = "malformed_row"
                    text = json.dumps({"header": header, "fields": row}, ensure_ascii=False)
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    reason = "invalid_utf8"
                    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                lines.append(text)
                pre.append(reason)
                numbers.append(line_no)
                if len(lines) >= chunk_rows:
                    yield _csv_table(numbers, lines, pre)
                    lines, pre, numbers = [], [], []
    except (EOFError, OSError, zlib.error, csv.Error) as exc:
        raise IngestFileError(f"{path}: unreadable after line {line_no} ({exc})") from exc
    if lines:
        yield _csv_table(numbers, lines, pre)


def _csv_table(numbers: list[int], lines: list[str], pre: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "line_no": pa.array(numbers, pa.int64()),
            "raw": pa.array(lines, pa.string()),
            "pre": pa.array(pre, pa.string()),
        }
    )


def _iter_json_objects(
    con: duckdb.DuckDBPyConnection, path: Path, layout: str, chunk_rows: int
) -> Iterator[pa.Table]:
    """Elements of a JSON array, or the values of a (pretty-printed) document, via DuckDB."""
    reader = con.cursor()
    fmt = "array" if layout == "array" else "unstructured"
    start = 1
    try:
        source = _sql_str(str(path))
        batches = reader.sql(
            f"SELECT json::VARCHAR AS raw FROM read_json_objects({source}, format='{fmt}')"
        ).to_arrow_reader(chunk_rows)
        for batch in batches:
            raw = batch.column(0)
            n = len(raw)
            yield pa.table(
                {
                    "line_no": pa.array(np.arange(start, start + n, dtype=np.int64)),
                    "raw": raw,
                    "pre": pa.nulls(n, pa.string()),
                }
            )
            start += n
    except duckdb.Error as exc:
        raise IngestFileError(f"{path}: unreadable JSON after element {start - 1} ({exc})") from exc
    finally:
        reader.close()


@dataclass(frozen=True)
class _ParquetSlice:
    """Rows [start, stop) of a Parquet file, scanned by DuckDB in place (no Arrow copy):
    ``file_row_number`` filters skip the other row groups."""

    path: Path
    start: int
    stop: int
    schema: pa.Schema
    file_no: int = 0

    @property
    def num_rows(self) -> int:
        return self.stop - self.start

    def view_sql(self) -> str:
        source = _sql_str(str(self.path))
        return (
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS __line_no,"
            f" {source} AS __file, CAST({self.file_no} AS INTEGER) AS __file_no"
            f" FROM read_parquet({source}, file_row_number = true)"
            f" WHERE file_row_number >= {self.start} AND file_row_number < {self.stop}"
        )


def _iter_parquet(path: Path, chunk_rows: int) -> Iterator[_ParquetSlice]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise IngestFileError(f"{path}: unreadable Parquet ({exc})") from exc
    for start in range(0, metadata.num_rows, chunk_rows):
        yield _ParquetSlice(path, start, min(start + chunk_rows, metadata.num_rows), schema)


# ----------------------------------------------------------------------------- SQL builders


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(keys: Sequence[str]) -> str:
    parts = ["$"]
    for key in keys:
        parts.append(f"[{key}]" if key.isdigit() else "." + json.dumps(key))
    return "".join(parts)


def _attr_object(expr: str) -> str:
    """OTLP ``[{key, value: {stringValue|intValue|...}}]`` -> a flat JSON object text."""
    value = (
        "coalesce(a->'value'->'stringValue', a->'value'->'intValue', a->'value'->'doubleValue',"
        " a->'value'->'boolValue', a->'value'->'arrayValue', a->'value'->'kvlistValue',"
        " 'null'::JSON)::VARCHAR"
    )
    return (
        f"('{{' || array_to_string(list_transform(coalesce(json_extract({expr}, '$[*]'), []),"
        f" lambda a: to_json(a->>'key') || ':' || {value}), ',') || '}}')::JSON"
    )


def _otel_docs_sql() -> str:
    """One row per span (flattened attributes) or per unusable line, from ``_chunk``."""
    spans = (
        "flatten(list_transform(coalesce(json_extract(raw, '$.resourceSpans[*]'), []),"
        " lambda rs: flatten(list_transform(coalesce(json_extract(rs, '$.scopeSpans[*]'), []),"
        " lambda ss: list_transform(coalesce(json_extract(ss, '$.spans[*]'), []),"
        " lambda sp: {'span': sp, 'rattrs': json_extract(rs, '$.resource.attributes')})))))"
    )
    evaluation = (
        "list_filter(coalesce(json_extract(s.span, '$.events[*]'), []),"
        " lambda e: e->>'name' = 'gen_ai.evaluation.result')[1]->'attributes'"
    )
    span_attrs = _attr_object("s.span->'attributes'")
    flat = (
        f"json_merge_patch({_attr_object('s.rattrs')}, {_attr_object(evaluation)},"
        f" {span_attrs},"
        " json_object('otel.span_id', s.span->>'spanId', 'otel.trace_id', s.span->>'traceId',"
        " 'otel.name', s.span->>'name', 'otel.start_ns', s.span->>'startTimeUnixNano',"
        " 'otel.end_ns', s.span->>'endTimeUnixNano',"
        " 'otel.status_code', s.span->'status'->>'code'))"
    )
    return f"""
    WITH lines AS (
        SELECT __file, __file_no, line_no, raw, {_pre_reason_sql()} AS pre_reason
        FROM _chunk WHERE length(trim(raw)) > 0
    ), exploded AS (
        SELECT __file, __file_no, line_no, raw, pre_reason,
               CASE WHEN pre_reason IS NULL THEN {spans} END AS spans
        FROM lines
    ), one_span AS (
        SELECT __file, __file_no, line_no, generate_subscripts(spans, 1) - 1 AS rec_no,
               unnest(spans) AS s
        FROM exploded WHERE len(spans) > 0
    ), flat AS (
        SELECT __file, __file_no, line_no, rec_no, s.span::VARCHAR AS raw,
               {flat}::VARCHAR AS doc
        FROM one_span
    )
    SELECT __file, __file_no, line_no, rec_no, raw, doc,
           CASE WHEN len(list_filter(json_keys(doc), lambda k: starts_with(k, 'gen_ai.'))) = 0
                THEN 'not_genai_span' END AS pre_reason,
           'spans' AS pre_detail
    FROM flat
    UNION ALL
    SELECT __file, __file_no, line_no, 0, raw, NULL, coalesce(pre_reason, 'missing_field'),
           CASE WHEN pre_reason IS NULL THEN 'resourceSpans[].scopeSpans[].spans[]' END
    FROM exploded WHERE coalesce(len(spans), 0) = 0
    """


def _pre_reason_sql() -> str:
    return (
        "CASE WHEN pre IS NOT NULL THEN pre WHEN NOT coalesce(json_valid(raw), false)"
        " THEN 'malformed_json' WHEN json_type(raw) <> 'OBJECT' THEN 'malformed_json' END"
    )


def _text_records_sql(shape: Shape) -> str:
    """``_rec`` from ``_chunk`` for JSON text records: x_* values as text, extras as JSON."""
    if shape.name == "otel":
        docs = _otel_docs_sql()
    else:
        docs = f"""
        SELECT __file, __file_no, line_no, 0 AS rec_no, raw, raw AS doc,
               {_pre_reason_sql()} AS pre_reason,
               NULL AS pre_detail
        FROM _chunk WHERE length(trim(raw)) > 0
        """
    top_keys: list[str] = []
    for alternatives in shape.sources.values():
        for path in alternatives:
            if path[0] not in top_keys:
                top_keys.append(path[0])
    if shape.metadata_key and shape.metadata_key not in top_keys:
        top_keys.append(shape.metadata_key)
    paths = ", ".join(_sql_str(_json_path([key])) for key in top_keys)
    columns = []
    for name, alternatives in shape.sources.items():
        options = []
        for path in alternatives:
            base = f"v[{top_keys.index(path[0]) + 1}]"
            if len(path) == 1:
                options.append(f"nullif({base}, '')")
            else:
                nested = _sql_str(_json_path(path[1:]))
                options.append(
                    f"CASE WHEN json_valid({base}) THEN nullif(json_extract_string({base},"
                    f" {nested}), '') END"
                )
        expr = options[0] if len(options) == 1 else f"coalesce({', '.join(options)})"
        columns.append(f"{expr} AS x_{name}")
    consumed = ", ".join(_sql_str(k) for k in sorted(shape.consumed_top_level_keys()))
    extras = (
        f"list_filter(json_keys(doc), lambda k: k NOT IN ({consumed}))"
        if consumed
        else "json_keys(doc)"
    )
    extras_obj = (
        "CASE WHEN len(ek) > 0 THEN ('{' || array_to_string(list_transform(ek,"
        " lambda k: to_json(k) || ':' || json_extract(doc, '/' || replace(replace(k, '~', '~0'),"
        " '/', '~1'))::VARCHAR), ',') || '}')::JSON END"
    )
    if shape.metadata_key:
        index = top_keys.index(shape.metadata_key) + 1
        md_text = f"v[{index}]"
        md_json = f"json_extract(doc, {_sql_str(_json_path([shape.metadata_key]))})"
        record_md = (
            f"CASE WHEN {md_text} IS NULL THEN NULL"
            f" WHEN json_type({md_json}) = 'OBJECT' THEN {md_json}"
            f" WHEN json_valid({md_text}) AND json_type({md_text}::JSON) = 'OBJECT'"
            f" THEN {md_text}::JSON"
            f" ELSE json_object('metadata', {md_json}) END"
        )
    else:
        record_md = "NULL::JSON"
    return f"""
    SELECT __file, __file_no, line_no, rec_no, raw, pre_reason, pre_detail,
           {", ".join(columns)},
           CASE WHEN pre_reason IS NULL THEN
               nullif(json_merge_patch(coalesce({record_md}, '{{}}'::JSON),
                                       coalesce({extras_obj}, '{{}}'::JSON))::VARCHAR, '{{}}')
           END AS x_metadata
    FROM (
        SELECT *, CASE WHEN pre_reason IS NULL THEN json_extract_string(doc, [{paths}]) END AS v,
               CASE WHEN pre_reason IS NULL THEN {extras} END AS ek
        FROM ({docs})
    )
    """


def _typed_records_sql(shape: Shape, schema: pa.Schema) -> tuple[str, str]:
    """``_rec`` from a typed (Parquet) ``_chunk``; returns (sql, timestamp mode)."""
    names = [n for n in schema.names if n not in ("__line_no", "__file", "__file_no")]
    stringly = bool(shape.exprs)  # shape expressions work on text
    columns = []
    ts_mode = "text"
    for name, alternatives in shape.sources.items():
        options = []
        for path in alternatives:
            if path[0] not in names:
                continue
            col = _quote(path[0])
            col_type = schema.field(path[0]).type
            if len(path) > 1:
                text = col if pa.types.is_string(col_type) else f"to_json({col})::VARCHAR"
                options.append(
                    f"CASE WHEN json_valid({text}) THEN json_extract_string({text},"
                    f" {_sql_str(_json_path(path[1:]))}) END"
                )
                continue
            if name == "timestamp" and pa.types.is_timestamp(col_type):
                ts_mode = "tz" if col_type.tz else "naive"
                options.append(col)
            elif stringly or pa.types.is_string(col_type) or pa.types.is_large_string(col_type):
                options.append(f"nullif(CAST({col} AS VARCHAR), '')")
            else:
                options.append(col)
        if not options:
            expr = "NULL::VARCHAR"
        elif len(options) == 1:
            expr = options[0]
        else:
            expr = f"coalesce({', '.join(options)})"
        columns.append(f"{expr} AS x_{name}")
    consumed = shape.consumed_top_level_keys()
    extra_cols = [n for n in names if n not in consumed]
    extras = (
        "to_json(struct_pack(" + ", ".join(f"{_quote(n)} := {_quote(n)}" for n in extra_cols) + "))"
        if extra_cols
        else "NULL::JSON"
    )
    md_key = shape.metadata_key
    if md_key and md_key in names:
        col = _quote(md_key)
        if pa.types.is_string(schema.field(md_key).type):
            record_md = (
                f"CASE WHEN {col} IS NULL OR {col} = '' THEN NULL WHEN json_valid({col})"
                f" AND json_type({col}::JSON) = 'OBJECT' THEN {col}::JSON"
                f" ELSE json_object('metadata', {col}) END"
            )
        else:
            record_md = f"to_json({col})"
    else:
        record_md = "NULL::JSON"
    metadata = (
        f"nullif(json_merge_patch(coalesce({record_md}, '{{}}'::JSON),"
        f" coalesce({extras}, '{{}}'::JSON))::VARCHAR, '{{}}')"
        if extra_cols or record_md != "NULL::JSON"
        else "NULL::VARCHAR"
    )
    sql = f"""
    SELECT __file, __file_no, __line_no AS line_no, 0 AS rec_no, NULL::VARCHAR AS raw,
           NULL::VARCHAR AS pre_reason, NULL::VARCHAR AS pre_detail,
           {", ".join(columns)}, {metadata} AS x_metadata
    FROM _chunk
    """
    return sql, ts_mode


def _timestamp_sql(ts_mode: str, assume_utc: bool) -> tuple[str, str]:
    """(timestamp expression, 'zone missing' flag) over x_timestamp."""
    if ts_mode == "tz":
        return "x_timestamp", "false"
    if ts_mode == "naive":
        if assume_utc:
            return "timezone('UTC', x_timestamp)", "false"
        return "NULL::TIMESTAMPTZ", "x_timestamp IS NOT NULL"
    t = "trim(CAST(x_timestamp AS VARCHAR))"
    numeric = f"regexp_full_match({t}, '-?[0-9]+(\\.[0-9]+)?')"
    zoned = (
        f"regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9:.]+"
        f"\\s*(Z|z|UTC|[+-][0-9]{{2}}(:?[0-9]{{2}})?)')"
    )
    epoch = (
        f"to_timestamp(TRY_CAST({t} AS DOUBLE) / CASE"
        f" WHEN abs(TRY_CAST({t} AS DOUBLE)) >= 1e17 THEN 1e9"
        f" WHEN abs(TRY_CAST({t} AS DOUBLE)) >= 1e14 THEN 1e6"
        f" WHEN abs(TRY_CAST({t} AS DOUBLE)) >= 1e11 THEN 1e3 ELSE 1 END)"
    )
    naive_value = f"timezone('UTC', TRY_CAST({t} AS TIMESTAMP))" if assume_utc else "NULL"
    expr = (
        f"CASE WHEN x_timestamp IS NULL THEN NULL WHEN {numeric} THEN {epoch}"
        f" WHEN {zoned} THEN TRY_CAST({t} AS TIMESTAMPTZ) ELSE {naive_value} END"
    )
    flag = (
        "false"
        if assume_utc
        else (
            f"(x_timestamp IS NOT NULL AND NOT {numeric} AND NOT {zoned}"
            f" AND TRY_CAST({t} AS TIMESTAMP) IS NOT NULL)"
        )
    )
    return expr, flag


def _classify_sql(shape: Shape, ts_mode: str, now: dt.datetime) -> str:
    """``_cls`` from ``_rec``: typed values, reason / detail, cost and its source."""
    exprs = dict(shape.exprs)
    typed: list[str] = []
    missing: list[str] = []
    bad: list[str] = []
    non_finite: list[str] = []
    for name, _, _ in CANONICAL_FIELDS:
        source = exprs.get(name, f"x_{name}" if name in shape.sources else "NULL::VARCHAR")
        if name == "timestamp":
            continue
        typed.append(f"{source} AS s_{name}")
    ts_expr, ts_naive = _timestamp_sql(ts_mode, shape.naive_timestamps_are_utc)
    values: list[str] = []
    for name, kind, required in CANONICAL_FIELDS:
        if name == "timestamp":
            values.append(f"{ts_expr} AS ts, {ts_naive} AS ts_naive")
            if required:
                missing.append("x_timestamp IS NULL")
            continue
        s = f"s_{name}"
        if kind == "str":
            values.append(f"CAST({s} AS VARCHAR) AS {name}")
        elif kind == "double":
            values.append(f"TRY_CAST({s} AS DOUBLE) AS {name}")
            bad.append(f"({s} IS NOT NULL AND {name} IS NULL)")
            non_finite.append(f"NOT isfinite({name})")
        else:  # int: must be integral
            values.append(f"TRY_CAST({s} AS DOUBLE) AS d_{name}")
            bad.append(
                f"({s} IS NOT NULL AND (d_{name} IS NULL"
                f" OR (isfinite(d_{name}) AND d_{name} <> trunc(d_{name}))))"
            )
            non_finite.append(f"NOT isfinite(d_{name})")
        if required:
            missing.append(f"{s} IS NULL")
    req = [n for n, _, r in CANONICAL_FIELDS if r]
    missing_detail = ", ".join(
        f"CASE WHEN {'x_timestamp' if n == 'timestamp' else 's_' + n} IS NULL THEN '{n}' END"
        for n in req
    )
    numeric_names = [n for n, k, _ in CANONICAL_FIELDS if k in ("double", "int")]
    bad_detail = ", ".join(
        f"CASE WHEN {cond} THEN '{n}' END" for n, cond in zip(numeric_names, bad, strict=True)
    )
    finite_detail = ", ".join(
        f"CASE WHEN {cond} THEN '{n}' END"
        for n, cond in zip(numeric_names, non_finite, strict=True)
    )
    limit = MAX_TOKENS_PER_CALL
    ranges = {
        "input_tokens": f"d_input_tokens > {limit}",
        "output_tokens": f"d_output_tokens > {limit}",
        "max_tokens": f"(d_max_tokens <= 0 OR d_max_tokens > {limit})",
        "latency_ms": f"(latency_ms < 0 OR latency_ms > {MAX_LATENCY_MS})",
        "ttft_ms": f"(ttft_ms < 0 OR ttft_ms > {MAX_LATENCY_MS})",
        "cost_usd": "cost_usd < 0",
        "quality": "(quality < 0 OR quality > 1)",
        "feedback": "d_feedback NOT IN (-1, 0, 1)",
        "propensity": "(propensity <= 0 OR propensity > 1)",
        "temperature": "(temperature < 0 OR temperature > 2)",
        "top_p": "(top_p < 0 OR top_p > 1)",
        "status": "status NOT IN ('success', 'error')",
        "timestamp": "ts < TIMESTAMPTZ '2000-01-01 00:00:00+00'",
    }
    range_detail = ", ".join(f"CASE WHEN {c} THEN '{n}' END" for n, c in ranges.items())
    future = f"TIMESTAMPTZ '{(now + FUTURE_TOLERANCE).isoformat()}'"
    conditions = [
        ("pre_reason IS NOT NULL", "pre_reason", "pre_detail"),
        (" OR ".join(missing), "'missing_field'", f"concat_ws(',', {missing_detail})"),
        (
            " OR ".join([*bad, "(x_timestamp IS NOT NULL AND ts IS NULL AND NOT ts_naive)"]),
            "'bad_type'",
            f"concat_ws(',', {bad_detail}, CASE WHEN ts IS NULL AND NOT ts_naive"
            " THEN 'timestamp' END)",
        ),
        (" OR ".join(non_finite), "'non_finite'", f"concat_ws(',', {finite_detail})"),
        ("ts_naive", "'missing_timezone'", "'timestamp'"),
        (
            "d_input_tokens < 0 OR d_output_tokens < 0",
            "'negative_tokens'",
            "concat_ws(',', CASE WHEN d_input_tokens < 0 THEN 'input_tokens' END,"
            " CASE WHEN d_output_tokens < 0 THEN 'output_tokens' END)",
        ),
        (" OR ".join(ranges.values()), "'out_of_range'", f"concat_ws(',', {range_detail})"),
        (f"ts > {future}", "'future_timestamp'", "'timestamp'"),
        (
            "cost_usd IS NULL AND po.model IS NULL AND pg.model IS NULL",
            "'unknown_model'",
            "val.model",
        ),
    ]
    kept = [
        "val." + (f"d_{n}" if k == "int" else n) for n, k, _ in CANONICAL_FIELDS if k != "ts"
    ] + ["val.ts"]
    reason = "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r, _ in conditions) + " END"
    detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for c, _, d in conditions) + " END"
    return f"""
    WITH src AS (SELECT *, {", ".join(typed)} FROM _rec),
    val AS (SELECT *, {", ".join(values)} FROM src)
    SELECT val.__file, val.__file_no, val.line_no, val.rec_no, val.raw,
           CAST(val.s_request_id AS VARCHAR) AS s_request_id,
           {", ".join(kept)}, val.x_metadata, {reason} AS reason, {detail} AS detail,
           coalesce(cost_usd, {cost_sql("po", "d_input_tokens", "d_output_tokens")},
                    {cost_sql("pg", "d_input_tokens", "d_output_tokens")}) AS final_cost,
           CASE WHEN cost_usd IS NOT NULL THEN 'log' WHEN po.model IS NOT NULL THEN 'override'
                ELSE 'price_table' END AS cost_source
    FROM val
    {price_join_sql("po", "val.ts", "val.model", "override")}
    {price_join_sql("pg", "val.ts", "val.model", "genai-prices")}
    """


# ----------------------------------------------------------------------------- per file


@dataclass
class _Counts:
    lines_read: int = 0
    blank_lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """One file to ingest: what it is, before any row is read."""

    path: Path
    file_no: int
    fmt: str
    compressed: bool
    size: int
    digest: str
    shape: str


def _tag(table: pa.Table | _ParquetSlice, plan: _Plan) -> pa.Table | _ParquetSlice:
    """Add the file name (a one-entry dictionary: no per-row string) and the file number."""
    if isinstance(table, _ParquetSlice):
        return replace(table, file_no=plan.file_no)
    n = table.num_rows
    name = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([str(plan.path)], pa.string())
    )
    table = table.append_column("__file", name)
    return table.append_column("__file_no", pa.array(np.full(n, plan.file_no, dtype=np.int32)))


_INSERT_SQL = f"INSERT INTO usage_logs ({_USAGE_COLUMNS}) SELECT * EXCLUDE (__file_no) FROM"


def _mark_seen(con: duckdb.DuckDBPyConnection, _rec: pa.Table | None) -> str:
    """Positions in ``_rec`` whose request_id is already stored; the anti-join clause for them.

    The join carries only the key, so it stays cheap; the wide insert then anti-joins against
    this (usually empty) table instead of dragging every column through a hash join.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _seen AS SELECT __file_no, line_no, rec_no FROM _rec r"
        " WHERE x_request_id IS NOT NULL AND EXISTS (SELECT 1 FROM usage_logs u"
        " WHERE u.request_id = CAST(r.x_request_id AS VARCHAR))"
    )
    row = con.execute("SELECT count(*) FROM _seen").fetchone()
    if not row or not row[0]:
        return ""
    return (
        "AND NOT EXISTS (SELECT 1 FROM _seen s WHERE s.__file_no = c.__file_no"
        " AND s.line_no = c.line_no AND s.rec_no = c.rec_no)"
    )


def _candidates_sql(first_only: str, not_seen: str) -> str:
    """Rows of ``_cls`` to insert: valid, not in the warehouse yet, first in the chunk."""
    ingest_id = "? || '-' || lpad(CAST(__file_no AS VARCHAR), 6, '0')"
    return f"""
        SELECT request_id, ts, CAST(timezone('UTC', ts) AS DATE), use_case, model, provider,
               prompt_id, config_id, experiment_id, variant_id, unit_id, propensity,
               temperature, top_p, CAST(d_max_tokens AS INTEGER),
               CAST(d_input_tokens AS BIGINT), CAST(d_output_tokens AS BIGINT), latency_ms,
               ttft_ms, final_cost, cost_source, status, error_type, quality,
               CAST(d_feedback AS TINYINT), task_type, user_segment, region, language,
               x_metadata::JSON, __file, line_no, {ingest_id}, __file_no
        FROM _cls c
        WHERE reason IS NULL {not_seen}
        {first_only}
    """


def _quarantine_sql(*, typed: bool) -> str:
    """Bad rows of ``_cls`` into the quarantine; typed rows get their raw text as JSON."""
    raw = (
        'json_merge_patch(to_json(ch), \'{"__file": null, "__file_no": null,'
        ' "__line_no": null}\')::VARCHAR'
        if typed
        else "c.raw"
    )
    join = (
        "LEFT JOIN _chunk ch ON ch.__line_no = c.line_no AND ch.__file_no = c.__file_no"
        if typed
        else ""
    )
    return f"""
        INSERT INTO quarantine
        SELECT ? || '-' || lpad(CAST(c.__file_no AS VARCHAR), 6, '0'), c.__file, c.line_no,
               c.rec_no, c.reason, nullif(c.detail, ''), c.s_request_id, {raw}, ?
        FROM _cls c {join}
        WHERE c.reason IS NOT NULL
    """


def _insert_typed_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: _ParquetSlice,
    *,
    run_id: str,
    counts: dict[int, _Counts],
    now: dt.datetime,
) -> None:
    """Typed (Parquet) chunk of one file: counts come from the two inserts' row counts."""
    file_no = chunk.file_no
    ids, distinct = con.execute(
        "SELECT count(x_request_id), count(DISTINCT x_request_id) FROM _rec"
    ).fetchone()  # type: ignore[misc]
    first_only = (
        "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY line_no) = 1"
        if distinct < ids
        else ""
    )
    candidates = _candidates_sql(first_only, _mark_seen(con, None))
    row = con.execute(f"{_INSERT_SQL} ({candidates})", [run_id]).fetchone()
    inserted = int(row[0]) if row else 0
    row = con.execute(_quarantine_sql(typed=True), [run_id, now]).fetchone()
    quarantined = int(row[0]) if row else 0
    entry = counts[file_no]
    if quarantined:
        entry.reasons = {
            str(reason): int(n)
            for reason, n in con.execute(
                "SELECT reason, count(*) FROM quarantine WHERE ingest_id = ? GROUP BY 1",
                [f"{run_id}-{file_no:06d}"],
            ).fetchall()
        }
    entry.lines_read += chunk.num_rows
    entry.ingested += inserted
    entry.quarantined += quarantined
    entry.duplicates += chunk.num_rows - inserted - quarantined


def _process_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table | _ParquetSlice,
    *,
    shape: Shape,
    run_id: str,
    now: dt.datetime,
    counts: dict[int, _Counts],
) -> None:
    """Classify, price, dedupe and insert one chunk (of one file, or of many small files)."""
    # Text chunks are Arrow tables read by DuckDB's replacement scan of these local names
    # (_chunk, _rec, _cls): con.register() inside the file's transaction would keep every
    # chunk alive until COMMIT, so memory would grow with the file.
    typed = isinstance(chunk, _ParquetSlice)
    if isinstance(chunk, _ParquetSlice):
        con.execute(f"CREATE OR REPLACE TEMP VIEW _chunk AS {chunk.view_sql()}")
    else:
        _chunk = chunk
    try:
        if isinstance(chunk, _ParquetSlice):
            rec_sql, ts_mode = _typed_records_sql(shape, chunk.schema)
        else:
            rec_sql, ts_mode = _text_records_sql(shape), "text"
            for file_no, blanks in con.execute(
                "SELECT __file_no, count(*) FROM _chunk WHERE length(trim(raw)) = 0 GROUP BY 1"
            ).fetchall():
                counts[int(file_no)].blank_lines += int(blanks)
        # typed chunks are cheap to re-read: a view; parsed JSON is materialized once (Arrow)
        _rec = None
        if typed:
            con.execute(f"CREATE OR REPLACE TEMP VIEW _rec AS {rec_sql}")
        else:
            _rec = con.sql(rec_sql).to_arrow_table()
        models = con.execute(
            "SELECT CAST(x_model AS VARCHAR), any_value(CAST(x_provider AS VARCHAR))"
            " FROM _rec WHERE x_model IS NOT NULL GROUP BY 1"
        ).fetchall()
        ensure_model_prices(con, [m for m, _ in models], {m: p for m, p in models if p})
        if typed:
            # one pass: classify while inserting (no materialized copy of a big chunk)
            con.execute(f"CREATE OR REPLACE TEMP VIEW _cls AS {_classify_sql(shape, ts_mode, now)}")
            assert isinstance(chunk, _ParquetSlice)
            _insert_typed_chunk(con, chunk, run_id=run_id, counts=counts, now=now)
            return
        _cls = con.sql(_classify_sql(shape, ts_mode, now)).to_arrow_table()
        per_file = con.execute(
            "SELECT __file_no, count(*), count(*) FILTER (WHERE reason IS NULL) FROM _cls"
            " GROUP BY 1"
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
        candidates = _candidates_sql(first_only, _mark_seen(con, _rec))
        insert = _INSERT_SQL
        inserted: dict[int, int] = {}
        if len(per_file) == 1:
            row = con.execute(f"{insert} ({candidates})", [run_id]).fetchone()
            inserted[int(per_file[0][0])] = int(row[0]) if row else 0
        elif per_file:  # several small files: count per file before inserting
            con.execute(f"CREATE OR REPLACE TEMP TABLE _ins AS {candidates}", [run_id])
            con.execute(f"{insert} _ins")
            by_file = "SELECT __file_no, count(*) FROM _ins GROUP BY 1"
            inserted = {int(k): int(v) for k, v in con.execute(by_file).fetchall()}
            con.execute("DROP TABLE _ins")
        con.execute(_quarantine_sql(typed=False), [run_id, now])
        for file_no, reason, count in con.execute(
            "SELECT __file_no, reason, count(*) FROM _cls WHERE reason IS NOT NULL GROUP BY 1, 2"
        ).fetchall():
            reasons = counts[int(file_no)].reasons
            reasons[reason] = reasons.get(reason, 0) + int(count)
        for file_no, n_records, ok in per_file:
            entry = counts[int(file_no)]
            done = inserted.get(int(file_no), 0)
            entry.lines_read += int(n_records)
            entry.ingested += done
            entry.duplicates += int(ok) - done
            entry.quarantined += int(n_records) - int(ok)
    finally:
        con.execute("DROP TABLE IF EXISTS _seen")
        if typed:
            for name in ("_cls", "_rec", "_chunk"):
                con.execute(f"DROP VIEW IF EXISTS {name}")


def _chunks(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str, compressed: bool, chunk_rows: int | None
) -> Iterator[pa.Table] | Iterator[_ParquetSlice]:
    if fmt == "parquet":
        return _iter_parquet(path, chunk_rows or PARQUET_CHUNK_ROWS)
    rows = chunk_rows or TEXT_CHUNK_ROWS
    if fmt == "csv":
        return _iter_csv(path, compressed, rows)
    if fmt == "json":
        layout = _sniff_json(path, compressed)
        if layout != "jsonl":
            return _iter_json_objects(con, path, layout, rows)
    return _iter_jsonl(path, compressed, rows)


def _file_shape(path: Path, fmt: str, compressed: bool, requested: str) -> str:
    if requested != "auto":
        return requested
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return detect_shape(pq.read_schema(path).names)
        except (OSError, pa.ArrowException):
            return "canonical"  # the read reports the problem
    if fmt == "csv":
        head = _head(path, compressed).decode("utf-8", "replace").splitlines()
        return detect_shape(next(csv.reader(head[:1]), [])) if head else "canonical"
    return _detect_text_shape(path, compressed)


def _plan(path: Path, file_no: int, shape: str) -> _Plan:
    kind = _file_format(path)
    if kind is None:
        raise IngestError(f"{path}: unsupported file type")
    fmt, compressed = kind
    return _Plan(
        path=path,
        file_no=file_no,
        fmt=fmt,
        compressed=compressed,
        size=path.stat().st_size,
        digest=_sha256(path),
        shape=_file_shape(path, fmt, compressed, shape),
    )


def _report(plan: _Plan, status: str, **values: Any) -> FileIngestReport:
    return FileIngestReport(
        path=str(plan.path),
        status=status,
        file_format=plan.fmt,
        shape=plan.shape,
        size_bytes=plan.size,
        content_hash=plan.digest,
        **values,
    )


def _ingest_plans(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[_Plan],
    *,
    run_id: str,
    chunk_rows: int | None,
    now: dt.datetime,
    on_chunk: Callable[[str, int], None] | None,
) -> list[FileIngestReport]:
    """One transaction for one file (streamed) or for a group of small files (read first)."""
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    counts = {plan.file_no: _Counts() for plan in plans}
    failed: dict[int, str] = {}
    shape = SHAPE_BY_NAME[plans[0].shape]
    tables: list[pa.Table] = []
    if len(plans) > 1:  # small files: read them all before the transaction
        for plan in plans:
            try:
                tables.extend(
                    _tag(t, plan)
                    for t in _chunks(con, plan.path, plan.fmt, plan.compressed, chunk_rows)
                )
            except IngestFileError as exc:
                failed[plan.file_no] = str(exc)
    good = [plan for plan in plans if plan.file_no not in failed]
    con.execute("BEGIN TRANSACTION")
    try:
        if len(plans) > 1:
            if tables:
                _process_chunk(
                    con,
                    pa.concat_tables(tables),
                    shape=shape,
                    run_id=run_id,
                    now=now,
                    counts=counts,
                )
        elif plans[0].size > 0:
            plan = plans[0]
            for chunk in _chunks(con, plan.path, plan.fmt, plan.compressed, chunk_rows):
                _process_chunk(
                    con,
                    _tag(chunk, plan),
                    shape=shape,
                    run_id=run_id,
                    now=now,
                    counts=counts,
                )
                if on_chunk is not None:
                    done = counts[plan.file_no]
                    on_chunk(str(plan.path), done.lines_read + done.blank_lines)
        finished_at = dt.datetime.now(dt.UTC)
        for plan in good:
            c = counts[plan.file_no]
            con.execute(
                "INSERT INTO ingest_manifest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    f"{run_id}-{plan.file_no:06d}",
                    run_id,
                    str(plan.path),
                    plan.size,
                    plan.digest,
                    plan.fmt,
                    plan.shape,
                    c.lines_read,
                    c.blank_lines,
                    c.ingested,
                    c.duplicates,
                    c.quarantined,
                    started_at,
                    finished_at,
                ],
            )
        con.execute("COMMIT")
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
                ingest_id=f"{run_id}-{plan.file_no:06d}",
                lines_read=c.lines_read,
                blank_lines=c.blank_lines,
                ingested=c.ingested,
                duplicates=c.duplicates,
                quarantined=c.quarantined,
                quarantine_by_reason=dict(sorted(c.reasons.items())),
                seconds=seconds,
            )
        )
    return reports


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
) -> IngestReport:
    """Ingest files / globs / folders; the nightly flow's entry point.

    ``shape``: auto | canonical | litellm | otel. ``validate`` runs the Great Expectations suite
    on a bounded sample of the rows this call inserted and stores the result. ``now`` fixes the
    clock for the future-timestamp rule (tests). Small text files of one shape are grouped into
    one transaction (a folder of thousands of tiny files); a larger file gets its own and is
    streamed. Raises :class:`IngestError` only for paths that do not exist or are unsupported;
    bad data never raises.
    """
    if shape not in ("auto", *SHAPES):
        raise IngestError(f"unknown format {shape!r}: use auto, {', '.join(SHAPES)}")
    files = resolve_paths(paths)
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    own = con is None
    if con is None:
        from tasks.warehouse.connection import connect

        con = connect(settings)
    order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    try:
        # row order inside usage_logs carries no meaning; not keeping it speeds up inserts
        con.execute("SET preserve_insertion_order = false")
        apply_ingest_schema(con)
        sync_price_overrides(con, price_overrides or overrides_path(settings))
        run_id = uuid.uuid4().hex[:16]
        plans = [_plan(path, index, shape) for index, path in enumerate(files)]
        known = {
            str(digest): str(ingest_id)
            for digest, ingest_id in con.execute(
                "SELECT content_hash, any_value(ingest_id) FROM ingest_manifest"
                " WHERE list_contains(?, content_hash) GROUP BY 1",
                [[p.digest for p in plans]],
            ).fetchall()
        }
        reports: dict[int, FileIngestReport] = {}
        group: list[_Plan] = []

        def flush() -> None:
            if group:
                done = _ingest_plans(
                    con, group, run_id=run_id, chunk_rows=chunk_rows, now=now, on_chunk=on_chunk
                )
                for item, report in zip(group, done, strict=True):
                    reports[item.file_no] = report
                group.clear()

        group_bytes = 0
        for plan in plans:
            if plan.digest in known:
                reports[plan.file_no] = _report(plan, "skipped", ingest_id=known[plan.digest])
                continue
            known[plan.digest] = f"{run_id}-{plan.file_no:06d}"
            small = plan.fmt != "parquet" and plan.size <= SMALL_FILE_BYTES
            if (
                not small
                or (group and group[0].shape != plan.shape)
                or (group_bytes + plan.size > GROUP_BYTES)
            ):
                flush()
                group_bytes = 0
            group.append(plan)
            group_bytes += plan.size
            if not small:
                flush()
                group_bytes = 0
        flush()
        validation = None
        ordered = tuple(reports[plan.file_no] for plan in plans)
        if validate and any(r.ingested for r in ordered):
            from tasks.ingest.validation import validate_ingest_run

            validation = validate_ingest_run(con, run_id)
        return IngestReport(
            run_id=run_id,
            files=ordered,
            validation=validation,
            seconds=time.perf_counter() - started,
        )
    finally:
        if own:
            con.close()
        elif order is not None:
            con.execute(f"SET preserve_insertion_order = {bool(order[0])}")


def warehouse_status(con: duckdb.DuckDBPyConnection) -> WarehouseStatus:
    """Rows, days, use cases, quarantine by reason, last ingest and last validation."""
    apply_ingest_schema(con)
    rows, first_day, last_day, days = con.execute(
        "SELECT count(*), min(day), max(day), count(DISTINCT day) FROM usage_logs"
    ).fetchone()  # type: ignore[misc]
    use_cases = dict(
        con.execute("SELECT use_case, count(*) FROM usage_logs GROUP BY 1 ORDER BY 1").fetchall()
    )
    reasons = dict(
        con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1").fetchall()
    )
    files = int(con.execute("SELECT count(*) FROM ingest_manifest").fetchone()[0])  # type: ignore[index]
    last = con.execute(
        "SELECT run_id, max(finished_at), count(*), sum(lines_read), sum(ingested),"
        " sum(duplicates), sum(quarantined) FROM ingest_manifest"
        " GROUP BY run_id ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    last_ingest = (
        None
        if last is None
        else {
            "run_id": last[0],
            "finished_at": last[1].isoformat(),
            "files": int(last[2]),
            "lines_read": int(last[3]),
            "ingested": int(last[4]),
            "duplicates": int(last[5]),
            "quarantined": int(last[6]),
        }
    )
    from tasks.ingest.validation import latest_validation_results

    return WarehouseStatus(
        rows=int(rows),
        first_day=first_day,
        last_day=last_day,
        days=int(days),
        use_cases={str(k): int(v) for k, v in use_cases.items()},
        quarantine_by_reason={str(k): int(v) for k, v in reasons.items()},
        files_ingested=files,
        last_ingest=last_ingest,
        last_validation=latest_validation_results(con),
    )


__all__ = [
    "FIELD_NAMES",
    "REASON_CODES",
    "FileIngestReport",
    "IngestError",
    "IngestFileError",
    "IngestReport",
    "WarehouseStatus",
    "ingest_paths",
    "resolve_paths",
    "warehouse_status",
]
