"""What "better" means for one use case: the objective every nightly decision is taken on.

Why: the nightly flow compares configurations for several purposes (bootstrap a production
version, promote a configuration that beats production, pick exploration weights, plan traffic
under a budget). Each comparison must use the same definition of better, with its uncertainty,
and every report must say which definition it used. An :class:`Objective` is that definition:

* ``kind="reward"``: a reward preset from :data:`strategies.config_stats.PRESETS` (quality-focused
  0.8/0.15/0.05, balanced 0.6/0.3/0.1, cost-focused 0.4/0.5/0.1, latency-focused 0.4/0.3/0.3
  over quality / cost / latency, with explicit scales), optionally with weights or scales replaced:
  ``value = w_q quality - w_c cost / cost_scale - w_l p95 / latency_scale - w_e error_rate``.
* ``kind="max_quality"``: maximise mean quality subject to cost per request <= a cap (given
  directly, or a monthly budget divided by the expected monthly requests).
* ``kind="min_cost"``: minimise cost per request subject to mean quality >= a floor
  (``value = -cost``, so larger is better for every kind).

:meth:`Objective.score` turns a configuration's sufficient statistics
(:class:`strategies.config_stats.ConfigStats`) into an :class:`ObjectiveScore`: value, standard
error (delta method over independent terms: ``se^2 = sum (w_i se_i)^2``) and a two-sided normal
interval at ``level``; a constraint is *met* on the point estimate
and *met with confidence* on the bound.
:meth:`Objective.best` ranks by the lower confidence bound among feasible configurations, ties to
the cheaper, and returns an explicit "cannot analyse" result when nothing qualifies.

Size: one concept (the objective) with its three forms, their validation, scoring with
uncertainty, reporting and config parsing; about half of it is docstrings.

Example:
    >>> import numpy as np
    >>> from strategies.config_stats import ConfigStats
    >>> rng = np.random.default_rng(0)
    >>> def cfg(key, q, cost, n=2000):
    ...     return ConfigStats.from_samples(key, quality=rng.normal(q, 0.1, n),
    ...         cost=np.full(n, cost), latency=np.full(n, 800.0), success=np.ones(n, bool))
    >>> strong, weak = cfg("strong", 0.85, 0.012), cfg("weak", 0.72, 0.0008)
    >>> Objective.from_preset("quality-focused").best([strong, weak]).config_key
    'strong'
    >>> Objective.from_preset("cost-focused").best([strong, weak]).config_key
    'weak'
    >>> Objective.min_cost(quality_floor=0.8).best([strong, weak]).config_key
    'strong'
    >>> Objective.from_preset("balanced").describe()
    'balanced reward: 0.6 quality - 0.3 cost/$0.1 - 0.1 p95/5000ms - 0.6 errors'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from strategies._checks import require_finite_positive, require_open_interval
from strategies.config_stats import PRESETS, ConfigStats, RewardWeights

__all__ = [
    "DEFAULT_PRESET",
    "BestChoice",
    "Objective",
    "ObjectiveKind",
    "ObjectiveScore",
    "monthly_from_daily",
    "objective_from_config",
]

ObjectiveKind = Literal["reward", "max_quality", "min_cost"]
DEFAULT_PRESET = "balanced"
_KINDS = ("reward", "max_quality", "min_cost")
_DAYS_PER_MONTH = 30.0


@dataclass(frozen=True, kw_only=True)
class ObjectiveScore:
    """One configuration on the objective: value, uncertainty, constraint status.

    ``feasible`` is the constraint on the point estimate; ``confidently_feasible`` on the bound
    (cost upper bound <= cap, quality lower bound >= floor). Unconstrained objectives are always
    feasible. ``status="cannot_analyse"`` carries the reason instead of numbers.
    """

    config_key: str
    status: Literal["ok", "cannot_analyse"]
    value: float
    se: float
    lower: float
    upper: float
    n: int
    cost_mean: float
    quality_mean: float
    feasible: bool
    confidently_feasible: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (JSON / MLflow / reports)."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class BestChoice:
    """The best configuration by lower confidence bound, or why there is none."""

    status: Literal["ok", "cannot_analyse"]
    config_key: str | None
    score: ObjectiveScore | None
    scores: tuple[ObjectiveScore, ...]
    reason: str


@dataclass(frozen=True, kw_only=True)
class Objective:
    """What "better" means for a use case (see the module docstring).

    Build with :meth:`from_preset`, :meth:`max_quality`, :meth:`min_cost` or
    :func:`objective_from_config`. Args (all keyword-only):
        kind: ``"reward"``, ``"max_quality"`` or ``"min_cost"``.
        weights: the reward weights and scales (used by ``kind="reward"``; constrained kinds keep
            them for the per-request reward of off-policy estimates of quality).
        preset: the preset name the weights came from (``"custom"`` when overridden).
        max_cost_per_request: cost cap in USD per request (``max_quality``).
        monthly_budget_usd: monthly budget (``max_quality``); the cap is the budget divided by the
            expected monthly requests passed to :meth:`cost_cap`.
        quality_floor: minimum mean quality (``min_cost``).
        level: two-sided confidence level of the intervals (default 0.95).
        min_requests: fewer requests than this: the configuration cannot be analysed.
    """

    kind: ObjectiveKind = "reward"
    weights: RewardWeights = PRESETS[DEFAULT_PRESET]
    preset: str = DEFAULT_PRESET
    max_cost_per_request: float | None = None
    monthly_budget_usd: float | None = None
    quality_floor: float | None = None
    level: float = 0.95
    min_requests: int = 30

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"objective kind must be one of {_KINDS}, got {self.kind!r}")
        require_open_interval("level", self.level, 0.5, 1.0)
        if self.min_requests < 2:
            raise ValueError(f"min_requests must be >= 2, got {self.min_requests}")
        for name in ("max_cost_per_request", "monthly_budget_usd"):
            if (value := getattr(self, name)) is not None:
                require_finite_positive(name, value)
        if self.quality_floor is not None and not math.isfinite(self.quality_floor):
            raise ValueError(f"quality_floor must be finite, got {self.quality_floor}")
        if self.kind == "max_quality" and (
            (self.max_cost_per_request is None) == (self.monthly_budget_usd is None)
        ):
            raise ValueError(
                "max_quality needs exactly one of max_cost_per_request, monthly_budget_usd"
            )
        if self.kind == "min_cost" and self.quality_floor is None:
            raise ValueError("min_cost needs quality_floor")
        if self.kind == "reward" and (
            self.max_cost_per_request is not None
            or self.monthly_budget_usd is not None
            or self.quality_floor is not None
        ):
            raise ValueError("a reward objective takes no constraint (use max_quality / min_cost)")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_preset(
        cls, name: str = DEFAULT_PRESET, overrides: Mapping[str, float] | None = None, **kw: Any
    ) -> Objective:
        """A reward preset, optionally with some weights or scales replaced.

        Args:
            name: one of :data:`strategies.config_stats.PRESETS`.
            overrides: weight / scale keys of :class:`RewardWeights` to replace.
            **kw: other fields (``level``, ``min_requests``).

        Raises:
            ValueError: unknown preset or weight key.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        weights = PRESETS[name]
        if overrides:
            known = set(RewardWeights.__dataclass_fields__)
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"unknown weight keys {unknown}; known: {sorted(known)}")
            weights = replace(weights, **{k: float(v) for k, v in overrides.items()})
        return cls(kind="reward", weights=weights, preset=name if not overrides else "custom", **kw)

    @classmethod
    def max_quality(
        cls,
        *,
        max_cost_per_request: float | None = None,
        monthly_budget_usd: float | None = None,
        **kw: Any,
    ) -> Objective:
        """Maximise quality subject to a cost cap per request or a monthly budget."""
        return cls(
            kind="max_quality",
            max_cost_per_request=max_cost_per_request,
            monthly_budget_usd=monthly_budget_usd,
            preset="constrained",
            **kw,
        )

    @classmethod
    def min_cost(cls, *, quality_floor: float, **kw: Any) -> Objective:
        """Minimise cost per request subject to mean quality >= ``quality_floor``."""
        return cls(kind="min_cost", quality_floor=quality_floor, preset="constrained", **kw)

    # ------------------------------------------------------------------ scoring
    @property
    def z(self) -> float:
        """Normal quantile of the two-sided interval."""
        return float(sps.norm.ppf(0.5 + self.level / 2.0))

    def cost_cap(self, monthly_requests: float | None = None) -> float | None:
        """The cost cap per request in USD (``None`` when there is none or it is unknown).

        Args:
            monthly_requests: expected requests per month (needed for a monthly budget).
        """
        if self.max_cost_per_request is not None:
            return self.max_cost_per_request
        if self.monthly_budget_usd is not None and monthly_requests and monthly_requests > 0:
            return self.monthly_budget_usd / monthly_requests
        return None

    def score(self, stats: ConfigStats, *, monthly_requests: float | None = None) -> ObjectiveScore:
        """Score one configuration (never raises for thin or missing data: ``cannot_analyse``).

        Args:
            stats: the configuration's sufficient statistics over the window.
            monthly_requests: expected monthly requests (for a monthly budget cap).
        """
        value, se = self._value_se(stats)
        reason = ""
        if stats.n < self.min_requests or stats.quality_n < 2:
            reason = f"only {stats.n} requests ({stats.quality_n} scored), need {self.min_requests}"
        elif not (math.isfinite(value) and math.isfinite(se)):
            reason = "statistics incomplete (cost, quality or latency missing)"
        if reason:
            value = se = math.nan
            feasible = confident = False
        else:
            feasible, confident, reason = self._constraint(stats, monthly_requests)
        return ObjectiveScore(
            config_key=stats.config_key,
            status="cannot_analyse" if math.isnan(value) else "ok",
            value=value,
            se=se,
            lower=value - self.z * se,
            upper=value + self.z * se,
            n=stats.n,
            cost_mean=stats.cost_mean,
            quality_mean=stats.quality_mean,
            feasible=feasible,
            confidently_feasible=confident,
            reason=reason,
        )

    def _value_se(self, s: ConfigStats) -> tuple[float, float]:
        if self.kind == "max_quality":
            return s.quality_mean, s.quality_se
        if self.kind == "min_cost":
            return -s.cost_mean, s.cost_se
        w = self.weights
        value = w.score_stats(s)
        terms = (
            w.quality * s.quality_se,
            w.cost / w.cost_scale_usd * s.cost_se,
            w.latency / w.latency_scale_ms * s.latency_p95_se,
            w.errors * s.error_rate_se,
        )
        # A term with zero weight does not need a finite standard error (e.g. one latency value).
        weights = (w.quality, w.cost, w.latency, w.errors)
        se2 = sum(t * t for t, wt in zip(terms, weights, strict=True) if wt)
        return value, math.sqrt(se2)

    def _constraint(self, s: ConfigStats, monthly_requests: float | None) -> tuple[bool, bool, str]:
        if self.kind == "max_quality":
            cap = self.cost_cap(monthly_requests)
            if cap is None:
                return False, False, "monthly budget given but the monthly volume is unknown"
            upper = s.cost_mean + self.z * (s.cost_se if math.isfinite(s.cost_se) else 0.0)
            ok = s.cost_mean <= cap
            return ok, upper <= cap, "" if ok else f"cost {s.cost_mean:.5f} > cap {cap:.5f}"
        if self.kind == "min_cost":
            floor = float(self.quality_floor)  # type: ignore[arg-type]
            lower = s.quality_mean - self.z * s.quality_se
            ok = s.quality_mean >= floor
            return ok, lower >= floor, "" if ok else f"quality {s.quality_mean:.3f} < floor {floor}"
        return True, True, ""

    def scores(
        self, configs: Sequence[ConfigStats], *, monthly_requests: float | None = None
    ) -> tuple[ObjectiveScore, ...]:
        """Score every configuration (same order)."""
        return tuple(self.score(c, monthly_requests=monthly_requests) for c in configs)

    def best(
        self,
        configs: Sequence[ConfigStats],
        *,
        monthly_requests: float | None = None,
        tie_tolerance: float = 1e-9,
    ) -> BestChoice:
        """The feasible configuration with the highest lower bound (ties to the cheaper).

        Args:
            configs: candidate configurations with their statistics.
            monthly_requests: expected monthly requests (for a monthly budget cap).
            tie_tolerance: lower bounds closer than this are a tie, broken by lower mean cost.
        """
        scores = self.scores(configs, monthly_requests=monthly_requests)
        ok = [s for s in scores if s.status == "ok" and s.feasible]
        if not ok:
            reasons = "; ".join(f"{s.config_key}: {s.reason}" for s in scores)
            reasons = reasons or "no configurations"
            return BestChoice(
                status="cannot_analyse", config_key=None, score=None, scores=scores, reason=reasons
            )
        top = max(s.lower for s in ok)
        tied = [s for s in ok if s.lower >= top - tie_tolerance]
        chosen = min(tied, key=lambda s: (s.cost_mean, s.config_key))
        why = f"highest lower bound {chosen.lower:.4f} on {self.name}"
        if len(tied) > 1:
            why += f" (tied with {len(tied) - 1}, cheaper chosen)"
        return BestChoice(
            status="ok", config_key=chosen.config_key, score=chosen, scores=scores, reason=why
        )

    def per_request_reward(
        self, *, quality: ArrayLike, cost: ArrayLike, latency_ms: ArrayLike, error: ArrayLike
    ) -> np.ndarray:
        """Per-request reward for off-policy estimates (rows; NaN quality counts as 0).

        For ``reward`` the latency term uses each request's latency (the mean stands in for the
        p95, which has no per-row form); for ``max_quality`` it is quality, for ``min_cost`` it
        is minus the cost. Constraints are checked separately on the per-arm statistics.
        """
        q = np.nan_to_num(np.asarray(quality, dtype=float), nan=0.0)
        c = np.asarray(cost, dtype=float)
        if self.kind == "max_quality":
            return q
        if self.kind == "min_cost":
            return -c
        w = self.weights
        lat = np.asarray(latency_ms, dtype=float)
        err = np.asarray(error, dtype=float)
        cost_term = w.cost * c / w.cost_scale_usd
        return w.quality * q - cost_term - w.latency * lat / w.latency_scale_ms - w.errors * err

    # ------------------------------------------------------------------ reporting
    @property
    def name(self) -> str:
        """Short name for metrics and tables (the preset, or the constrained form)."""
        if self.kind == "reward":
            return self.preset
        return self.kind.replace("_", "-")

    def describe(self) -> str:
        """One line a person reads in the nightly report."""
        if self.kind == "max_quality":
            if self.max_cost_per_request is not None:
                return f"maximise quality s.t. cost per request <= ${self.max_cost_per_request:g}"
            return f"maximise quality s.t. monthly spend <= ${self.monthly_budget_usd:g}"
        if self.kind == "min_cost":
            return f"minimise cost per request s.t. quality >= {self.quality_floor:g}"
        w = self.weights
        return (
            f"{self.preset} reward: {w.quality:g} quality - {w.cost:g} cost/${w.cost_scale_usd:g}"
            f" - {w.latency:g} p95/{w.latency_scale_ms:g}ms - {w.errors:g} errors"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain parameters (MLflow params, registry evidence)."""
        w = self.weights
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.describe(),
            "weights": {
                "quality": w.quality,
                "cost": w.cost,
                "latency": w.latency,
                "errors": w.errors,
                "cost_scale_usd": w.cost_scale_usd,
                "latency_scale_ms": w.latency_scale_ms,
            },
            "max_cost_per_request": self.max_cost_per_request,
            "monthly_budget_usd": self.monthly_budget_usd,
            "quality_floor": self.quality_floor,
            "level": self.level,
        }


_CONSTRAINT_KEYS = ("max_cost_per_request", "monthly_budget_usd", "quality_floor")
_CONFIG_KEYS = {
    "preset",
    "kind",
    "weights",
    "max_cost_per_request",
    "monthly_budget_usd",
    "quality_floor",
    "level",
    "min_requests",
}


def objective_from_config(
    section: Mapping[str, Any] | None, use_case: str | None = None
) -> Objective:
    """The objective of ``use_case`` from an ``[objective]`` config section.

    Top-level keys are the defaults; ``[objective.use_cases.<name>]`` overrides them key by key
    (a use case that names ``kind`` or ``preset`` starts from its own form).

    Args:
        section: the ``[objective]`` table of ``nightly.toml`` (``None``: the balanced preset).
        use_case: the use case whose override applies, if any.

    Raises:
        ValueError: unknown keys, presets or inconsistent constraints (the message names them).
    """
    section = dict(section or {})
    per_use_case = section.pop("use_cases", {}) or {}
    merged = dict(section)
    if use_case is not None and use_case in per_use_case:
        override = dict(per_use_case[use_case])
        if "kind" in override or "preset" in override:
            for key in ("kind", "preset", *_CONSTRAINT_KEYS):
                merged.pop(key, None)
        merged.update(override)
    unknown = sorted(set(merged) - _CONFIG_KEYS)
    if unknown:
        where = f"[objective.use_cases.{use_case}]" if use_case else "[objective]"
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(_CONFIG_KEYS)}")
    kind = str(merged.pop("kind", "reward"))
    weights = merged.pop("weights", None)
    preset = str(merged.pop("preset", DEFAULT_PRESET))
    extra = {k: merged[k] for k in ("level", "min_requests") if k in merged}
    if kind == "reward":
        stray = sorted(k for k in _CONSTRAINT_KEYS if k in merged)
        if stray:
            raise ValueError(
                f"objective kind 'reward' takes no {stray}; set kind = 'max_quality' or 'min_cost'"
            )
        return Objective.from_preset(preset, weights, **extra)
    if kind == "max_quality":
        return Objective.max_quality(
            max_cost_per_request=_opt_float(merged.get("max_cost_per_request")),
            monthly_budget_usd=_opt_float(merged.get("monthly_budget_usd")),
            **extra,
        )
    if kind == "min_cost":
        if "quality_floor" not in merged:
            raise ValueError("objective kind 'min_cost' needs quality_floor")
        return Objective.min_cost(quality_floor=float(merged["quality_floor"]), **extra)
    raise ValueError(f"objective kind must be one of {_KINDS}, got {kind!r}")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def monthly_from_daily(requests_per_day: float) -> float:
    """Monthly volume from a daily rate (30-day month), for monthly budget caps."""
    return float(requests_per_day) * _DAYS_PER_MONTH
