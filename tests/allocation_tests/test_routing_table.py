"""The routing table in the registry: validation, deterministic local assignment, default row."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scipy import stats

from tasks.registry.model import Arm, ConfigValidationError, ModelParams, RegistryConfig
from tasks.registry.routing import RoutingTable, assign_routed, routing_of

TABLE = RoutingTable(
    context="user_segment",
    rows={"free": {"weak": 1.0}, "pro": {"strong": 0.7, "weak": 0.3}},
    default={"strong": 0.5, "weak": 0.5},
    salt="support-route",
)


def test_assignment_is_deterministic_and_follows_the_row_weights() -> None:
    units = [f"user-{i}" for i in range(20_000)]
    pro = [TABLE.assign(u, context={"user_segment": "pro"}) for u in units]
    assert pro == [TABLE.assign(u, context={"user_segment": "pro"}) for u in units]
    strong = sum(a == "strong" for a in pro)
    assert stats.binomtest(strong, len(units), 0.7).pvalue > 0.001
    assert {TABLE.assign(u, context={"user_segment": "free"}) for u in units[:500]} == {"weak"}


def test_unseen_or_missing_context_values_use_the_default_row() -> None:
    assert TABLE.row_for({"user_segment": "brand-new"}) == ("*", TABLE.default)
    assert TABLE.row_for({}) == ("*", TABLE.default)
    assert TABLE.row_for(None) == ("*", TABLE.default)
    assert TABLE.row_for({"user_segment": "pro", "region": "eu"})[0] == "pro"
    units = [f"u{i}" for i in range(4000)]
    strong = sum(TABLE.assign(u, context={"user_segment": "x"}) == "strong" for u in units)
    assert stats.binomtest(strong, len(units), 0.5).pvalue > 0.001


def test_changing_one_row_never_moves_units_of_another_row() -> None:
    changed = RoutingTable(
        context="user_segment",
        rows={"free": {"weak": 0.2, "strong": 0.8}, "pro": {"strong": 0.7, "weak": 0.3}},
        default={"strong": 0.5, "weak": 0.5},
        salt="support-route",
    )
    units = [f"user-{i}" for i in range(2000)]
    ctx = {"user_segment": "pro"}
    assert [TABLE.assign(u, context=ctx) for u in units] == [
        changed.assign(u, context=ctx) for u in units
    ]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"context": "s", "rows": {"a": {"x": 0.6}}, "default": {"x": 1.0}}, "sum to"),
        ({"context": "s", "rows": {}, "default": {"x": 1.5}}, r"in \[0, 1\]"),
        ({"context": "s", "rows": {"*": {"x": 1.0}}, "default": {"x": 1.0}}, "reserved"),
        ({"context": "s", "rows": {}}, "missing"),
        ({"context": "s", "rows": {}, "default": {"x": 1.0}, "extra": 1}, "unknown"),
        ({"context": "", "rows": {}, "default": {"x": 1.0}}, "non-empty"),
    ],
)
def test_bad_documents_are_refused_with_the_reason(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigValidationError, match=message):
        RoutingTable.from_dict(doc)


def _config(table: RoutingTable) -> RegistryConfig:
    arms = tuple(
        Arm(arm_id=a, params=ModelParams(model=a), weight=w, role="bandit", config_id=a)
        for a, w in (("strong", 0.6), ("weak", 0.4))
    )
    return RegistryConfig(
        use_case="support-route",
        params=ModelParams(model="strong"),
        traffic=arms,
        allocation="bandit",
        metadata={"routing": table.to_dict()},
    )


def test_a_registry_config_carries_the_table_and_serving_resolves_arms() -> None:
    config = RegistryConfig.from_dict(_config(TABLE).to_dict())  # a stored/served round trip
    assert routing_of(config) == TABLE
    arm = assign_routed(config, "user-1", context={"user_segment": "free"})
    assert arm.config_id == "weak" and arm.params.model == "weak"
    bad = RoutingTable(context="s", rows={}, default={"nowhere": 1.0})
    with pytest.raises(ConfigValidationError, match="without an arm"):
        routing_of(_config(bad))
    plain = RegistryConfig(use_case="support-route", params=ModelParams(model="m"))
    assert routing_of(plain) is None
    assert assign_routed(plain, "u", context={"s": "x"}).arm_id == "production"


def test_serving_imports_the_table_without_prefect_duckdb_or_mlflow() -> None:
    code = (
        "import sys, tasks.registry.routing; "
        "heavy = [m for m in ('prefect', 'duckdb', 'mlflow', 'sqlalchemy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
