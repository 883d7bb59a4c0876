"""Shapes users really have: BOM exports, older LiteLLM and OTel versions, console spans,
provider-prefixed models, cached / reasoning tokens, and use cases from configuration."""

from __future__ import annotations

import datetime as dt
import doctest
import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from genai_prices import Usage, calc_price

from tasks.ingest import log_formats, session
from tasks.ingest.pipeline import UseCaseRules, ingest_paths


def _rows(con: duckdb.DuckDBPyConnection, kit: Any) -> dict[str, dict[str, Any]]:
    rows = kit.rows(con)
    for row in rows:
        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
    return {row["request_id"]: row for row in rows}


def _ingest(con: duckdb.DuckDBPyConnection, kit: Any, name: str, **options: Any) -> Any:
    return kit.ingest(con, [kit.FIXTURES / name], **options)


def _two_otel_spans(
    con: duckdb.DuckDBPyConnection, kit: Any, name: str, no_overrides: Path
) -> dict[str, dict[str, Any]]:
    """Ingest the fixture ``name`` (two OTel spans) at genai-prices' prices; rows by id."""
    report = _ingest(con, kit, name, price_overrides=no_overrides)
    assert report.files[0].shape == "otel" and report.ingested == 2
    return _rows(con, kit)


def test_litellm_bom_export_without_status_or_tags_uses_configured_use_cases(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    rules = UseCaseRules(
        by_model_group={"support-mini": "support-summarize"},
        by_key_alias={"dev-bot": "code-review"},
    )
    report = _ingest(
        con, kit, "litellm_spend_logs_bom.jsonl", use_cases=rules, price_overrides=no_overrides
    )
    (item,) = report.files
    assert item.shape == "litellm" and item.ingested == 2
    # the third row has no tag, no metadata.use_case and no mapping: a clear reason, not a guess
    assert item.quarantine_by_reason == {"no_use_case": 1}
    detail, request_id = con.execute("SELECT detail, request_id FROM quarantine").fetchone()  # type: ignore[misc]
    assert "--use-case" in detail and request_id == "chatcmpl-b7e1-0003"
    rows = _rows(con, kit)
    first, second = rows["chatcmpl-b7e1-0001"], rows["chatcmpl-b7e1-0002"]
    assert (first["use_case"], second["use_case"]) == ("support-summarize", "code-review")
    assert (first["status"], second["status"]) == ("success", "error")  # metadata.status
    # openai/gpt-4o-mini resolves through genai-prices' provider matching; 800 of 1000 input
    # tokens were cached: genai-prices' own figure, not the full input rate
    expected = calc_price(
        Usage(input_tokens=1000, cache_read_tokens=800, output_tokens=500),
        model_ref="gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert (
        first["cost_usd"] == pytest.approx(float(expected))
        and first["cost_source"] == "price_table"
    )
    assert first["cost_usd"] == pytest.approx(0.00039)
    assert (first["cache_read_tokens"], second["reasoning_tokens"]) == (800, 256)
    # unused fallbacks and unmapped columns are kept: user (end_user was used), model_group
    assert first["unit_id"] == "cust-1" and first["metadata"]["user"] == "svc-support"
    assert first["metadata"]["model_group"] == "support-mini"
    assert first["metadata"]["session_id"] == "sess-9"
    assert second["metadata"]["end_user"] is None  # a null value is kept, not dropped
    assert second["unit_id"] == "sess-10" and second["metadata"]["user"] is None


def test_default_use_case_applies_only_where_the_record_has_none(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    report = _ingest(
        con,
        kit,
        "litellm_spend_logs_bom.jsonl",
        use_cases=UseCaseRules(default="litellm-default"),
        price_overrides=no_overrides,
    )
    assert report.ingested == 3 and report.quarantined == 0
    assert {r["use_case"] for r in _rows(con, kit).values()} == {"litellm-default"}
    report = _ingest(
        con,
        kit,
        "litellm_spend_logs.json",
        use_cases=UseCaseRules(default="litellm-default"),
        price_overrides=no_overrides,
    )
    uses = {r["request_id"]: r["use_case"] for r in _rows(con, kit).values()}
    assert uses["chatcmpl-9f1c2a7e-0001"] == "support-summarize"  # its own metadata.use_case


def test_otel_older_semantic_conventions_from_the_file_exporter(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    rows = _two_otel_spans(con, kit, "otel_old_semconv_file_exporter.jsonl", no_overrides)
    first = rows["chatcmpl-otel-old-1a2b"]
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"]) == (
        1000,
        500,
        800,
    )
    assert first["provider"] == "openai" and first["use_case"] == "ticket-classify"
    assert first["cost_usd"] == pytest.approx(0.00039)
    # fallbacks that did not fill a column stay in metadata
    assert first["metadata"]["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert first["metadata"]["otel.span_id"] == "1a2b1a2b1a2b1a2b"
    assert first["metadata"]["service.name"] == "litellm-proxy"
    second = rows["chatcmpl-otel-old-3c4d"]
    assert second["use_case"] == "litellm-proxy" and "service.name" not in second["metadata"]
    assert second["latency_ms"] == pytest.approx(1000.0)


def test_console_exporter_spans_with_flat_attributes(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    rows = _two_otel_spans(con, kit, "otel_console_spans.json", no_overrides)
    ok, failed = rows["msg_01console"], rows["0x1234abcd"]
    assert ok["provider"] == "anthropic" and ok["max_tokens"] == 512
    assert ok["latency_ms"] == pytest.approx(1250.0) and ok["status"] == "success"
    assert ok["ts"].isoformat().startswith("2026-10-06T12:00:00")
    assert ok["metadata"]["otel.span_id"] == "0x051581bf3cb55c13"
    assert failed["status"] == "error" and failed["error_type"] == "timeout"
    assert failed["use_case"] == "support-api"  # service.name as the last resort


def test_excel_csv_with_bom_and_crlf(con: duckdb.DuckDBPyConnection, kit: Any) -> None:
    report = _ingest(con, kit, "canonical_excel_bom.csv")
    assert report.ingested == 2 and report.quarantined == 0
    rows = _rows(con, kit)
    assert rows["x-1"]["metadata"] == {"team": "blue"} and rows["x-2"]["status"] == "error"


def test_bom_jsonl_of_canonical_records(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b"\n".join(json.dumps(kit.record(i)).encode() for i in range(3))
    )
    report = ingest_paths([path], con=con, validate=False, now=kit.NOW)
    assert report.ingested == 3 and report.quarantined == 0


@pytest.mark.slow
def test_a_litellm_export_too_wide_for_the_ingest_limit_goes_in_on_a_second_try(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    kit: Any,
    memory_raises: list[bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two files of 12,500 LiteLLM spend-log lines with stored prompts (``messages`` and
    ``response``, as with ``store_prompts_in_spend_logs``: 6 KB a line) ran out of the ingest's
    384 MB whatever the chunk size. The first file's transaction is rolled back and run once
    more under a larger limit, which the second file starts under (its first try would fail
    the same way); everything lands, the prompts in metadata, and the caller's limit is given
    back. (In 2 MiB record batches these lines now fit in 384 MB; the ingest's limit is cut to
    128 MB here so that the first try still runs out.)"""
    monkeypatch.setattr(session, "INGEST_MEMORY_LIMIT", "128MB")
    lines = (kit.FIXTURES / "litellm_spend_logs_bom.jsonl").read_text(encoding="utf-8-sig")
    base = [json.loads(line) for line in lines.splitlines()]
    prompt = [{"role": "user", "content": "Summarise this ticket. " * 180}]
    answer = {"choices": [{"message": {"content": "The customer asks for a refund. " * 60}}]}
    paths = [tmp_path / "spend_logs_1.jsonl", tmp_path / "spend_logs_2.jsonl"]
    for part, path in enumerate(paths):
        with path.open("w", encoding="utf-8") as handle:
            for i in range(part * 12_500, (part + 1) * 12_500):
                record = dict(base[i % 2], request_id=f"req-{i}", messages=prompt, response=answer)
                handle.write(json.dumps(record) + "\n")
    con.execute("SET memory_limit = '1500MB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()
    rules = UseCaseRules(by_model_group={"support-mini": "support", "code-reasoner": "code"})
    report = ingest_paths(paths, con=con, validate=False, now=kit.NOW, use_cases=rules)
    assert memory_raises == [True]  # the first try ran out of memory: this is the retry under test
    kit.assert_balanced(report)
    for item in report.files:
        assert item.error is None
        assert (item.lines_read, item.ingested, item.quarantined) == (12_500, 12_500, 0)
    by_use_case = con.execute("SELECT use_case, count(*) FROM usage_logs GROUP BY 1 ORDER BY 1")
    assert by_use_case.fetchall() == [("code", 12_500), ("support", 12_500)]
    stored = con.execute(
        "SELECT count(*) FROM usage_logs WHERE"
        " json_extract_string(metadata, '$.messages[0].content') = ?"
        " AND json_extract(metadata, '$.response') = json(?)",
        [prompt[0]["content"], json.dumps(answer)],
    ).fetchone()
    assert stored == (25_000,)
    assert con.execute("SELECT current_setting('memory_limit')").fetchall() == before


_LITELLM_COLUMNS = (
    "request_id, use_case, model, status, unit_id, input_tokens, output_tokens,"
    " cache_read_tokens, reasoning_tokens, cost_usd, error_type,"
    " json_extract_string(metadata, '$.user_api_key_alias')"
)


@pytest.mark.parametrize("metadata_as", ["json_text", "large_json_text", "struct"])
def test_a_litellm_parquet_export_gives_the_rows_of_its_jsonl_export(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, metadata_as: str
) -> None:
    """The nested keys (``metadata.status``, ``metadata.usage_object...cached_tokens``) read
    from a typed column: a JSON text column (a PostgreSQL dump of ``jsonb``; ``large_string``
    as Polars writes it: every row was quarantined, missing ``status``) or a struct."""
    lines = (kit.FIXTURES / "litellm_spend_logs_bom.jsonl").read_text(encoding="utf-8-sig")
    records = [json.loads(line) for line in lines.splitlines()]
    rules = UseCaseRules(default="support-summarize")
    jsonl = tmp_path / "spend.jsonl"
    jsonl.write_text(lines, encoding="utf-8")
    kit.ingest(con, [jsonl], use_cases=rules)
    from_text = con.execute(f"SELECT {_LITELLM_COLUMNS} FROM usage_logs ORDER BY 1").fetchall()
    assert [r[3] for r in from_text] == ["success", "error", "success"]  # metadata.status
    assert [r[7] for r in from_text][:2] == [800, None] and from_text[1][8] == 256
    con.execute("DELETE FROM usage_logs")
    if metadata_as != "struct":
        records = [dict(r, metadata=json.dumps(r["metadata"])) for r in records]
    table = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if k != "request_tags"} for r in records]
    )
    if metadata_as == "large_json_text":
        large = [
            f.with_type(pa.large_string()) if f.type == pa.string() else f for f in table.schema
        ]
        table = table.cast(pa.schema(large))
    parquet = tmp_path / "spend.parquet"
    pq.write_table(table, parquet)
    report = kit.ingest(con, [parquet], use_cases=rules)
    assert report.files[0].shape == "litellm" and report.ingested == 3
    from_parquet = con.execute(f"SELECT {_LITELLM_COLUMNS} FROM usage_logs ORDER BY 1").fetchall()
    assert from_parquet == from_text


@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_status_in_the_spellings_users_write(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any, container: str
) -> None:
    """Words in any case, failures that name their kind and HTTP status codes (a JSON number
    in JSONL; text in Parquet, whose column has one type); an unknown word is quarantined."""
    code = 200 if container == "jsonl" else "200"
    spellings = ["SUCCESS", " ok ", "Failed", "failure", "Timeout", code, "429", "503", "pending"]
    records = [kit.record(i, status=s, error_type=None) for i, s in enumerate(spellings)]
    records[7]["error_type"] = "overloaded"  # the record's own error_type wins
    if container == "jsonl":
        path = kit.write_jsonl(tmp_path / "calls.jsonl", records)
    else:
        path = tmp_path / "calls.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    report = kit.ingest(con, [path])
    assert report.quarantine_by_reason == {"out_of_range": 1}  # pending is not a status
    stored = con.execute("SELECT request_id, status, error_type FROM usage_logs ORDER BY 1")
    assert stored.fetchall() == [
        ("r-0", "success", None),
        ("r-1", "success", None),
        ("r-2", "error", None),
        ("r-3", "error", None),
        ("r-4", "error", "timeout"),
        ("r-5", "success", None),
        ("r-6", "error", "http_429"),
        ("r-7", "error", "overloaded"),
    ]
    detail = con.execute("SELECT detail FROM quarantine").fetchone()
    assert detail == ("status",)


def test_status_helpers_examples_run() -> None:
    result = doctest.testmod(log_formats, raise_on_error=False)
    assert result.attempted >= 3 and result.failed == 0, result


def test_openinference_spans_from_the_collector_file_exporter(
    con: duckdb.DuckDBPyConnection, kit: Any, no_overrides: Path
) -> None:
    """Arize Phoenix / LangChain-instrumented spans (``llm.*`` attributes, parameters as JSON
    text, the error in an ``exception`` event); chain and retriever spans are not LLM calls."""
    report = _ingest(
        con, kit, "otel_openinference_file_exporter.jsonl", price_overrides=no_overrides
    )
    assert report.files[0].shape == "otel"
    assert (report.ingested, report.quarantine_by_reason) == (2, {"not_genai_span": 2})
    rows = _rows(con, kit)
    ok, failed = rows["ad3f8e1c9b2a7d10"], rows["b7ad6b7169203331"]  # span ids: no response id
    assert (ok["use_case"], ok["provider"], ok["unit_id"]) == ("support-bot", "openai", "sess-42")
    # the requested model (invocation parameters) over the dated one the response reported
    assert ok["model"] == "gpt-4o-mini"
    assert ok["metadata"]["llm.model_name"] == "gpt-4o-mini-2024-07-18"
    assert (ok["temperature"], ok["top_p"], ok["max_tokens"]) == (0.2, 0.9, 512)
    assert (ok["input_tokens"], ok["output_tokens"], ok["cache_read_tokens"]) == (1000, 500, 800)
    assert ok["cost_usd"] == pytest.approx(0.00039)  # 800 of the 1,000 at the cached rate
    assert ok["latency_ms"] == pytest.approx(1650.0) and ok["status"] == "success"
    assert ok["metadata"]["llm.token_count.total"] == "1500"
    assert json.loads(ok["metadata"]["llm.invocation_parameters"])["stream"] is False
    assert ok["metadata"]["service.name"] == "unknown_service"  # the project name won
    assert (failed["status"], failed["error_type"]) == ("error", "anthropic.RateLimitError")
    assert failed["metadata"]["exception.message"] == "rate limited"
    assert failed["model"] == "claude-haiku-4-5"
    assert (failed["max_tokens"], failed["top_p"]) == (1024, None)


def test_console_spans_keep_their_exception_and_evaluation_events(
    con: duckdb.DuckDBPyConnection, kit: Any, tmp_path: Path, no_overrides: Path
) -> None:
    """The console exporter's ``events`` (plain attributes) feed error_type and quality, and
    an OpenInference span printed by it is read like its OTLP form."""

    def span(span_id: str, attributes: dict[str, Any], events: list[dict[str, Any]]) -> str:
        body = {
            "name": "llm",
            "context": {"trace_id": "0xaa", "span_id": span_id, "trace_state": "[]"},
            "kind": "SpanKind.INTERNAL",
            "parent_id": None,
            "start_time": "2026-10-06T12:00:00.000000Z",
            "end_time": "2026-10-06T12:00:00.500000Z",
            "status": {"status_code": "ERROR" if events[0]["name"] == "exception" else "OK"},
            "attributes": attributes,
            "events": events,
            "resource": {"attributes": {"service.name": "kb-bot"}, "schema_url": ""},
        }
        return json.dumps(body, indent=4)

    tokens = {"llm.token_count.prompt": 300, "llm.token_count.completion": 40}
    failed = span(
        "0x01",
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", **tokens},
        [{"name": "exception", "timestamp": "2026-10-06T12:00:00.5Z",
          "attributes": {"exception.type": "openai.APITimeoutError", "exception.message": "t"}}],
    )  # fmt: skip
    score = {"gen_ai.evaluation.name": "helpful", "gen_ai.evaluation.score.value": 0.75}
    judged = span(
        "0x02",
        {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 300,
         "gen_ai.usage.output_tokens": 40},
        [{"name": "gen_ai.evaluation.result", "timestamp": "2026-10-06T12:00:01Z",
          "attributes": score}],
    )  # fmt: skip
    path = tmp_path / "console.json"
    path.write_text(failed + "\n" + judged + "\n", encoding="utf-8")
    report = kit.ingest(con, [path], price_overrides=no_overrides)
    assert (report.files[0].shape, report.ingested) == ("otel", 2)
    rows = _rows(con, kit)
    assert rows["0x01"]["status"] == "error"
    assert rows["0x01"]["error_type"] == "openai.APITimeoutError"
    assert rows["0x01"]["use_case"] == "kb-bot" and rows["0x01"]["input_tokens"] == 300
    assert rows["0x02"]["quality"] == pytest.approx(0.75) and rows["0x02"]["status"] == "success"
    assert rows["0x02"]["metadata"]["gen_ai.evaluation.name"] == "helpful"


def test_litellm_rows_written_by_pandas_with_epoch_times_keep_their_latency(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """``DataFrame.to_json`` writes datetimes as epoch milliseconds by default: a spend-log export
    of a LiteLLM version without ``request_duration_ms`` had every row quarantined for a missing
    latency. Start, end and first-token times are read as ISO text or as epoch numbers (a row
    mixing seconds and ISO text too)."""
    rows = json.loads((kit.FIXTURES / "litellm_spend_logs.json").read_text(encoding="utf-8"))

    def epoch_ms(text: str) -> int:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return round(moment.replace(tzinfo=moment.tzinfo or dt.UTC).timestamp() * 1000)

    lines = []
    for source in rows[:3]:
        row = {k: v for k, v in source.items() if k != "request_duration_ms"}
        for key in ("startTime", "endTime", "completionStartTime"):
            row[key] = epoch_ms(row[key]) if row.get(key) else row.get(key)
        lines.append(row)
    mixed = dict(lines[0], request_id="mixed", startTime=lines[0]["startTime"] / 1000)
    mixed["endTime"] = rows[0]["endTime"]  # ISO text beside an epoch in seconds
    lines.append(mixed)
    path = kit.write_jsonl(tmp_path / "pandas_export.jsonl", lines)
    report = kit.ingest(con, [path], use_cases=UseCaseRules(default="misc"))
    assert (report.ingested, report.quarantine_by_reason) == (4, {})
    got = {r["request_id"]: (r["latency_ms"], r["ttft_ms"]) for r in kit.rows(con)}
    assert got["chatcmpl-9f1c2a7e-0001"] == (900.0, 300.0)
    assert got["chatcmpl-9f1c2a7e-0002"] == (4500.0, 800.0)
    assert got["mixed"][0] == 900.0


def test_a_litellm_table_saved_by_pandas_to_csv_reads_its_dict_columns(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    """``pandas.read_sql`` of LiteLLM's table gives dicts and lists for its JSONB columns, and
    ``to_csv`` writes their Python repr (``{'use_case': ...}``): the use case in
    ``metadata`` was unreadable and every row was quarantined ``no_use_case``."""
    rows = json.loads((kit.FIXTURES / "litellm_spend_logs.json").read_text(encoding="utf-8"))
    path = tmp_path / "spend_logs.csv"
    pd.DataFrame(rows[:3]).to_csv(path, index=False)
    assert "{'use_case': 'support-summarize'" in path.read_text(encoding="utf-8")
    report = kit.ingest(con, [path])
    assert report.files[0].shape == "litellm"
    assert (report.ingested, report.quarantine_by_reason) == (3, {})
    got = _rows(con, kit)
    first = got["chatcmpl-9f1c2a7e-0001"]
    assert first["use_case"] == "support-summarize" and first["temperature"] == 0.3
    assert first["metadata"]["user_api_key_alias"] == "support-bot"  # a dict again, not text
    second = got["chatcmpl-9f1c2a7e-0002"]  # no metadata.use_case: its first request tag
    assert second["use_case"] == "code-review" and second["prompt_id"] == "review-v3"
    assert got["chatcmpl-9f1c2a7e-0003"]["use_case"] == "sales-email"
