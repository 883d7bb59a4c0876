"""Atomic JSON files for serving systems that read configuration from disk.

A reader must never see half a file: we write a temporary file in the same directory, fsync it,
``os.replace`` it over the target (atomic on POSIX and Windows), then fsync the directory so the
rename survives a crash. Readers validate the document and its checksum, so even a file edited by
hand or truncated by a full disk is refused rather than served. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.registry.model import (
    ConfigValidationError,
    ConfigVersion,
    canonical_json,
    validate_use_case,
)

__all__ = ["atomic_write_bytes", "read_snapshot", "snapshot_path", "write_snapshot_document"]


def snapshot_path(directory: Path, use_case: str) -> Path:
    """``<directory>/<use_case>.json``; the name is validated so it cannot escape ``directory``."""
    return Path(directory) / f"{validate_use_case(use_case)}.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + os.replace + dir fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
