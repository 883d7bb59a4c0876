"""The one-chunk-ahead reader: order, errors in place, a consumer that stops early.

The reader's errors through the whole ingest: the truncated-gzip test in
``test_ingest_operations.py`` (its message still names the true last good line).
"""

from __future__ import annotations

import doctest
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest import prefetch as prefetch_module
from tasks.ingest.plans import SMALL_FILE_BYTES
from tasks.ingest.prefetch import prefetch


def test_doctests_run() -> None:
    result = doctest.testmod(prefetch_module)
    assert result.attempted >= 5 and result.failed == 0


def test_items_arrive_in_order_prepared_in_another_thread() -> None:
    threads: set[str] = set()

    def prepare(x: int) -> int:
        threads.add(threading.current_thread().name)
        return x * 2

    assert list(prefetch(iter(range(200)), prepare, depth=2)) == [2 * i for i in range(200)]
    assert threads == {"ingest-prefetch"}


def test_a_consumer_that_stops_early_stops_the_reader() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            read.append(i)
            yield i

    out = prefetch(items(), lambda x: x)
    assert next(out) == 0
    out.close()  # what a failing process_chunk does to the for loop's generator
    settled = len(read)
    time.sleep(0.2)
    assert len(read) == settled <= 3  # the reader ran at most one step ahead, then stopped
    assert not any(t.name == "ingest-prefetch" for t in threading.enumerate())


def test_depth_is_validated() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1, got 0"):
        list(prefetch(iter([1]), lambda x: x, depth=0))


def test_a_streamed_json_array_is_read_in_the_thread_through_its_own_connection(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """A JSON array over the small-file size is streamed: DuckDB reads it in the reader thread
    (through a cursor of its own); every element arrives once, in order, and no thread stays."""
    records = [kit.record(i, region="r" * 200) for i in range(5000)]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    assert path.stat().st_size > SMALL_FILE_BYTES
    report = kit.ingest(con, [path], chunk_rows=700)
    (item,) = report.files
    assert (item.lines_read, item.ingested, item.quarantined) == (5000, 5000, 0)
    lines = con.execute("SELECT min(source_line), max(source_line) FROM usage_logs").fetchall()
    assert lines == [(1, 5000)]
    assert not any(t.name == "ingest-prefetch" for t in threading.enumerate())
