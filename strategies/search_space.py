"""The space of LLM configurations the search may suggest, with bounds and forbidden combinations.

A configuration is (model, prompt_id, temperature, top_p, max_tokens). Bounds and the forbidden
combinations come from ``data/config/search.toml`` (parsed by :meth:`SearchSpace.from_mapping`), so
an operator can rule out, say, a small model with a very long ``max_tokens`` without touching code.
Suggestions that break a rule are *rejected* by the search loop (told to Optuna as pruned, reason
kept as a user attribute) and never served.

Why a fixed step on the floats: a candidate must collect a few hundred requests before it is
judged, so near-identical temperatures are wasted traffic. The step makes the space a grid that is
coarse enough for distinct candidates and fine enough to find the optimum.

Example:
    >>> space = SearchSpace(
    ...     models=("gpt-4o-mini", "gpt-4o"), prompt_ids=("p-v1",), max_tokens=(256, 2048),
    ...     forbidden=(ForbiddenCombination(reason="too long", models=("gpt-4o-mini",),
    ...                                     max_tokens=(2048,)),),
    ... )
    >>> space.violations(CandidateParams("gpt-4o-mini", "p-v1", 0.7, 0.9, 2048))
    ('too long',)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the trial's type: the space itself does not need Optuna at run time
    import optuna

__all__ = [
    "CandidateParams",
    "ForbiddenCombination",
    "SearchSpace",
    "candidate_config_id",
    "format_float",
]

# Floats are rounded to this many decimals so a config id is stable across sampler round-off.
_DECIMALS = 4


def format_float(value: float) -> str:
    """Shortest text of a rounded float, as DuckDB casts a DOUBLE to VARCHAR (``0.7``, ``1.0``)."""
    return repr(round(float(value), _DECIMALS) + 0.0)


def candidate_config_id(params: CandidateParams | Mapping[str, Any]) -> str:
    """The config id the serving side logs for a candidate: ``model|prompt|t=..|p=..|mt=..``.

    It is deliberately the same text as the warehouse's fallback configuration key
    (``tasks.warehouse.config_metrics.CONFIG_KEY_SQL``) for the same parameters, so a
    candidate's traffic is attributed to its trial whether serving logs this id as
    ``config_id`` or logs no id at all.

    >>> candidate_config_id({"model": "gpt-4o", "prompt_id": "p-v2", "temperature": 0.7,
    ...                      "top_p": 0.95, "max_tokens": 512})
    'gpt-4o|p-v2|t=0.7|p=0.95|mt=512'
    """
    p = params if isinstance(params, CandidateParams) else CandidateParams.from_mapping(params)
    return (
        f"{p.model}|{p.prompt_id}|t={format_float(p.temperature)}"
        f"|p={format_float(p.top_p)}|mt={int(p.max_tokens)}"
    )


@dataclass(frozen=True)
class CandidateParams:
    """One point of the space; floats are rounded on construction so equal configs compare equal."""

    model: str
    prompt_id: str
    temperature: float
    top_p: float
    max_tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", round(float(self.temperature), _DECIMALS) + 0.0)
        object.__setattr__(self, "top_p", round(float(self.top_p), _DECIMALS) + 0.0)
        object.__setattr__(self, "max_tokens", int(self.max_tokens))

    @property
    def config_id(self) -> str:
        return candidate_config_id(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CandidateParams:
        missing = [
            k
            for k in ("model", "prompt_id", "temperature", "top_p", "max_tokens")
            if values.get(k) is None
        ]
        if missing:
            raise ValueError(f"configuration is missing {', '.join(missing)}")
        return cls(
            model=str(values["model"]),
            prompt_id=str(values["prompt_id"]),
            temperature=float(values["temperature"]),
            top_p=float(values["top_p"]),
            max_tokens=int(values["max_tokens"]),
        )


@dataclass(frozen=True)
class ForbiddenCombination:
    """A rule that matches when every condition it names holds (empty tuple / None = any value)."""

    reason: str
    models: tuple[str, ...] = ()
    prompt_ids: tuple[str, ...] = ()
    max_tokens: tuple[int, ...] = ()
    temperature_range: tuple[float, float] | None = None
    top_p_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("a forbidden combination needs a reason")
        named = (self.models, self.prompt_ids, self.max_tokens)
        if not any(named) and self.temperature_range is None and self.top_p_range is None:
            raise ValueError(f"forbidden combination {self.reason!r} names no condition")

    def matches(self, params: CandidateParams) -> bool:
        checks = (
            not self.models or params.model in self.models,
            not self.prompt_ids or params.prompt_id in self.prompt_ids,
            not self.max_tokens or params.max_tokens in self.max_tokens,
            _in_range(params.temperature, self.temperature_range),
            _in_range(params.top_p, self.top_p_range),
        )
        return all(checks)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ForbiddenCombination:
        known = {"reason", "models", "prompt_ids", "max_tokens", "temperature", "top_p"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"forbidden combination: unknown keys {unknown}")
        return cls(
            reason=str(values.get("reason", "")),
            models=tuple(str(m) for m in values.get("models", ())),
            prompt_ids=tuple(str(p) for p in values.get("prompt_ids", ())),
            max_tokens=tuple(int(m) for m in values.get("max_tokens", ())),
            temperature_range=_pair(values.get("temperature"), "temperature"),
            top_p_range=_pair(values.get("top_p"), "top_p"),
        )


def _in_range(value: float, bounds: tuple[float, float] | None) -> bool:
    return bounds is None or bounds[0] <= value <= bounds[1]


def _pair(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, Sequence) or len(value) != 2 or float(value[0]) > float(value[1]):
        raise ValueError(f"{name} must be [low, high] with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the search; ``suggest`` asks an Optuna trial for one configuration."""

    models: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    max_tokens: tuple[int, ...]
    temperature: tuple[float, float] = (0.0, 1.5)
    top_p: tuple[float, float] = (0.5, 1.0)
    temperature_step: float = 0.05
    top_p_step: float = 0.05
    forbidden: tuple[ForbiddenCombination, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("models", "prompt_ids", "max_tokens"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"search space: {name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"search space: {name} has duplicates")
        for name in ("temperature", "top_p"):
            low, high = getattr(self, name)
            step = getattr(self, f"{name}_step")
            if not (math.isfinite(low) and math.isfinite(high) and low <= high and step > 0):
                raise ValueError(f"search space: bad {name} bounds {low}..{high} step {step}")
        if any(m <= 0 for m in self.max_tokens):
            raise ValueError("search space: max_tokens must be positive")

    def suggest(self, trial: optuna.trial.BaseTrial) -> CandidateParams:
        """Draw one configuration through ``trial`` (the sampler decides, Optuna records it)."""
        return CandidateParams(
            model=str(trial.suggest_categorical("model", list(self.models))),
            prompt_id=str(trial.suggest_categorical("prompt_id", list(self.prompt_ids))),
            temperature=trial.suggest_float(
                "temperature", *self.temperature, step=self.temperature_step
            ),
            top_p=trial.suggest_float("top_p", *self.top_p, step=self.top_p_step),
            max_tokens=int(trial.suggest_categorical("max_tokens", list(self.max_tokens))),
        )

    def violations(self, params: CandidateParams) -> tuple[str, ...]:
        """Reasons ``params`` may not be served (empty when it is allowed)."""
        reasons: list[str] = []
        if params.model not in self.models:
            reasons.append(f"model {params.model!r} is not in the search space")
        if params.prompt_id not in self.prompt_ids:
            reasons.append(f"prompt {params.prompt_id!r} is not in the search space")
        if params.max_tokens not in self.max_tokens:
            reasons.append(f"max_tokens {params.max_tokens} is not in the search space")
        for name in ("temperature", "top_p"):
            low, high = getattr(self, name)
            value = getattr(params, name)
            if not low - 1e-9 <= value <= high + 1e-9:
                reasons.append(f"{name} {value} is outside [{low}, {high}]")
        reasons.extend(rule.reason for rule in self.forbidden if rule.matches(params))
        return tuple(reasons)

    def grid(self) -> Iterator[CandidateParams]:
        """Every allowed configuration on the step grid (brute-force optimum in tests)."""
        temperatures = _steps(*self.temperature, self.temperature_step)
        top_ps = _steps(*self.top_p, self.top_p_step)
        for model, prompt, t, p, mt in itertools.product(
            self.models, self.prompt_ids, temperatures, top_ps, self.max_tokens
        ):
            params = CandidateParams(model, prompt, t, p, mt)
            if not self.violations(params):
                yield params

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SearchSpace:
        """Build from the ``[space]`` table of ``search.toml`` (see the README for the keys)."""
        known = {
            "models",
            "prompt_ids",
            "max_tokens",
            "temperature",
            "top_p",
            "temperature_step",
            "top_p_step",
            "forbidden",
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"search space: unknown keys {unknown}")
        temperature = _pair(values.get("temperature", (0.0, 1.5)), "temperature")
        top_p = _pair(values.get("top_p", (0.5, 1.0)), "top_p")
        assert temperature is not None and top_p is not None
        return cls(
            models=tuple(str(m) for m in values.get("models", ())),
            prompt_ids=tuple(str(p) for p in values.get("prompt_ids", ())),
            max_tokens=tuple(int(m) for m in values.get("max_tokens", ())),
            temperature=temperature,
            top_p=top_p,
            temperature_step=float(values.get("temperature_step", 0.05)),
            top_p_step=float(values.get("top_p_step", 0.05)),
            forbidden=tuple(
                ForbiddenCombination.from_mapping(rule) for rule in values.get("forbidden", ())
            ),
        )


def _steps(low: float, high: float, step: float) -> list[float]:
    count = math.floor((high - low) / step + 1e-9)
    return [low + i * step for i in range(count + 1)]
