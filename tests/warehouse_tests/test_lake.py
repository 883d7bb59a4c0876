"""The partitioned lake: ingest writes Hive-style Parquet parts, readers see the same rows.

Compared with the plain DuckDB warehouse over the same simulated files: identical rows, one
commit per file, dedupe against the lake, late rows in their old day's partition, and a crash
between the rename of the parts and the COMMIT that neither loses nor duplicates a row.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.core.settings import Settings
from tasks.ingest.pipeline import ingest_paths
from tasks.simulation.files import write_simulation
from tasks.simulation.spec import SimulationSpec
from tasks.warehouse import lake
from tasks.warehouse.connection import connect

ROWS = "SELECT * EXCLUDE (ingest_id) FROM usage_logs ORDER BY request_id"
PART = re.compile(
    r"usage_logs/day=\d{4}-\d{2}-\d{2}/use_case=[^/]+/part-[0-9a-f]{16}-\d{6}\.parquet$"
)


def _with_lake(settings: Settings, location: str) -> Settings:
    return dataclasses.replace(
        settings,
        warehouse_path=settings.home / "lake-warehouse.duckdb",
        extra={**settings.extra, lake.LAKE_SETTING: location},
    )


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sim")
    spec = SimulationSpec(seed=3, days=4, total_rows=2_400, experiments=True)
    return list(write_simulation(spec, out, fmt="jsonl").paths)


def _rows(settings: Settings) -> list[Any]:
    con = connect(settings, read_only=True)
    try:
        return con.execute(ROWS).fetchall()
    finally:
        con.close()


def test_lake_ingest_holds_the_same_rows_as_the_duckdb_table(
    settings: Settings, sim_files: list[Path], tmp_path: Path
) -> None:
    plain = ingest_paths(sim_files, settings=settings, validate=False)
    lake_settings = _with_lake(settings, str(tmp_path / "lake"))
    report = ingest_paths(sim_files, settings=lake_settings, validate=False)
    assert report.ingested == plain.ingested == 2_400
    assert _rows(lake_settings) == _rows(settings)
    files = sorted(str(p) for p in (tmp_path / "lake").rglob("*") if p.is_file())
    assert files and all(PART.search(f) for f in files)
    con = connect(lake_settings)
    try:
        staged = con.execute(f"SELECT count(*) FROM {lake._table(con)}").fetchone()
        assert staged == (0,)  # every committed row lives in Parquet
        parts = con.execute("SELECT count(DISTINCT path), sum(rows) FROM lake_parts").fetchone()
        assert parts == (len(files), 2_400)
        days = con.execute("SELECT count(DISTINCT day) FROM usage_logs").fetchone()
        assert days == (4,)
        by_day = con.execute(
            "SELECT count(*) FROM usage_logs WHERE day = (SELECT min(day) FROM usage_logs)"
        ).fetchone()
        assert by_day is not None and 0 < by_day[0] < 2_400
    finally:
        con.close()


def test_lake_dedupes_against_committed_parts_and_corrects_the_manifest(
    settings: Settings, sim_files: list[Path], tmp_path: Path
) -> None:
    lake_settings = _with_lake(settings, str(tmp_path / "lake"))
    ingest_paths(sim_files[:2], settings=lake_settings, validate=False)
    before = len(_rows(lake_settings))
    # a new file (new content hash) that repeats the first day's rows and adds day 3's
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(sim_files[0].read_bytes() + sim_files[2].read_bytes())
    first_day = sum(1 for _ in sim_files[0].open())
    report = ingest_paths([mixed], settings=lake_settings, validate=False)
    third_day = report.ingested
    assert report.files[0].duplicates == first_day
    assert third_day == sum(1 for _ in sim_files[2].open())
    rows = _rows(lake_settings)
    assert len(rows) == before + third_day
    assert len({r[0] for r in rows}) == len(rows)
    con = connect(lake_settings, read_only=True)
    try:
        manifest = con.execute(
            "SELECT ingested, duplicates FROM ingest_manifest WHERE path = ?", [str(mixed)]
        ).fetchone()
    finally:
        con.close()
    assert manifest == (third_day, first_day)


def test_late_rows_land_in_their_old_days_partition(
    settings: Settings, sim_files: list[Path], tmp_path: Path
) -> None:
    lake_settings = _with_lake(settings, str(tmp_path / "lake"))
    lines = sim_files[0].read_text().splitlines()
    (tmp_path / "early.jsonl").write_text("\n".join(lines[:100]) + "\n")
    (tmp_path / "late.jsonl").write_text("\n".join(lines[100:]) + "\n")
    ingest_paths([tmp_path / "early.jsonl"], settings=lake_settings, validate=False)
    ingest_paths([tmp_path / "late.jsonl"], settings=lake_settings, validate=False)
    con = connect(lake_settings, read_only=True)
    try:
        per_partition = con.execute(
            "SELECT use_case, day FROM lake_parts GROUP BY ALL HAVING count(DISTINCT path) > 1"
        ).fetchall()
        total = con.execute("SELECT count(*) FROM usage_logs").fetchone()
    finally:
        con.close()
    assert per_partition  # a later ingest added a second part to an earlier partition
    assert total == (len(lines),)


class _Crash(BaseException):
    """The process dies (not an error the ingest handles)."""


def test_a_crash_between_rename_and_commit_duplicates_nothing_on_reingest(
    settings: Settings, sim_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_settings = _with_lake(settings, str(tmp_path / "lake"))
    ingest_paths(sim_files[:1], settings=lake_settings, validate=False)
    real_write = lake._write_parts

    def write_then_die(*args: Any) -> Any:
        real_write(*args)  # the parts are renamed into their partitions ...
        raise _Crash  # ... and the process dies before the manifest commits

    monkeypatch.setattr(lake, "_write_parts", write_then_die)
    with pytest.raises(_Crash):
        ingest_paths(sim_files[1:2], settings=lake_settings, validate=False)
    monkeypatch.setattr(lake, "_write_parts", real_write)
    orphans = {str(p) for p in (tmp_path / "lake").rglob("*.parquet")}
    con = connect(lake_settings, read_only=True)
    try:
        registered = set(lake.part_paths(con))
        assert orphans - registered  # the dead ingest's parts are on disk ...
        seen = con.execute("SELECT count(*) FROM usage_logs").fetchone()
        assert seen == (sum(1 for _ in sim_files[0].open()),)  # ... and invisible
    finally:
        con.close()
    report = ingest_paths(sim_files[1:2], settings=lake_settings, validate=False)
    assert report.files[0].status == "ingested"
    assert report.files[0].duplicates == 0
    rows = _rows(lake_settings)
    expected = sum(sum(1 for _ in f.open()) for f in sim_files[:2])
    assert len(rows) == expected == len({r[0] for r in rows})
    on_disk = {str(p) for p in (tmp_path / "lake").rglob("*") if p.is_file()}
    con = connect(lake_settings, read_only=True)
    try:
        assert on_disk == set(lake.part_paths(con))  # the orphans were removed
    finally:
        con.close()


def test_an_fsspec_memory_lake_works_like_a_folder(
    settings: Settings, sim_files: list[Path]
) -> None:
    location = f"memory://lake-{uuid.uuid4().hex[:8]}"
    lake_settings = _with_lake(settings, location)
    plain = ingest_paths(sim_files[:2], settings=settings, validate=False)
    report = ingest_paths(sim_files[:2], settings=lake_settings, validate=False)
    assert report.ingested == plain.ingested
    assert _rows(lake_settings) == _rows(settings)
    con = connect(lake_settings, read_only=True)
    try:
        assert all(p.startswith(location + "/usage_logs/day=") for p in lake.part_paths(con))
    finally:
        con.close()


def test_flush_moves_an_existing_warehouse_into_the_lake(
    settings: Settings, sim_files: list[Path], tmp_path: Path
) -> None:
    ingest_paths(sim_files, settings=settings, validate=False)
    before = _rows(settings)
    shutil.copy(settings.warehouse_path, settings.home / "lake-warehouse.duckdb")
    lake_settings = _with_lake(settings, str(tmp_path / "lake"))
    con = connect(lake_settings)
    try:
        assert lake.flush(con) == len(before)
        staged = con.execute(f"SELECT count(*) FROM {lake._table(con)}").fetchone()
        assert staged == (0,)
    finally:
        con.close()
    assert _rows(lake_settings) == before


def test_flush_without_a_lake_is_one_clear_error(settings: Settings) -> None:
    con = connect(settings)
    try:
        with pytest.raises(lake.LakeError, match="LLMOPT_LAKE"):
            lake.flush(con)
    finally:
        con.close()


def test_an_unknown_url_protocol_is_one_clear_error() -> None:
    with pytest.raises(lake.LakeError, match="no file system"):
        lake.Lake.open("nosuchproto://bucket/lake")


def test_a_plain_warehouse_keeps_its_table(settings: Settings) -> None:
    con = connect(settings)
    try:
        kind = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = 'usage_logs'"
        ).fetchone()
        assert kind == (0,)
        assert isinstance(con, duckdb.DuckDBPyConnection)
    finally:
        con.close()
