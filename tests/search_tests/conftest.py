"""Helpers for the search / frontier tests: load simulated rows into the test warehouse and read
a configuration's objectives back with bare SQL (the reference the tests compare with)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from tasks.simulation import load_simulated


def load_rows(con: Any, table: pa.Table) -> int:
    """Insert canonical Arrow rows (the simulator's shape) into ``usage_logs``."""
    return load_simulated(con, table, label="test")


@pytest.fixture
def insert_logs() -> Callable[[Any, pa.Table], int]:
    return load_rows


def _observed_objectives(con: Any, config_id: str) -> tuple[float, float, float]:
    """Mean quality, mean cost and p95 latency of one configuration's rows, by bare SQL."""
    q, cost, p95 = con.execute(
        "SELECT avg(quality), avg(cost_usd), quantile_cont(latency_ms, 0.95) "
        "FROM usage_logs WHERE config_id = ?",
        [config_id],
    ).fetchone()
    return q, cost, p95


@pytest.fixture
def observed_objectives() -> Callable[[Any, str], tuple[float, float, float]]:
    """``observed_objectives(con, config_id)``: (quality, cost, latency p95) straight from SQL."""
    return _observed_objectives
