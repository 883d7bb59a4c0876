"""The JSONL line reader's chunk sizes: lines per chunk, fewer for long lines."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.ingest.readers import CHUNK_BYTES, TextCursor, iter_jsonl


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
