"""Real-world shapes (LiteLLM spend logs, OTel GenAI spans) and every container format."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.pipeline import UseCaseRules
from tasks.ingest.sql_otel import otel_docs_sql


def _write_parquet(path: Path, records: list[dict[str, Any]], *, zone: bool = True) -> Path:
    """``records`` as parquet, timestamps as a timestamp column (UTC; ``zone=False``: naive)."""
    table = pa.Table.from_pylist(records)
    if zone:
        texts = [r["timestamp"].replace("Z", "+00:00") for r in records]
        ts = pa.array(texts).cast(pa.timestamp("us", tz="UTC"))
    else:
        ts = pa.array([r["timestamp"][:-1] for r in records]).cast(pa.timestamp("us"))
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", ts)
    pq.write_table(table, path)
    return path


def test_litellm_spend_log_export_is_detected_and_mapped(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, no_overrides: Path
) -> None:
    report = kit.ingest(
        con, [kit.FIXTURES / "litellm_spend_logs.json"], price_overrides=no_overrides
    )
    (item,) = report.files
    assert (item.file_format, item.shape) == ("json", "litellm")
    # the self-hosted model has no spend and no price: quarantined, never priced at zero
    assert item.ingested == 3 and item.quarantine_by_reason == {"unknown_model": 1}
    rows = {r["request_id"]: r for r in kit.rows(con)}
    first = rows["chatcmpl-9f1c2a7e-0001"]
    assert first["use_case"] == "support-summarize" and first["model"] == "gpt-4o-mini"
    assert (first["input_tokens"], first["output_tokens"]) == (700, 50)
    assert first["cost_usd"] == pytest.approx(0.000195) and first["cost_source"] == "log"
    assert first["latency_ms"] == 900 and first["ttft_ms"] == pytest.approx(300)
    assert first["unit_id"] == "customer-4242" and first["prompt_id"] == "summarize-v1"
    assert first["temperature"] == pytest.approx(0.3)
    assert first["ts"].isoformat().startswith("2026-10-02T09:15:01.123")  # naive = UTC
    metadata = json.loads(first["metadata"])
    assert metadata["team_id"] == "team-support" and metadata["user_api_key_alias"] == "support-bot"
    second = rows["chatcmpl-9f1c2a7e-0002"]
    assert second["use_case"] == "code-review"  # from request_tags
    assert second["latency_ms"] == pytest.approx(4500)  # from endTime - startTime
    assert second["cost_source"] == "price_table"
    assert second["cost_usd"] == pytest.approx((2000 * 3.0 + 300 * 15.0) / 1e6)
    third = rows["chatcmpl-9f1c2a7e-0003"]
    assert third["status"] == "error" and third["cost_usd"] == 0.0


def test_otel_genai_spans_are_flattened_and_mapped(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    report = kit.ingest(con, [kit.FIXTURES / "otel_genai_spans.json"], price_overrides=no_overrides)
    (item,) = report.files
    assert item.shape == "otel" and item.lines_read == 3
    assert item.ingested == 2 and item.quarantine_by_reason == {"not_genai_span": 1}
    rows = {r["model"]: r for r in kit.rows(con)}
    mini = rows["gpt-4o-mini"]
    assert mini["request_id"] == "chatcmpl-otel-0001"
    assert mini["use_case"] == "ticket-classify"  # resource service.name
    assert (mini["input_tokens"], mini["output_tokens"], mini["max_tokens"]) == (412, 38, 256)
    assert mini["temperature"] == pytest.approx(0.2) and mini["quality"] == pytest.approx(0.9)
    assert mini["latency_ms"] == pytest.approx(850.0) and mini["unit_id"] == "conv-77"
    assert mini["ts"].isoformat().startswith("2026-10-01T09:00:00")
    assert mini["cost_usd"] == pytest.approx((412 * 0.15 + 38 * 0.6) / 1e6)
    assert json.loads(mini["metadata"])["otel.trace_id"] == "5b8aa5a2d2c872e8321cf37308d69df2"
    haiku = rows["claude-haiku-4-5"]
    assert haiku["status"] == "error" and haiku["error_type"] == "overloaded_error"
    assert haiku["use_case"] == "support-summarize" and haiku["request_id"] == "1a2b3c4d5e6f7081"
    raw = con.execute("SELECT raw FROM quarantine").fetchone()
    assert raw is not None and json.loads(raw[0])["name"] == "POST /v1/classify"


def test_otel_as_jsonl_lines_and_format_override(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    doc = json.loads((kit.FIXTURES / "otel_genai_spans.json").read_text(encoding="utf-8"))
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(doc) + "\n" + "{broken\n", encoding="utf-8")
    report = kit.ingest(con, [path], shape="otel")
    assert report.ingested == 2
    assert report.quarantine_by_reason == {"malformed_json": 1, "not_genai_span": 1}


@pytest.mark.parametrize("container", ["jsonl.gz", "csv", "csv.gz", "parquet", "json-array"])
def test_every_container_format_gives_the_same_rows(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, container: str
) -> None:
    records = [kit.record(i, extra_note=f"n{i}") for i in range(20)]
    records[5]["input_tokens"] = -1  # one bad row in every format
    path = tmp_path / f"logs.{container.replace('json-array', 'json')}"
    if container == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    elif container.startswith("csv"):
        header = list(records[0])
        lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in records]
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if container.endswith("gz") else data)
    elif container == "parquet":
        _write_parquet(path, records)
    else:
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    report = kit.ingest(con, [path])
    assert report.ingested == 19 and report.quarantine_by_reason == {"negative_tokens": 1}
    line = con.execute("SELECT source_line FROM quarantine").fetchone()
    assert line == ({"csv": 7, "csv.gz": 7}.get(container, 6),)
    rows = kit.rows(con, "source_line")
    assert rows[0]["request_id"] == "r-0" and rows[0]["input_tokens"] == 100
    assert rows[0]["ts"].isoformat().startswith("2026-10-01T00:00:00")
    assert json.loads(rows[0]["metadata"]) == {"extra_note": "n0"}
    assert rows[0]["cost_usd"] == pytest.approx((100 * 0.15 + 20 * 0.6) / 1e6)


def test_parquet_without_a_zone_is_quarantined_as_missing_timezone(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = _write_parquet(tmp_path / "naive.parquet", [kit.record(i) for i in range(3)], zone=False)
    report = kit.ingest(con, [path])
    assert report.quarantine_by_reason == {"missing_timezone": 3}
    raw = con.execute("SELECT raw FROM quarantine ORDER BY source_line LIMIT 1").fetchone()
    assert raw is not None and json.loads(raw[0])["request_id"] == "r-0"


def test_glob_over_a_copied_fixture_tree(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, no_overrides: Path
) -> None:
    target = tmp_path / "exports" / "2026-10-02"
    target.mkdir(parents=True)
    shutil.copy(kit.FIXTURES / "litellm_spend_logs.json", target / "spend.json")
    shutil.copy(kit.FIXTURES / "otel_genai_spans.json", target / "spans.json")
    report = kit.ingest(
        con, [str(tmp_path / "exports" / "**" / "*.json")], price_overrides=no_overrides
    )
    assert sorted(f.shape for f in report.files) == ["litellm", "otel"]
    assert kit.counts(con) == (5, 2)


def test_parquet_duplicates_within_and_across_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    a = _write_parquet(tmp_path / "a.parquet", [kit.record(i) for i in [1, 2, 2, 3]])
    b = _write_parquet(tmp_path / "b.parquet", [kit.record(i) for i in [3, 4, 5, 5, 1]])
    report = kit.ingest(con, [a, b], chunk_rows=2)
    assert [(f.ingested, f.duplicates) for f in report.files] == [(3, 1), (2, 3)]
    distinct = con.execute("SELECT count(*), count(DISTINCT request_id) FROM usage_logs")
    assert distinct.fetchall() == [(5, 5)]
    kept = con.execute(  # the first occurrence wins, across slices (removed at the file's end)
        "SELECT request_id, source_file, source_line FROM usage_logs ORDER BY 1"
    ).fetchall()
    assert kept == [
        ("r-1", str(a), 1),
        ("r-2", str(a), 2),
        ("r-3", str(a), 4),
        ("r-4", str(b), 2),
        ("r-5", str(b), 3),
    ]


def _span(kit: Any, span_id: str, *, genai: bool = True) -> dict[str, Any]:
    line = (kit.FIXTURES / "otel_old_semconv_file_exporter.jsonl").read_text(encoding="utf-8")
    span = dict(json.loads(line.splitlines()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    span["spanId"] = span_id
    span["attributes"] = [
        a
        if a["key"] != "gen_ai.response.id"
        else {"key": a["key"], "value": {"stringValue": span_id}}
        for a in span["attributes"]
        if (genai or not a["key"].startswith("gen_ai.")) and a["key"] != "llmopt.use_case"
    ]  # the use case comes from the resource's service.name
    return span


def _resource(service: str | None, *scopes: list[dict[str, Any]]) -> dict[str, Any]:
    attrs = [] if service is None else [{"key": "service.name", "value": {"stringValue": service}}]
    resource: dict[str, Any] = {"resource": {"attributes": attrs}}
    if scopes:
        resource["scopeSpans"] = [{"scope": {"name": "s"}, "spans": spans} for spans in scopes]
    return resource


def test_otlp_lines_of_many_resources_and_spans_keep_each_span_with_its_resource(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """Spans are numbered in order across a line's resources and scopes (``record_index``), and
    each span gets its own resource's attributes, also after a resource with no spans."""
    line = {
        "resourceSpans": [
            _resource("ignored"),  # no scopeSpans at all
            _resource("support-summarize", [_span(kit, "s-0"), _span(kit, "s-1", genai=False)], []),
            _resource(None, [_span(kit, "s-2")]),
            _resource("code-review", [], [_span(kit, "s-3"), _span(kit, "s-4")]),
        ]
    }
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    report = kit.ingest(con, [path], shape="otel", use_cases=UseCaseRules(default="fallback"))
    assert (report.ingested, report.quarantine_by_reason) == (4, {"not_genai_span": 1})
    rows = con.execute("SELECT request_id, use_case FROM usage_logs ORDER BY 1").fetchall()
    assert rows == [  # the use case from each span's own resource (service.name)
        ("s-0", "support-summarize"),
        ("s-2", "fallback"),
        ("s-3", "code-review"),
        ("s-4", "code-review"),
    ]
    quarantined = con.execute("SELECT source_line, record_index FROM quarantine").fetchall()
    assert quarantined == [(1, 1)]


def test_otlp_lines_of_a_hundred_spans_each_all_go_in(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """Collector batches of 100 spans a line (94 KB lines): every span is a record of its line.
    (Chunks of such lines hold a few hundred lines, not a whole 2,048-line vector: 180 MB of
    text ran out of memory even on the retry; ``test_readers.py`` checks the chunk sizes.)"""
    path = tmp_path / "batches.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(30):
            spans = [_span(kit, f"s-{i}-{j}") for j in range(100)]
            handle.write(
                json.dumps({"resourceSpans": [_resource("ticket-classify", spans)]}) + "\n"
            )
    report = kit.ingest(con, [path], shape="otel")
    assert (report.lines_read, report.ingested, report.quarantined) == (3000, 3000, 0)
    indexes = con.execute(
        "SELECT min(source_line), max(source_line), count(DISTINCT request_id) FROM usage_logs"
    ).fetchone()
    assert indexes == (1, 30, 3000)


@pytest.mark.parametrize("indent", [None, 2])
def test_an_api_page_of_records_under_data_gives_the_rows_of_the_array(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, no_overrides: Path, indent: int | None
) -> None:
    """A saved API response (LiteLLM's spend-log pages: ``{"data": [...], "total": ...}``) holds
    the same records as the plain array export; it was one record missing every field."""
    fixture = kit.FIXTURES / "litellm_spend_logs.json"
    kit.ingest(con, [fixture], price_overrides=no_overrides)
    expected = con.execute("SELECT * EXCLUDE (source_file, ingest_id) FROM usage_logs ORDER BY 1")
    rows = expected.fetchall()
    con.execute("DELETE FROM usage_logs")
    records = json.loads(fixture.read_text(encoding="utf-8"))
    page = tmp_path / "spend_page.json"
    body = {"data": records, "total": len(records), "page": 1, "page_size": 50, "total_pages": 1}
    page.write_text(json.dumps(body, indent=indent), encoding="utf-8")
    report = kit.ingest(con, [page], price_overrides=no_overrides)
    assert report.files[0].shape == "litellm" and report.lines_read == len(records)
    got = con.execute("SELECT * EXCLUDE (source_file, ingest_id) FROM usage_logs ORDER BY 1")
    assert got.fetchall() == rows


def test_an_otlp_span_flattens_every_attribute_kind_its_event_and_its_fields() -> None:
    """The flat object of one OTLP span, from the SQL itself: every OTLP value kind, the first
    kind present wins (stringValue first), the evaluation event's attributes, the span's own
    fields as text (``kind`` 3 is "3", the nanosecond times exact); attributes that are not a
    list give nothing. (Attributes without a value are left out: JSON merge patch drops nulls.)"""
    span = {
        "spanId": "ab",
        "traceId": "cd",
        "parentSpanId": "",
        "kind": 3,
        "name": "chat",
        "startTimeUnixNano": 1790845200000000000,
        "endTimeUnixNano": "1790845200700000000",
        "attributes": [
            {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
            {"key": "i", "value": {"intValue": 5}},
            {"key": "d", "value": {"doubleValue": 0.25}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
            {"key": "kv", "value": {"kvlistValue": {"values": []}}},
            {"key": "empty", "value": {}},
            {"key": "two", "value": {"intValue": "7", "stringValue": "s"}},
            {"key": 'quote"d', "value": {"stringValue": 'é"x'}},
        ],
        "events": [
            {"name": "other", "attributes": [{"key": "x", "value": {"stringValue": "1"}}]},
            {
                "name": "gen_ai.evaluation.result",
                "attributes": [
                    {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": 0.9}}
                ],
            },
        ],
        "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
    bare = dict(span, spanId="ef", status={}, events=None, attributes="not a list")
    line = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span, bare]}]}]}
    _chunk = pa.table(  # read by DuckDB's replacement scan
        {
            "line_no": [1],
            "raw": pa.array([json.dumps(line)], pa.large_string()),
            "pre": pa.nulls(1, pa.string()),
            "__file": ["f"],
            "__file_no": [1],
        }
    )
    rows = duckdb.connect().execute(otel_docs_sql() + " ORDER BY rec_no").fetchall()
    docs = [(rec_no, json.loads(doc), reason) for _, _, _, rec_no, _, doc, reason, _ in rows]
    fields = {
        "otel.trace_id": "cd",
        "otel.parent_span_id": "",
        "otel.kind": "3",
        "otel.name": "chat",
        "otel.start_ns": "1790845200000000000",
        "otel.end_ns": "1790845200700000000",
    }
    assert docs == [
        (
            0,
            {
                "service.name": "svc",
                "gen_ai.evaluation.score.value": 0.9,
                "gen_ai.system": "openai",
                "i": 5,
                "d": 0.25,
                "b": True,
                "arr": {"values": [{"stringValue": "x"}]},
                "kv": {"values": []},
                "two": "s",
                'quote"d': 'é"x',
                "otel.span_id": "ab",
                **fields,
                "otel.status_code": "STATUS_CODE_ERROR",
                "otel.status_message": "boom",
            },
            None,
        ),
        (1, {"service.name": "svc", "otel.span_id": "ef", **fields}, "not_genai_span"),
    ]
