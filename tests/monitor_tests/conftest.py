"""Helpers for the monitoring tests: simulated rows into ``usage_logs``, the demo's settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.settings import Settings, load_settings
from tasks.simulation.demo_config import DEMO_CONFIG_DIR
from tasks.simulation.generate import load_simulated


def insert_rows(con: Any, table: Any) -> int:
    """Insert canonical simulated rows (timestamp -> ts, day) into the warehouse."""
    return load_simulated(con, table, label="monitor-test")


@pytest.fixture(scope="session")
def load_rows() -> Callable[[Any, Any], int]:
    """``load_rows(con, table)``: insert a simulated pyarrow table into ``usage_logs``."""
    return insert_rows


@pytest.fixture(scope="session")
def demo_config_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings reading the simulator's configuration (its use cases' rules), for
    module-scoped simulated worlds."""
    home = tmp_path_factory.mktemp("demo-home")
    return load_settings(env={"LLMOPT_HOME": str(home), "LLMOPT_CONFIG_DIR": str(DEMO_CONFIG_DIR)})
