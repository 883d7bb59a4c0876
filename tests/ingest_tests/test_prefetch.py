"""The one-chunk-ahead reader: order, errors in place, a consumer that stops early.

The reader's errors through the whole ingest: the truncated-gzip test in
``test_ingest_operations.py`` (its message still names the true last good line).
"""

from __future__ import annotations

import doctest
import threading
import time
from collections.abc import Iterator

import pytest

from tasks.ingest import prefetch as prefetch_module
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
