"""The JSONL line reader's chunk sizes: lines per chunk, fewer for long lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest import file_reads, pipeline
from tasks.ingest.readers import CHUNK_BYTES, TextCursor, iter_jsonl
from tasks.warehouse.connection import apply_schema


def _write(path: Path, lines: int, width: int) -> int:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            handle.write(json.dumps({"request_id": f"r-{i}", "pad": "x" * width}) + "\n")
    return path.stat().st_size


def test_long_lines_make_chunks_of_at_most_chunk_bytes_in_whole_vectors(tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    size = _write(path, 30_000, 6_000)
    cursor = TextCursor()
    chunks = list(iter_jsonl(path, False, 122_880, cursor))
    rows = [chunk.num_rows for chunk in chunks]
    assert sum(rows) == 30_000 and len(rows) > 1
    assert all(n % 2048 == 0 for n in rows[:-1])  # whole DuckDB vectors
    for chunk in chunks:
        text = sum(len(line.as_py().encode()) + 1 for line in chunk.column("raw"))
        assert text <= CHUNK_BYTES
    numbers = [n for chunk in chunks for n in chunk.column("line_no").to_pylist()]
    assert numbers == list(range(1, 30_001))
    assert (cursor.next_line, cursor.offset) == (30_001, size)


def test_short_lines_keep_whole_chunks_of_chunk_rows(tmp_path: Path) -> None:
    path = tmp_path / "narrow.jsonl"
    _write(path, 5_000, 10)
    assert [c.num_rows for c in iter_jsonl(path, False, 2_048)] == [2_048, 2_048, 904]


def test_lines_too_long_for_a_vector_make_chunks_of_fewer_lines(tmp_path: Path) -> None:
    path = tmp_path / "batches.jsonl"
    _write(path, 100, 90_000)  # 90 KB lines, as OTLP batches of 100 spans
    chunks = list(iter_jsonl(path, False, 122_880, chunk_bytes=2**20))
    assert [c.num_rows for c in chunks] == [11] * 9 + [1]


def test_otel_files_are_read_in_smaller_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flattening spans holds ~40x a chunk's text in DuckDB: OTel files get OTEL_CHUNK_BYTES."""
    seen: list[int] = []

    def spy(*args: Any, chunk_bytes: int, **kwargs: Any) -> Any:
        seen.append(chunk_bytes)
        return iter_jsonl(*args, chunk_bytes=chunk_bytes, **kwargs)

    monkeypatch.setattr(file_reads, "iter_jsonl", spy)
    otel = tmp_path / "spans.jsonl"
    otel.write_text(json.dumps({"resourceSpans": []}) + "\n", encoding="utf-8")
    plain = tmp_path / "calls.jsonl"
    _write(plain, 3, 10)
    con = duckdb.connect()
    apply_schema(con)
    pipeline.ingest_paths([otel], con=con, validate=False, shape="otel")
    pipeline.ingest_paths([plain], con=con, validate=False)
    assert seen == [file_reads.OTEL_CHUNK_BYTES, CHUNK_BYTES]
    assert file_reads.OTEL_CHUNK_BYTES < CHUNK_BYTES
