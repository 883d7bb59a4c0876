"""Traffic simulator: realistic canonical usage logs with a known ground truth.

Why: every strategy (experiments, search, frontier, budget, bandits, off-policy evaluation,
monitoring) needs data where the right answer is known. The world (use cases, models, prompts, the
true quality landscape) lives in :mod:`tasks.simulation.world`; this module turns a
:class:`SimulationSpec` into rows (vectorized numpy, one chunk per day so memory stays bounded),
writes them as Parquet / JSONL / CSV (optionally gzip) and writes ``ground_truth.json`` beside them.

Reproducible: each (day, use case) chunk draws from ``numpy.random.default_rng([seed, day, uc])``,
so the same spec gives identical rows and identical file bytes.

Example:

>>> spec = SimulationSpec(days=2, requests_per_day={"ticket-classify": 100})
>>> table = simulate(spec)
>>> table.num_rows
200
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.simulation import world as w
from tasks.simulation.world import (
    SimConfig,
    config_id_for,
    make_config,
    true_error_rate,
    true_quality,
)

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


# --------------------------------------------------------------------------------------------
# row generation
# --------------------------------------------------------------------------------------------

_SDK = {"openai": "openai-python/1.109", "anthropic": "anthropic-python/0.69"}
_APP_VERSIONS = ("2.4.0", "2.4.1", "2.5.0")
_MAX_TURN = 9


def _hash_unit(units: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) per unit (splitmix64 of unit index and salt)."""
    with np.errstate(over="ignore"):
        z = units.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _salt(text: str) -> int:
    return zlib.crc32(text.encode())


def _pick(u: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype=float))
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(weights) - 1)


@dataclass(frozen=True)
class _Arm:
    config: SimConfig
    propensity: float
    experiment_id: str | None = None
    variant_id: str | None = None
    role: str = "exploration"


def _arms(spec: SimulationSpec, use_case: str) -> tuple[list[_Arm], list[_Arm]]:
    """(production-slot arms, exploration arms) with their logging propensities.

    Production-slot arms split by a hash of unit_id when an experiment runs; the propensity
    logged is that of the CONFIG (the A/A arms share one config, so each logs 0.8).
    """
    prod = w.production_config(use_case)
    share = spec.production_share
    explore = w.exploration_configs(use_case) if share < 1.0 else ()
    exp_arms = [
        _Arm(c, round((1.0 - share) / len(explore), 12), role="exploration") for c in explore
    ]
    if spec.experiments and use_case == w.AB_USE_CASE:
        treat = w.ab_treatment_config()
        slot = [
            _Arm(prod, round(share / 2, 12), w.AB_EXPERIMENT_ID, "control", "production"),
            _Arm(treat, round(share / 2, 12), w.AB_EXPERIMENT_ID, "treatment", "experiment"),
        ]
    elif spec.experiments and use_case == w.AA_USE_CASE:
        slot = [
            _Arm(prod, share, w.AA_EXPERIMENT_ID, "control", "production"),
            _Arm(prod, share, w.AA_EXPERIMENT_ID, "treatment", "production"),
        ]
    else:
        slot = [_Arm(prod, share, role="production")]
    return slot, exp_arms


def _dict_array(indices: np.ndarray, values: Sequence[str | None]) -> pa.DictionaryArray:
    """Dictionary-encoded strings from category indices (a None in ``values`` becomes null).

    The dictionary is made unique first: Parquet output with duplicate dictionary entries is
    not byte-reproducible.
    """
    unique = list(dict.fromkeys(v for v in values if v is not None))
    remap = np.array([unique.index(v) if v is not None else -1 for v in values], dtype=np.int32)
    codes = remap[indices] if len(values) else indices.astype(np.int32)
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(
        pa.array(np.maximum(codes, 0), mask=mask if mask.any() else None),
        pa.array(unique or [""], pa.string()),
    )


def _fixed_width_strings(
    prefixes: list[str], prefix_idx: np.ndarray, numbers: np.ndarray
) -> pa.Array:
    """``prefix + zero-padded number`` built as raw bytes (much faster than string kernels)."""
    width = max(7, len(str(int(numbers.max()))) if len(numbers) else 7)
    encoded = [p.encode() for p in prefixes]
    too_big = len(numbers) * (len(encoded[0]) + width) >= 2**31 - 1  # int32 offsets
    if too_big or len({len(e) for e in encoded}) != 1:  # fall back to Arrow kernels
        digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
        return pc.binary_join_element_wise(
            _dict_array(prefix_idx, prefixes).cast(pa.string()), digits, ""
        )
    n, lp = len(numbers), len(encoded[0])
    table = np.frombuffer(b"".join(encoded), dtype=np.uint8).reshape(len(encoded), lp)
    buf = np.empty((n, lp + width), dtype=np.uint8)
    buf[:, :lp] = table[prefix_idx]
    rest = numbers.astype(np.int64).copy()
    for pos in range(lp + width - 1, lp - 1, -1):
        buf[:, pos] = 48 + rest % 10
        rest //= 10
    offsets = np.arange(0, (n + 1) * (lp + width), lp + width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf.tobytes())]
    )


@cache
def _unit_dictionary(n_units: int) -> pa.Array:
    return _fixed_width_strings(["u"], np.zeros(n_units, dtype=np.int64), np.arange(n_units))


@cache
def _metadata_dictionary() -> tuple[str, ...]:
    """Every metadata JSON the simulator writes (version x sdk x finish x turn x spike)."""
    out = []
    for version in _APP_VERSIONS:
        for sdk in _SDK.values():
            for finish in ("stop", "length", "error"):
                for turn in range(1, _MAX_TURN + 1):
                    for spike in ("", ',"max_tokens_override":true'):
                        out.append(
                            f'{{"app_version":"{version}","sdk":"{sdk}",'
                            f'"finish_reason":"{finish}","session_turn":{turn}{spike}}}'
                        )
    return tuple(out)


def _chunk(
    *,
    spec: SimulationSpec,
    use_case: str,
    day_index: int,
    n: int,
    rng: np.random.Generator,
    slot_arms: list[_Arm],
    explore_arms: list[_Arm],
    id_prefix: str,
) -> dict[str, Any]:
    """Draw ``n`` calls of one use case on one day; returns numpy columns + category tables."""
    uc = w.USE_CASES[use_case]
    arms = slot_arms + explore_arms
    # which arm served the call
    share = spec.production_share if explore_arms else 1.0
    in_slot = rng.random(n) < share
    units = np.floor(spec.n_units * rng.random(n) ** 1.5).astype(np.int64)
    arm = np.zeros(n, dtype=np.int64)
    if len(slot_arms) == 2:
        exp_id = slot_arms[0].experiment_id or ""
        arm = np.where(_hash_unit(units, _salt(exp_id)) < 0.5, 0, 1)
    if explore_arms:
        pick = len(slot_arms) + rng.integers(0, len(explore_arms), n)
        arm = np.where(in_slot, arm, pick)

    configs = [a.config for a in arms]
    model_idx = np.array([w.MODEL_NAMES.index(c.model) for c in configs])[arm]
    core = np.array(
        [w.core_quality(use_case, c.model, c.prompt_id, c.temperature, c.top_p) for c in configs]
    )[arm]
    max_tok = np.array([c.max_tokens for c in configs], dtype=np.int64)[arm]
    extra_in = np.array([uc.prompt_extra_input_tokens[c.prompt_id] for c in configs])[arm]
    err_rate = np.array([true_error_rate(use_case, c.model, c.max_tokens) for c in configs])[arm]
    prod_id = w.production_config(use_case).config_id
    is_prod = np.array([c.config_id == prod_id for c in configs])[arm]

    # context: task type per call; segment / region / language are properties of the user
    task = _pick(rng.random(n), uc.task_type_weights)
    segment = _pick(_hash_unit(units, 11), w.USER_SEGMENT_WEIGHTS)
    region = _pick(_hash_unit(units, 12), w.REGION_WEIGHTS)
    language = _pick(_hash_unit(units, 13), w.LANGUAGE_WEIGHTS)
    unit_effect = w.UNIT_EFFECT_HALF_WIDTH * (2 * _hash_unit(units, 14) - 1)

    # time of day
    hour = _pick(rng.random(n), w.HOUR_WEIGHTS)
    day_start = dt.datetime.combine(spec.day(day_index), dt.time(), tzinfo=dt.UTC)
    start_us = int(day_start.timestamp()) * 1_000_000
    ts = start_us + hour * 3_600_000_000 + (rng.random(n) * 3_600_000_000).astype(np.int64)

    # tokens
    drifted = spec.drift_active and use_case == w.DRIFT_USE_CASE and day_index >= spec.drift_day
    in_factor = w.DRIFT_INPUT_TOKEN_FACTOR if drifted else 1.0
    input_tokens = (
        np.floor(
            uc.input_median * np.exp(uc.input_sigma * rng.standard_normal(n)) * in_factor + 0.5
        ).astype(np.int64)
        + extra_in
    )
    desired = np.maximum(
        1, np.rint(uc.output_median * np.exp(uc.output_sigma * rng.standard_normal(n)))
    ).astype(np.int64)
    truncated = desired > max_tok
    output_tokens = np.minimum(desired, max_tok)
    spiked = (
        spec.cost_spike_active and use_case == w.SPIKE_USE_CASE and day_index == spec.cost_spike_day
    )
    logged_max = max_tok
    if spiked:  # a deploy multiplied max_tokens: every answer bills 3x the output tokens
        factor = w.SPIKE_OUTPUT_TOKEN_FACTOR
        output_tokens = output_tokens * factor
        logged_max = max_tok * factor

    # errors
    failed = rng.random(n) < err_rate
    etype = _pick(rng.random(n), w.ERROR_TYPE_SHARES)
    input_tokens = np.where(failed & (etype == 0), 0, input_tokens)  # rate limited: not billed
    output_tokens = np.where(failed, 0, output_tokens)

    # quality and feedback
    lang_eff = np.asarray(w.LANGUAGE_QUALITY_EFFECT)[language]
    small = np.array([w.MODELS[m].small for m in w.MODEL_NAMES])[model_idx]
    lang_eff = lang_eff - np.where(
        small & (language == w.LANGUAGES.index("ja")), w.SMALL_MODEL_JA_PENALTY, 0.0
    )
    effect = np.asarray(uc.task_type_effects)[task] + lang_eff + unit_effect
    mu = w.row_quality_mean(core, truncated, effect)
    if drifted:
        mu = np.where(is_prod, mu * w.DRIFT_QUALITY_FACTOR, mu)
    k = w.QUALITY_CONCENTRATION
    quality = np.round(rng.beta(mu * k, (1.0 - mu) * k), 4)
    fb_given = (rng.random(n) < w.FEEDBACK_RATE) & ~failed
    fb_u = rng.random(n)
    p_pos = w.FEEDBACK_POSITIVE_SLOPE * quality
    p_neg = w.FEEDBACK_NEGATIVE_SLOPE * (1 - quality)
    feedback = np.where(fb_u < p_pos, 1, np.where(fb_u < p_pos + p_neg, -1, 0)).astype(np.int8)

    # latency
    base = np.array([w.MODELS[m].latency_base_ms for m in w.MODEL_NAMES])[model_idx]
    per_out = np.array([w.MODELS[m].latency_ms_per_output_token for m in w.MODEL_NAMES])[model_idx]
    per_in = np.array([w.MODELS[m].latency_ms_per_input_token for m in w.MODEL_NAMES])[model_idx]
    sigma = np.array([w.MODELS[m].latency_sigma for m in w.MODEL_NAMES])[model_idx]
    ttft_base = np.array([w.MODELS[m].ttft_base_ms for m in w.MODEL_NAMES])[model_idx]
    load = np.asarray(w.REGION_LATENCY_FACTOR)[region] * w.hour_latency_factor()[hour]
    z = rng.standard_normal(n)
    latency_ok = (base + per_out * output_tokens + per_in * input_tokens) * load
    latency_ok = latency_ok * np.exp(sigma * z - sigma**2 / 2)
    e_med = np.asarray(w.ERROR_LATENCY_MEDIAN_MS)[etype]
    e_sig = np.asarray(w.ERROR_LATENCY_SIGMA)[etype]
    latency_err = e_med * np.exp(e_sig * z)
    latency = np.round(np.where(failed, latency_err, latency_ok), 1)
    ttft = (
        (ttft_base + 0.02 * input_tokens)
        * load
        * np.exp(w.LATENCY_SIGMA_TTFT * rng.standard_normal(n))
    )
    ttft = np.round(np.minimum(ttft, 0.9 * latency), 1)  # first token precedes the last

    # metadata (a few realistic extras) and ids
    finish = np.where(failed, 2, np.where(truncated, 1, 0))
    turn = np.minimum(rng.geometric(0.6, n), _MAX_TURN)
    version = rng.integers(0, len(_APP_VERSIONS), n)
    seq = np.arange(n, dtype=np.int64)

    return {
        "n": n,
        "arm": arm,
        "arms": arms,
        "ts": ts,
        "units": units,
        "task": task,
        "segment": segment,
        "region": region,
        "language": language,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "logged_max": logged_max,
        "failed": failed,
        "etype": etype,
        "quality": quality,
        "fb_given": fb_given,
        "feedback": feedback,
        "latency": latency,
        "ttft": ttft,
        "finish": finish,
        "turn": turn,
        "version": version,
        "seq": seq,
        "spiked": spiked,
        "use_case": use_case,
        "id_prefix": f"{id_prefix}-{spec.day(day_index):%Y%m%d}-{uc.code}-",
    }


def _to_table(chunks: list[dict[str, Any]], spec: SimulationSpec, *, decode: bool) -> pa.Table:
    """Merge per-use-case chunks of a day, sort by time, build the canonical Arrow table."""
    chunks = [c for c in chunks if c["n"] > 0]
    if not chunks:
        return CANONICAL_SCHEMA.empty_table()
    cat = np.concatenate
    order = np.argsort(cat([c["ts"] for c in chunks]), kind="stable")

    # global arm table across use cases
    arm_offsets = np.cumsum([0] + [len(c["arms"]) for c in chunks])[:-1]
    all_arms: list[_Arm] = [a for c in chunks for a in c["arms"]]
    arm = cat([c["arm"] + off for c, off in zip(chunks, arm_offsets, strict=True)])[order]
    uc_idx = cat([np.full(c["n"], i) for i, c in enumerate(chunks)])[order]

    def col(name: str) -> np.ndarray:
        return cat([c[name] for c in chunks])[order]

    failed = col("failed")
    fb_given = col("fb_given")
    spiked = cat([np.full(c["n"], c["spiked"]) for c in chunks])[order]
    out_tokens = col("output_tokens")
    in_tokens = col("input_tokens")
    models = [a.config.model for a in all_arms]

    cost: pa.Array
    if spec.include_cost:
        p_in = np.array([unit_prices(m)[0] for m in models])[arm]
        p_out = np.array([unit_prices(m)[1] for m in models])[arm]
        cost = pa.array(in_tokens * p_in + out_tokens * p_out, pa.float64())
    else:
        cost = pa.nulls(len(arm), pa.float64())

    request_id = _fixed_width_strings([c["id_prefix"] for c in chunks], uc_idx, col("seq"))
    unit_id = pa.DictionaryArray.from_arrays(
        pa.array(col("units").astype(np.int32)), _unit_dictionary(spec.n_units)
    )
    task_names = [t for c in chunks for t in w.USE_CASES[c["use_case"]].task_types]
    task_off = np.cumsum([0] + [len(w.USE_CASES[c["use_case"]].task_types) for c in chunks])
    task = cat([c["task"] + task_off[i] for i, c in enumerate(chunks)])[order]

    # metadata JSON: index into the small dictionary of every possible object
    sdk_idx = np.array([list(_SDK).index(a.config.provider) for a in all_arms])[arm]
    meta_idx = (
        ((col("version") * len(_SDK) + sdk_idx) * 3 + col("finish")) * _MAX_TURN + col("turn") - 1
    ) * 2 + spiked
    meta = _dict_array(meta_idx, list(_metadata_dictionary()))
    columns = {
        "request_id": request_id,
        "timestamp": pa.array(col("ts"), pa.timestamp("us", tz="UTC")),
        "use_case": _dict_array(uc_idx, [c["use_case"] for c in chunks]),
        "model": _dict_array(arm, models),
        "provider": _dict_array(arm, [a.config.provider for a in all_arms]),
        "prompt_id": _dict_array(arm, [a.config.prompt_id for a in all_arms]),
        "config_id": _dict_array(arm, [a.config.config_id for a in all_arms]),
        "experiment_id": _dict_array(arm, [a.experiment_id for a in all_arms]),
        "variant_id": _dict_array(arm, [a.variant_id for a in all_arms]),
        "unit_id": unit_id,
        "propensity": pa.array(np.array([a.propensity for a in all_arms])[arm]),
        "temperature": pa.array(np.array([a.config.temperature for a in all_arms])[arm]),
        "top_p": pa.array(np.array([a.config.top_p for a in all_arms])[arm]),
        "max_tokens": pa.array(col("logged_max").astype(np.int32)),
        "input_tokens": pa.array(in_tokens),
        "output_tokens": pa.array(out_tokens),
        "latency_ms": pa.array(col("latency")),
        "ttft_ms": pa.array(col("ttft"), mask=failed),
        "cost_usd": cost,
        "status": _dict_array(failed.astype(np.int64), ["success", "error"]),
        "error_type": _dict_array(
            np.where(failed, col("etype"), len(w.ERROR_TYPES)), [*w.ERROR_TYPES, None]
        ),
        "quality": pa.array(col("quality"), mask=failed),
        "feedback": pa.array(col("feedback"), mask=~fb_given),
        "task_type": _dict_array(task, task_names),
        "user_segment": _dict_array(col("segment"), list(w.USER_SEGMENTS)),
        "region": _dict_array(col("region"), list(w.REGIONS)),
        "language": _dict_array(col("language"), list(w.LANGUAGES)),
        "metadata": meta,
    }
    table = pa.Table.from_pydict(columns)
    return _decode(table) if decode else table


def _decode(table: pa.Table) -> pa.Table:
    """Plain-string columns (the canonical schema) from dictionary-encoded ones."""
    return table.cast(CANONICAL_SCHEMA)


def _day_table(
    spec: SimulationSpec, day_index: int, counts: np.ndarray, *, decode: bool = True
) -> pa.Table:
    chunks = []
    for j, use_case in enumerate(spec.use_cases):
        uc_index = w.USE_CASE_NAMES.index(use_case)
        slot, explore = _arms(spec, use_case)
        rng = np.random.default_rng([spec.seed, day_index, uc_index])
        chunks.append(
            _chunk(
                spec=spec,
                use_case=use_case,
                day_index=day_index,
                n=int(counts[day_index, j]),
                rng=rng,
                slot_arms=slot,
                explore_arms=explore,
                id_prefix=f"s{spec.seed}",
            )
        )
    return _to_table(chunks, spec, decode=decode)


def _check_days(spec: SimulationSpec, days: Sequence[int] | None) -> list[int]:
    if days is None:
        return list(range(spec.days))
    bad = [d for d in days if not 0 <= d < spec.days]
    if bad:
        raise ValueError(f"day indexes {bad} outside 0..{spec.days - 1}")
    return sorted(set(days))


def iter_simulation(
    spec: SimulationSpec, *, decode: bool = True, days: Sequence[int] | None = None
) -> Iterator[tuple[dt.date, pa.Table]]:
    """Yield ``(day, table)`` one simulated day at a time (bounded memory).

    ``days`` picks day indexes of the spec (default: all); a day's rows do not depend on which
    other days are generated, so a demo can replay the month night by night.
    ``decode=False`` keeps string columns dictionary-encoded (same values, faster to write).
    """
    counts = spec.counts()
    for d in _check_days(spec, days):
        yield spec.day(d), _day_table(spec, d, counts, decode=decode)


def simulate(spec: SimulationSpec) -> pa.Table:
    """All simulated rows as one canonical Arrow table (big runs: :func:`write_simulation`)."""
    tables = [t for _, t in iter_simulation(spec)]
    return pa.concat_tables(tables) if tables else CANONICAL_SCHEMA.empty_table()


def simulate_config_traffic(  # noqa: PLR0917 - signature agreed with the search engineer
    spec: SimulationSpec,
    use_case: str,
    config: SimConfig | Mapping[str, Any],
    n: int,
    day: int,
    seed: int,
    *,
    propensity: float = 1.0,
) -> pa.Table:
    """Serve ``n`` calls of ANY configuration (e.g. an Optuna candidate) on day index ``day``.

    The rows follow the same world as :func:`simulate` (context mix, drift of input lengths and
    the cost spike on their days); ``experiment_id`` is null and ``propensity`` is as given.
    ``config`` is a :class:`SimConfig` or a mapping with model, prompt_id, temperature, top_p,
    max_tokens (``config_id`` is derived when missing).
    """
    if use_case not in w.USE_CASES:
        raise ValueError(f"unknown use case {use_case!r}; known: {list(w.USE_CASES)}")
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 < propensity <= 1.0:
        raise ValueError(f"propensity must be in (0, 1], got {propensity}")
    cfg = config if isinstance(config, SimConfig) else _config_from_mapping(use_case, config)
    rng = np.random.default_rng([seed, day, w.USE_CASE_NAMES.index(use_case), _salt(cfg.config_id)])
    chunk = _chunk(
        spec=spec,
        use_case=use_case,
        day_index=day,
        n=n,
        rng=rng,
        slot_arms=[_Arm(cfg, propensity, role="candidate")],
        explore_arms=[],
        id_prefix=f"x{seed}-{_salt(cfg.config_id):08x}",
    )
    return _to_table([chunk], spec, decode=True) if n else CANONICAL_SCHEMA.empty_table()


def _config_from_mapping(use_case: str, data: Mapping[str, Any]) -> SimConfig:
    try:
        cfg = make_config(
            use_case,
            str(data["model"]),
            str(data["prompt_id"]),
            float(data["temperature"]),
            float(data["top_p"]),
            int(data["max_tokens"]),
        )
    except KeyError as exc:
        raise ValueError(f"config is missing {exc.args[0]!r}") from exc
    except TypeError as exc:
        bad = {k: data.get(k) for k in ("temperature", "top_p", "max_tokens")}
        raise ValueError(f"config has non-numeric parameters {bad}: {exc}") from exc
    if data.get("config_id"):
        cfg = dataclasses.replace(cfg, config_id=str(data["config_id"]))
    return cfg


# --------------------------------------------------------------------------------------------
# ground truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigTruth:
    """True expected behaviour of one configuration (means over ALL calls unless noted)."""

    config_id: str
    model: str
    provider: str
    prompt_id: str
    temperature: float
    top_p: float
    max_tokens: int
    role: str  # production | experiment | exploration | candidate
    propensity: float  # logging probability (0 for configs not logged)
    true_mean_quality: float  # over successful calls (errors have no quality)
    true_error_rate: float
    true_mean_cost_usd: float  # per request, errors included (rate limits bill nothing)
    true_mean_latency_ms: float  # successful calls
    true_p95_latency_ms: float  # successful calls, Monte Carlo with P95_DRAWS draws
    true_mean_input_tokens: float
    true_mean_output_tokens: float  # successful calls
    true_truncation_rate: float
    true_positive_feedback_share: float  # P(+1 | feedback given)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the configuration space (per use case prompts and max_tokens choices)."""

    models: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    temperature: tuple[float, float]
    top_p: tuple[float, float]
    max_tokens: tuple[int, ...]


@dataclass(frozen=True)
class OptimalConfig:
    """The true best configuration for an objective, found on a grid of the search space."""

    objective: str
    config_id: str
    model: str
    prompt_id: str
    temperature: float
    top_p: float
    max_tokens: int
    true_mean_quality: float
    true_mean_cost_usd: float
    true_error_rate: float


@dataclass(frozen=True)
class UseCaseTruth:
    use_case: str
    production_config_id: str
    requests_per_day: int
    configs: tuple[ConfigTruth, ...]
    search_space: SearchSpace
    optimal: OptimalConfig  # default objective (see DEFAULT_OBJECTIVE)
    optimal_quality: OptimalConfig  # quality only, cost ignored
    best_logged_config_id: str  # highest true quality among logged configs

    def config(self, config_id: str) -> ConfigTruth:
        for c in self.configs:
            if c.config_id == config_id:
                return c
        raise KeyError(config_id)

    def policy_value(self, policy: Mapping[str, float]) -> float:
        """True expected quality per request of serving ``policy`` (config id -> probability).

        An errored call scores 0, matching the off-policy estimators' ``quality`` reward.
        """
        return sum(
            share * (1.0 - self.config(cid).true_error_rate) * self.config(cid).true_mean_quality
            for cid, share in policy.items()
        )


@dataclass(frozen=True)
class ArmTruth:
    variant_id: str
    config_id: str
    weight: float
    true_mean_quality: float
    true_error_rate: float
    true_mean_cost_usd: float
    true_mean_latency_ms: float
    true_p95_latency_ms: float


@dataclass(frozen=True)
class ExperimentTruth:
    experiment_id: str
    use_case: str
    unit: str
    primary_metric: str
    arms: tuple[ArmTruth, ...]  # arm 0 is control
    true_absolute_lift: float
    true_relative_lift: float
    guardrail_harm: bool
    guardrail_deltas: dict[str, float]  # treatment - control per guardrail metric
    start_date: str
    end_date: str


@dataclass(frozen=True)
class DriftTruth:
    use_case: str
    start_day_index: int
    start_date: str
    config_id: str  # the production config whose quality drops
    quality_factor: float
    quality_before: float
    quality_after: float
    input_token_factor: float  # all calls of the use case
    input_tokens_before: float
    input_tokens_after: float
    description: str


@dataclass(frozen=True)
class CostSpikeTruth:
    use_case: str
    day_index: int
    date: str
    output_token_factor: float
    cost_factor: float  # expected cost per request of the use case on that day / a normal day
    cost_per_request_normal: float
    cost_per_request_spike: float
    description: str


DEFAULT_OBJECTIVE = (
    "max true_mean_quality subject to true_mean_cost_usd <= production's and "
    "true_error_rate <= production's (grid: temperature step 0.05, top_p step 0.05)"
)


@dataclass(frozen=True)
class GroundTruth:
    """Everything true about a simulation, as written to ``ground_truth.json``."""

    spec: SimulationSpec
    use_cases: dict[str, UseCaseTruth]
    experiments: tuple[ExperimentTruth, ...]
    drift: DriftTruth | None
    cost_spike: CostSpikeTruth | None
    prices: dict[str, dict[str, float]]  # model -> usd per input / output token
    default_objective: str = DEFAULT_OBJECTIVE
    version: int = 1

    def experiment(self, experiment_id: str) -> ExperimentTruth:
        for e in self.experiments:
            if e.experiment_id == experiment_id:
                return e
        raise KeyError(experiment_id)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["spec"] = self.spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroundTruth:
        def uc(d: Mapping[str, Any]) -> UseCaseTruth:
            return UseCaseTruth(
                use_case=d["use_case"],
                production_config_id=d["production_config_id"],
                requests_per_day=d["requests_per_day"],
                configs=tuple(ConfigTruth(**c) for c in d["configs"]),
                search_space=SearchSpace(**{k: tuple(v) for k, v in d["search_space"].items()}),
                optimal=OptimalConfig(**d["optimal"]),
                optimal_quality=OptimalConfig(**d["optimal_quality"]),
                best_logged_config_id=d["best_logged_config_id"],
            )

        def exp(d: Mapping[str, Any]) -> ExperimentTruth:
            values = dict(d)
            values["arms"] = tuple(ArmTruth(**a) for a in d["arms"])
            return ExperimentTruth(**values)

        return cls(
            spec=SimulationSpec.from_dict(data["spec"]),
            use_cases={k: uc(v) for k, v in data["use_cases"].items()},
            experiments=tuple(exp(e) for e in data["experiments"]),
            drift=DriftTruth(**data["drift"]) if data.get("drift") else None,
            cost_spike=CostSpikeTruth(**data["cost_spike"]) if data.get("cost_spike") else None,
            prices=dict(data["prices"]),
            default_objective=data.get("default_objective", DEFAULT_OBJECTIVE),
            version=int(data.get("version", 1)),
        )


def true_mean_cost_usd(
    use_case: str,
    model: str,
    prompt_id: str,
    max_tokens: int,
    *,
    input_factor: float = 1.0,
    output_factor: float = 1.0,
) -> float:
    """Expected cost per request (errors included: rate limits bill nothing, other errors bill
    the input only), priced with genai-prices."""
    p_in, p_out = unit_prices(model)
    err = true_error_rate(use_case, model, max_tokens)
    rl_share = w.ERROR_TYPE_SHARES[0] / sum(w.ERROR_TYPE_SHARES)
    e_in = w.expected_input_tokens(use_case, prompt_id, input_factor) * (1 - err * rl_share)
    e_out = w.expected_output_tokens(use_case, max_tokens) * output_factor * (1 - err)
    return e_in * p_in + e_out * p_out


def _p95_latency(spec: SimulationSpec, use_case: str, cfg: SimConfig) -> float:
    rng = np.random.default_rng([_salt(cfg.config_id), 95])
    normal = dataclasses.replace(spec, drift=False, cost_spike=False, experiments=False)
    chunk = _chunk(
        spec=normal,
        use_case=use_case,
        day_index=0,
        n=P95_DRAWS,
        rng=rng,
        slot_arms=[_Arm(cfg, 1.0)],
        explore_arms=[],
        id_prefix="p95",
    )
    return float(np.quantile(chunk["latency"][~chunk["failed"]], 0.95))


def config_truth(
    use_case: str,
    config: SimConfig,
    *,
    role: str = "candidate",
    propensity: float = 0.0,
    spec: SimulationSpec | None = None,
) -> ConfigTruth:
    """True expected quality / cost / latency / errors of ANY configuration (normal days)."""
    c = config
    quality = true_quality(use_case, c.model, c.prompt_id, c.temperature, c.top_p, c.max_tokens)
    # P(+1 | given) = 0.9 E[q]; the Beta noise is unbiased so E[q] is the true quality
    return ConfigTruth(
        config_id=c.config_id,
        model=c.model,
        provider=c.provider,
        prompt_id=c.prompt_id,
        temperature=c.temperature,
        top_p=c.top_p,
        max_tokens=c.max_tokens,
        role=role,
        propensity=propensity,
        true_mean_quality=quality,
        true_error_rate=true_error_rate(use_case, c.model, c.max_tokens),
        true_mean_cost_usd=true_mean_cost_usd(use_case, c.model, c.prompt_id, c.max_tokens),
        true_mean_latency_ms=w.true_mean_latency_ms(use_case, c.model, c.prompt_id, c.max_tokens),
        true_p95_latency_ms=_p95_latency(spec or SimulationSpec(), use_case, c),
        true_mean_input_tokens=w.expected_input_tokens(use_case, c.prompt_id),
        true_mean_output_tokens=w.expected_output_tokens(use_case, c.max_tokens),
        true_truncation_rate=w.truncation_probability(use_case, c.max_tokens),
        true_positive_feedback_share=w.FEEDBACK_POSITIVE_SLOPE * quality,
    )


def search_space(use_case: str) -> SearchSpace:
    uc = w.USE_CASES[use_case]
    return SearchSpace(
        models=w.MODEL_NAMES,
        prompt_ids=tuple(uc.prompts),
        temperature=w.TEMPERATURE_BOUNDS,
        top_p=w.TOP_P_BOUNDS,
        max_tokens=uc.max_tokens_choices,
    )


def true_optimum(
    use_case: str, *, max_cost_usd: float | None = None, max_error_rate: float | None = None
) -> OptimalConfig:
    """Best true quality on a 0.05 grid of temperature / top_p, optionally under cost / error caps.

    Quality is separable: for each (model, prompt, max_tokens) the best temperature / top_p is the
    grid point nearest the use case optimum, so the search is small and exact on the grid.
    """
    space = search_space(use_case)
    temps = np.round(np.arange(0.0, 1.5 + 1e-9, 0.05), 2)
    tops = np.round(np.arange(0.5, 1.0 + 1e-9, 0.05), 2)
    best: OptimalConfig | None = None
    for model in space.models:
        for prompt in space.prompt_ids:
            core = np.array(
                [[w.core_quality(use_case, model, prompt, t, p) for p in tops] for t in temps]
            )
            ti, pi = np.unravel_index(int(np.argmax(core)), core.shape)
            temp, top = float(temps[ti]), float(tops[pi])
            for max_tokens in space.max_tokens:
                cost = true_mean_cost_usd(use_case, model, prompt, max_tokens)
                err = true_error_rate(use_case, model, max_tokens)
                if max_cost_usd is not None and cost > max_cost_usd * (1 + 1e-12):
                    continue
                if max_error_rate is not None and err > max_error_rate * (1 + 1e-12):
                    continue
                q = true_quality(use_case, model, prompt, temp, top, max_tokens)
                if best is None or q > best.true_mean_quality:
                    best = OptimalConfig(
                        objective="",
                        config_id=config_id_for(use_case, model, prompt, temp, top, max_tokens),
                        model=model,
                        prompt_id=prompt,
                        temperature=temp,
                        top_p=top,
                        max_tokens=max_tokens,
                        true_mean_quality=q,
                        true_mean_cost_usd=cost,
                        true_error_rate=err,
                    )
    if best is None:
        raise ValueError(f"no configuration of {use_case} satisfies the caps")
    return best


def ground_truth(spec: SimulationSpec) -> GroundTruth:
    """Compute the ground truth of ``spec`` (pure: no files; a second or two, then cached)."""
    return _ground_truth_cached(json.dumps(spec.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=16)
def _ground_truth_cached(spec_json: str) -> GroundTruth:
    spec = SimulationSpec.from_dict(json.loads(spec_json))
    counts = spec.counts()
    use_cases: dict[str, UseCaseTruth] = {}
    for j, use_case in enumerate(spec.use_cases):
        slot, explore = _arms(spec, use_case)
        seen: dict[str, ConfigTruth] = {}
        for a in slot + explore:
            if a.config.config_id not in seen:
                seen[a.config.config_id] = config_truth(
                    use_case, a.config, role=a.role, propensity=a.propensity, spec=spec
                )
        prod = w.production_config(use_case)
        prod_truth = seen[prod.config_id]
        optimal = dataclasses.replace(
            true_optimum(
                use_case,
                max_cost_usd=prod_truth.true_mean_cost_usd,
                max_error_rate=prod_truth.true_error_rate,
            ),
            objective=DEFAULT_OBJECTIVE,
        )
        quality_only = dataclasses.replace(true_optimum(use_case), objective="max true quality")
        best_logged = max(seen.values(), key=lambda c: c.true_mean_quality)
        use_cases[use_case] = UseCaseTruth(
            use_case=use_case,
            production_config_id=prod.config_id,
            requests_per_day=round(float(counts[:, j].mean())),
            configs=tuple(seen.values()),
            search_space=search_space(use_case),
            optimal=optimal,
            optimal_quality=quality_only,
            best_logged_config_id=best_logged.config_id,
        )

    experiments: list[ExperimentTruth] = []
    if spec.experiments:
        for exp_id, use_case in (
            (w.AB_EXPERIMENT_ID, w.AB_USE_CASE),
            (w.AA_EXPERIMENT_ID, w.AA_USE_CASE),
        ):
            if use_case not in use_cases:
                continue
            slot, _ = _arms(spec, use_case)
            truths = use_cases[use_case]
            arms = tuple(
                ArmTruth(
                    variant_id=a.variant_id or "",
                    config_id=a.config.config_id,
                    weight=0.5,
                    true_mean_quality=(t := truths.config(a.config.config_id)).true_mean_quality,
                    true_error_rate=t.true_error_rate,
                    true_mean_cost_usd=t.true_mean_cost_usd,
                    true_mean_latency_ms=t.true_mean_latency_ms,
                    true_p95_latency_ms=t.true_p95_latency_ms,
                )
                for a in slot
            )
            control, treat = arms
            deltas = {
                "error_rate": treat.true_error_rate - control.true_error_rate,
                "cost_usd": treat.true_mean_cost_usd - control.true_mean_cost_usd,
                "latency_ms": treat.true_mean_latency_ms - control.true_mean_latency_ms,
            }
            lift = treat.true_mean_quality - control.true_mean_quality
            experiments.append(
                ExperimentTruth(
                    experiment_id=exp_id,
                    use_case=use_case,
                    unit="unit_id",
                    primary_metric="quality",
                    arms=arms,
                    true_absolute_lift=lift,
                    true_relative_lift=lift / control.true_mean_quality,
                    guardrail_harm=any(v > 1e-12 for v in deltas.values()),
                    guardrail_deltas=deltas,
                    start_date=spec.day(0).isoformat(),
                    end_date=spec.day(spec.days - 1).isoformat(),
                )
            )

    drift = None
    if spec.drift_active:
        prod = w.production_config(w.DRIFT_USE_CASE)
        before = use_cases[w.DRIFT_USE_CASE].config(prod.config_id).true_mean_quality
        drift = DriftTruth(
            use_case=w.DRIFT_USE_CASE,
            start_day_index=spec.drift_day,
            start_date=spec.day(spec.drift_day).isoformat(),
            config_id=prod.config_id,
            quality_factor=w.DRIFT_QUALITY_FACTOR,
            quality_before=before,
            quality_after=before * w.DRIFT_QUALITY_FACTOR,
            input_token_factor=w.DRIFT_INPUT_TOKEN_FACTOR,
            input_tokens_before=w.USE_CASES[w.DRIFT_USE_CASE].input_median
            * float(np.exp(w.USE_CASES[w.DRIFT_USE_CASE].input_sigma ** 2 / 2)),
            input_tokens_after=w.USE_CASES[w.DRIFT_USE_CASE].input_median
            * float(np.exp(w.USE_CASES[w.DRIFT_USE_CASE].input_sigma ** 2 / 2))
            * w.DRIFT_INPUT_TOKEN_FACTOR,
            description=(
                "from start_date on: quality of the production config x0.75 (25% relative drop); "
                "input tokens of every sales-email call x1.4 (prompt extras excluded)"
            ),
        )

    spike = None
    if spec.cost_spike_active:
        uc_truth = use_cases[w.SPIKE_USE_CASE]
        normal = sum(c.propensity * c.true_mean_cost_usd for c in uc_truth.configs)
        spiked = sum(
            c.propensity
            * true_mean_cost_usd(
                w.SPIKE_USE_CASE,
                c.model,
                c.prompt_id,
                c.max_tokens,
                output_factor=w.SPIKE_OUTPUT_TOKEN_FACTOR,
            )
            for c in uc_truth.configs
        )
        spike = CostSpikeTruth(
            use_case=w.SPIKE_USE_CASE,
            day_index=spec.cost_spike_day,
            date=spec.day(spec.cost_spike_day).isoformat(),
            output_token_factor=float(w.SPIKE_OUTPUT_TOKEN_FACTOR),
            cost_factor=spiked / normal,
            cost_per_request_normal=normal,
            cost_per_request_spike=spiked,
            description=(
                "one day: every code-review call bills 3x the output tokens (a deploy tripled "
                "max_tokens; logged max_tokens is 3x, metadata.max_tokens_override=true)"
            ),
        )

    prices = {
        m: {"input_usd_per_token": unit_prices(m)[0], "output_usd_per_token": unit_prices(m)[1]}
        for m in w.MODEL_NAMES
    }
    return GroundTruth(
        spec=spec,
        use_cases=use_cases,
        experiments=tuple(experiments),
        drift=drift,
        cost_spike=spike,
        prices=prices,
    )


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``ground_truth.json`` (a file, or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / GROUND_TRUTH_FILE
    return GroundTruth.from_dict(json.loads(p.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationOutput:
    """What :func:`write_simulation` wrote."""

    out_dir: Path
    paths: tuple[Path, ...]
    ground_truth_path: Path
    rows: int
    fmt: str
    compress: bool
    seconds: float
    rows_per_day: tuple[int, ...]  # one entry per written day, in day order


_PARQUET_DICTIONARY_COLUMNS = [
    f.name for f in CANONICAL_SCHEMA if pa.types.is_string(f.type) and f.name != "request_id"
]
_PARQUET_STATISTICS_COLUMNS = ["timestamp", "use_case", "model", "config_id", "experiment_id"]
_OUR_FILES = re.compile(
    r"^usage-(?P<day>\d{4}-\d{2}-\d{2})(-part\d+)?\.(parquet|jsonl|csv)(\.gz)?$"
)


def _text_table(table: pa.Table) -> pa.Table:
    """Timestamp as ISO 8601 UTC with 'Z' and microseconds (``2026-10-01T00:00:51.603997Z``)."""
    iso = pc.strftime(table["timestamp"], format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(table.schema.get_field_index("timestamp"), "timestamp", iso)


def _write_one(table: pa.Table, path: Path, fmt: str, compress: bool) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # Without the stored Arrow schema readers see plain strings, not dictionaries. Dictionary
        # pages only where values repeat, statistics only on the columns queries filter on: this
        # halves the write time.
        pq.write_table(
            table,
            path,
            compression="zstd" if compress else "snappy",
            store_schema=False,
            use_dictionary=_PARQUET_DICTIONARY_COLUMNS,
            write_statistics=_PARQUET_STATISTICS_COLUMNS,
        )
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        text = _text_table(table)
        if compress:
            with pa.CompressedOutputStream(str(path), "gzip") as sink:
                pacsv.write_csv(text, sink)
        else:
            pacsv.write_csv(text, str(path))
    elif fmt == "jsonl":
        import duckdb

        text = _text_table(table)
        cols = ", ".join(
            "metadata::JSON AS metadata" if c == "metadata" else f'"{c}"' for c in text.column_names
        )
        options = "FORMAT json" + (", COMPRESSION gzip" if compress else "")
        con = duckdb.connect(":memory:")
        try:
            con.register("sim_rows", text)
            con.execute(f"COPY (SELECT {cols} FROM sim_rows) TO '{path}' ({options})")
        finally:
            con.close()
    else:  # pragma: no cover - checked by the caller
        raise ValueError(fmt)


def write_simulation(
    spec: SimulationSpec,
    out_dir: str | Path,
    fmt: Format | str = "parquet",
    compress: bool = False,
    rows_per_file: int | None = None,
    *,
    days: Sequence[int] | None = None,
) -> SimulationOutput:
    """Write one file per day (split into parts of at most ``rows_per_file`` rows) and
    ``ground_truth.json`` (always for the whole spec). Same spec -> identical bytes.

    Without ``days``, earlier simulator files in ``out_dir`` are removed first, so the folder
    holds exactly one simulation. With ``days`` (day indexes), only those days are (re)written
    and other days' files are kept: a nightly demo appends one day at a time.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if rows_per_file is not None and rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    day_indexes = _check_days(spec, days)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    replaced = {spec.day(d).isoformat() for d in day_indexes}
    for old in out.iterdir():
        match = _OUR_FILES.match(old.name)
        if match and (days is None or match.group("day") in replaced):
            old.unlink()
    suffix = f".{fmt}" + (".gz" if compress and fmt != "parquet" else "")
    paths: list[Path] = []
    per_day: list[int] = []
    total = 0
    for day, table in iter_simulation(spec, decode=fmt != "parquet", days=day_indexes):
        per_day.append(table.num_rows)
        total += table.num_rows
        if table.num_rows == 0:
            continue
        size = rows_per_file or table.num_rows
        parts = range(0, table.num_rows, size)
        for i, start in enumerate(parts):
            name = f"usage-{day.isoformat()}" + (f"-part{i:03d}" if len(parts) > 1 else "")
            path = out / f"{name}{suffix}"
            _write_one(table.slice(start, size), path, fmt, compress)
            paths.append(path)
    truth = ground_truth(spec)
    gt_path = out / GROUND_TRUTH_FILE
    gt_path.write_text(json.dumps(truth.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    return SimulationOutput(
        out_dir=out,
        paths=tuple(paths),
        ground_truth_path=gt_path,
        rows=total,
        fmt=fmt,
        compress=compress,
        seconds=time.perf_counter() - started,
        rows_per_day=tuple(per_day),
    )


LOAD_SIMULATED_SQL = """
INSERT INTO usage_logs BY NAME
SELECT * EXCLUDE ("timestamp", metadata, cost_usd),
       "timestamp" AS ts,
       CAST(timezone('UTC', "timestamp") AS DATE) AS day,
       coalesce(cost_usd, 0.0) AS cost_usd,
       'log' AS cost_source,
       CAST(metadata AS JSON) AS metadata,
       $label AS source_file,
       row_number() OVER () AS source_line,
       $label AS ingest_id
FROM simulated_rows
"""


def load_simulated(con: Any, table: pa.Table, *, label: str = "simulated") -> int:
    """Insert simulated canonical rows straight into ``usage_logs`` (tests and benchmarks).

    A shortcut past ingestion for rows the simulator made itself (already canonical, unique
    ids): ``timestamp`` becomes ``ts`` and ``day``; a missing cost becomes 0 (pass a spec with
    ``include_cost=True`` when costs matter). Real logs go through :mod:`tasks.ingest.pipeline`.
    """
    con.register("simulated_rows", table)
    try:
        con.execute(LOAD_SIMULATED_SQL, {"label": label})
    finally:
        con.unregister("simulated_rows")
    return int(table.num_rows)


__all__ = [
    "CANONICAL_COLUMNS",
    "CANONICAL_SCHEMA",
    "DEFAULT_OBJECTIVE",
    "FORMATS",
    "GROUND_TRUTH_FILE",
    "LOAD_SIMULATED_SQL",
    "ArmTruth",
    "ConfigTruth",
    "CostSpikeTruth",
    "DriftTruth",
    "ExperimentTruth",
    "GroundTruth",
    "OptimalConfig",
    "SearchSpace",
    "SimConfig",
    "SimulationOutput",
    "SimulationSpec",
    "UseCaseTruth",
    "config_id_for",
    "config_truth",
    "ground_truth",
    "iter_simulation",
    "load_ground_truth",
    "load_simulated",
    "make_config",
    "search_space",
    "simulate",
    "simulate_config_traffic",
    "split_requests_per_day",
    "true_error_rate",
    "true_mean_cost_usd",
    "true_optimum",
    "true_quality",
    "unit_prices",
    "write_simulation",
]
