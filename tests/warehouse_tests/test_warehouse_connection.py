"""The warehouse connection: one clear line when the file is missing or another process writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.warehouse.connection import (
    WarehouseBusyError,
    WarehouseMissingError,
    connect,
    open_existing,
)


def test_a_missing_warehouse_names_the_command_that_creates_one(settings: Settings) -> None:
    with pytest.raises(WarehouseMissingError, match="llmopt ingest") as caught:
        open_existing(settings)
    assert isinstance(caught.value, LlmoptError)
    assert "\n" not in str(caught.value)
    assert not Path(settings.warehouse_path).exists()


def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseBusyError) as caught:
            connect(path=path)
        message = str(caught.value)
        assert f"PID {holder.pid}" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the lock goes with the process
        try:
            connect(path=path).close()
            break
        except WarehouseBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_an_existing_warehouse_opens_read_only_without_the_schema_step(settings: Settings) -> None:
    connect(settings).close()
    con = open_existing(settings, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM usage_logs").fetchone() == (0,)
    finally:
        con.close()
