"""What to simulate: the specification, the canonical schema, prices (genai-prices, offline).

Part of the simulator (a tool for the demo, tests and benchmarks; never imported by production
code). The package facade :mod:`tasks.simulation` re-exports everything public.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tasks.simulation import world as w

Format = Literal["parquet", "jsonl", "csv"]
FORMATS: tuple[str, ...] = ("parquet", "jsonl", "csv")
GROUND_TRUTH_FILE = "ground_truth.json"
DEFAULT_START = dt.date(2026, 10, 1)
P95_DRAWS = 50_000

# Canonical record (DESIGN.md section 3) as written by the simulator.
CANONICAL_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("use_case", pa.string()),
        ("model", pa.string()),
        ("provider", pa.string()),
        ("prompt_id", pa.string()),
        ("config_id", pa.string()),
        ("experiment_id", pa.string()),
        ("variant_id", pa.string()),
        ("unit_id", pa.string()),
        ("propensity", pa.float64()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int32()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("latency_ms", pa.float64()),
        ("ttft_ms", pa.float64()),
        ("cost_usd", pa.float64()),
        ("status", pa.string()),
        ("error_type", pa.string()),
        ("quality", pa.float64()),
        ("feedback", pa.int8()),
        ("task_type", pa.string()),
        ("user_segment", pa.string()),
        ("region", pa.string()),
        ("language", pa.string()),
        ("metadata", pa.string()),  # a JSON object (nested object in JSONL)
    ]
)
CANONICAL_COLUMNS: tuple[str, ...] = tuple(CANONICAL_SCHEMA.names)


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------


def _default_rpd() -> dict[str, int]:
    return {name: uc.default_requests_per_day for name, uc in w.USE_CASES.items()}


@dataclass(frozen=True, kw_only=True)
class SimulationSpec:
    """What to simulate. ``total_rows`` (if set) overrides the absolute ``requests_per_day``
    values and uses them only as weights; counts are then spread evenly over days, remainder to
    the earliest days, so the total is exact."""

    seed: int = 7
    start_date: dt.date = DEFAULT_START
    days: int = 30
    requests_per_day: dict[str, int] = field(default_factory=_default_rpd)
    total_rows: int | None = None
    experiments: bool = True
    drift: bool = True
    cost_spike: bool = True
    drift_day: int = 20
    cost_spike_day: int = 25
    production_share: float = 0.8
    n_units: int = 20_000
    include_cost: bool = False

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        unknown = set(self.requests_per_day) - set(w.USE_CASES)
        if unknown:
            raise ValueError(f"unknown use cases {sorted(unknown)}; known: {list(w.USE_CASES)}")
        if any(int(v) < 0 for v in self.requests_per_day.values()):
            raise ValueError("requests_per_day values must be >= 0")
        if self.total_rows is not None:
            if self.total_rows < 0:
                raise ValueError("total_rows must be >= 0")
            if sum(self.requests_per_day.values()) <= 0:
                raise ValueError("total_rows needs positive requests_per_day weights")
        if not 0.0 < self.production_share <= 1.0:
            raise ValueError(f"production_share must be in (0, 1], got {self.production_share}")
        if self.n_units < 1:
            raise ValueError("n_units must be >= 1")
        if isinstance(self.start_date, dt.datetime) or not isinstance(self.start_date, dt.date):
            raise TypeError("start_date must be a datetime.date")

    @property
    def use_cases(self) -> tuple[str, ...]:
        """Simulated use cases, in world order (those with a positive weight)."""
        return tuple(n for n in w.USE_CASE_NAMES if self.requests_per_day.get(n, 0) > 0)

    def counts(self) -> np.ndarray:
        """Exact row counts, shape (days, len(use_cases))."""
        names = self.use_cases
        if self.total_rows is None:
            row = np.array([int(self.requests_per_day[n]) for n in names], dtype=np.int64)
            return np.tile(row, (self.days, 1))
        weights = np.array([self.requests_per_day[n] for n in names], dtype=float)
        per_uc = _largest_remainder(self.total_rows, weights / weights.sum())
        out = np.zeros((self.days, len(names)), dtype=np.int64)
        for j, total in enumerate(per_uc):
            base, rem = divmod(int(total), self.days)
            out[:, j] = base
            out[:rem, j] += 1
        return out

    def day(self, index: int) -> dt.date:
        return self.start_date + dt.timedelta(days=index)

    @property
    def drift_active(self) -> bool:
        return self.drift and w.DRIFT_USE_CASE in self.use_cases and 0 <= self.drift_day < self.days

    @property
    def cost_spike_active(self) -> bool:
        return (
            self.cost_spike
            and w.SPIKE_USE_CASE in self.use_cases
            and 0 <= self.cost_spike_day < self.days
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["start_date"] = self.start_date.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulationSpec:
        values = dict(data)
        if isinstance(values.get("start_date"), str):
            values["start_date"] = dt.date.fromisoformat(values["start_date"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def split_requests_per_day(per_day: int) -> dict[str, int]:
    """Split ``per_day`` calls over the use cases by the default traffic mix (sums exactly)."""
    if per_day < 0:
        raise ValueError(f"requests per day must be >= 0, got {per_day}")
    weights = _default_rpd()
    shares = np.array(list(weights.values()), dtype=float)
    counts = _largest_remainder(per_day, shares / shares.sum())
    return dict(zip(weights, (int(c) for c in counts), strict=True))


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    raw = shares * total
    out = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: total - int(out.sum())]] += 1
    return out


# --------------------------------------------------------------------------------------------
# prices (genai-prices, offline)
# --------------------------------------------------------------------------------------------


@cache
def unit_prices(model: str) -> tuple[float, float]:
    """USD per input token and per output token of ``model`` from genai-prices (offline)."""
    from genai_prices import Usage, calc_price

    provider = w.MODELS[model].provider
    per_in = calc_price(Usage(input_tokens=1000, output_tokens=0), model, provider_id=provider)
    per_out = calc_price(Usage(input_tokens=0, output_tokens=1000), model, provider_id=provider)
    return float(per_in.total_price) / 1000.0, float(per_out.total_price) / 1000.0
