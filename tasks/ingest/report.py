"""What an ingest reports (per file and in total) and what the warehouse holds (``status``).

``llmopt status`` must work while an ingest runs: :func:`read_status` opens the warehouse
read-only; DuckDB refuses even that while a writer holds the file, so it falls back to a
snapshot copy of the file (a consistent view as of the last checkpoint), and says so.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tasks.ingest.validation import latest_validation_results

__all__ = ["FileIngestReport", "IngestReport", "WarehouseStatus", "read_status", "warehouse_status"]


@dataclass(frozen=True)
class FileIngestReport:
    """What happened to one file. ``status``: ingested | skipped | empty | failed."""

    path: str
    status: str
    file_format: str
    shape: str
    size_bytes: int
    content_hash: str
    ingest_id: str | None
    lines_read: int = 0
    blank_lines: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    resumed_at_byte: int = 0

    @property
    def balanced(self) -> bool:
        """The accounting identity: every record read is accounted for."""
        return self.lines_read == self.ingested + self.duplicates + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form for the CLI."""
        return {
            "path": self.path,
            "status": self.status,
            "format": self.file_format,
            "shape": self.shape,
            "size_bytes": self.size_bytes,
            "resumed_at_byte": self.resumed_at_byte,
            "lines_read": self.lines_read,
            "blank_lines": self.blank_lines,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_by_reason": self.quarantine_by_reason,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class IngestReport:
    """All files of one ``ingest_paths`` call, their totals and the validation outcome."""

    run_id: str
    files: tuple[FileIngestReport, ...]
    validation: dict[str, Any] | None = None
    seconds: float = 0.0

    def _total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files)

    @property
    def lines_read(self) -> int:
        """Records read over all files."""
        return self._total("lines_read")

    @property
    def ingested(self) -> int:
        """Rows inserted over all files."""
        return self._total("ingested")

    @property
    def duplicates(self) -> int:
        """Records whose request_id was already stored (or earlier in the file)."""
        return self._total("duplicates")

    @property
    def quarantined(self) -> int:
        """Records quarantined over all files."""
        return self._total("quarantined")

    @property
    def failed(self) -> tuple[FileIngestReport, ...]:
        """Files that could not be read to the end (rolled back)."""
        return tuple(f for f in self.files if f.status == "failed")

    @property
    def balanced(self) -> bool:
        """Whether every file satisfies the accounting identity."""
        return all(f.balanced for f in self.files)

    @property
    def quarantine_by_reason(self) -> dict[str, int]:
        """Quarantined records per reason code, over all files."""
        totals: dict[str, int] = {}
        for report in self.files:
            for reason, count in report.quarantine_by_reason.items():
                totals[reason] = totals.get(reason, 0) + count
        return dict(sorted(totals.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (per file and totals) for the CLI and MLflow."""
        return {
            "run_id": self.run_id,
            "totals": {
                "files": len(self.files),
                "failed_files": len(self.failed),
                "lines_read": self.lines_read,
                "ingested": self.ingested,
                "duplicates": self.duplicates,
                "quarantined": self.quarantined,
                "quarantine_by_reason": self.quarantine_by_reason,
                "balanced": self.balanced,
                "seconds": round(self.seconds, 3),
            },
            "files": [f.to_dict() for f in self.files],
            "validation": self.validation,
        }


@dataclass(frozen=True)
class WarehouseStatus:
    """What the warehouse holds: for ``llmopt status`` and the nightly flow's summary."""

    rows: int
    first_day: dt.date | None
    last_day: dt.date | None
    days: int
    use_cases: dict[str, int]
    quarantine_by_reason: dict[str, int]
    files_ingested: int
    last_ingest: dict[str, Any] | None
    last_validation: dict[str, Any] | None
    snapshot: bool = False


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def warehouse_status(con: duckdb.DuckDBPyConnection, *, snapshot: bool = False) -> WarehouseStatus:
    """Rows, days, use cases, quarantine by reason, last ingest and last validation.

    Args:
        con: a warehouse connection (read-only is enough).
        snapshot: whether ``con`` reads a copy taken while another process wrote.

    Returns:
        The status; empty counts for tables that do not exist yet.
    """
    rows, first_day, last_day, days = con.execute(
        "SELECT count(*), min(day), max(day), count(DISTINCT day) FROM usage_logs"
    ).fetchone()  # type: ignore[misc]
    use_cases = con.execute(
        "SELECT use_case, count(*) FROM usage_logs GROUP BY 1 ORDER BY 1"
    ).fetchall()
    ingest_tables = _has_table(con, "ingest_manifest") and _has_table(con, "quarantine")
    reasons: list[tuple[Any, Any]] = []
    files, last = 0, None
    if ingest_tables:
        reasons = con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1"
        ).fetchall()
        files = int(con.execute("SELECT count(*) FROM ingest_manifest").fetchone()[0])  # type: ignore[index]
        last = con.execute(
            "SELECT run_id, max(finished_at), count(*), sum(lines_read), sum(ingested),"
            " sum(duplicates), sum(quarantined) FROM ingest_manifest"
            " GROUP BY run_id ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
    last_ingest = (
        None
        if last is None
        else {
            "run_id": last[0],
            "finished_at": last[1].isoformat(),
            "files": int(last[2]),
            "lines_read": int(last[3]),
            "ingested": int(last[4]),
            "duplicates": int(last[5]),
            "quarantined": int(last[6]),
        }
    )
    validation = latest_validation_results(con) if _has_table(con, "validation_results") else None
    return WarehouseStatus(
        rows=int(rows),
        first_day=first_day,
        last_day=last_day,
        days=int(days),
        use_cases={str(k): int(v) for k, v in use_cases},
        quarantine_by_reason={str(k): int(v) for k, v in reasons},
        files_ingested=files,
        last_ingest=last_ingest,
        last_validation=validation,
        snapshot=snapshot,
    )


def read_status(path: Path) -> WarehouseStatus:
    """The status of the warehouse file at ``path`` without taking its write lock.

    Args:
        path: the DuckDB file.

    Returns:
        The status, read through a read-only connection, or from a snapshot copy of the file
        when a writer (an ingest) holds it (``snapshot=True``: as of its last checkpoint).
    """
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        with tempfile.TemporaryDirectory(prefix="llmopt-status-") as folder:
            copy = Path(folder) / path.name
            shutil.copyfile(path, copy)  # the WAL is not copied: last checkpoint
            con = duckdb.connect(str(copy), read_only=True)
            try:
                return warehouse_status(con, snapshot=True)
            finally:
                con.close()
    try:
        return warehouse_status(con)
    finally:
        con.close()
