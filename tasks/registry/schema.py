"""The registry's tables and engines: SQLite in WAL mode by default, any SQLAlchemy URL otherwise.

SQLite: many readers and one writer across processes; writers take ``BEGIN IMMEDIATE`` (the write
lock up front, no lock upgrades) and wait on ``busy_timeout``; a read transaction sees one
snapshot of the WAL. PostgreSQL: writers rely on a conditional UPDATE of the use case's
``revision``; readers that need more than one statement run in a REPEATABLE READ transaction so
every statement sees the same committed state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = ["RegistryTables", "make_engine", "read_transaction", "write_transaction"]

_PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class RegistryTables:
    """``heads`` (one row per use case), ``versions`` (immutable payloads) and ``audit``.

    Args:
        table_prefix: lowercase letters, digits and underscores; several registries can share a
            database under different prefixes (tests use one per test).
    """

    def __init__(self, table_prefix: str) -> None:
        if not table_prefix or not set(table_prefix) <= _PREFIX_CHARS:
            raise ValueError("table_prefix must be lowercase letters, digits and underscores")
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.info.pop("begin_mode", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL, a busy timeout and explicit BEGIN modes.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).

    Returns:
        The engine (connections are opened lazily).
    """
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        poolclass=sa.pool.StaticPool if url in {"sqlite://", "sqlite:///:memory:"} else None,
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: ``BEGIN IMMEDIATE``); commits on success.

    Args:
        engine: from :func:`make_engine`.

    Yields:
        The connection inside the transaction.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["begin_mode"] = "IMMEDIATE"
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read transaction whose statements all see one committed state.

    Args:
        engine: from :func:`make_engine`.

    Yields:
        The connection (PostgreSQL: REPEATABLE READ, read only; SQLite: one WAL snapshot).
    """
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ") if postgres else raw
        with conn.begin():
            if postgres:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield conn
