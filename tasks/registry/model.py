"""What a registry entry is: a validated, immutable configuration plus its version record.

Pure standard library on purpose: serving processes import this through the client, and a payload
read from the network or a file is validated by exactly the same code that validated it on write.

A configuration names the production model call (model, provider, prompt, sampling parameters) and,
optionally, a traffic plan: arms, each with its own parameters and a weight, summing to 1, plus the
hashing salt that assigns units to arms (experiments, exploration candidates, bandit weights).
The payload is checksummed over its canonical JSON, so any reader can prove that what it got is
what was written.

Example:
    >>> cfg = RegistryConfig(
    ...     use_case="support-summarize",
    ...     params=ModelParams(model="gpt-4o-mini", provider="openai", temperature=0.2),
    ... )
    >>> RegistryConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> checksum_of(cfg.to_dict())[:7]
    'sha256:'

Size: the payload classes validate each other (params inside arms inside a config inside a
version document); one module keeps every rule a reader and a writer share in one place.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from tasks.core.errors import LlmoptError

__all__ = [
    "ARM_ROLES",
    "SCHEMA_VERSION",
    "USE_CASE_PATTERN",
    "Arm",
    "AuditEntry",
    "ChecksumMismatchError",
    "ConfigState",
    "ConfigValidationError",
    "ConfigVersion",
    "ModelParams",
    "RegistryConfig",
    "as_json_object",
    "canonical_json",
    "checksum_of",
    "validate_use_case",
]

SCHEMA_VERSION = 1
USE_CASE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+|=-]{0,199}$")  # | = : search config ids
ARM_ROLES = ("production", "experiment", "exploration", "rollout", "bandit")
WEIGHT_TOLERANCE = 1e-9
MAX_JSON_OBJECT_BYTES = 256 * 1024


class ConfigValidationError(LlmoptError, ValueError):
    """A configuration or document breaks a rule; the message names the field."""


class ChecksumMismatchError(ConfigValidationError):
    """A document's payload does not hash to the checksum it carries (torn or tampered)."""


class ConfigState(StrEnum):
    """Lifecycle: candidate -> approved -> production -> retired; candidate/approved -> rejected."""

    CANDIDATE = "candidate"
    APPROVED = "approved"
    PRODUCTION = "production"
    RETIRED = "retired"
    REJECTED = "rejected"


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces, no NaN): what checksums are taken over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def checksum_of(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def validate_use_case(name: object) -> str:
    """Return ``name`` if it is a safe use-case name (also safe as a file name and URL segment)."""
    if not isinstance(name, str) or not USE_CASE_PATTERN.fullmatch(name):
        raise ConfigValidationError(
            f"use_case must match {USE_CASE_PATTERN.pattern}, got {name!r:.80}"
        )
    return name


def _name(value: object, field_name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _NAME_PATTERN.fullmatch(value):
        raise ConfigValidationError(
            f"{field_name} must be a name matching {_NAME_PATTERN.pattern}, got {value!r:.80}"
        )
    return value


def _number(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigValidationError(f"{field_name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigValidationError(f"{field_name} must be finite")
    return number


def as_json_object(value: object, field_name: str) -> dict[str, Any]:
    """A JSON object that survives a canonical round trip (finite numbers, string keys)."""
    if not isinstance(value, Mapping):
        raise ConfigValidationError(f"{field_name} must be a JSON object")
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise ConfigValidationError(f"{field_name} is not valid JSON: {exc}") from exc
    if len(encoded) > MAX_JSON_OBJECT_BYTES:
        raise ConfigValidationError(f"{field_name} exceeds {MAX_JSON_OBJECT_BYTES} bytes")
    result: dict[str, Any] = json.loads(encoded)
    return result


def _field_names(cls: type) -> set[str]:
    """The keys a record's dict form may hold: its dataclass fields."""
    return {f.name for f in fields(cls)}


def _check_keys(data: Mapping[str, Any], allowed: set[str], required: set[str], what: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigValidationError(f"{what} must be a JSON object")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigValidationError(f"{what}: unknown field(s) {sorted(unknown)}")
    missing = required - set(data)
    if missing:
        raise ConfigValidationError(f"{what}: missing field(s) {sorted(missing)}")


@dataclass(frozen=True, kw_only=True)
class ModelParams:
    """One way of calling a model: what serving passes to the provider SDK."""

    model: str
    provider: str | None = None
    prompt_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        _name(self.model, "model")
        _name(self.provider, "provider", optional=True)
        _name(self.prompt_id, "prompt_id", optional=True)
        if self.temperature is not None:
            temperature = _number(self.temperature, "temperature")
            if not 0.0 <= temperature <= 2.0:
                raise ConfigValidationError(f"temperature must be in [0, 2], got {temperature}")
            object.__setattr__(self, "temperature", temperature)
        if self.top_p is not None:
            top_p = _number(self.top_p, "top_p")
            if not 0.0 < top_p <= 1.0:
                raise ConfigValidationError(f"top_p must be in (0, 1], got {top_p}")
            object.__setattr__(self, "top_p", top_p)
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens <= 0
        ):
            raise ConfigValidationError(
                f"max_tokens must be an integer > 0, got {self.max_tokens!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelParams:
        _check_keys(data, _field_names(cls), {"model"}, "params")
        return cls(**dict(data))


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One slice of traffic: its parameters, its weight and why it gets traffic.

    ``arm_id`` is the stable key variant assignment hashes on, so renaming an arm reshuffles its
    units; ``config_id`` is what serving logs (defaults to ``<use_case>/v<version>/<arm_id>``).
    """

    arm_id: str
    params: ModelParams
    weight: float
    role: str = "production"
    experiment_id: str | None = None
    variant_id: str | None = None
    config_id: str | None = None

    def __post_init__(self) -> None:
        _name(self.arm_id, "arm_id")
        if not isinstance(self.params, ModelParams):
            raise ConfigValidationError("arm params must be ModelParams")
        weight = _number(self.weight, f"weight of arm {self.arm_id}")
        if not 0.0 <= weight <= 1.0:
            raise ConfigValidationError(f"weight of arm {self.arm_id} must be in [0, 1]")
        object.__setattr__(self, "weight", weight)
        if self.role not in ARM_ROLES:
            raise ConfigValidationError(f"role of arm {self.arm_id} must be one of {ARM_ROLES}")
        _name(self.experiment_id, "experiment_id", optional=True)
        _name(self.variant_id, "variant_id", optional=True)
        _name(self.config_id, "config_id", optional=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # params as ModelParams.to_dict gives them

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arm:
        _check_keys(data, _field_names(cls), {"arm_id", "params", "weight"}, "arm")
        values = dict(data)
        values["params"] = ModelParams.from_dict(values["params"])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    """The immutable payload of one version: production parameters plus an optional traffic plan.

    With no ``traffic`` every unit gets ``params``. With a traffic plan, units are split over the
    arms by :func:`tasks.registry.assignment.assign_arm` using ``salt`` (defaults to the use case).
    """

    use_case: str
    params: ModelParams
    traffic: tuple[Arm, ...] = ()
    salt: str = ""
    allocation: str = "static"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_use_case(self.use_case)
        if not isinstance(self.params, ModelParams):
            raise ConfigValidationError("params must be ModelParams")
        traffic = tuple(self.traffic)
        object.__setattr__(self, "traffic", traffic)
        if not all(isinstance(arm, Arm) for arm in traffic):
            raise ConfigValidationError("traffic must be a list of arms")
        if traffic:
            ids = [arm.arm_id for arm in traffic]
            if len(set(ids)) != len(ids):
                raise ConfigValidationError(f"arm ids must be unique, got {ids}")
            total = math.fsum(arm.weight for arm in traffic)
            if abs(total - 1.0) > WEIGHT_TOLERANCE:
                raise ConfigValidationError(
                    f"arm weights must sum to 1 (within 1e-9), got {total!r}"
                )
        if not isinstance(self.salt, str) or len(self.salt) > 200:
            raise ConfigValidationError("salt must be a string of at most 200 characters")
        if not self.salt:
            object.__setattr__(self, "salt", self.use_case)
        if self.allocation not in {"static", "experiment", "bandit", "rollout", "mixed"}:
            raise ConfigValidationError(
                "allocation must be one of static, experiment, bandit, rollout, mixed"
            )
        object.__setattr__(self, "metadata", as_json_object(self.metadata, "metadata"))

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The effective arms: the traffic plan, or one production arm holding ``params``."""
        if self.traffic:
            return self.traffic
        return (Arm(arm_id="production", params=self.params, weight=1.0),)

    def to_dict(self) -> dict[str, Any]:
        return {
            "use_case": self.use_case,
            "params": self.params.to_dict(),
            "traffic": [arm.to_dict() for arm in self.traffic],
            "salt": self.salt,
            "allocation": self.allocation,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistryConfig:
        _check_keys(data, _field_names(cls), {"use_case", "params"}, "config")
        values = dict(data)
        values["params"] = ModelParams.from_dict(values["params"])
        traffic = values.get("traffic", [])
        if not isinstance(traffic, list | tuple):
            raise ConfigValidationError("traffic must be a list of arms")
        values["traffic"] = tuple(Arm.from_dict(arm) for arm in traffic)
        return cls(**values)

    @property
    def checksum(self) -> str:
        return checksum_of(self.to_dict())


@dataclass(frozen=True, kw_only=True)
class ConfigVersion:
    """One stored version: the immutable config, its lifecycle state and its provenance."""

    use_case: str
    version: int
    state: ConfigState
    config: RegistryConfig
    checksum: str
    created_at: str
    created_by: str
    reason: str
    run_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def to_document(self) -> dict[str, Any]:
        """The JSON document the API serves and the snapshot file holds."""
        return {
            "schema_version": SCHEMA_VERSION,
            "use_case": self.use_case,
            "version": self.version,
            "state": self.state.value,
            "aliases": list(self.aliases),
            "config": self.config.to_dict(),
            "checksum": self.checksum,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "reason": self.reason,
            "run_id": self.run_id,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_document(cls, doc: object) -> ConfigVersion:
        """Validate a served/snapshot document, including that the payload matches its checksum."""
        allowed = {
            "schema_version",
            "use_case",
            "version",
            "state",
            "aliases",
            "config",
            "checksum",
            "created_at",
            "created_by",
            "reason",
            "run_id",
            "evidence",
        }
        if not isinstance(doc, Mapping):
            raise ConfigValidationError("document must be a JSON object")
        _check_keys(doc, allowed, allowed - {"aliases"}, "document")
        if doc["schema_version"] != SCHEMA_VERSION:
            raise ConfigValidationError(f"unsupported schema_version {doc['schema_version']!r}")
        config_data = doc["config"]
        if not isinstance(config_data, Mapping):
            raise ConfigValidationError("config must be a JSON object")
        if checksum_of(config_data) != doc["checksum"]:
            raise ChecksumMismatchError(f"checksum mismatch for {doc.get('use_case')!r}")
        config = RegistryConfig.from_dict(config_data)
        if config.to_dict() != dict(config_data):
            raise ConfigValidationError("config is not in canonical form")
        version = doc["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigValidationError("version must be an integer >= 1")
        try:
            state = ConfigState(doc["state"])
        except ValueError as exc:
            raise ConfigValidationError(f"unknown state {doc['state']!r}") from exc
        if doc["use_case"] != config.use_case:
            raise ConfigValidationError("document use_case differs from its config")
        run_id = doc["run_id"]
        for key in ("created_at", "created_by", "reason"):
            if not isinstance(doc[key], str):
                raise ConfigValidationError(f"{key} must be a string")
        if run_id is not None and not isinstance(run_id, str):
            raise ConfigValidationError("run_id must be a string or null")
        aliases = doc.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigValidationError("aliases must be a list of strings")
        return cls(
            use_case=config.use_case,
            version=version,
            state=state,
            config=config,
            checksum=str(doc["checksum"]),
            created_at=doc["created_at"],
            created_by=doc["created_by"],
            reason=doc["reason"],
            run_id=run_id,
            evidence=as_json_object(doc["evidence"], "evidence"),
            aliases=tuple(aliases),
        )


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who did what to which version, when, and why."""

    use_case: str
    version: int
    action: str
    from_state: str | None
    to_state: str
    actor: str
    at: str
    reason: str
