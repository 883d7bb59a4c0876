"""Planning an ingest: what each file is, whether it grew, and which files share a transaction.

A plain JSONL file whose first ``size_bytes`` (as recorded in the manifest) still hash to the
recorded content hash, and that ended with a newline, grew by appending: its plan resumes at that
byte offset and line. Anything else is read in full (row dedupe and quarantine-once make that
safe).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tasks.ingest.chunks import Counts
from tasks.ingest.errors import IngestError
from tasks.ingest.paths import detect_file_shape, file_format, sha256_with_prefix

__all__ = [
    "GROUP_BYTES",
    "SMALL_FILE_BYTES",
    "Plan",
    "plan_file",
    "transaction_groups",
    "write_manifest",
]

SMALL_FILE_BYTES = 1024 * 1024  # files up to this size are grouped ...
GROUP_BYTES = 32 * 1024 * 1024  # ... into one transaction of at most this many bytes


@dataclass(frozen=True)
class Plan:
    """One file to ingest: what it is, before any row is read."""

    path: Path
    file_no: int
    fmt: str
    compressed: bool
    size: int
    digest: str
    shape: str
    resume_offset: int = 0  # an appended file: the bytes already ingested
    resume_line: int = 1


def _previous(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, str, int, int] | None:
    """(size, hash, end offset, end line) of the latest complete read of ``path``, if any."""
    row = con.execute(
        "SELECT size_bytes, content_hash, end_offset, end_line FROM ingest_manifest"
        " WHERE path = ? AND end_offset IS NOT NULL ORDER BY finished_at DESC LIMIT 1",
        [str(path)],
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]), int(row[3]))


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def plan_file(con: duckdb.DuckDBPyConnection, path: Path, file_no: int, shape: str) -> Plan:
    """What ``path`` is: format, size, hash, shape, and where an appended file resumes.

    Args:
        con: the warehouse (its manifest tells whether the file grew since its last read).
        path: the file.
        file_no: its number in this run.
        shape: ``auto`` or a shape name.

    Raises:
        IngestError: an unsupported file name.
    """
    kind = file_format(path)
    if kind is None:
        raise IngestError(f"{path}: unsupported file type")
    fmt, compressed = kind
    size = path.stat().st_size
    before = _previous(con, path) if fmt == "jsonl" and not compressed else None
    grew = before is not None and 0 < before[0] == before[2] < size
    digest, prefix = sha256_with_prefix(path, before[0] if grew and before else None)
    resume = (
        before is not None and grew and prefix == before[1] and _ends_with_newline(path, before[0])
    )
    return Plan(
        path=path,
        file_no=file_no,
        fmt=fmt,
        compressed=compressed,
        size=size,
        digest=digest,
        shape=shape if shape != "auto" else detect_file_shape(path, fmt, compressed),
        resume_offset=before[0] if resume and before else 0,
        resume_line=before[3] + 1 if resume and before else 1,
    )


def transaction_groups(
    con: duckdb.DuckDBPyConnection,
    plans: Sequence[Plan],
    skipped: Callable[[Plan, str], None],
) -> Iterator[list[Plan]]:
    """Transactions to run: a big file alone; small files of one shape together.

    Text files and Parquet files go in separate groups (a text group is read before its
    transaction, a Parquet group is streamed file by file inside it). Each transaction runs the
    Great Expectations suite once (~0.3 s whatever the rows), so a folder of small Parquet
    files, one transaction each, spent most of its time there.

    Args:
        con: the warehouse (its manifest).
        plans: the files, in order.
        skipped: called with a file already in the manifest (same content hash) and the
            ingest id that holds it; such a file is in no group.
    """
    known = {
        str(digest): str(ingest_id)
        for digest, ingest_id in con.execute(
            "SELECT content_hash, any_value(ingest_id) FROM ingest_manifest"
            " WHERE list_contains(?, content_hash) GROUP BY 1",
            [[p.digest for p in plans]],
        ).fetchall()
    }
    group: list[Plan] = []
    group_bytes = 0
    for plan in plans:
        if plan.digest in known:
            skipped(plan, known[plan.digest])
            continue
        known[plan.digest] = f"{plan.file_no}"
        small = plan.size <= SMALL_FILE_BYTES and not plan.resume_offset
        if group and (
            not small
            or (group[0].shape, group[0].fmt == "parquet") != (plan.shape, plan.fmt == "parquet")
            or group_bytes + plan.size > GROUP_BYTES
        ):
            yield group
            group, group_bytes = [], 0
        if not small:
            yield [plan]
            continue
        group.append(plan)
        group_bytes += plan.size
    if group:
        yield group


def write_manifest(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    counts: Counts,
    *,
    run_id: str,
    started_at: dt.datetime,
    end_line: int | None,
) -> None:
    """Record a file in ``ingest_manifest`` (inside its transaction): its counts and where a
    later read of the same file resumes.

    Args:
        con: the warehouse, inside the file's transaction.
        plan: the file's plan.
        counts: its final counts.
        run_id: this ingest run.
        started_at: when its transaction started.
        end_line: its last line (a resumable plain JSONL file), else None.
    """
    con.execute(
        "INSERT INTO ingest_manifest BY NAME SELECT ? AS ingest_id, ? AS run_id, ? AS path,"
        " ? AS size_bytes, ? AS content_hash, ? AS file_format, ? AS shape, ? AS lines_read,"
        " ? AS blank_lines, ? AS ingested, ? AS duplicates, ? AS quarantined,"
        " ? AS started_at, ? AS finished_at, ? AS end_offset, ? AS end_line",
        [
            f"{run_id}-{plan.file_no:06d}",
            run_id,
            str(plan.path),
            plan.size,
            plan.digest,
            plan.fmt,
            plan.shape,
            counts.lines_read,
            counts.blank_lines,
            counts.ingested,
            counts.duplicates,
            counts.quarantined,
            started_at,
            dt.datetime.now(dt.UTC),
            plan.size if end_line is not None else None,
            end_line,
        ],
    )
