"""Routing tables: one traffic mix per context value, resolved locally by every serving process.

A routing table says, for one context column (``user_segment``, ``task_type``, ...), which arms
(config ids) serve a request with that context value and with what weights, plus a ``default``
row for values the table has never seen (a new segment, a missing field). It travels inside a
registry configuration (``config.metadata["routing"]``), so it is versioned, approved, audited
and rolled back like any other plan; its arms are the configuration's traffic arms.

Resolution is local and deterministic: :meth:`RoutingTable.assign` hashes ``(salt, context
value, arm, unit_id)`` with the same weighted rendezvous hashing as
:mod:`tasks.registry.assignment`, so a unit keeps its arm across processes and machines, and a
change in one context's row never moves units of another context. Pure standard library: serving
imports it without Prefect, DuckDB or MLflow.

Example:
    >>> table = RoutingTable(
    ...     context="user_segment",
    ...     rows={"free": {"small": 1.0}, "pro": {"big": 0.9, "small": 0.1}},
    ...     default={"big": 0.5, "small": 0.5},
    ...     salt="support",
    ... )
    >>> table.assign("user-7", context={"user_segment": "free"})
    'small'
    >>> table.row_for({"user_segment": "brand-new"})[0]
    '*'
    >>> RoutingTable.from_dict(table.to_dict()) == table
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.registry.assignment import assign_arm, assign_weighted
from tasks.registry.model import Arm, ConfigValidationError, RegistryConfig

__all__ = ["DEFAULT_ROW", "METADATA_KEY", "RoutingTable", "assign_routed", "routing_of"]

DEFAULT_ROW = "*"
METADATA_KEY = "routing"
_TOLERANCE = 1e-6
_MAX_ROWS = 1000


def _row(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigValidationError(f"routing {where}: must be a non-empty object of weights")
    row: dict[str, float] = {}
    for arm, weight in value.items():
        if not isinstance(arm, str) or not arm:
            raise ConfigValidationError(f"routing {where}: arm ids must be non-empty strings")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigValidationError(f"routing {where}: weight of {arm!r} is not a number")
        number = float(weight)
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise ConfigValidationError(f"routing {where}: weight of {arm!r} must be in [0, 1]")
        row[arm] = number
    total = math.fsum(row.values())
    if abs(total - 1.0) > _TOLERANCE:
        raise ConfigValidationError(f"routing {where}: weights sum to {total!r}, not 1")
    if not any(w > 0 for w in row.values()):
        raise ConfigValidationError(f"routing {where}: no arm has a positive weight")
    return row


@dataclass(frozen=True, kw_only=True)
class RoutingTable:
    """Context value -> {config id: weight}; ``default`` serves every other value.

    Args:
        context: the context field the rows are keyed by.
        rows: weights per context value (each row sums to 1).
        default: weights for values not in ``rows`` (and for a request without the field).
        salt: hashing salt (defaults to the use case when built by the nightly flow).
        metadata: free JSON (objective, estimates, evidence summary).
    """

    context: str
    rows: Mapping[str, Mapping[str, float]]
    default: Mapping[str, float]
    salt: str = "routing"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.context, str) or not self.context:
            raise ConfigValidationError("routing context must be a non-empty string")
        if not isinstance(self.rows, Mapping) or len(self.rows) > _MAX_ROWS:
            raise ConfigValidationError(f"routing rows must be an object of <= {_MAX_ROWS} rows")
        rows = {str(k): _row(v, f"row {k!r}") for k, v in self.rows.items()}
        if DEFAULT_ROW in rows:
            raise ConfigValidationError(f"routing rows: {DEFAULT_ROW!r} is reserved for default")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "default", _row(self.default, "default row"))
        if not isinstance(self.salt, str) or not self.salt:
            raise ConfigValidationError("routing salt must be a non-empty string")
        if not isinstance(self.metadata, Mapping):
            raise ConfigValidationError("routing metadata must be an object")
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def arms(self) -> tuple[str, ...]:
        """Every config id with a positive weight somewhere in the table, sorted."""
        found = {a for row in (*self.rows.values(), self.default) for a, w in row.items() if w > 0}
        return tuple(sorted(found))

    def row_for(self, context: Mapping[str, object] | None) -> tuple[str, Mapping[str, float]]:
        """``(row key, weights)`` for a request's context (``'*'`` when the default applies)."""
        value = None if context is None else context.get(self.context)
        key = None if value is None else str(value)
        if key is not None and key in self.rows:
            return key, self.rows[key]
        return DEFAULT_ROW, self.default

    def assign(self, unit_id: str, *, context: Mapping[str, object] | None = None) -> str:
        """The config id serving ``unit_id`` with this ``context`` (deterministic, local).

        Args:
            unit_id: the randomisation unit (user, session, conversation).
            context: the request's context fields; only ``self.context`` is read.

        Returns:
            The chosen config id.
        """
        key, weights = self.row_for(context)
        return assign_weighted(
            sorted(weights.items()), salt=f"{self.salt}\x1f{key}", unit_id=str(unit_id)
        )

    def as_policy(self) -> dict[str, dict[str, float]]:
        """``{value: row, '*': default}``: the policy form ``llmopt offpolicy --policy`` reads."""
        return {**{k: dict(v) for k, v in self.rows.items()}, DEFAULT_ROW: dict(self.default)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "rows": {k: dict(v) for k, v in sorted(self.rows.items())},
            "default": dict(self.default),
            "salt": self.salt,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingTable:
        """Validate a routing document (as stored in a registry configuration's metadata).

        Raises:
            ConfigValidationError: unknown or missing fields, weights that do not sum to 1.
        """
        if not isinstance(data, Mapping):
            raise ConfigValidationError("routing table must be a JSON object")
        allowed = {"context", "rows", "default", "salt", "metadata"}
        unknown = set(data) - allowed
        missing = {"context", "rows", "default"} - set(data)
        if unknown or missing:
            raise ConfigValidationError(
                f"routing table: unknown {sorted(unknown)} / missing {sorted(missing)} field(s)"
            )
        return cls(
            context=data["context"],
            rows=data["rows"],
            default=data["default"],
            salt=data.get("salt", "routing"),
            metadata=data.get("metadata", {}),
        )


def routing_of(config: RegistryConfig) -> RoutingTable | None:
    """The routing table a registry configuration carries, or ``None``.

    Raises:
        ConfigValidationError: the table names a config id that is not one of the arms.
    """
    data = config.metadata.get(METADATA_KEY)
    if data is None:
        return None
    table = RoutingTable.from_dict(data)
    known = {arm.config_id or arm.arm_id for arm in config.arms}
    unknown = sorted(set(table.arms) - known)
    if unknown:
        raise ConfigValidationError(f"routing names config ids without an arm: {unknown}")
    return table


def assign_routed(
    config: RegistryConfig, unit_id: str, *, context: Mapping[str, object] | None = None
) -> Arm:
    """The arm serving ``unit_id``: by the routing table when the config carries one.

    Args:
        config: the registry configuration (production alias, usually).
        unit_id: the randomisation unit.
        context: the request's context fields.

    Returns:
        The arm; without a routing table, :func:`tasks.registry.assignment.assign_arm`'s.
    """
    table = routing_of(config)
    if table is None:
        return assign_arm(config, unit_id)
    chosen = table.assign(unit_id, context=context)
    return next(arm for arm in config.arms if (arm.config_id or arm.arm_id) == chosen)
