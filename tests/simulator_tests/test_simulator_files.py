"""Schema, exact counts, reproducibility (equal tables, identical bytes) and format round-trips."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.simulation import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    SimulationSpec,
    load_ground_truth,
    simulate,
    simulate_config_traffic,
    write_simulation,
)

SMALL = SimulationSpec(
    seed=3,
    days=3,
    requests_per_day={"support-summarize": 120, "ticket-classify": 80, "code-review": 50},
)
DESIGN_FIELDS = [
    "request_id",
    "timestamp",
    "use_case",
    "model",
    "provider",
    "prompt_id",
    "config_id",
    "experiment_id",
    "variant_id",
    "unit_id",
    "propensity",
    "temperature",
    "top_p",
    "max_tokens",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "cost_usd",
    "status",
    "quality",
    "feedback",
    "task_type",
    "user_segment",
    "region",
    "language",
    "metadata",
]


def test_schema_has_every_canonical_field_with_its_type() -> None:
    table = simulate(SMALL)
    assert table.schema == CANONICAL_SCHEMA
    assert set(DESIGN_FIELDS) <= set(table.column_names)
    assert table.column_names == list(CANONICAL_COLUMNS)
    assert pa.types.is_timestamp(table.schema.field("timestamp").type)
    assert table.schema.field("timestamp").type.tz == "UTC"
    assert table.column("cost_usd").null_count == table.num_rows  # priced by ingestion
    assert len(set(table.column("request_id").to_pylist())) == table.num_rows
    status = table.column("status").to_pylist()
    assert set(status) <= {"success", "error"}
    errors = [i for i, s in enumerate(status) if s == "error"]
    assert errors, "a realistic error rate yields some errors"
    for name in ("quality", "ttft_ms"):
        col = table.column(name).to_pylist()
        assert all(col[i] is None for i in errors)
    assert set(table.column("error_type").drop_null().to_pylist()) <= {
        "rate_limit",
        "timeout",
        "server_error",
    }
    q = np.asarray(table.column("quality").drop_null())
    assert q.min() >= 0 and q.max() <= 1
    assert set(table.column("feedback").drop_null().to_pylist()) <= {-1, 0, 1}
    assert 0 < table.column("feedback").null_count < table.num_rows
    assert all(isinstance(json.loads(m), dict) for m in table.column("metadata").to_pylist())
    ts = table.column("timestamp").to_pylist()
    assert ts == sorted(ts)
    assert min(ts).date() == SMALL.start_date and max(ts).date() == SMALL.day(SMALL.days - 1)
    with_cost = simulate(
        SimulationSpec(days=1, requests_per_day={"sales-email": 50}, include_cost=True)
    )
    assert with_cost.column("cost_usd").null_count == 0


def test_row_counts_are_exact_per_day_and_in_total(tmp_path: Path) -> None:
    spec = SimulationSpec(days=7, total_rows=1003)
    counts = spec.counts()
    assert counts.sum() == 1003 and counts.shape == (7, 4)
    out = write_simulation(spec, tmp_path, rows_per_file=60)
    assert out.rows == 1003 and sum(out.rows_per_day) == 1003
    assert list(out.rows_per_day) == counts.sum(axis=1).tolist()
    con = duckdb.connect(":memory:")
    per_day = con.execute(
        "SELECT CAST(timezone('UTC', timestamp) AS DATE) d, count(*) "
        f"FROM read_parquet('{tmp_path}/*.parquet') GROUP BY d ORDER BY d"
    ).fetchall()
    assert [n for _, n in per_day] == list(out.rows_per_day)
    assert [d for d, _ in per_day] == [spec.day(i) for i in range(7)]
    assert all(pq.read_metadata(p).num_rows <= 60 for p in out.paths)
    fixed = SimulationSpec(days=4, requests_per_day={"sales-email": 25, "code-review": 10})
    per_uc = simulate(fixed).group_by("use_case").aggregate([("request_id", "count")])
    assert dict(zip(*per_uc.to_pydict().values(), strict=True)) == {
        "sales-email": 100,
        "code-review": 40,
    }


def test_same_seed_gives_equal_tables_and_identical_bytes(tmp_path: Path) -> None:
    assert simulate(SMALL).equals(simulate(SMALL))
    other = simulate(
        SimulationSpec(**{**SMALL.to_dict(), "seed": 4, "start_date": SMALL.start_date})
    )
    assert not other.equals(simulate(SMALL))
    assert other.column("quality").to_pylist() != simulate(SMALL).column("quality").to_pylist()
    for fmt, gz in (("parquet", False), ("jsonl", True), ("csv", True), ("csv", False)):
        a = write_simulation(SMALL, tmp_path / f"a-{fmt}-{gz}", fmt=fmt, compress=gz)
        b = write_simulation(SMALL, tmp_path / f"b-{fmt}-{gz}", fmt=fmt, compress=gz)
        assert [p.name for p in a.paths] == [p.name for p in b.paths]
        for pa_, pb in zip(a.paths, b.paths, strict=True):
            assert pa_.read_bytes() == pb.read_bytes(), pa_.name
        assert a.ground_truth_path.read_bytes() == b.ground_truth_path.read_bytes()


@pytest.mark.parametrize(
    ("fmt", "gz"), [("parquet", False), ("jsonl", False), ("jsonl", True), ("csv", True)]
)
def test_each_format_round_trips(tmp_path: Path, fmt: str, gz: bool) -> None:
    expected = simulate(SMALL)
    out = write_simulation(SMALL, tmp_path, fmt=fmt, compress=gz)
    assert all(p.name.endswith(f".{fmt}" + (".gz" if gz else "")) for p in out.paths)
    if gz:
        with gzip.open(out.paths[0], "rt") as handle:
            first = handle.readline()
        assert first.strip()
    reader = {
        "parquet": "read_parquet",
        "jsonl": "read_json",
        "csv": "read_csv",
    }[fmt]
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    files = [str(p) for p in out.paths]
    # JSONL holds metadata as a nested object (DuckDB reads a STRUCT): turn it back into JSON
    meta = "to_json(metadata)" if fmt == "jsonl" else "metadata"
    got = con.sql(
        f"""SELECT request_id, epoch_us(CAST(timestamp AS TIMESTAMPTZ)) AS ts_us, quality,
                   feedback, input_tokens, latency_ms, variant_id,
                   CAST({meta} AS VARCHAR) AS metadata
            FROM {reader}({files!r})"""
    ).to_arrow_table()
    assert got.num_rows == expected.num_rows
    assert got.column("request_id").to_pylist() == expected.column("request_id").to_pylist()
    ts_us = expected.column("timestamp").cast(pa.int64()).to_pylist()
    assert got.column("ts_us").to_pylist() == ts_us
    for name in ("quality", "feedback", "input_tokens", "latency_ms", "variant_id"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    meta_got = [json.loads(m) for m in got.column("metadata").to_pylist()]
    meta_exp = [json.loads(m) for m in expected.column("metadata").to_pylist()]
    assert meta_got == meta_exp
    if fmt != "parquet":  # ISO 8601 with 'Z' in text formats
        opener = gzip.open if gz else open
        with opener(out.paths[0], "rt") as handle:
            text = handle.read(4000)
        assert "T00:" in text and "Z" in text
    truth = load_ground_truth(tmp_path)
    assert truth.spec == SMALL
    assert load_ground_truth(out.ground_truth_path).to_dict() == truth.to_dict()


def test_rewriting_a_folder_replaces_the_previous_simulation(tmp_path: Path) -> None:
    write_simulation(SimulationSpec(days=5, total_rows=100), tmp_path, fmt="csv")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    out = write_simulation(SimulationSpec(days=2, total_rows=40), tmp_path, fmt="csv")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([*(p.name for p in out.paths), "ground_truth.json", "notes.txt"])


def test_bad_specs_are_rejected_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="days"):
        SimulationSpec(days=0)
    with pytest.raises(ValueError, match="unknown use cases"):
        SimulationSpec(requests_per_day={"nope": 3})
    with pytest.raises(ValueError, match="production_share"):
        SimulationSpec(production_share=0.0)
    with pytest.raises(TypeError, match="start_date"):
        SimulationSpec(start_date=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="format"):
        write_simulation(SMALL, "/nonexistent-never-created", fmt="xml")


def test_candidate_traffic_from_a_mapping_keeps_its_id_and_rejects_bad_input() -> None:
    params = {
        "model": "claude-haiku-4-5",
        "prompt_id": "email-v2-personalized",
        "temperature": 0.8,
        "top_p": 0.95,
        "max_tokens": 1024,
        "config_id": "cand-0042",
    }
    rows = simulate_config_traffic(SMALL, "sales-email", params, 300, 1, 5, propensity=0.25)
    again = simulate_config_traffic(SMALL, "sales-email", params, 300, 1, 5, propensity=0.25)
    assert rows.equals(again) and rows.schema == CANONICAL_SCHEMA
    assert set(rows.column("config_id").to_pylist()) == {"cand-0042"}
    assert set(rows.column("propensity").to_pylist()) == {0.25}
    assert rows.column("experiment_id").null_count == 300
    days = {t.date() for t in rows.column("timestamp").to_pylist()}
    assert days == {SMALL.day(1)}
    other = simulate_config_traffic(SMALL, "sales-email", params, 300, 1, 6, propensity=0.25)
    assert other.column("quality").to_pylist() != rows.column("quality").to_pylist()
    assert simulate_config_traffic(SMALL, "sales-email", params, 0, 1, 5).num_rows == 0
    with pytest.raises(ValueError, match="missing 'top_p'"):
        simulate_config_traffic(
            SMALL, "sales-email", {k: v for k, v in params.items() if k != "top_p"}, 1, 0, 0
        )
    with pytest.raises(ValueError, match="top_p"):
        simulate_config_traffic(SMALL, "sales-email", {**params, "top_p": None}, 1, 0, 0)
    with pytest.raises(ValueError, match="temperature"):
        simulate_config_traffic(SMALL, "sales-email", {**params, "temperature": 3.0}, 1, 0, 0)
    with pytest.raises(ValueError, match="unknown use case"):
        simulate_config_traffic(SMALL, "nope", params, 1, 0, 0)


def test_days_can_be_written_one_night_at_a_time(tmp_path: Path) -> None:
    full = write_simulation(SMALL, tmp_path / "full")
    first = write_simulation(SMALL, tmp_path / "nightly", days=[0, 1])
    last = write_simulation(SMALL, tmp_path / "nightly", days=[2])
    assert (
        first.rows_per_day == full.rows_per_day[:2] and last.rows_per_day == full.rows_per_day[2:]
    )
    nightly = sorted((tmp_path / "nightly").glob("usage-*"))
    assert [p.name for p in nightly] == [p.name for p in full.paths]
    for a, b in zip(nightly, full.paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="outside"):
        write_simulation(SMALL, tmp_path / "bad", days=[3])
