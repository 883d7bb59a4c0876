"""Every kind of bad input is quarantined with a reason or reported as one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.ingest.pipeline import IngestError, ingest_paths


def _reasons(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, str | None]]:
    rows = con.execute("SELECT source_line, reason, detail FROM quarantine").fetchall()
    return {int(line): (reason, detail) for line, reason, detail in rows}


def test_each_bad_line_is_quarantined_with_its_reason_and_raw_text(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    rec = kit.record
    lines: list[Any] = [
        rec(1),  # 1 ok
        '{"request_id": "r-2", "timestamp": ',  # 2 malformed
        rec(3, use_case=...),  # 3 no use case (and no default configured)
        rec(4, input_tokens="many"),  # 4 bad type
        rec(5, input_tokens=12.5),  # 5 bad type: not integral
        '{"request_id": "r-6", "timestamp": "2026-10-02T00:00:00Z", "use_case": "u",'
        ' "model": "gpt-4o-mini", "input_tokens": 1, "output_tokens": 1, "latency_ms": NaN,'
        ' "status": "success"}',  # 6 non finite
        rec(7, quality="Infinity"),  # 7 non finite (string)
        rec(8, output_tokens=-3),  # 8 negative
        rec(9, input_tokens=50_000_000),  # 9 absurd
        rec(10, quality=1.5),  # 10 out of range
        rec(11, feedback=2),  # 11 out of range
        rec(12, timestamp="2030-01-01T00:00:00Z"),  # 12 future
        rec(13, timestamp="2026-10-02T10:00:00"),  # 13 no zone
        rec(14, timestamp="yesterday"),  # 14 bad type
        rec(15, model="no-such-model-xyz"),  # 15 unknown model, no cost
        "[1, 2, 3]",  # 16 not an object
        rec(17, status="maybe"),  # 17 out of range
        rec(18, propensity=0.0),  # 18 out of range
        "",  # blank line: counted apart
        rec(20, timestamp=1790845200000),  # 20 epoch ms: ok
    ]
    path = kit.write_jsonl(tmp_path / "bad.jsonl", lines)
    report = kit.ingest(con, [path])
    (item,) = report.files
    assert item.status == "ingested"
    assert item.lines_read == 19 and item.blank_lines == 1
    assert item.ingested == 2 and item.duplicates == 0 and item.quarantined == 17
    reasons = _reasons(con)
    expected = {
        2: "malformed_json",
        3: "no_use_case",
        4: "bad_type",
        5: "bad_type",
        6: "non_finite",
        7: "non_finite",
        8: "negative_tokens",
        9: "out_of_range",
        10: "out_of_range",
        11: "out_of_range",
        12: "future_timestamp",
        13: "missing_timezone",
        14: "bad_type",
        15: "unknown_model",
        16: "malformed_json",
        17: "out_of_range",
        18: "out_of_range",
    }
    assert {line: reason for line, (reason, _) in reasons.items()} == expected
    assert (reasons[3][1] or "").startswith("no metadata.use_case")
    assert reasons[4][1] == "input_tokens"
    assert reasons[15][1] == "no-such-model-xyz"
    raw = con.execute("SELECT raw, source_file FROM quarantine WHERE source_line = 2").fetchone()
    assert raw == ('{"request_id": "r-2", "timestamp": ', str(path))
    stored = con.execute("SELECT request_id, ts FROM usage_logs ORDER BY source_line").fetchall()
    assert [r[0] for r in stored] == ["r-1", "r-20"]
    assert stored[1][1].isoformat().startswith("2026-10-01T09:00:00")
    assert kit.counts(con) == (2, 17)


def test_the_zone_spellings_exporters_write_are_one_instant(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """ISO 8601 with Z, an offset with or without a colon, ``UTC`` or ``GMT`` after a space
    (Java's and HTTP's ``GMT``), nanoseconds (Go, OTel), an offset after a space (Ruby's and
    git's ``+0200``) with a zone name after it (Go's ``time.Time.String``): one instant, none
    quarantined."""
    spellings = [
        "2026-10-02T10:00:00Z",
        "2026-10-02 10:00:00 UTC",
        "2026-10-02 10:00:00 GMT",
        "2026-10-02T10:00:00+0000",
        "2026-10-02T12:00:00+02:00",
        "2026-10-02T10:00:00.000000000Z",
        "2026-10-02 12:00:00 +0200",
        "2026-10-02 03:00:00 -07:00",
        "2026-10-02 12:00:00.000000000 +0200 CEST",
        "2026-10-02 10:00:00 +0000 UTC",
    ]
    rows = [kit.record(i, timestamp=text) for i, text in enumerate(spellings)]
    report = kit.ingest(con, [kit.write_jsonl(tmp_path / "zones.jsonl", rows)])
    assert (report.ingested, report.quarantine_by_reason) == (len(spellings), {})
    (instants,) = con.execute("SELECT list(DISTINCT ts) FROM usage_logs").fetchone()
    assert [t.isoformat() for t in instants] == ["2026-10-02T10:00:00+00:00"]


@pytest.mark.parametrize(
    "line",
    [
        "null",
        '"just text"',
        "42",
        "{'request_id': 'r-2'}",
        '{"request_id": "r-2"} trailing',
        '{"request_id": "r-2"}{"request_id": "r-3"}',
        '{"request_id": "\\ud800"}',
    ],
)
def test_every_kind_of_line_that_is_not_one_json_object_is_malformed_json(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, line: str
) -> None:
    """The one-parse path (``try(json_transform)``) sorts lines as ``json_valid`` did."""
    path = kit.write_jsonl(tmp_path / "m.jsonl", [kit.record(1), line, kit.record(3)])
    report = kit.ingest(con, [path])
    (item,) = report.files
    assert (item.lines_read, item.ingested, item.quarantined) == (3, 2, 1)
    assert _reasons(con) == {2: ("malformed_json", None)}


def test_unknown_model_with_a_logged_cost_is_kept_never_priced_at_zero(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = kit.write_jsonl(
        tmp_path / "m.jsonl",
        [kit.record(1, model="inhouse-7b", cost_usd=0.0021), kit.record(2, model="inhouse-7b")],
    )
    report = kit.ingest(con, [path])
    assert report.ingested == 1 and report.quarantine_by_reason == {"unknown_model": 1}
    row = con.execute("SELECT cost_usd, cost_source FROM usage_logs").fetchone()
    assert row == (pytest.approx(0.0021), "log")
    zero = con.execute("SELECT count(*) FROM usage_logs WHERE cost_usd = 0").fetchone()
    assert zero == (0,)


def test_invalid_utf8_line_is_quarantined_and_its_neighbours_kept(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(kit.record(1)).encode()
    bad = json.dumps(kit.record(2, region="Zürich")).encode().replace(b"\\u00fc", b"\xfc")
    path.write_bytes(good + b"\n" + bad + b"\n" + json.dumps(kit.record(3)).encode() + b"\n")
    report = kit.ingest(con, [path])
    assert report.ingested == 2 and report.quarantine_by_reason == {"invalid_utf8": 1}
    raw = con.execute("SELECT raw FROM quarantine").fetchone()
    assert raw is not None and "Z\ufffdrich" in raw[0]


def test_empty_file_and_blank_only_file_are_recorded_as_empty(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\n", encoding="utf-8")
    report = kit.ingest(con, [empty, blank])
    assert [f.status for f in report.files] == ["empty", "empty"]
    assert report.files[0].blank_lines + report.files[1].blank_lines == 3
    assert kit.counts(con) == (0, 0)
    again = kit.ingest(con, [empty, blank])
    assert [f.status for f in again.files] == ["skipped", "skipped"]


def test_truncated_gzip_fails_with_file_and_line_and_leaves_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    whole = kit.gzipped_records(3000, pad=200)
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    fine = kit.write_jsonl(tmp_path / "fine.jsonl", [kit.record(9001)])
    report = kit.ingest(con, [broken, fine])
    by_name = {Path(f.path).name: f for f in report.files}
    failed = by_name["cut.jsonl.gz"]
    assert failed.status == "failed" and failed.ingested == 0
    assert failed.error is not None and "cut.jsonl.gz" in failed.error and "line" in failed.error
    assert by_name["fine.jsonl"].ingested == 1
    assert kit.counts(con) == (1, 0)
    manifest = con.execute("SELECT count(*) FROM ingest_manifest").fetchone()
    assert manifest == (1,)


def test_corrupt_parquet_is_one_clear_error(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    report = kit.ingest(con, [path])
    (item,) = report.files
    assert item.status == "failed" and item.error is not None and "broken.parquet" in item.error
    assert kit.counts(con) == (0, 0)


def test_missing_path_and_unsupported_type_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        ingest_paths([tmp_path / "nope.jsonl"], validate=False)
    other = tmp_path / "notes.txt"
    other.write_text("hello", encoding="utf-8")
    with pytest.raises(IngestError, match="unsupported file type"):
        ingest_paths([other], validate=False)
    with pytest.raises(IngestError, match="no file matches"):
        ingest_paths([str(tmp_path / "*.parquet")], validate=False)


def test_unknown_extra_fields_are_kept_in_metadata(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    row = kit.record(1, metadata={"team": "a"}, customer_tier="gold", nested={"k": [1, 2]})
    path = kit.write_jsonl(tmp_path / "extra.jsonl", [row])
    kit.ingest(con, [path])
    stored = con.execute("SELECT metadata FROM usage_logs").fetchone()
    assert stored is not None
    assert json.loads(stored[0]) == {"team": "a", "customer_tier": "gold", "nested": {"k": [1, 2]}}
