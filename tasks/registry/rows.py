"""Row <-> object conversion and the argument checks every store write shares.

Kept apart from :mod:`tasks.registry.store` so the store reads as the lifecycle it implements.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from tasks.registry.model import (
    AuditEntry,
    ConfigState,
    ConfigValidationError,
    ConfigVersion,
    RegistryConfig,
)

__all__ = [
    "ALIASES",
    "MAX_VERSION",
    "audit_entry",
    "check_text",
    "check_version",
    "now",
    "to_version",
]

ALIASES = ("production", "candidate", "latest")
MAX_VERSION = 2**31 - 1  # PostgreSQL INTEGER; SQLite would take 2**63 but nobody has that many


def now() -> str:
    """The current UTC time as ISO 8601 with microseconds (what audit rows carry)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def check_text(value: object, name: str, *, limit: int = 2000) -> str:
    """A non-empty string every database stores as given (no NUL, no lone surrogate).

    Args:
        value: what the caller passed.
        name: the field name for the error message.
        limit: maximum length in characters.

    Returns:
        ``value`` unchanged.

    Raises:
        ConfigValidationError: when any rule is broken.
    """
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ConfigValidationError(f"{name} must be a non-empty string of at most {limit} chars")
    if "\x00" in value:
        raise ConfigValidationError(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigValidationError(f"{name} must be valid Unicode (no lone surrogates)") from None
    return value


def check_version(value: object, name: str, *, minimum: int = 1) -> int:
    """An integer version number in ``[minimum, 2**31 - 1]`` (never a bool).

    Args:
        value: what the caller passed.
        name: the field name for the error message.
        minimum: the smallest allowed value (0 for "expected latest" of a new use case).

    Returns:
        ``value`` as an int.

    Raises:
        ConfigValidationError: when it is not such an integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_VERSION:
        raise ConfigValidationError(f"{name} must be an integer in [{minimum}, {MAX_VERSION}]")
    return value


def aliases_of(
    version: int, latest: int | None, production: int | None, candidate: int | None
) -> tuple[str, ...]:
    """The aliases pointing at ``version`` given the head's three pointers."""
    pairs = (("production", production), ("candidate", candidate), ("latest", latest))
    return tuple(name for name, target in pairs if target == version)


def to_version(row: Any, head: Any | None) -> ConfigVersion:
    """A :class:`ConfigVersion` from a versions row and its use case's head (or a joined row).

    Args:
        row: a row with the versions columns.
        head: a row with ``latest_version``, ``production_version``, ``candidate_version``, read
            in the same statement or transaction as ``row`` (None: no aliases).

    Returns:
        The version with its aliases.
    """
    aliases: tuple[str, ...] = ()
    if head is not None:
        aliases = aliases_of(
            row.version, head.latest_version, head.production_version, head.candidate_version
        )
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
        aliases=aliases,
    )


def audit_entry(r: sa.Row[Any]) -> AuditEntry:
    """An :class:`AuditEntry` from an audit row."""
    return AuditEntry(
        use_case=r.use_case,
        version=int(r.version),
        action=r.action,
        from_state=r.from_state,
        to_state=r.to_state,
        actor=r.actor,
        at=r.at,
        reason=r.reason,
    )
