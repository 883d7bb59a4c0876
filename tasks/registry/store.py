"""The registry store: versioned configurations, lifecycle, aliases and audit in SQL.

SQLAlchemy Core over any URL (:mod:`tasks.registry.schema`): SQLite in WAL mode by default,
PostgreSQL for a shared deployment, the same code. Rules the store enforces:

- payloads are validated on write and never updated (only the lifecycle ``state`` column moves);
- versions count 1, 2, 3... per use case; ``publish`` states the version it expects to be the
  latest and fails with :class:`StaleVersionError` when someone published in between;
- every change of state writes an audit row (who, when, why) in the same transaction;
- each use case has a ``revision`` counter bumped by every change, checked with a conditional
  UPDATE, so two concurrent writers can never both win (also on PostgreSQL's READ COMMITTED);
- a document is read in one statement (head joined to version): its state and aliases agree;
- promote and rollback may state the production version they expect (a precondition);
- with a four-eyes policy an approval by the proposer or an automated principal is refused;
- after every write the snapshot file is re-derived from committed state under a directory lock
  (:mod:`tasks.registry.snapshot_sync`), and ``from_settings`` reconciles it at startup.

Example:
    >>> from tasks.registry.model import ModelParams, RegistryConfig
    >>> store = RegistryStore("sqlite://")
    >>> cfg = RegistryConfig(use_case="demo", params=ModelParams(model="gpt-4o-mini"))
    >>> v1 = store.publish("demo", cfg, expected_version=0, actor="me", reason="first")
    >>> _ = store.approve("demo", 1, actor="me", comment="ok")
    >>> store.promote("demo", 1, actor="me", comment="ship").state.value
    'production'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from tasks.core.settings import Settings
from tasks.registry import snapshot_sync
from tasks.registry.errors import (
    InvalidTransitionError,
    NotFoundError,
    RegistryError,
    StaleVersionError,
)
from tasks.registry.model import (
    ConfigState,
    ConfigVersion,
    RegistryConfig,
    validate_use_case,
)
from tasks.registry.policy import PolicyBook
from tasks.registry.rows import ALIASES, check_text, check_version
from tasks.registry.schema import RegistryTables, make_engine, write_transaction
from tasks.registry.writes import StoreWrites

__all__ = [
    "ALIASES",
    "InvalidTransitionError",
    "NotFoundError",
    "RegistryError",
    "RegistryStore",
    "StaleVersionError",
]

log = logging.getLogger(__name__)


class RegistryStore(StoreWrites):
    """Versioned, approved configurations in any SQLAlchemy database.

    Args:
        url: SQLAlchemy URL of the database.
        table_prefix: lets several registries share one database.
        snapshot_dir: when set, every write re-derives the use case's JSON snapshot there.
        create: create the tables if missing.
        policies: the approval policies (four eyes); None enforces no policy.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str = "registry_",
        snapshot_dir: Path | None = None,
        create: bool = True,
        policies: PolicyBook | None = None,
    ) -> None:
        tables = RegistryTables(table_prefix)
        self.url = url
        self.table_prefix = table_prefix
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.policies = policies
        self.engine: Engine = make_engine(url)
        self.metadata = tables.metadata
        self.heads, self.versions, self.audit = tables.heads, tables.versions, tables.audit
        if create:
            try:
                self.metadata.create_all(self.engine)
            except DBAPIError:  # another process created the tables between check and create
                self.metadata.create_all(self.engine)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, reconcile: bool = True, **kwargs: Any
    ) -> RegistryStore:
        """The store at ``settings.registry_url`` with its policies and snapshot folder.

        Args:
            settings: resolved locations (``registry_url``, ``registry_snapshot_dir``).
            reconcile: repair snapshots left stale by a crash and remove leftover temp files.
            **kwargs: passed to the constructor (``table_prefix``, ``policies``, ...).

        Returns:
            The store.
        """
        if settings.registry_url.startswith("sqlite:///"):
            Path(settings.registry_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        kwargs.setdefault("snapshot_dir", settings.registry_snapshot_dir)
        if "policies" not in kwargs:
            kwargs["policies"] = PolicyBook.from_settings(settings)
        store = cls(settings.registry_url, **kwargs)
        if reconcile and store.snapshot_dir is not None:
            try:
                store.reconcile_snapshots()
            except OSError as exc:  # a read-only host still reads the database
                log.warning("registry snapshots in %s not reconciled: %s", store.snapshot_dir, exc)
        return store

    def dispose(self) -> None:
        """Close the connection pool."""
        self.engine.dispose()

    def drop_all(self) -> None:
        """Drop this registry's tables (tests, teardown of a per-test prefix)."""
        self.metadata.drop_all(self.engine)
        self.engine.dispose()

    def _after_write(self, use_case: str) -> None:
        if self.snapshot_dir is not None:
            snapshot_sync.sync_snapshot(self, use_case, self.snapshot_dir)

    def publish(
        self,
        use_case: str,
        config: RegistryConfig,
        *,
        expected_version: int,
        actor: str,
        reason: str,
        run_id: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> ConfigVersion:
        """Store ``config`` as the next version (a candidate).

        Args:
            use_case: the use case.
            config: the payload (its ``use_case`` must match).
            expected_version: the latest version the caller saw (0 for a new use case).
            actor: the proposing principal, recorded in the audit.
            reason: why (audit).
            run_id: MLflow run id (provenance).
            evidence: a JSON object explaining the proposal.

        Returns:
            The new candidate version.

        Raises:
            StaleVersionError: the registry moved past ``expected_version``; nothing is written.
        """
        return self._new_version(
            use_case, config, expected_version=expected_version, actor=actor, reason=reason,
            run_id=run_id, evidence=evidence,
        )  # fmt: skip

    def record_rejection(
        self,
        use_case: str,
        config: RegistryConfig,
        *,
        expected_version: int,
        proposer: str,
        rejected_by: str,
        reason: str,
        run_id: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> ConfigVersion:
        """Record a proposal a person turned down, in one transaction; production keeps serving.

        Args:
            use_case: the use case.
            config: the proposed payload.
            expected_version: the latest version the proposer saw.
            proposer: who proposed it (e.g. ``nightly-flow``).
            rejected_by: the person who rejected it (audit ``actor`` of the ``reject`` row).
            reason: why it was rejected (audit reason of the ``reject`` row).
            run_id: MLflow run id (provenance).
            evidence: a JSON object explaining the proposal.

        Returns:
            The new version, in state ``rejected``.
        """
        check_text(rejected_by, "rejected_by", limit=200)
        return self._new_version(
            use_case, config, expected_version=expected_version, actor=proposer, reason=reason,
            run_id=run_id, evidence=evidence, rejected_by=rejected_by,
        )  # fmt: skip

    def _transition(self, use_case: str, version: int, **kwargs: Any) -> ConfigVersion:
        validate_use_case(use_case)
        check_version(version, "version")
        check_text(kwargs["actor"], "actor", limit=200)
        check_text(kwargs["reason"], "reason")
        with write_transaction(self.engine) as conn:
            self._apply(conn, use_case, version, **kwargs)
        self._after_write(use_case)
        return self.get(use_case, version)

    def approve(self, use_case: str, version: int, *, actor: str, comment: str) -> ConfigVersion:
        """A person (or the auto policy) accepts a candidate.

        Args:
            use_case: the use case.
            version: the candidate's number.
            actor: the approving principal (audit); refused under four eyes if it proposed.
            comment: why (audit).

        Returns:
            The version, now ``approved``.
        """
        return self._transition(
            use_case, version, action="approve", allowed_from={ConfigState.CANDIDATE},
            to_state=ConfigState.APPROVED, actor=actor, reason=comment,
        )  # fmt: skip

    def reject(self, use_case: str, version: int, *, actor: str, comment: str) -> ConfigVersion:
        """Refuse a candidate (or an approved version not yet in production).

        Args:
            use_case: the use case.
            version: the version's number.
            actor: who rejects it (audit).
            comment: why (audit).

        Returns:
            The version, now ``rejected``; production is untouched.
        """
        return self._transition(
            use_case, version, action="reject",
            allowed_from={ConfigState.CANDIDATE, ConfigState.APPROVED},
            to_state=ConfigState.REJECTED, actor=actor, reason=comment,
        )  # fmt: skip

    def promote(
        self,
        use_case: str,
        version: int,
        *,
        actor: str,
        comment: str,
        expected_production: int | None = None,
        check_expected: bool = False,
    ) -> ConfigVersion:
        """Make an approved version production; the previous production version is retired.

        Args:
            use_case: the use case.
            version: an approved version.
            actor: who promotes (audit).
            comment: why (audit).
            expected_production: the production version the caller saw (None: none yet).
            check_expected: enforce ``expected_production``.

        Returns:
            The version, now ``production``.

        Raises:
            PreconditionFailedError: production moved away from ``expected_production``.
        """
        extra = {"expected_production": expected_production} if check_expected else {}
        return self._transition(
            use_case, version, action="promote", allowed_from={ConfigState.APPROVED},
            to_state=ConfigState.PRODUCTION, actor=actor, reason=comment, **extra,
        )  # fmt: skip

    def rollback(
        self,
        use_case: str,
        *,
        actor: str,
        reason: str,
        to_version: int | None = None,
        expected_production: int | None = None,
        check_expected: bool = False,
    ) -> ConfigVersion:
        """Put an earlier approved version back in production (default: the last good one).

        Args:
            use_case: the use case.
            actor: who rolls back (audit).
            reason: why (audit).
            to_version: the target (default: newest approved version before production).
            expected_production: the production version the caller saw.
            check_expected: enforce ``expected_production``.

        Returns:
            The target version, now ``production``.
        """
        if to_version is not None:
            check_version(to_version, "to_version")
        else:
            current = self.get(use_case, "production")
            target = self.last_good_approved(use_case, before=current.version)
            if target is None:
                target = self.last_good_approved(use_case)
            if target is None:
                raise InvalidTransitionError(f"{use_case}: no earlier approved version to roll to")
            to_version = target.version
        extra = {"expected_production": expected_production} if check_expected else {}
        return self._transition(
            use_case, to_version, action="rollback",
            allowed_from={ConfigState.APPROVED, ConfigState.RETIRED},
            to_state=ConfigState.PRODUCTION, actor=actor, reason=reason, **extra,
        )  # fmt: skip

    # -- snapshots ------------------------------------------------------------------------------

    def write_snapshot(self, use_case: str, directory: Path | None = None) -> Path:
        """Re-derive the production snapshot of ``use_case`` from committed state.

        Args:
            use_case: the use case (it must have a production version).
            directory: where to write (default: ``snapshot_dir``).

        Returns:
            The snapshot's path.
        """
        target = directory or self.snapshot_dir
        if target is None:
            raise ValueError("no snapshot directory configured")
        path = snapshot_sync.sync_snapshot(self, use_case, Path(target))
        if path is None:
            raise NotFoundError(f"use case {use_case!r} has no production version")
        return path

    def write_snapshots(self, directory: Path | None = None) -> list[Path]:
        """Snapshots for every use case that has a production version.

        Args:
            directory: where to write (default: ``snapshot_dir``).

        Returns:
            The paths written.
        """
        paths = []
        for use_case in self.use_cases():
            try:
                paths.append(self.write_snapshot(use_case, directory))
            except NotFoundError:
                continue
        return paths

    def reconcile_snapshots(self) -> snapshot_sync.Reconciliation:
        """Make every snapshot equal the database and remove leftover temp files (startup).

        Returns:
            What was repaired.
        """
        if self.snapshot_dir is None:
            raise ValueError("no snapshot directory configured")
        return snapshot_sync.reconcile(self, self.snapshot_dir)
