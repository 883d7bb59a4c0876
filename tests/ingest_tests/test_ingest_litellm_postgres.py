"""The LiteLLM PostgreSQL pull against the real PostgreSQL service: a database of our own with
``LiteLLM_SpendLogs`` created from LiteLLM's schema; incremental, idempotent, crash-safe."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from tasks.core.settings import REPO_ROOT
from tasks.ingest import session
from tasks.ingest.errors import SourceError
from tasks.ingest.postgres import pull_litellm
from tasks.ingest.source import ingest_source
from tasks.ingest.sql_records import UseCaseRules

T0 = dt.datetime(2026, 10, 5, 8, 0, 0)


@pytest.fixture
def litellm_db(pg_url: str, kit: Any) -> Iterator[str]:
    """A fresh database ``llmopt_ingest_<hex>`` holding an empty LiteLLM_SpendLogs table."""
    admin = pg_url.replace("postgresql+psycopg", "postgresql")
    name = f"llmopt_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute((kit.FIXTURES / "litellm_spend_logs_table.sql").read_text(encoding="utf-8"))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _insert(url: str, start: int, count: int, *, at: dt.datetime = T0, step_s: int = 1) -> None:
    """Spend-log rows as LiteLLM's proxy writes them (naive UTC times, JSONB metadata)."""
    rows = []
    for i in range(start, start + count):
        begin = at + dt.timedelta(seconds=step_s * (i - start))
        rows.append(
            (
                f"chatcmpl-pg-{i:05d}",
                "acompletion",
                "88dc28d0f030",
                0.0,
                150,
                100,
                50,
                begin,
                begin + dt.timedelta(milliseconds=900),
                900,
                "gpt-4o-mini",
                "support-mini",
                "openai",
                f"user-{i % 7}",
                json.dumps(
                    {"user_api_key_alias": "support-bot", "status": "success", "use_case": None}
                ),
                json.dumps(["support-summarize"] if i % 2 else []),
                f"cust-{i % 5}",
                "success",
            )
        )
    with psycopg.connect(url, autocommit=True) as pg, pg.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend,'
            ' total_tokens, prompt_tokens, completion_tokens, "startTime", "endTime",'
            ' request_duration_ms, model, model_group, custom_llm_provider, "user", metadata,'
            " request_tags, end_user, status)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def _pull(con: duckdb.DuckDBPyConnection, url: str, kit: Any, **options: Any) -> Any:
    report = pull_litellm(
        url,
        con=con,
        validate=False,
        now=kit.NOW,
        use_cases=UseCaseRules(by_model_group={"support-mini": "support-summarize"}),
        **options,
    )
    kit.assert_balanced(report)
    return report


def test_pull_is_incremental_with_an_overlap_and_idempotent(
    con: duckdb.DuckDBPyConnection, litellm_db: str, kit: Any
) -> None:
    _insert(litellm_db, 0, 120)
    first = _pull(con, litellm_db, kit, batch_rows=50)
    assert first.ingested == 120 and first.files[0].file_format == "postgresql"
    row = con.execute(
        "SELECT use_case, unit_id, cost_usd, metadata FROM usage_logs"
        " WHERE request_id = 'chatcmpl-pg-00003'"
    ).fetchone()
    assert row is not None and row[0] == "support-summarize" and row[1] == "cust-3"
    assert row[2] == 0.0  # LiteLLM's spend column is the logged cost, even 0.0
    assert json.loads(row[3])["user"] == "user-3"
    # new rows, one of them committed late with a start inside the overlap window
    _insert(litellm_db, 200, 30, at=T0 + dt.timedelta(minutes=10))
    _insert(litellm_db, 500, 1, at=T0 + dt.timedelta(seconds=100))
    second = _pull(con, litellm_db, kit, overlap=dt.timedelta(minutes=30))
    assert second.ingested == 31 and second.duplicates == 120  # the overlap re-read
    third = _pull(con, litellm_db, kit, overlap=dt.timedelta(seconds=1))
    assert third.ingested == 0 and third.lines_read <= 2
    total, distinct = con.execute(
        "SELECT count(*), count(DISTINCT request_id) FROM usage_logs"
    ).fetchone()  # type: ignore[misc]
    assert total == distinct == 151
    mark = con.execute("SELECT watermark_id FROM source_watermarks").fetchall()
    assert mark == [("chatcmpl-pg-00229",)]
    assert "secret" not in str(con.execute("SELECT source FROM source_watermarks").fetchone())


def test_rows_arriving_during_a_pull_come_with_the_next_one(
    con: duckdb.DuckDBPyConnection, litellm_db: str, kit: Any
) -> None:
    _insert(litellm_db, 0, 60)
    arrived: list[int] = []

    def during(batches: int) -> None:
        if batches == 1:  # another LiteLLM worker commits while we read
            _insert(litellm_db, 1000, 5, at=T0 + dt.timedelta(hours=1))
            arrived.append(batches)

    first = _pull(con, litellm_db, kit, batch_rows=20, on_batch=during)
    assert arrived == [1] and first.ingested == 60  # the pull's snapshot
    second = _pull(con, litellm_db, kit, overlap=dt.timedelta(seconds=0))
    assert second.ingested == 5
    assert con.execute("SELECT count(*) FROM usage_logs").fetchone() == (65,)


def test_a_pull_killed_between_batches_resumes_without_loss_or_duplicates(
    litellm_db: str, tmp_path: Path, kit: Any
) -> None:
    _insert(litellm_db, 0, 100)
    warehouse = tmp_path / "wh.duckdb"
    script = textwrap.dedent(
        f"""
        import os
        from tasks.ingest.postgres import pull_litellm
        from tasks.ingest.sql_records import UseCaseRules
        from tasks.warehouse.connection import connect

        def die(batches):
            if batches == 2:
                os._exit(9)  # as a kill -9 would, after two committed batches

        con = connect(path={str(warehouse)!r})
        pull_litellm({litellm_db!r}, con=con, validate=False, batch_rows=30, on_batch=die,
                     use_cases=UseCaseRules(default="support-summarize"))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    assert done.returncode == 9
    from tasks.warehouse.connection import connect

    con = connect(path=warehouse)
    try:
        assert con.execute("SELECT count(*) FROM usage_logs").fetchone() == (60,)
        report = pull_litellm(
            litellm_db,
            con=con,
            validate=False,
            now=kit.NOW,
            use_cases=UseCaseRules(default="support-summarize"),
        )
        kit.assert_balanced(report)
        assert report.ingested == 40
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM usage_logs"
        ).fetchone()  # type: ignore[misc]
        assert total == distinct == 100
    finally:
        con.close()


def test_ingest_source_routes_a_url_and_a_missing_table_is_one_line(
    con: duckdb.DuckDBPyConnection, litellm_db: str, kit: Any
) -> None:
    _insert(litellm_db, 0, 3)
    report = ingest_source(None, litellm_db, con=con, validate=False, now=kit.NOW)
    assert report.ingested == 1 and report.quarantine_by_reason == {"no_use_case": 2}
    with psycopg.connect(litellm_db, autocommit=True) as pg:
        pg.execute('DROP TABLE "LiteLLM_SpendLogs"')
    with pytest.raises(SourceError) as caught:
        ingest_source(None, litellm_db, con=con, validate=False)
    assert "LiteLLM_SpendLogs" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_spend_logs_with_stored_prompts_come_in_byte_sized_batches_under_a_larger_limit(
    con: duckdb.DuckDBPyConnection,
    litellm_db: str,
    kit: Any,
    memory_raises: list[bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``store_prompts_in_spend_logs`` puts each call's ``messages`` and ``response`` in the row
    (6 KB): a pull of them died with a DuckDB out-of-memory traceback (50,000 rows, 300 MB, in
    one transaction under the ingest's 384 MB). Batches now end at ``CHUNK_BYTES`` of text,
    and the first batch that runs out is run again under the larger limit, kept after it.
    (Scanned in 1 MiB record batches, these rows now fit in 384 MB; the ingest's limit is cut
    to 128 MB here so that the first batch still runs out.)"""
    monkeypatch.setattr(session, "INGEST_MEMORY_LIMIT", "128MB")
    prompt = [{"role": "user", "content": "Summarise this ticket. " * 180}]
    answer = {"choices": [{"message": {"content": "The customer asks for a refund. " * 60}}]}
    with psycopg.connect(litellm_db, autocommit=True) as pg, pg.cursor() as cursor:
        columns = (
            'request_id, call_type, "startTime", "endTime", model, model_group, metadata,'
            " messages, response, status, prompt_tokens, completion_tokens"
        )
        with cursor.copy(f'COPY "LiteLLM_SpendLogs" ({columns}) FROM STDIN') as copy:
            for i in range(14_000):
                begin = T0 + dt.timedelta(seconds=i)
                end = begin + dt.timedelta(milliseconds=800)
                ids = (f"p-{i:05d}", "acompletion", begin, end, "gpt-4o-mini", "support-mini")
                texts = (json.dumps({"status": "success"}), json.dumps(prompt), json.dumps(answer))
                copy.write_row((*ids, *texts, "success", 100, 50))
    batches: list[int] = []
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()
    report = _pull(con, litellm_db, kit, on_batch=batches.append)
    assert report.ingested == 14_000 and report.files[0].error is None
    assert len(batches) >= 2  # fewer rows than batch_rows, but more than CHUNK_BYTES of text
    assert memory_raises == [True]  # the first batch ran out; the rest ran under the larger limit
    stored = con.execute(
        "SELECT count(*) FROM usage_logs"
        " WHERE json_extract_string(metadata, '$.messages[0].content') = ?",
        [prompt[0]["content"]],
    ).fetchone()
    assert stored == (14_000,)
    assert con.execute("SELECT current_setting('memory_limit')").fetchall() == before
