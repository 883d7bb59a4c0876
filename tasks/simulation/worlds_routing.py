"""Routing worlds: logged random routing between a strong, expensive model and a weak, cheap one.

Part of the simulator (a tool for tests and benchmarks; production code never imports it).
Issue 12's worlds, with the truth computed exactly (closed form, no Monte Carlo):

* (b) :func:`segmented_world`: every request is routed at random (``strong_propensity``,
  logged as ``propensity``) between ``gpt-4o`` and ``gpt-4o-mini``; the true quality of each model
  depends on the ``user_segment``, and in some segments the cheap model is as good or better.
  ``task_type`` is constant and ``language`` empty (a router must skip both and say so);
  ``region`` is filled but carries no signal.
* (c) :func:`budgeted_world`: (b) with a monthly budget the strong model alone would overrun.

Per (segment, arm) the expected quality, cost and latency are exact: quality is
Beta(``mu k``, ``(1 - mu) k``), tokens are ``1 + Poisson(mean - 1)``, cost is tokens times the
genai-prices unit prices, latency is ``base + per_token * output`` times a mean-one lognormal.
:meth:`RoutingWorld.policy_value` grades any routing table on any linear objective.

Example:
    >>> world = segmented_world(days=2, requests_per_day=400)
    >>> table = world.simulate()
    >>> table.num_rows, sorted(set(table.column("user_segment").to_pylist()))
    (800, ['enterprise', 'free', 'internal', 'pro'])
    >>> world.policy_value({"*": {world.strong.config_id: 1.0}}, coefficients=(1, 0, 0, 0)) > 0.8
    True
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tasks.simulation.spec import CANONICAL_SCHEMA, unit_prices

__all__ = [
    "RoutingArm",
    "RoutingWorld",
    "Segment",
    "budgeted_world",
    "segmented_world",
]

_QUALITY_CONCENTRATION = 20.0
_LATENCY_SIGMA = 0.3


@dataclass(frozen=True, kw_only=True)
class RoutingArm:
    """One model configuration of the world (the id serving logs as ``config_id``)."""

    config_id: str
    model: str
    provider: str
    latency_base_ms: float
    latency_ms_per_token: float

    def mean_cost(self, input_tokens: float, output_tokens: float) -> float:
        per_in, per_out = unit_prices(self.model)
        return input_tokens * per_in + output_tokens * per_out

    def mean_latency(self, output_tokens: float) -> float:
        return self.latency_base_ms + self.latency_ms_per_token * output_tokens


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A user segment: its share of the traffic and each model's true mean quality there."""

    name: str
    share: float
    strong_quality: float
    weak_quality: float


STRONG = RoutingArm(
    config_id="route-strong-gpt-4o",
    model="gpt-4o",
    provider="openai",
    latency_base_ms=400.0,
    latency_ms_per_token=20.0,
)
WEAK = RoutingArm(
    config_id="route-weak-gpt-4o-mini",
    model="gpt-4o-mini",
    provider="openai",
    latency_base_ms=250.0,
    latency_ms_per_token=12.0,
)
SEGMENTS = (
    Segment(name="enterprise", share=0.25, strong_quality=0.88, weak_quality=0.62),
    Segment(name="pro", share=0.25, strong_quality=0.84, weak_quality=0.72),
    Segment(name="free", share=0.30, strong_quality=0.74, weak_quality=0.80),
    Segment(name="internal", share=0.20, strong_quality=0.80, weak_quality=0.80),
)


@dataclass(frozen=True, kw_only=True)
class RoutingWorld:
    """A logged random routing world and its exact truth."""

    use_case: str = "support-route"
    segments: tuple[Segment, ...] = SEGMENTS
    strong: RoutingArm = STRONG
    weak: RoutingArm = WEAK
    strong_propensity: float = 0.5
    requests_per_day: int = 2000
    days: int = 14
    start: dt.date = dt.date(2026, 10, 1)
    input_tokens: float = 600.0
    output_tokens: float = 200.0
    seed: int = 12
    monthly_budget_usd: float | None = None
    regions: tuple[str, ...] = ("eu", "us")
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isclose(sum(s.share for s in self.segments), 1.0, abs_tol=1e-9):
            raise ValueError("segment shares must sum to 1")
        if not 0.0 < self.strong_propensity < 1.0:
            raise ValueError("strong_propensity must be in (0, 1)")
        if self.days < 1 or self.requests_per_day < 1:
            raise ValueError("days and requests_per_day must be >= 1")

    # ---------------------------------------------------------------- truth
    @property
    def arms(self) -> tuple[RoutingArm, RoutingArm]:
        return (self.strong, self.weak)

    def quality(self, segment: Segment, arm: RoutingArm) -> float:
        return segment.strong_quality if arm is self.strong else segment.weak_quality

    def cost(self, arm: RoutingArm) -> float:
        """Exact expected cost per request of ``arm`` (USD)."""
        return arm.mean_cost(self.input_tokens, self.output_tokens)

    def latency(self, arm: RoutingArm) -> float:
        """Exact expected latency per request of ``arm`` (ms)."""
        return arm.mean_latency(self.output_tokens)

    def truth(self, segment: Segment, config_id: str) -> tuple[float, float, float, float]:
        """(quality, cost, latency, error rate) per request of ``config_id`` in ``segment``."""
        arm = self.strong if config_id == self.strong.config_id else self.weak
        if config_id not in (self.strong.config_id, self.weak.config_id):
            raise KeyError(f"unknown config id {config_id!r}")
        return self.quality(segment, arm), self.cost(arm), self.latency(arm), 0.0

    def policy_metrics(self, policy: Mapping[str, Mapping[str, float]]) -> tuple[float, ...]:
        """Exact (quality, cost, latency, error rate) per request of ``{segment: {id: w}}``.

        A segment missing from ``policy`` is served by its ``'*'`` row.
        """
        totals = np.zeros(4)
        for seg in self.segments:
            row = policy.get(seg.name, policy.get("*"))
            if row is None:
                raise KeyError(f"policy has no row for {seg.name!r} and no default")
            for config_id, weight in row.items():
                totals += seg.share * weight * np.array(self.truth(seg, config_id))
        return tuple(float(v) for v in totals)

    def policy_value(
        self,
        policy: Mapping[str, Mapping[str, float]],
        *,
        coefficients: tuple[float, ...],
    ) -> float:
        """Exact value of ``policy`` on the reward ``a*quality + b*cost + c*latency + d*error``."""
        return float(np.dot(coefficients, self.policy_metrics(policy)))

    def oracle(self, *, coefficients: tuple[float, ...]) -> dict[str, dict[str, float]]:
        """The best per-segment policy (one arm per segment; ties to the cheaper)."""
        out: dict[str, dict[str, float]] = {}
        for seg in self.segments:
            scored = [
                (float(np.dot(coefficients, self.truth(seg, a.config_id))), -self.cost(a), a)
                for a in self.arms
            ]
            best = max(scored, key=lambda t: (t[0], t[1]))[2]
            out[seg.name] = {best.config_id: 1.0}
        return out

    def best_single(self, *, coefficients: tuple[float, ...]) -> dict[str, float]:
        """The best single configuration for everyone (as a one-row policy)."""
        values = {
            a.config_id: self.policy_value({"*": {a.config_id: 1.0}}, coefficients=coefficients)
            for a in self.arms
        }
        return {max(values, key=values.__getitem__): 1.0}

    @property
    def days_in_month(self) -> int:
        nxt = (self.start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return (nxt - self.start.replace(day=1)).days

    @property
    def monthly_requests(self) -> int:
        return self.requests_per_day * self.days_in_month

    # ---------------------------------------------------------------- rows
    def simulate(self) -> pa.Table:
        """The logged rows (canonical schema), reproducible from ``seed``."""
        rng = np.random.default_rng(self.seed)
        n = self.requests_per_day * self.days
        day = np.repeat(np.arange(self.days), self.requests_per_day)
        shares = np.array([s.share for s in self.segments])
        seg = rng.choice(len(self.segments), size=n, p=shares)
        strong = rng.random(n) < self.strong_propensity
        mu = np.where(
            strong,
            np.array([s.strong_quality for s in self.segments])[seg],
            np.array([s.weak_quality for s in self.segments])[seg],
        )
        k = _QUALITY_CONCENTRATION
        quality = rng.beta(mu * k, (1 - mu) * k)
        tok_in = 1 + rng.poisson(self.input_tokens - 1, n)
        tok_out = 1 + rng.poisson(self.output_tokens - 1, n)
        (s_in, s_out), (w_in, w_out) = unit_prices(self.strong.model), unit_prices(self.weak.model)
        cost = np.where(strong, tok_in * s_in + tok_out * s_out, tok_in * w_in + tok_out * w_out)
        base = np.where(strong, self.strong.latency_base_ms, self.weak.latency_base_ms)
        per = np.where(strong, self.strong.latency_ms_per_token, self.weak.latency_ms_per_token)
        noise = np.exp(_LATENCY_SIGMA * rng.standard_normal(n) - _LATENCY_SIGMA**2 / 2)
        latency = (base + per * tok_out) * noise
        start = dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)
        seconds = day * 86_400 + rng.integers(0, 86_400, n)
        ts = [start + dt.timedelta(seconds=int(s)) for s in seconds]
        choose = np.where(strong, 0, 1)
        arms = self.arms
        columns = {
            "request_id": [f"{self.use_case}-{self.seed}-{i:08d}" for i in range(n)],
            "timestamp": ts,
            "use_case": [self.use_case] * n,
            "model": [arms[i].model for i in choose],
            "provider": [arms[i].provider for i in choose],
            "prompt_id": ["route-v1"] * n,
            "config_id": [arms[i].config_id for i in choose],
            "unit_id": [f"u{x}" for x in rng.integers(0, 50_000, n)],
            "propensity": np.where(strong, self.strong_propensity, 1 - self.strong_propensity),
            "temperature": np.full(n, 0.2),
            "max_tokens": np.full(n, 1024, dtype=np.int32),
            "input_tokens": tok_in,
            "output_tokens": tok_out,
            "latency_ms": np.round(latency, 1),
            "cost_usd": cost,
            "status": ["success"] * n,
            "quality": np.round(quality, 6),
            "task_type": ["support"] * n,
            "user_segment": [self.segments[i].name for i in seg],
            "region": [self.regions[i] for i in rng.integers(0, len(self.regions), n)],
        }
        arrays = [
            pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
            for f in CANONICAL_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=CANONICAL_SCHEMA)


def segmented_world(**overrides: object) -> RoutingWorld:
    """World (b): per-segment differences, no budget."""
    return RoutingWorld(**overrides)  # type: ignore[arg-type]


def budgeted_world(*, budget_fraction: float = 0.45, **overrides: object) -> RoutingWorld:
    """World (c): (b) with a monthly budget the strong model alone would overrun.

    Args:
        budget_fraction: where the budget sits between the weak model's monthly cost (0) and
            the strong model's (1).
        overrides: other :class:`RoutingWorld` fields.

    Returns:
        The world, with ``monthly_budget_usd`` set.
    """
    base = RoutingWorld(**overrides)  # type: ignore[arg-type]
    weak, strong = base.cost(base.weak), base.cost(base.strong)
    per_request = weak + budget_fraction * (strong - weak)
    return RoutingWorld(
        **{**overrides, "monthly_budget_usd": per_request * base.monthly_requests}  # type: ignore[arg-type]
    )
