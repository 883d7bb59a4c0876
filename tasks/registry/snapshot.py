"""Atomic JSON files for serving systems that read configuration from disk.

A reader must never see half a file: we write a temporary file in the same directory, fsync it,
``os.replace`` it over the target (atomic on POSIX and Windows), then fsync the directory so the
rename survives a crash. Readers validate the document and its checksum, so even a file edited by
hand or truncated by a full disk is refused rather than served. Standard library only.

Files are written with mode 0644 so a serving process under another user can read them. Writers
of one snapshot directory serialise on :func:`snapshot_lock` (an ``flock`` on ``.snapshots.lock``,
across processes), and read the database *inside* the lock: the last writer always writes the
latest committed state, never an older one over a newer. A writer killed mid-write leaves a
``.<name>.*.tmp`` file; :func:`remove_temp_files` (run under the lock at startup) removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasks.registry.model import (
    ConfigValidationError,
    ConfigVersion,
    canonical_json,
    validate_use_case,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per snapshot directory
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SNAPSHOT_MODE",
    "atomic_write_bytes",
    "read_snapshot",
    "remove_temp_files",
    "snapshot_lock",
    "snapshot_path",
    "write_snapshot_document",
]

SNAPSHOT_MODE = 0o644
_LOCK_NAME = ".snapshots.lock"
_THREAD_LOCK = threading.Lock()  # fallback where flock is missing


def snapshot_path(directory: Path, use_case: str) -> Path:
    """``<directory>/<use_case>.json``; the name is validated so it cannot escape ``directory``."""
    return Path(directory) / f"{validate_use_case(use_case)}.json"


@contextlib.contextmanager
def snapshot_lock(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock of a snapshot directory (threads and processes alike).

    Args:
        directory: the snapshot directory (created if missing).

    Yields:
        Nothing; the lock is released on exit.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        with _THREAD_LOCK:
            yield
        return
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete temp files a killed writer left behind; call it while holding the lock.

    Args:
        directory: the snapshot directory.

    Returns:
        The files removed.
    """
    removed = []
    for path in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = SNAPSHOT_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + os.replace + dir fsync).

    Args:
        path: the target file; its folder is created if missing.
        data: the complete new content.
        mode: permission bits of the new file (default 0644: readable by serving users).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # not every platform can open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_snapshot_document(directory: Path, document: Mapping[str, Any]) -> Path:
    """Write a served document (see ``ConfigVersion.to_document``) as the use case's snapshot."""
    ConfigVersion.from_document(document)  # never publish a file readers would refuse
    path = snapshot_path(directory, str(document["use_case"]))
    atomic_write_bytes(path, canonical_json(dict(document)))
    return path


def read_snapshot(path: Path) -> ConfigVersion:
    """Read and validate a snapshot; :class:`ConfigValidationError` if it is unusable."""
    try:
        raw = Path(path).read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigValidationError(f"cannot read snapshot {path}: {exc}") from exc
    return ConfigVersion.from_document(doc)
