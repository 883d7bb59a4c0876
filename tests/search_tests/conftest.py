"""Helpers for the search / frontier tests: load simulated rows into the test warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

INSERT_SQL = """
INSERT INTO usage_logs (
    request_id, ts, day, use_case, model, provider, prompt_id, config_id, experiment_id,
    variant_id, unit_id, propensity, temperature, top_p, max_tokens, input_tokens,
    output_tokens, latency_ms, ttft_ms, cost_usd, cost_source, status, error_type, quality,
    feedback, task_type, user_segment, region, language, metadata, source_file, source_line,
    ingest_id)
SELECT request_id, "timestamp", CAST(timezone('UTC', "timestamp") AS DATE), use_case, model,
       provider, prompt_id, config_id, experiment_id, variant_id, unit_id, propensity,
       temperature, top_p, max_tokens, input_tokens, output_tokens, latency_ms, ttft_ms,
       coalesce(cost_usd, 0.0), 'log', status, error_type, quality, feedback, task_type,
       user_segment, region, language, CAST(metadata AS JSON), 'test', row_number() OVER (), 'test'
FROM rows_to_load
"""


def load_rows(con: Any, table: pa.Table) -> int:
    """Insert canonical Arrow rows (the simulator's shape) into ``usage_logs``."""
    con.register("rows_to_load", table)
    try:
        con.execute(INSERT_SQL)
    finally:
        con.unregister("rows_to_load")
    return table.num_rows


@pytest.fixture
def insert_logs() -> Callable[[Any, pa.Table], int]:
    return load_rows
