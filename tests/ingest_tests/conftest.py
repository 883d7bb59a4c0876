"""Helpers for the ingestion tests: canonical records, file writers, a fixed clock."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest.pipeline import IngestReport
from tasks.ingest.pricing import apply_ingest_schema

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid canonical record; ``overrides`` set (or, with the value ``...``, remove) fields."""
    base: dict[str, Any] = {
        "request_id": f"r-{i}",
        "timestamp": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        "use_case": ["support-summarize", "ticket-classify"][i % 2],
        "model": "gpt-4o-mini",
        "provider": "openai",
        "prompt_id": "p1",
        "config_id": "cfg-a",
        "temperature": 0.3,
        "top_p": 1.0,
        "max_tokens": 256,
        "input_tokens": 100 + i,
        "output_tokens": 20 + i,
        "latency_ms": 350.0,
        "status": "success",
        "quality": 0.8,
        "feedback": 1,
    }
    for key, value in overrides.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """One line per item; strings are written verbatim (for malformed lines)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def assert_balanced(report: IngestReport) -> None:
    """The accounting identity, per file and in total."""
    for item in report.files:
        assert item.lines_read == item.ingested + item.duplicates + item.quarantined, item
        assert sum(item.quarantine_by_reason.values()) == item.quarantined, item
    assert report.lines_read == report.ingested + report.duplicates + report.quarantined


def warehouse_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(usage_logs rows, quarantine rows)."""
    rows = con.execute("SELECT count(*) FROM usage_logs").fetchone()
    quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()
    assert rows is not None and quarantined is not None
    return int(rows[0]), int(quarantined[0])


@pytest.fixture
def con(warehouse: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """The shared warehouse fixture with the ingestion tables applied."""
    apply_ingest_schema(warehouse)
    yield warehouse


@pytest.fixture
def no_overrides(tmp_path: Path) -> Path:
    """An overrides file with the header only (tests that must see genai-prices alone)."""
    path = tmp_path / "no_overrides.csv"
    path.write_text(
        "model,provider,input_usd_per_mtok,output_usd_per_mtok,effective_from,effective_to,note\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def kit() -> Any:
    """The helpers above as one object (test modules cannot import a conftest by name)."""
    import types

    return types.SimpleNamespace(
        NOW=NOW,
        FIXTURES=FIXTURES,
        record=record,
        write_jsonl=write_jsonl,
        assert_balanced=assert_balanced,
        counts=warehouse_counts,
    )
