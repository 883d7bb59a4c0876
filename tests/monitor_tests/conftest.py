"""Helpers for the monitoring tests: simulated rows into ``usage_logs``, the demo's settings."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tasks.core.settings import Settings, load_settings
from tasks.simulation import load_simulated
from tasks.simulation.demo_config import DEMO_CONFIG_DIR


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


def _load_raw_scan() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "monitor_raw_scan", Path(__file__).with_name("raw_scan.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def raw_scan() -> ModuleType:
    """The raw-scan monitoring inputs (``raw_scan.py``): the reference of the rollup path."""
    return _load_raw_scan()
