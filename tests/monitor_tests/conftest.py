"""Helpers for the monitoring tests: load a simulated pyarrow table into ``usage_logs``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

INSERT_SQL = """
INSERT INTO usage_logs
SELECT request_id, "timestamp" AS ts, CAST(timezone('UTC', "timestamp") AS DATE) AS day,
       use_case, model, provider, prompt_id, config_id, experiment_id, variant_id, unit_id,
       propensity, temperature, top_p, max_tokens, input_tokens, output_tokens, latency_ms,
       ttft_ms, coalesce(cost_usd, 0.0), 'log', status, error_type, quality, feedback, task_type,
       user_segment, region, language, CAST(metadata AS JSON), 'simulated',
       row_number() OVER (), 'monitor-test'
FROM sim_rows
"""


def insert_rows(con: Any, table: Any) -> int:
    """Insert canonical simulated rows (timestamp -> ts, day) into the warehouse."""
    con.register("sim_rows", table)
    try:
        con.execute(INSERT_SQL)
    finally:
        con.unregister("sim_rows")
    return int(table.num_rows)


@pytest.fixture(scope="session")
def load_rows() -> Callable[[Any, Any], int]:
    """``load_rows(con, table)``: insert a simulated pyarrow table into ``usage_logs``."""
    return insert_rows
