"""Helpers for the monitoring tests: load a simulated pyarrow table into ``usage_logs``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tasks.simulation.generate import load_simulated


def insert_rows(con: Any, table: Any) -> int:
    """Insert canonical simulated rows (timestamp -> ts, day) into the warehouse."""
    return load_simulated(con, table, label="monitor-test")


@pytest.fixture(scope="session")
def load_rows() -> Callable[[Any, Any], int]:
    """``load_rows(con, table)``: insert a simulated pyarrow table into ``usage_logs``."""
    return insert_rows
