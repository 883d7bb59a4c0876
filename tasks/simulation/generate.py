"""Traffic simulator: realistic canonical usage logs with a known ground truth.

Why: every strategy (experiments, search, frontier, budget, bandits, off-policy evaluation,
monitoring) needs data where the right answer is known. The world (use cases, models, prompts, the
true quality landscape) lives in :mod:`tasks.simulation.world`; this module turns a
:class:`SimulationSpec` into rows (vectorized numpy, one chunk per day so memory stays bounded),
writes them as Parquet / JSONL / CSV (optionally gzip) and writes ``ground_truth.json`` beside them.


Reproducible: each (day, use case) chunk draws from ``numpy.random.default_rng([seed, day, uc])``,
so the same spec gives identical rows and identical file bytes.

Size: the chunk generator, the Arrow table it becomes and the writers are one pipeline over the
same columns (a column added in the draw is added to the table and the files here); a simulator
tool, not production code.

Example:

>>> spec = SimulationSpec(days=2, requests_per_day={"ticket-classify": 100})
>>> table = simulate(spec)
>>> table.num_rows
200
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.simulation import world as w
from tasks.simulation.spec import CANONICAL_SCHEMA, SimulationSpec, unit_prices
from tasks.simulation.world import (
    SimConfig,
    make_config,
    true_error_rate,
)

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


# The order of the rng draws is the reproducibility contract (same spec, same bytes).
# size: one draw sequence in one function, so that order stays in sight (split, it hides)
def _chunk(  # noqa: PLR0915 (the size reason above)
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
