"""Helpers for the search / frontier tests: load simulated rows into the test warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from tasks.simulation.generate import load_simulated


def load_rows(con: Any, table: pa.Table) -> int:
    """Insert canonical Arrow rows (the simulator's shape) into ``usage_logs``."""
    return load_simulated(con, table, label="test")


@pytest.fixture
def insert_logs() -> Callable[[Any, pa.Table], int]:
    return load_rows
