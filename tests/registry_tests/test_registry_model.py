"""Validation on write and on read: every rule of the configuration model, and round trips."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.registry.model import (
    Arm,
    ChecksumMismatchError,
    ConfigState,
    ConfigValidationError,
    ConfigVersion,
    ModelParams,
    RegistryConfig,
    checksum_of,
    validate_use_case,
)


def _params(**overrides: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", **overrides}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.01),
        ("temperature", 2.0001),
        ("temperature", math.nan),
        ("temperature", "0.5"),
        ("temperature", True),
        ("top_p", 0.0),
        ("top_p", 1.0001),
        ("max_tokens", 0),
        ("max_tokens", -5),
        ("max_tokens", 12.0),
        ("max_tokens", True),
        ("model", ""),
        ("model", "gpt 4o"),
        ("model", 7),
        ("prompt_id", "../x"),
    ],
)
def test_bad_params_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ConfigValidationError, match=field):
        ModelParams(**_params(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 0.0), ("temperature", 2.0), ("top_p", 1.0), ("max_tokens", 1)],
)
def test_boundary_params_are_accepted(field: str, value: Any) -> None:
    assert getattr(ModelParams(**_params(**{field: value})), field) == value


@pytest.mark.parametrize(
    "name",
    ["", "A", "Support", "../etc", "..", "%2e%2e", "a/b", "-lead", ".hidden", "a" * 65, "a b", 3],
)
def test_bad_use_case_names_are_refused(name: Any) -> None:
    with pytest.raises(ConfigValidationError, match="use_case"):
        validate_use_case(name)


@pytest.mark.parametrize("name", ["a", "support-summarize", "v1.2_x-y", "0" + "a" * 63])
def test_good_use_case_names_pass(name: str) -> None:
    assert validate_use_case(name) == name


def _arms(*weights: float) -> tuple[Arm, ...]:
    return tuple(
        Arm(arm_id=f"a{i}", params=ModelParams(model="m"), weight=w) for i, w in enumerate(weights)
    )


def test_weights_must_sum_to_one_within_1e_9() -> None:
    base = ModelParams(model="m")
    RegistryConfig(use_case="uc", params=base, traffic=_arms(0.5, 0.5 + 5e-10))
    with pytest.raises(ConfigValidationError, match="sum to 1"):
        RegistryConfig(use_case="uc", params=base, traffic=_arms(0.5, 0.5 + 5e-9))
    with pytest.raises(ConfigValidationError, match="sum to 1"):
        RegistryConfig(use_case="uc", params=base, traffic=_arms(0.3, 0.3))


def test_arm_rules() -> None:
    base = ModelParams(model="m")
    with pytest.raises(ConfigValidationError, match="unique"):
        RegistryConfig(
            use_case="uc",
            params=base,
            traffic=(Arm(arm_id="x", params=base, weight=0.5),) * 2,
        )
    with pytest.raises(ConfigValidationError, match="weight"):
        Arm(arm_id="x", params=base, weight=1.5)
    with pytest.raises(ConfigValidationError, match="role"):
        Arm(arm_id="x", params=base, weight=1.0, role="vip")


def test_from_dict_refuses_unknown_and_missing_fields() -> None:
    good = RegistryConfig(use_case="uc", params=ModelParams(model="m")).to_dict()
    with pytest.raises(ConfigValidationError, match="unknown"):
        RegistryConfig.from_dict({**good, "surprise": 1})
    with pytest.raises(ConfigValidationError, match="missing"):
        RegistryConfig.from_dict({"use_case": "uc"})
    with pytest.raises(ConfigValidationError, match="params"):
        RegistryConfig.from_dict({**good, "params": ["m"]})
    with pytest.raises(ConfigValidationError, match="traffic"):
        RegistryConfig.from_dict({**good, "traffic": "all"})
    with pytest.raises(ConfigValidationError, match="metadata"):
        RegistryConfig.from_dict({**good, "metadata": {"x": math.inf}})


def test_default_salt_is_the_use_case_and_no_plan_means_one_production_arm() -> None:
    config = RegistryConfig(use_case="uc", params=ModelParams(model="m"))
    assert config.salt == "uc"
    (arm,) = config.arms
    assert (arm.arm_id, arm.weight, arm.params) == ("production", 1.0, config.params)


def _document(config: RegistryConfig) -> dict[str, Any]:
    return ConfigVersion(
        use_case=config.use_case,
        version=3,
        state=ConfigState.PRODUCTION,
        config=config,
        checksum=config.checksum,
        created_at="2026-10-01T00:00:00+00:00",
        created_by="me",
        reason="test",
        evidence={"quality": 0.8},
    ).to_document()


def test_document_round_trip_and_tamper_detection(make_config: Any) -> None:
    config = make_config(weights=(0.7, 0.3))
    doc = json.loads(json.dumps(_document(config)))
    assert ConfigVersion.from_document(doc).config == config
    tampered = json.loads(json.dumps(doc))
    tampered["config"]["traffic"][0]["weight"] = 0.6
    tampered["config"]["traffic"][1]["weight"] = 0.4
    with pytest.raises(ChecksumMismatchError):
        ConfigVersion.from_document(tampered)
    for key, value in [("version", 0), ("state", "live"), ("schema_version", 99)]:
        with pytest.raises(ConfigValidationError):
            ConfigVersion.from_document({**doc, key: value})
    with pytest.raises(ConfigValidationError):
        ConfigVersion.from_document([doc])


_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
_params_st = st.builds(
    ModelParams,
    model=_names,
    provider=st.none() | _names,
    prompt_id=st.none() | _names,
    temperature=st.none() | st.floats(0.0, 2.0),
    top_p=st.none() | st.floats(1e-6, 1.0),
    max_tokens=st.none() | st.integers(1, 200_000),
)


@st.composite
def _configs(draw: st.DrawFn) -> RegistryConfig:
    raw = draw(st.lists(st.integers(1, 1000), min_size=0, max_size=6))
    total = sum(raw)
    weights = [w / total for w in raw]
    if weights:
        weights[-1] = 1.0 - math.fsum(weights[:-1])
    traffic = tuple(
        Arm(arm_id=f"arm{i}", params=draw(_params_st), weight=w) for i, w in enumerate(weights)
    )
    return RegistryConfig(
        use_case=draw(_names),
        params=draw(_params_st),
        traffic=traffic,
        salt=draw(st.text(max_size=20)),
    )


@settings(max_examples=60, deadline=None)
@given(_configs())
def test_any_valid_config_round_trips_with_a_stable_checksum(config: RegistryConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    again = RegistryConfig.from_dict(data)
    assert again == config
    assert checksum_of(again.to_dict()) == config.checksum
    assert ConfigVersion.from_document(_document(config)).checksum == config.checksum
