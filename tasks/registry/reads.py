"""The store's read side: every document comes from one consistent read.

A served document carries both a version's ``state`` and the aliases pointing at it; read in two
statements under READ COMMITTED they can disagree (``state: "retired"`` with
``aliases: ["production"]``). Here a document is one SELECT joining the use case's head to the
version, and multi-statement reads run in one snapshot (:func:`read_transaction`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tasks.registry.errors import NotFoundError
from tasks.registry.model import AuditEntry, ConfigState, ConfigVersion, validate_use_case
from tasks.registry.rows import ALIASES, MAX_VERSION, audit_entry, to_version
from tasks.registry.schema import read_transaction
from tasks.registry.snapshot import snapshot_path

__all__ = ["StoreReads"]

_ALIAS_COLUMNS = {
    "production": "production_version",
    "candidate": "candidate_version",
    "latest": "latest_version",
}


def _numeric_ref(ref: int | str) -> int | None:
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    if isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 10:
        return int(ref)
    return None


class StoreReads:
    """Read methods of :class:`tasks.registry.store.RegistryStore` (mixed in)."""

    engine: Engine
    heads: sa.Table
    versions: sa.Table
    audit: sa.Table
    snapshot_dir: Path | None

    def _head(self, conn: Connection, use_case: str) -> Any:
        return conn.execute(sa.select(self.heads).where(self.heads.c.use_case == use_case)).first()

    def _version_row(self, conn: Connection, use_case: str, version: int) -> Any:
        v = self.versions.c
        query = sa.select(self.versions).where(v.use_case == use_case, v.version == version)
        return conn.execute(query).first()

    def _not_found(self, conn: Connection, use_case: str, ref: int | str) -> NotFoundError:
        head = self._head(conn, use_case)
        if head is None:
            return NotFoundError(f"no configuration registered for use case {use_case!r}")
        if ref in _ALIAS_COLUMNS:
            return NotFoundError(f"use case {use_case!r} has no {ref} version")
        return NotFoundError(f"use case {use_case!r} has no version {ref}")

    def get(self, use_case: str, ref: int | str = "production") -> ConfigVersion:
        """A version by number or alias.

        Args:
            use_case: the use case.
            ref: a version number or ``production``, ``candidate``, ``latest``.

        Returns:
            The version, with aliases read in the same statement as its state.
        """
        return self.get_with_revision(use_case, ref)[0]

    def get_with_revision(
        self, use_case: str, ref: int | str = "production"
    ) -> tuple[ConfigVersion, int]:
        """A version and the use case's revision, read in one statement (for caches).

        Args:
            use_case: the use case.
            ref: a version number or an alias.

        Returns:
            ``(version, revision)``.

        Raises:
            NotFoundError: no such use case, version or alias.
        """
        validate_use_case(use_case)
        number = _numeric_ref(ref)
        if number is None and ref not in _ALIAS_COLUMNS:
            raise NotFoundError(f"unknown version or alias {ref!r:.40} (aliases: {ALIASES})")
        h, v = self.heads.c, self.versions.c
        if number is not None:
            if not 1 <= number <= MAX_VERSION:
                raise NotFoundError(f"use case {use_case!r} has no version {number}")
            matches = v.version == number
        else:
            matches = v.version == getattr(h, _ALIAS_COLUMNS[str(ref)])
        query = (
            sa.select(
                self.versions,
                h.latest_version,
                h.production_version,
                h.candidate_version,
                h.revision,
            )
            .select_from(self.heads.join(self.versions, (v.use_case == h.use_case) & matches))
            .where(h.use_case == use_case)
        )
        with read_transaction(self.engine) as conn:
            row = conn.execute(query).first()
            if row is None:
                raise self._not_found(conn, use_case, ref)
        return to_version(row, row), int(row.revision)

    def versions_of(self, use_case: str) -> list[ConfigVersion]:
        """Every version of a use case, oldest first.

        Args:
            use_case: the use case.

        Returns:
            The versions (empty for an unknown use case).
        """
        validate_use_case(use_case)
        with read_transaction(self.engine) as conn:
            head = self._head(conn, use_case)
            rows = conn.execute(
                sa.select(self.versions)
                .where(self.versions.c.use_case == use_case)
                .order_by(self.versions.c.version)
            ).all()
        return [to_version(row, head) for row in rows]

    def history(self, use_case: str) -> list[AuditEntry]:
        """The audit trail of a use case, oldest first.

        Args:
            use_case: the use case.

        Returns:
            Its audit entries (empty for an unknown use case).
        """
        validate_use_case(use_case)
        a = self.audit.c
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(self.audit).where(a.use_case == use_case).order_by(a.id)
            ).all()
        return [audit_entry(r) for r in rows]

    def use_cases(self) -> list[str]:
        """Every use case with at least one version, sorted."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(self.heads.c.use_case).order_by(self.heads.c.use_case))
            return [r.use_case for r in rows]

    def production_versions(self) -> dict[str, int | None]:
        """Production version per use case (None where nothing is in production yet)."""
        h = self.heads.c
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(h.use_case, h.production_version).order_by(h.use_case))
            return {r.use_case: r.production_version for r in rows}

    def latest_version(self, use_case: str) -> int:
        """The highest version published for ``use_case`` (0 when none): pass it as expected.

        Args:
            use_case: the use case.

        Returns:
            The latest version number, 0 for an unknown use case.
        """
        validate_use_case(use_case)
        with read_transaction(self.engine) as conn:
            head = self._head(conn, use_case)
        return 0 if head is None else int(head.latest_version)

    def revisions(self) -> dict[str, int]:
        """Change counter per use case: one cheap query tells a cache whether anything moved."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(self.heads.c.use_case, self.heads.c.revision))
            return {r.use_case: int(r.revision) for r in rows}

    def last_good_approved(
        self, use_case: str, *, before: int | None = None
    ) -> ConfigVersion | None:
        """The newest version that was approved and not rejected, other than current production.

        Args:
            use_case: the use case.
            before: only versions lower than this.

        Returns:
            What an automatic rollback targets, or None.
        """
        validate_use_case(use_case)
        v = self.versions.c
        with read_transaction(self.engine) as conn:
            head = self._head(conn, use_case)
            if head is None:
                return None
            query = sa.select(self.versions).where(
                v.use_case == use_case,
                v.ever_approved.is_(True),
                v.state.in_([ConfigState.APPROVED.value, ConfigState.RETIRED.value]),
            )
            if before is not None:
                query = query.where(v.version < before)
            row = conn.execute(query.order_by(v.version.desc()).limit(1)).first()
            return None if row is None else to_version(row, head)

    def cheapest_approved_meeting(
        self,
        use_case: str,
        *,
        min_quality: float,
        quality_key: str = "quality",
        cost_key: str = "cost_per_request",
    ) -> ConfigVersion | None:
        """The approved (or production) version with the lowest evidence cost meeting a quality.

        Args:
            use_case: the use case.
            min_quality: the evidence quality it must reach.
            quality_key: evidence key of the quality.
            cost_key: evidence key of the cost.

        Returns:
            The cheapest such version (versions lacking either number are skipped), or None.
        """
        best: tuple[float, ConfigVersion] | None = None
        for version in self.versions_of(use_case):
            if version.state not in {ConfigState.APPROVED, ConfigState.PRODUCTION}:
                continue
            quality, cost = version.evidence.get(quality_key), version.evidence.get(cost_key)
            if not all(isinstance(x, int | float) and math.isfinite(x) for x in (quality, cost)):
                continue
            assert isinstance(quality, int | float) and isinstance(cost, int | float)
            if quality >= min_quality and (best is None or cost < best[0]):
                best = (float(cost), version)
        return None if best is None else best[1]

    def snapshot_file(self, use_case: str) -> Path | None:
        """Where the snapshot of ``use_case`` lives (None without a snapshot directory)."""
        return None if self.snapshot_dir is None else snapshot_path(self.snapshot_dir, use_case)
