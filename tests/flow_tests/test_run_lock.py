from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.run_lock import RunLockTimeout, exclusive_run

HOLDER = """
import sys, time
from pathlib import Path
from tasks.core.run_lock import exclusive_run
with exclusive_run(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_in_subprocess(lock: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_fails_clearly_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "warehouse.duckdb.nightly.lock"
    proc = _hold_in_subprocess(lock, 30)
    try:
        with (
            pytest.raises(RunLockTimeout, match="another nightly run holds"),
            exclusive_run(lock, wait_seconds=0.5),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    proc = _hold_in_subprocess(lock, 30)
    proc.kill()
    proc.wait()
    start = time.monotonic()
    with exclusive_run(lock, wait_seconds=5):
        acquired_after = time.monotonic() - start
    assert acquired_after < 2.0


@pytest.mark.slow  # ~1.5 s: a second process waits on the first one's lock
def test_waiting_run_proceeds_once_the_first_finishes(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    proc = _hold_in_subprocess(lock, 1.5)
    start = time.monotonic()
    with exclusive_run(lock, wait_seconds=20, poll_seconds=0.1):
        waited = time.monotonic() - start
    proc.wait()
    assert 1.0 <= waited < 15.0  # it waited for the holder instead of failing or barging in
