"""Helpers for the ingestion tests: canonical records, file writers, a fixed clock."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest.pipeline import IngestReport, ingest_paths
from tasks.ingest.pricing import apply_ingest_schema
from tasks.ingest.session import MemoryLimit

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OVERRIDES_HEADER = (
    "model,provider,input_usd_per_mtok,output_usd_per_mtok,effective_from,effective_to,note\n"
)


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


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str], *, append: bool = False) -> Path:
    """One line per item; strings are written verbatim (for malformed lines); ``append`` adds
    the lines at the end of an existing file."""
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def gzipped_records(count: int, *, pad: int) -> bytes:
    """``count`` records as gzipped JSON lines, each padded by a ``region`` of ``pad`` chars."""
    lines = (json.dumps(record(i, region="r" * pad)).encode() + b"\n" for i in range(count))
    return gzip.compress(b"".join(lines))


def assert_balanced(report: IngestReport) -> None:
    """The accounting identity, per file and in total."""
    for item in report.files:
        assert item.lines_read == item.ingested + item.duplicates + item.quarantined, item
        assert sum(item.quarantine_by_reason.values()) == item.quarantined, item
    assert report.lines_read == report.ingested + report.duplicates + report.quarantined


def ingest(
    con: duckdb.DuckDBPyConnection, paths: Iterable[Path | str], **options: Any
) -> IngestReport:
    """``ingest_paths`` at the fixed clock, without validation, its accounting checked."""
    report = ingest_paths(list(paths), con=con, validate=False, now=NOW, **options)
    assert_balanced(report)
    return report


def usage_rows(con: duckdb.DuckDBPyConnection, order: str = "request_id") -> list[dict[str, Any]]:
    """Every ``usage_logs`` row as a dict, ordered by ``order``."""
    cursor = con.execute(f"SELECT * FROM usage_logs ORDER BY {order}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def write_overrides(path: Path, *rows: str) -> Path:
    """A price overrides file: the header, then one line per item of ``rows``."""
    path.write_text(OVERRIDES_HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


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
def memory_raises(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each ``MemoryLimit.raise_once`` of the test returned (True: the limit went up)."""
    calls: list[bool] = []
    real = MemoryLimit.raise_once

    def counted(limit: MemoryLimit) -> bool:
        calls.append(real(limit))
        return calls[-1]

    monkeypatch.setattr(MemoryLimit, "raise_once", counted)
    return calls


@pytest.fixture
def no_overrides(tmp_path: Path) -> Path:
    """An overrides file with the header only (tests that must see genai-prices alone)."""
    return write_overrides(tmp_path / "no_overrides.csv")


@pytest.fixture
def kit() -> Any:
    """The helpers above as one object (test modules cannot import a conftest by name)."""
    import types

    return types.SimpleNamespace(
        NOW=NOW,
        FIXTURES=FIXTURES,
        record=record,
        write_jsonl=write_jsonl,
        gzipped_records=gzipped_records,
        assert_balanced=assert_balanced,
        ingest=ingest,
        rows=usage_rows,
        write_overrides=write_overrides,
        counts=warehouse_counts,
    )
