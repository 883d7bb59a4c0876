"""Snapshot files derived from committed state, in order, and repaired at startup.

A writer used to render the snapshot from the version it had just written, after the commit:
two writers finishing out of order left production v2 on disk while the database said v5, and a
crash between commit and write left it stale forever. Now every writer, after its commit, takes
the snapshot directory's lock and *then* reads production from the database: whoever writes last
writes the newest committed state, so the file can only move forward. :func:`reconcile` (run by
``RegistryStore.from_settings``: the server, the CLI and the nightly flow) repairs what a crash
left behind and removes temp files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.registry.errors import NotFoundError
from tasks.registry.model import canonical_json
from tasks.registry.snapshot import (
    atomic_write_bytes,
    remove_temp_files,
    snapshot_lock,
    snapshot_path,
)

if TYPE_CHECKING:  # the store imports this module
    from tasks.registry.store import RegistryStore

__all__ = ["Reconciliation", "reconcile", "sync_snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Reconciliation:
    """What :func:`reconcile` found: snapshots rewritten and temp files removed."""

    rewritten: tuple[str, ...]
    unchanged: tuple[str, ...]
    temp_files_removed: int


def _write_if_changed(store: RegistryStore, use_case: str, directory: Path) -> tuple[Path, bool]:
    """Caller holds the lock. Raises NotFoundError when there is no production version."""
    document = canonical_json(store.get(use_case, "production").to_document())
    path = snapshot_path(directory, use_case)
    try:
        if path.read_bytes() == document and (path.stat().st_mode & 0o777) == 0o644:
            return path, False
    except OSError:
        pass
    atomic_write_bytes(path, document)
    return path, True


def sync_snapshot(store: RegistryStore, use_case: str, directory: Path) -> Path | None:
    """Make ``<directory>/<use_case>.json`` equal the committed production document.

    Args:
        store: the registry store.
        use_case: the use case.
        directory: the snapshot directory.

    Returns:
        The snapshot's path, or None when the use case has no production version yet.
    """
    with snapshot_lock(directory):
        try:
            return _write_if_changed(store, use_case, directory)[0]
        except NotFoundError:
            return None


def reconcile(store: RegistryStore, directory: Path) -> Reconciliation:
    """Rewrite every snapshot that differs from the database; remove leftover temp files.

    Args:
        store: the registry store.
        directory: the snapshot directory.

    Returns:
        What was repaired (logged at WARNING when anything was).
    """
    rewritten: list[str] = []
    unchanged: list[str] = []
    with snapshot_lock(directory):
        removed = remove_temp_files(directory)
        for use_case, production in store.production_versions().items():
            if production is None:
                continue
            try:
                _, changed = _write_if_changed(store, use_case, directory)
            except NotFoundError:
                continue
            (rewritten if changed else unchanged).append(use_case)
    if rewritten or removed:
        log.warning(
            "registry snapshots reconciled in %s: rewrote %s, removed %d temp file(s)",
            directory, rewritten, len(removed),
        )  # fmt: skip
    return Reconciliation(
        rewritten=tuple(rewritten), unchanged=tuple(unchanged), temp_files_removed=len(removed)
    )
