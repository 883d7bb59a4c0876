"""CSV: a plain file (no quoting) is split in DuckDB; a quoted one goes through Python's csv
module. Both must give the same rows, lines, reasons and metadata."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest import paths
from tasks.ingest.readers import plain_csv
from tasks.ingest.sql_records import UseCaseRules


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
    report = kit.ingest(con, [path])
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


def _litellm_lines() -> list[str]:
    header = (
        "request_id,startTime,endTime,model,model_group,custom_llm_provider,end_user,user,"
        "prompt_tokens,completion_tokens,spend,status,metadata,note"
    )
    return [
        header,
        # model empty: model_group fills it; end_user empty: user fills unit_id
        "l-1,2026-10-01 10:00:00,2026-10-01 10:00:01,,gpt-4o-mini,openai,,u-9,10,5,0.001,"
        "success,plain text,n1",
        # end_user set: user is a fallback not used and stays in metadata
        "l-2,2026-10-01 11:00:00,2026-10-01 11:00:02,gpt-4o-mini,grp,openai,e-1,u-2,12,6,"
        "0.002,failure,,n2",
        # no metadata column value, no note: metadata holds only the unused fallbacks
        "l-3,2026-10-01 12:00:00,2026-10-01 12:00:00.5,gpt-4o-mini,,openai,e-3,,7,1,0.001,"
        "success,metadata?,",
        "l-4,not a time,2026-10-01 12:00:01,gpt-4o-mini,,openai,,,7,1,0.001,success,,n4",
        "l-1,2026-10-01 13:00:00,2026-10-01 13:00:01,gpt-4o-mini,,openai,,,7,1,0.001,success,,",
    ]


def test_plain_litellm_csv_reads_fields_like_the_json_path(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """Fallback keys, unused fallbacks, extra columns and a non-object ``metadata`` cell land
    where the JSON path puts them (the quoted file is read as JSON records)."""
    lines = _litellm_lines()
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(
        "\n".join([lines[0], *(line.replace(",n1", ',"n1"') for line in lines[1:])]) + "\n",
        encoding="utf-8",
    )
    assert plain_csv(plain, False) and not plain_csv(quoted, False)

    def run(path: Path) -> tuple[Any, list[Any], list[Any]]:
        report = kit.ingest(con, [path], use_cases=UseCaseRules(default="csv-default"))
        rows = con.execute(
            "SELECT request_id, source_line, model, unit_id, status, latency_ms, metadata"
            " FROM usage_logs ORDER BY source_line"
        ).fetchall()
        held = con.execute(
            "SELECT source_line, reason, request_id FROM quarantine ORDER BY source_line"
        ).fetchall()
        (item,) = report.files
        return (item.lines_read, item.ingested, item.duplicates, item.quarantined), rows, held

    slow = run(quoted)
    _clear(con)
    fast = run(plain)
    assert fast[0] == slow[0]
    assert fast[2] == slow[2]
    assert [r[:6] for r in fast[1]] == [r[:6] for r in slow[1]]
    assert [json.loads(r[6] or "null") for r in fast[1]] == [
        json.loads(r[6] or "null") for r in slow[1]
    ]
    by_id = {r[0]: (r[2], r[3], json.loads(r[6] or "null")) for r in fast[1]}
    assert by_id["l-1"][:2] == ("gpt-4o-mini", "u-9")
    assert by_id["l-1"][2]["metadata"] == "plain text" and by_id["l-1"][2]["note"] == "n1"
    assert "user" not in by_id["l-1"][2]  # it filled unit_id
    assert by_id["l-2"][2]["user"] == "u-2" and by_id["l-2"][2]["model_group"] == "grp"


@pytest.mark.parametrize(
    ("name", "delimiter"), [("excel-de.csv", ";"), ("export.tsv", "\t"), ("pipes.csv", "|")]
)
def test_csv_with_another_delimiter_gives_the_rows_of_the_comma_file(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, name: str, delimiter: str
) -> None:
    """Excel writes ``;`` where the decimal mark is a comma (with a BOM and CRLF); tab- and
    pipe-separated exports too. Every row was quarantined as missing every field."""
    lines = _csv_lines(kit)
    comma = tmp_path / "comma.csv"
    comma.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = _ingest(con, comma, kit)
    _clear(con)
    other = tmp_path / name
    text = "\r\n".join(line.replace(",", delimiter) for line in lines) + "\r\n"
    other.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert not plain_csv(other, False)
    got = _ingest(con, other, kit)
    assert got["reasons"] == expected["reasons"] == {"malformed_row": 1, "negative_tokens": 1}
    assert got["rows"] == expected["rows"]
    assert got["counts"][:3] == expected["counts"][:3] == (7, 5, 2)


def test_decimal_commas_of_a_semicolon_excel_file_are_numbers(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """Where Excel writes ``;`` between fields it writes ``0,8`` for 0.8: numeric fields are
    read as numbers (every such row was bad_type), a text field keeps its comma, and a number
    with a thousands mark is still bad_type."""
    records = [kit.record(i, latency_ms=350.5 + i, note=f"{i},5") for i in range(3)]
    header = list(records[0])

    def cell(value: Any) -> str:
        return str(value).replace(".", ",") if isinstance(value, float) else str(value)

    lines = [";".join(header), *(";".join(cell(r[k]) for k in header) for r in records)]
    lines[3] = lines[3].replace(";352,5;", ";1.352,5;")  # a thousands mark
    path = tmp_path / "excel-de.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    report = kit.ingest(con, [path])
    assert (report.ingested, report.quarantine_by_reason) == (2, {"bad_type": 1})
    rows = con.execute(
        "SELECT request_id, latency_ms, quality, temperature, top_p, metadata FROM usage_logs"
        " ORDER BY 1"
    ).fetchall()
    assert [row[:5] for row in rows] == [
        ("r-0", 350.5, 0.8, 0.3, 1.0),
        ("r-1", 351.5, 0.8, 0.3, 1.0),
    ]
    assert [json.loads(row[5])["note"] for row in rows] == ["0,5", "1,5"]
    assert con.execute("SELECT detail FROM quarantine").fetchall() == [("latency_ms",)]


def test_csv_header_helpers_examples_run() -> None:
    result = doctest.testmod(paths, raise_on_error=False)
    assert result.attempted >= 6 and result.failed == 0, result


def test_csv_header_names_with_spaces_around_them_and_in_another_case(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """As typed in Excel: `` Request_ID, Timestamp, MODEL`` are the fields they name."""
    lines = _csv_lines(kit)
    spaced = tmp_path / "spaced.csv"
    names = lines[0].split(",")
    header = ", ".join(
        f" {name.upper() if i % 2 else name.title()}" for i, name in enumerate(names)
    )
    spaced.write_text("\n".join([header, *lines[1:]]) + "\n", encoding="utf-8")
    result = _ingest(con, spaced, kit)
    assert result["reasons"] == {"malformed_row": 1, "negative_tokens": 1}
    assert [row[0] for row in result["rows"]] == ["r-0", "r-1", "r-2", "r-4", "r-5"]
