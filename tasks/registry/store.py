"""The registry store: versioned configurations, lifecycle, aliases and audit in SQL.

SQLAlchemy Core over any URL. The default is a SQLite file in WAL mode (many readers and one
writer across processes; writers take ``BEGIN IMMEDIATE`` and wait on ``busy_timeout``), and a
PostgreSQL URL gives a shared deployment with the same code.

Rules the store enforces:

- payloads are validated on write and never updated (only the lifecycle ``state`` column moves);
- versions count 1, 2, 3... per use case; ``publish`` states the version it expects to be the
  latest and fails with :class:`StaleVersionError` when someone published in between;
- every change of state writes an audit row (who, when, why) in the same transaction;
- each use case has a ``revision`` counter bumped by every change, checked with a conditional
  UPDATE, so two concurrent writers can never both win (also on PostgreSQL's READ COMMITTED).

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

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings
from tasks.registry.model import (
    AuditEntry,
    ConfigState,
    ConfigValidationError,
    ConfigVersion,
    RegistryConfig,
    as_json_object,
    validate_use_case,
)
from tasks.registry.snapshot import snapshot_path, write_snapshot_document

__all__ = [
    "ALIASES",
    "InvalidTransitionError",
    "NotFoundError",
    "RegistryError",
    "RegistryStore",
    "StaleVersionError",
]

ALIASES = ("production", "candidate", "latest")
_PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class RegistryError(LlmoptError):
    """Base of the store's errors."""


class StaleVersionError(RegistryError):
    """The caller acted on an outdated view (another writer got there first); re-read and retry."""


class NotFoundError(RegistryError):
    """No such use case, version or alias."""


class InvalidTransitionError(RegistryError):
    """The lifecycle forbids this move (e.g. promoting a candidate that was never approved)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _text(value: object, name: str, *, limit: int = 2000) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ConfigValidationError(f"{name} must be a non-empty string of at most {limit} chars")
    return value


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.info.pop("begin_mode", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class RegistryStore:
    """Versioned, approved configurations in any SQLAlchemy database.

    ``table_prefix`` lets several registries share one database (tests use a unique prefix per
    test). When ``snapshot_dir`` is set, every change of the production version rewrites that use
    case's JSON snapshot after the transaction commits.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str = "registry_",
        snapshot_dir: Path | None = None,
        create: bool = True,
    ) -> None:
        if not table_prefix or not set(table_prefix) <= _PREFIX_CHARS:
            raise ValueError("table_prefix must be lowercase letters, digits and underscores")
        self.url = url
        self.table_prefix = table_prefix
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self._is_sqlite = url.startswith("sqlite")
        self.engine: Engine = self._make_engine(url)
        self.metadata = sa.MetaData()
        self.heads = sa.Table(
            f"{table_prefix}heads",
            self.metadata,
            sa.Column("use_case", sa.String(64), primary_key=True),
            sa.Column("latest_version", sa.Integer, nullable=False),
            sa.Column("production_version", sa.Integer, nullable=True),
            sa.Column("candidate_version", sa.Integer, nullable=True),
            sa.Column("revision", sa.Integer, nullable=False),
        )
        self.versions = sa.Table(
            f"{table_prefix}versions",
            self.metadata,
            sa.Column("use_case", sa.String(64), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("ever_approved", sa.Boolean, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("checksum", sa.String(80), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("created_by", sa.String(200), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("run_id", sa.String(200), nullable=True),
            sa.Column("evidence", sa.Text, nullable=False),
        )
        self.audit = sa.Table(
            f"{table_prefix}audit",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("use_case", sa.String(64), nullable=False, index=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("from_state", sa.String(16), nullable=True),
            sa.Column("to_state", sa.String(16), nullable=False),
            sa.Column("actor", sa.String(200), nullable=False),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
        )
        if create:
            try:
                self.metadata.create_all(self.engine)
            except DBAPIError:  # another process created the tables between check and create
                self.metadata.create_all(self.engine)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RegistryStore:
        """The store at ``settings.registry_url``, writing snapshots to the settings' folder."""
        if settings.registry_url.startswith("sqlite:///"):
            Path(settings.registry_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        kwargs.setdefault("snapshot_dir", settings.registry_snapshot_dir)
        return cls(settings.registry_url, **kwargs)

    def _make_engine(self, url: str) -> Engine:
        if not self._is_sqlite:
            return sa.create_engine(url, pool_pre_ping=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=sa.pool.StaticPool if url in {"sqlite://", "sqlite:///:memory:"} else None,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine

    def dispose(self) -> None:
        self.engine.dispose()

    def drop_all(self) -> None:
        """Drop this registry's tables (tests, teardown of a per-test prefix)."""
        self.metadata.drop_all(self.engine)
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self._is_sqlite:
                conn.info["begin_mode"] = "IMMEDIATE"  # take the write lock up front: no upgrades
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- reads ----------------------------------------------------------------------------------

    def _head(self, conn: Connection, use_case: str) -> sa.Row[Any] | None:
        return conn.execute(sa.select(self.heads).where(self.heads.c.use_case == use_case)).first()

    def _version_row(self, conn: Connection, use_case: str, version: int) -> sa.Row[Any] | None:
        v = self.versions.c
        query = sa.select(self.versions).where(v.use_case == use_case, v.version == version)
        return conn.execute(query).first()

    def _to_version(self, row: sa.Row[Any], head: sa.Row[Any] | None) -> ConfigVersion:
        aliases = []
        if head is not None:
            if head.production_version == row.version:
                aliases.append("production")
            if head.candidate_version == row.version:
                aliases.append("candidate")
            if head.latest_version == row.version:
                aliases.append("latest")
        return ConfigVersion(
            use_case=row.use_case,
            version=int(row.version),
            state=ConfigState(row.state),
            config=RegistryConfig.from_dict(json.loads(row.payload)),
            checksum=row.checksum,
            created_at=row.created_at,
            created_by=row.created_by,
            reason=row.reason,
            run_id=row.run_id,
            evidence=json.loads(row.evidence),
            aliases=tuple(aliases),
        )

    @staticmethod
    def _resolve(head: sa.Row[Any] | None, use_case: str, ref: int | str) -> int:
        if head is None:
            raise NotFoundError(f"no configuration registered for use case {use_case!r}")
        if isinstance(ref, int) and not isinstance(ref, bool):
            return ref
        if isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 9:
            return int(ref)
        column = {"production": "production_version", "candidate": "candidate_version"}
        column["latest"] = "latest_version"
        if ref not in column:
            raise NotFoundError(f"unknown version or alias {ref!r} (aliases: {ALIASES})")
        version = getattr(head, column[str(ref)])
        if version is None:
            raise NotFoundError(f"use case {use_case!r} has no {ref} version")
        return int(version)

    def get(self, use_case: str, ref: int | str = "production") -> ConfigVersion:
        """A version by number or alias (``production``, ``candidate``, ``latest``)."""
        return self.get_with_revision(use_case, ref)[0]

    def get_with_revision(
        self, use_case: str, ref: int | str = "production"
    ) -> tuple[ConfigVersion, int]:
        """A version and the use case's revision, read in one transaction (for caches)."""
        validate_use_case(use_case)
        with self._read() as conn:
            head = self._head(conn, use_case)
            version = self._resolve(head, use_case, ref)
            row = self._version_row(conn, use_case, version)
            if head is None or row is None:
                raise NotFoundError(f"use case {use_case!r} has no version {version}")
            return self._to_version(row, head), int(head.revision)

    def versions_of(self, use_case: str) -> list[ConfigVersion]:
        validate_use_case(use_case)
        with self._read() as conn:
            head = self._head(conn, use_case)
            rows = conn.execute(
                sa.select(self.versions)
                .where(self.versions.c.use_case == use_case)
                .order_by(self.versions.c.version)
            ).all()
            return [self._to_version(row, head) for row in rows]

    def history(self, use_case: str) -> list[AuditEntry]:
        """The audit trail of a use case, oldest first."""
        validate_use_case(use_case)
        a = self.audit.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(self.audit).where(a.use_case == use_case).order_by(a.id)
            ).all()
        return [
            AuditEntry(
                use_case=r.use_case,
                version=int(r.version),
                action=r.action,
                from_state=r.from_state,
                to_state=r.to_state,
                actor=r.actor,
                at=r.at,
                reason=r.reason,
            )
            for r in rows
        ]

    def use_cases(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(sa.select(self.heads.c.use_case).order_by(self.heads.c.use_case))
            return [r.use_case for r in rows]

    def latest_version(self, use_case: str) -> int:
        """The highest version published for ``use_case`` (0 when none): pass it as expected."""
        validate_use_case(use_case)
        with self._read() as conn:
            head = self._head(conn, use_case)
        return 0 if head is None else int(head.latest_version)

    def revisions(self) -> dict[str, int]:
        """Change counter per use case: one cheap query tells a cache whether anything moved."""
        with self._read() as conn:
            rows = conn.execute(sa.select(self.heads.c.use_case, self.heads.c.revision))
            return {r.use_case: int(r.revision) for r in rows}

    def last_good_approved(
        self, use_case: str, *, before: int | None = None
    ) -> ConfigVersion | None:
        """The newest version that was approved and not rejected, other than current production.

        ``before`` restricts to versions lower than it. This is what an automatic rollback targets.
        """
        validate_use_case(use_case)
        v = self.versions.c
        with self._read() as conn:
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
            return None if row is None else self._to_version(row, head)

    def cheapest_approved_meeting(
        self,
        use_case: str,
        *,
        min_quality: float,
        quality_key: str = "quality",
        cost_key: str = "cost_per_request",
    ) -> ConfigVersion | None:
        """The approved (or production) version with the lowest evidence cost whose evidence
        quality is at least ``min_quality``; versions lacking either number are skipped."""
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

    # -- writes ---------------------------------------------------------------------------------

    def _audit(
        self,
        conn: Connection,
        use_case: str,
        version: int,
        action: str,
        *,
        from_state: str | None,
        to_state: str,
        actor: str,
        reason: str,
    ) -> None:
        conn.execute(
            self.audit.insert().values(
                use_case=use_case,
                version=version,
                action=action,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                at=_now(),
                reason=reason,
            )
        )

    def _bump(self, conn: Connection, head: sa.Row[Any], **values: Any) -> None:
        h = self.heads.c
        result = conn.execute(
            self.heads.update()
            .where(h.use_case == head.use_case, h.revision == head.revision)
            .values(revision=head.revision + 1, **values)
        )
        if result.rowcount != 1:
            raise StaleVersionError(f"{head.use_case}: changed concurrently; re-read and retry")

    def _set_state(self, conn: Connection, use_case: str, version: int, state: ConfigState) -> None:
        v = self.versions.c
        values: dict[str, Any] = {"state": state.value}
        if state in {ConfigState.APPROVED, ConfigState.PRODUCTION}:
            values["ever_approved"] = True
        conn.execute(
            self.versions.update()
            .where(v.use_case == use_case, v.version == version)
            .values(**values)
        )

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

        ``expected_version`` is the latest version the caller saw (0 for a new use case); if the
        registry has moved on, :class:`StaleVersionError` and nothing is written.
        """
        validate_use_case(use_case)
        if not isinstance(config, RegistryConfig):
            raise ConfigValidationError("config must be a RegistryConfig")
        if config.use_case != use_case:
            raise ConfigValidationError(f"config is for {config.use_case!r}, not {use_case!r}")
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise ConfigValidationError("expected_version must be an integer")
        _text(actor, "actor", limit=200)
        _text(reason, "reason")
        if run_id is not None:
            _text(run_id, "run_id", limit=200)
        evidence_json = json.dumps(as_json_object(evidence or {}, "evidence"), sort_keys=True)
        payload = json.dumps(config.to_dict(), sort_keys=True)
        try:
            with self._write() as conn:
                head = self._head(conn, use_case)
                latest = 0 if head is None else int(head.latest_version)
                if expected_version != latest:
                    raise StaleVersionError(
                        f"{use_case}: expected latest version {expected_version}, "
                        f"registry has {latest}"
                    )
                version = latest + 1
                conn.execute(
                    self.versions.insert().values(
                        use_case=use_case,
                        version=version,
                        state=ConfigState.CANDIDATE.value,
                        ever_approved=False,
                        payload=payload,
                        checksum=config.checksum,
                        created_at=_now(),
                        created_by=actor,
                        reason=reason,
                        run_id=run_id,
                        evidence=evidence_json,
                    )
                )
                if head is None:
                    conn.execute(
                        self.heads.insert().values(
                            use_case=use_case,
                            latest_version=version,
                            production_version=None,
                            candidate_version=version,
                            revision=1,
                        )
                    )
                else:
                    self._bump(conn, head, latest_version=version, candidate_version=version)
                self._audit(
                    conn,
                    use_case,
                    version,
                    "publish",
                    from_state=None,
                    to_state="candidate",
                    actor=actor,
                    reason=reason,
                )
        except IntegrityError as exc:  # a concurrent publisher inserted the same version first
            raise StaleVersionError(f"{use_case}: version {expected_version + 1} exists") from exc
        return self.get(use_case, version)

    def _transition(
        self,
        use_case: str,
        version: int,
        *,
        action: str,
        allowed_from: set[ConfigState],
        to_state: ConfigState,
        actor: str,
        reason: str,
        expected_production: int | None = None,
        check_production: bool = False,
    ) -> ConfigVersion:
        validate_use_case(use_case)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ConfigValidationError("version must be an integer")
        _text(actor, "actor", limit=200)
        _text(reason, "reason")
        changed_production = False
        with self._write() as conn:
            head = self._head(conn, use_case)
            row = self._version_row(conn, use_case, version) if head is not None else None
            if head is None or row is None:
                raise NotFoundError(f"use case {use_case!r} has no version {version}")
            current = ConfigState(row.state)
            if check_production and head.production_version != expected_production:
                raise StaleVersionError(
                    f"{use_case}: expected production version {expected_production}, "
                    f"registry has {head.production_version}"
                )
            if current not in allowed_from or (action == "rollback" and not row.ever_approved):
                raise InvalidTransitionError(
                    f"{use_case} v{version}: cannot {action} a {current.value} configuration"
                )
            head_values: dict[str, Any] = {}
            if to_state is ConfigState.PRODUCTION:
                previous = head.production_version
                if previous is not None and previous != version:
                    self._set_state(conn, use_case, previous, ConfigState.RETIRED)
                    self._audit(
                        conn,
                        use_case,
                        previous,
                        "retire",
                        from_state=ConfigState.PRODUCTION.value,
                        to_state=ConfigState.RETIRED.value,
                        actor=actor,
                        reason=f"replaced by v{version} ({action}): {reason}",
                    )
                head_values["production_version"] = version
                changed_production = True
            if head.candidate_version == version and to_state is not ConfigState.CANDIDATE:
                head_values["candidate_version"] = None
            self._set_state(conn, use_case, version, to_state)
            self._bump(conn, head, **head_values)
            self._audit(
                conn,
                use_case,
                version,
                action,
                from_state=current.value,
                to_state=to_state.value,
                actor=actor,
                reason=reason,
            )
        if changed_production and self.snapshot_dir is not None:
            self.write_snapshot(use_case)
        return self.get(use_case, version)

    def approve(self, use_case: str, version: int, *, actor: str, comment: str) -> ConfigVersion:
        """A human (or the auto-approval policy) accepts a candidate."""
        return self._transition(
            use_case,
            version,
            action="approve",
            allowed_from={ConfigState.CANDIDATE},
            to_state=ConfigState.APPROVED,
            actor=actor,
            reason=comment,
        )

    def reject(self, use_case: str, version: int, *, actor: str, comment: str) -> ConfigVersion:
        """Refuse a candidate (or an approved version not yet in production)."""
        return self._transition(
            use_case,
            version,
            action="reject",
            allowed_from={ConfigState.CANDIDATE, ConfigState.APPROVED},
            to_state=ConfigState.REJECTED,
            actor=actor,
            reason=comment,
        )

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

        With ``check_expected=True``, fails with :class:`StaleVersionError` unless the current
        production version is ``expected_production`` (None = no production yet).
        """
        return self._transition(
            use_case,
            version,
            action="promote",
            allowed_from={ConfigState.APPROVED},
            to_state=ConfigState.PRODUCTION,
            actor=actor,
            reason=comment,
            expected_production=expected_production,
            check_production=check_expected,
        )

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
        """Put an earlier approved version back in production (default: the last good one)."""
        if to_version is None:
            current = self.get(use_case, "production")
            target = self.last_good_approved(use_case, before=current.version)
            if target is None:
                target = self.last_good_approved(use_case)
            if target is None:
                raise InvalidTransitionError(f"{use_case}: no earlier approved version to roll to")
            to_version = target.version
        return self._transition(
            use_case,
            to_version,
            action="rollback",
            allowed_from={ConfigState.APPROVED, ConfigState.RETIRED},
            to_state=ConfigState.PRODUCTION,
            actor=actor,
            reason=reason,
            expected_production=expected_production,
            check_production=check_expected,
        )

    # -- snapshots ------------------------------------------------------------------------------

    def write_snapshot(self, use_case: str, directory: Path | None = None) -> Path:
        """Write the production version of ``use_case`` as an atomic JSON file; returns its path."""
        target = directory or self.snapshot_dir
        if target is None:
            raise ValueError("no snapshot directory configured")
        return write_snapshot_document(Path(target), self.get(use_case).to_document())

    def write_snapshots(self, directory: Path | None = None) -> list[Path]:
        """Snapshots for every use case that has a production version."""
        paths = []
        for use_case in self.use_cases():
            try:
                paths.append(self.write_snapshot(use_case, directory))
            except NotFoundError:
                continue
        return paths

    def snapshot_file(self, use_case: str) -> Path | None:
        return None if self.snapshot_dir is None else snapshot_path(self.snapshot_dir, use_case)
