"""Helpers for the allocation tests: load simulated or hand-made rows into a warehouse."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tasks.simulation import load_simulated


def _load_table(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Insert a canonical Arrow table (simulator output) into ``usage_logs``."""
    return load_simulated(con, table, label="test")


def _load_rows(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Insert hand-made rows: only the fields a test cares about, sensible defaults for the rest."""
    from tasks.simulation import CANONICAL_SCHEMA

    defaults: dict[str, Any] = {
        "model": "m",
        "input_tokens": 100,
        "output_tokens": 10,
        "latency_ms": 100.0,
        "cost_usd": 0.001,
        "status": "success",
    }
    full = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = dict.fromkeys(CANONICAL_SCHEMA.names)
        record.update(defaults)
        record["request_id"] = f"r{i}"
        record.update(row)
        full.append(record)
    return _load_table(con, pa.Table.from_pylist(full, schema=CANONICAL_SCHEMA))


@pytest.fixture
def load_table() -> Any:
    """``load_table(con, arrow_table)``: insert simulator output into ``usage_logs``."""
    return _load_table


@pytest.fixture
def load_rows() -> Any:
    """``load_rows(con, [dict, ...])``: insert hand-made rows (unset fields get defaults)."""
    return _load_rows


@pytest.fixture
def con() -> Any:
    """An in-memory warehouse with the schema applied."""
    from tasks.warehouse.connection import connect

    connection = connect(path=":memory:")
    yield connection
    connection.close()
