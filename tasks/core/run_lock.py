"""One nightly run per warehouse at a time, across processes.

An advisory ``flock`` on a file beside the warehouse: the kernel releases it when the holder dies,
so a crashed run never leaves a stale lock behind (a PID file would). A second run waits up to
``wait_seconds`` and then fails with :class:`RunLockTimeout`, a clear message naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.core.errors import LlmoptError


class RunLockTimeout(LlmoptError, RuntimeError):
    """Another run holds the lock; the message says which process and since when."""


def lock_path_for(warehouse_path: Path) -> Path:
    """The lock file that guards nightly runs over ``warehouse_path`` (beside it)."""
    return warehouse_path.with_name(warehouse_path.name + ".nightly.lock")


@contextlib.contextmanager
def exclusive_run(
    lock_path: Path, *, wait_seconds: float = 0.0, poll_seconds: float = 0.5
) -> Iterator[None]:
    """Hold the run lock for the duration of the block.

    Args:
        lock_path: the lock file (see :func:`lock_path_for`); created when missing.
        wait_seconds: how long to wait for another holder before giving up.
        poll_seconds: how often to retry while waiting.

    Raises:
        RunLockTimeout: another process still holds the lock after ``wait_seconds``; the message
            names it (pid, host, since).
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a+")
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown holder"
                    raise RunLockTimeout(
                        f"another nightly run holds {lock_path} ({holder}); "
                        f"waited {wait_seconds:.0f}s"
                    ) from None
                time.sleep(poll_seconds)
        handle.seek(0)
        handle.truncate()
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        handle.write(json.dumps(me))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the flock


__all__ = ["RunLockTimeout", "exclusive_run", "lock_path_for"]
