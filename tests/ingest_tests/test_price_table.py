"""The price table: genai-prices values, tiers, dated overrides, unknown models."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest
from genai_prices import Usage, calc_price

from tasks.ingest.pricing import (
    PriceConfigError,
    ensure_model_prices,
    genai_price_ranges,
    load_price_overrides,
)


@pytest.mark.parametrize(
    "case",
    [
        ("gpt-4o-mini", (1000, 500)),
        ("gpt-4o", (12345, 678)),
        ("claude-haiku-4-5", (2000, 100)),
        ("claude-sonnet-4-5", (150_000, 4_000)),
        ("claude-sonnet-4-5", (1_000_000, 2_000)),  # above the 200k tier
    ],
)
def test_sql_cost_matches_genai_prices_calc_price(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    kit: Any,
    no_overrides: Path,
    case: tuple[str, tuple[int, int]],
) -> None:
    model, (inp, out) = case
    path = kit.write_jsonl(
        tmp_path / "p.jsonl", [kit.record(1, model=model, input_tokens=inp, output_tokens=out)]
    )
    kit.ingest(con, [path], price_overrides=no_overrides)
    cost = con.execute("SELECT cost_usd, cost_source FROM usage_logs").fetchone()
    when = dt.datetime(2026, 10, 2, 1, tzinfo=dt.UTC)
    expected = calc_price(
        Usage(input_tokens=inp, output_tokens=out), model_ref=model, genai_request_timestamp=when
    ).total_price
    assert cost is not None and cost[1] == "price_table"
    assert cost[0] == pytest.approx(float(expected), rel=1e-9)


def test_gpt_4o_mini_price_row_is_materialized_once(con: duckdb.DuckDBPyConnection) -> None:
    first = ensure_model_prices(con, ["gpt-4o-mini", "gpt-4o-mini", "nobody-knows-this-model"])
    assert [(p.model, p.found) for p in first] == [
        ("gpt-4o-mini", True),
        ("nobody-knows-this-model", False),
    ]
    assert ensure_model_prices(con, ["gpt-4o-mini"]) == []  # remembered: no second lookup
    rows = con.execute(
        "SELECT input_usd_per_mtok, output_usd_per_mtok, provider FROM price_table"
        " WHERE model = 'gpt-4o-mini'"
    ).fetchall()
    assert rows == [(pytest.approx(0.15), pytest.approx(0.6), "openai")]
    assert genai_price_ranges("nobody-knows-this-model") == []


def test_override_wins_from_its_effective_date(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    overrides = kit.write_overrides(
        tmp_path / "overrides.csv", "gpt-4o-mini,openai,1.0,2.0,2026-10-15,,negotiated"
    )
    before = kit.record(1, timestamp="2026-10-14T23:59:59Z", input_tokens=1000, output_tokens=0)
    after = kit.record(2, timestamp="2026-10-15T00:00:00Z", input_tokens=1000, output_tokens=0)
    path = kit.write_jsonl(tmp_path / "o.jsonl", [before, after])
    kit.ingest(con, [path], price_overrides=overrides)
    rows = con.execute(
        "SELECT request_id, cost_usd, cost_source FROM usage_logs ORDER BY request_id"
    ).fetchall()
    assert rows == [
        ("r-1", pytest.approx(1000 * 0.15 / 1e6), "price_table"),
        ("r-2", pytest.approx(1000 * 1.0 / 1e6), "override"),
    ]


def test_self_hosted_model_priced_only_inside_its_override_range(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, kit: Any
) -> None:
    overrides = kit.write_overrides(
        tmp_path / "overrides.csv", "my-llama,self-hosted,0.5,0.5,2026-10-10,2026-10-20,gpu"
    )
    rows = [
        kit.record(1, model="my-llama", timestamp="2026-10-09T00:00:00Z"),
        kit.record(2, model="my-llama", timestamp="2026-10-12T00:00:00Z"),
        kit.record(3, model="my-llama", timestamp="2026-10-20T00:00:00Z"),
    ]
    path = kit.write_jsonl(tmp_path / "l.jsonl", rows)
    report = kit.ingest(con, [path], price_overrides=overrides)
    assert report.ingested == 1 and report.quarantine_by_reason == {"unknown_model": 2}
    lines = con.execute("SELECT source_line FROM quarantine ORDER BY 1").fetchall()
    assert lines == [(1,), (3,)]


def test_bad_overrides_file_is_a_clear_error(tmp_path: Path, kit: Any) -> None:
    path = kit.write_overrides(
        tmp_path / "bad.csv", "m,p,1,1,2026-01-01,,a", "m,p,2,2,2026-06-01,,overlaps the open range"
    )
    with pytest.raises(PriceConfigError, match="overlapping"):
        load_price_overrides(path)
    kit.write_overrides(path, "m,p,-1,1,2026-01-01,,a")
    with pytest.raises(PriceConfigError, match=r"bad.csv:2"):
        load_price_overrides(path)


def test_repository_overrides_file_parses() -> None:
    from tasks.ingest.pricing import DEFAULT_OVERRIDES

    overrides = load_price_overrides(DEFAULT_OVERRIDES)
    assert overrides and all(o.input_usd_per_mtok >= 0 for o in overrides)
