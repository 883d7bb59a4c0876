"""Rollups computed on a real Dask cluster of worker processes equal the single-process refresh.

Two lake warehouses ingest the same simulated fortnight; one refreshes its rollups in process
(``refresh_rollups``), the other on a ``distributed.LocalCluster`` of two worker processes
(``refresh_rollups_on_dask``). Every rollup table must be identical, on the first night and on
a second night that brings late rows for an old day. The flow-side connection of the Dask path
is recorded: it never reads a Parquet part nor the raw ``usage_logs``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from distributed import Client, LocalCluster

from tasks.core.settings import Settings
from tasks.ingest.pipeline import ingest_paths
from tasks.nightly.rollup_set import ALL_SPECS
from tasks.simulation.files import write_simulation
from tasks.simulation.spec import SimulationSpec
from tasks.warehouse import dask_rollups, lake
from tasks.warehouse.connection import connect
from tasks.warehouse.dask_rollups import partition_files, refresh_rollups_on_dask
from tasks.warehouse.rollups import refresh_rollups, with_coverage

pytestmark = pytest.mark.slow  # a cluster of two worker processes: ~20-40 s


class _Recorder:
    """A connection that records every statement (to prove no raw read on the flow side)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements: list[str] = []

    def execute(self, query: str, *args: Any, **kwargs: Any) -> _Recorder:
        self.statements.append(query)
        self._con.execute(query, *args, **kwargs)
        return self

    def executemany(self, query: str, *args: Any, **kwargs: Any) -> _Recorder:
        self.statements.append(query)
        self._con.executemany(query, *args, **kwargs)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as dask,
    ):
        yield dask


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """A simulated fortnight as day files, with 30 % of day 4's rows held back (late)."""
    out = tmp_path_factory.mktemp("sim")
    spec = SimulationSpec(seed=11, days=14, total_rows=14_000)
    files = list(write_simulation(spec, out, fmt="jsonl").paths)
    lines = files[3].read_text().splitlines()
    keep = len(lines) * 7 // 10
    files[3].write_text("\n".join(lines[:keep]) + "\n")
    late = out / "late" / "late.jsonl"
    late.parent.mkdir()
    late.write_text("\n".join(lines[keep:]) + "\n")
    return files, late


def _lake_settings(settings: Settings, name: str) -> Settings:
    return dataclasses.replace(
        settings,
        warehouse_path=settings.home / f"{name}.duckdb",
        extra={**settings.extra, lake.LAKE_SETTING: str(settings.home / f"lake-{name}")},
    )


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[Any]]:
    """Every rollup table's rows in key order (floats summed in another order may differ in
    the last bits, so they are compared with a relative tolerance of 1e-12)."""
    tables = {}
    for spec in with_coverage(ALL_SPECS):
        keys = ", ".join(spec.key)
        rows = con.execute(f"SELECT * FROM {spec.name} ORDER BY {keys}").fetchall()
        tables[spec.name] = [
            tuple(pytest.approx(v, rel=1e-12, abs=1e-12) if isinstance(v, float) else v for v in r)
            for r in rows
        ]
    return tables


def test_dask_rollups_equal_the_single_process_refresh_with_late_rows(
    settings: Settings, month: tuple[list[Path], Path], client: Client
) -> None:
    files, late = month
    local, distributed = _lake_settings(settings, "local"), _lake_settings(settings, "dask")
    for target in (local, distributed):
        ingest_paths(files, settings=target, validate=False)
    for night, new_files in enumerate(([], [late])):
        for target in (local, distributed):
            ingest_paths(new_files, settings=target, validate=False) if new_files else None
        con_local, con_dask = connect(local), connect(distributed)
        try:
            expected = refresh_rollups(con_local, ALL_SPECS)
            recorder = _Recorder(con_dask)
            report = refresh_rollups_on_dask(recorder, ALL_SPECS, client=client)  # type: ignore[arg-type]
            assert report.pairs == expected.pairs
            assert report.rows == expected.rows
            if night == 1:  # the late rows touch only their old day's pairs
                assert {day.isoformat() for _, day in report.pairs} == {files[3].name[6:16]}
            assert _tables(con_local) == _tables(con_dask)
            raw = [s for s in recorder.statements if "read_parquet" in s or "usage_logs" in s]
            assert raw == ['SELECT count(*) FROM "dask".main.usage_logs']  # staging is empty
        finally:
            con_local.close()
            con_dask.close()


def test_partition_files_lists_each_pairs_parts(
    settings: Settings, month: tuple[list[Path], Path]
) -> None:
    target = _lake_settings(settings, "parts")
    ingest_paths(month[0][:2], settings=target, validate=False)
    con = connect(target)
    try:
        pairs = [
            (str(uc), day)
            for uc, day in con.execute("SELECT DISTINCT use_case, day FROM lake_parts").fetchall()
        ]
        files = partition_files(con, pairs)
        assert set(files) == set(pairs)
        for (use_case, day), paths in files.items():
            assert all(f"/day={day.isoformat()}/" in p for p in paths)
            n = con.execute(
                "SELECT count(*) FROM usage_logs WHERE use_case = ? AND day = ?", [use_case, day]
            ).fetchone()
            parts = con.execute(f"SELECT count(*) FROM read_parquet({paths!r})").fetchone()
            assert n == parts
    finally:
        con.close()


def test_rows_staged_in_the_duckdb_table_are_refused_with_one_clear_line(
    settings: Settings, month: tuple[list[Path], Path], client: Client
) -> None:
    ingest_paths(month[0][:1], settings=settings, validate=False)  # the plain table
    target = _lake_settings(settings, "mixed")
    ingest_paths(month[0][1:2], settings=target, validate=False)
    con = connect(target)
    try:
        con.execute(f"INSERT INTO {lake._table(con)} SELECT * FROM main.usage_logs LIMIT 0")
        with lake.staging(con):
            con.execute(
                "INSERT INTO usage_logs SELECT * REPLACE ('x-' || request_id AS request_id)"
                f" FROM read_parquet({lake.part_paths(con)[:1]!r})"
            )
        with pytest.raises(lake.LakeError, match="flush"):
            refresh_rollups_on_dask(con, ALL_SPECS, client=client)
    finally:
        con.close()


def test_the_night_refresh_reads_partitions_on_the_cluster_when_given_else_in_process(
    settings: Settings,
    month: tuple[list[Path], Path],
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_dask, in_process = _lake_settings(settings, "auto-a"), _lake_settings(settings, "auto-b")
    for target in (on_dask, in_process):
        ingest_paths(month[0][:3], settings=target, validate=False)
    used: list[str] = []
    real = dask_rollups.refresh_rollups_on_dask

    def recorded(*args: Any, **kwargs: Any) -> Any:
        used.append(type(kwargs["client"]).__name__)
        return real(*args, **kwargs)

    monkeypatch.setattr(dask_rollups, "refresh_rollups_on_dask", recorded)
    con_a, con_b = connect(on_dask), connect(in_process)
    try:
        first = dask_rollups.refresh_night_rollups(con_a, ALL_SPECS, on_dask, client=client)
        assert used == ["Client"]
        second = dask_rollups.refresh_night_rollups(con_b, ALL_SPECS, in_process)
        assert used == ["Client", "InProcess"]  # no address, not on a cluster: partitions here
        assert first.pairs == second.pairs
        assert _tables(con_a) == _tables(con_b)
    finally:
        con_a.close()
        con_b.close()


def test_batches_hold_every_file_once_in_at_most_the_slots() -> None:
    day = dt.date(2026, 11, 1)
    files = {(f"uc{i}", day): [f"f{i}a", f"f{i}b"] for i in range(7)}
    rows = {pair: 10 * (i + 1) for i, pair in enumerate(files)}
    packed = dask_rollups.batches(files, rows, 3)
    assert len(packed) == 3
    assert sorted(f for batch in packed for f in batch) == sorted(
        f for paths in files.values() for f in paths
    )
    loads = [sum(rows[p] for p in files if files[p][0] in batch) for batch in packed]
    assert max(loads) - min(loads) <= max(rows.values())
