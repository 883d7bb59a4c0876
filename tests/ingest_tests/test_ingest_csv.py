"""CSV: a plain file (no quoting) is split in DuckDB; a quoted one goes through Python's csv
module. Both must give the same rows, lines, reasons and metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest.pipeline import ingest_paths
from tasks.ingest.readers import plain_csv


def _csv_lines(kit: Any) -> list[str]:
    records = [kit.record(i, note=f"n{i}") for i in range(6)]
    header = list(records[0])
    rows = [",".join(str(r[k]) for k in header) for r in records]
    rows[2] = rows[2].replace(",p1,", ",,")  # empty cell: prompt_id absent
    rows[3] = rows[3].replace(",103,", ",-5,", 1)  # negative input tokens
    return [
        ",".join(header),
        rows[0],
        "",  # blank line
        rows[1],
        "1,2,3",  # wrong width: malformed_row
        rows[2],
        "," * (len(header) - 1),  # a row of empty cells: blank
        rows[3],
        rows[4],
        rows[5],
    ]


def _ingest(con: duckdb.DuckDBPyConnection, path: Path, kit: Any) -> dict[str, Any]:
    report = ingest_paths([path], con=con, validate=False, now=kit.NOW)
    kit.assert_balanced(report)
    (item,) = report.files
    rows = con.execute(
        "SELECT request_id, source_line, prompt_id, input_tokens, metadata FROM usage_logs"
        " ORDER BY source_line"
    ).fetchall()
    quarantine = con.execute(
        "SELECT source_line, reason, detail FROM quarantine ORDER BY source_line"
    ).fetchall()
    return {
        "counts": (item.lines_read, item.ingested, item.quarantined, item.blank_lines),
        "reasons": item.quarantine_by_reason,
        "rows": rows,
        "quarantine": quarantine,
    }


def _clear(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("usage_logs", "quarantine", "ingest_manifest"):
        con.execute(f"DELETE FROM {table}")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_plain_csv_is_split_in_sql_like_the_csv_module(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, newline: str
) -> None:
    lines = _csv_lines(kit)
    plain = tmp_path / "plain.csv"
    plain.write_bytes((newline.join(lines) + newline).encode())
    quoted = tmp_path / "quoted.csv"  # one quoted cell: Python's csv module reads it
    quoted_lines = [lines[0], *(line.replace(",n0", ',"n0"') for line in lines[1:])]
    quoted.write_bytes((newline.join(quoted_lines) + newline).encode())
    assert plain_csv(plain, False) and not plain_csv(quoted, False)
    slow = _ingest(con, quoted, kit)
    _clear(con)
    fast = _ingest(con, plain, kit)
    assert fast["reasons"] == slow["reasons"] == {"malformed_row": 1, "negative_tokens": 1}
    assert [row[2:] for row in fast["rows"]] == [row[2:] for row in slow["rows"]]
    assert [row[:2] for row in fast["rows"]] == [row[:2] for row in slow["rows"]]
    assert [q[:2] for q in fast["quarantine"]] == [q[:2] for q in slow["quarantine"]]
    # the plain path counts the blank line and the row of empty cells apart
    assert fast["counts"] == (7, 5, 2, 2)
    assert slow["counts"][:3] == (7, 5, 2)
    by_line = {line: (prompt, md) for _, line, prompt, _, md in fast["rows"]}
    assert json.loads(by_line[2][1]) == {"note": "n0"}
    assert by_line[6][0] is None  # the empty cell is absent, not ""
