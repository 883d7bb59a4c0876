"""The simulated world: use cases, models, prompts and the TRUE functions behind the logs.

Everything here is a pure function of constants, so later code (search, frontier, off-policy
evaluation) can ask "what is the real expected quality / cost / latency of this configuration?"
for configurations that were never logged, and tests can compare estimates with the truth.

Quality of one successful call is Beta-distributed around a per-row mean
``mu = clip(core * (TRUNCATION_FACTOR if truncated else 1) + task_effect + language_effect
+ unit_effect, 0.02, 0.98)`` where ``core`` depends only on the configuration (model base quality,
prompt bonus, a quadratic penalty around the best temperature / top_p). The true mean quality
integrates ``mu`` exactly over the discrete context mix, the truncation probability (from the
output-length distribution and ``max_tokens``) and the uniform unit effect (midpoint rule).

Example (seeded world, no randomness involved):

>>> round(true_quality("ticket-classify", "gpt-4o", "classify-v1", 0.0, 1.0, 16), 3) > 0.8
True

Size: most of the module is the world's data (four use cases with their models, prompts,
context mixes and stories); the functions over it are short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.special import ndtr

from strategies.search_space import candidate_config_id

# --------------------------------------------------------------------------------------------
# constants of the world
# --------------------------------------------------------------------------------------------

TEMPERATURE_BOUNDS: tuple[float, float] = (0.0, 1.5)
TOP_P_BOUNDS: tuple[float, float] = (0.5, 1.0)
TRUNCATION_FACTOR = 0.6  # a truncated answer keeps 60 % of its quality
QUALITY_CONCENTRATION = 20.0  # Beta(mu*k, (1-mu)*k): sd ~ 0.1 around mu
QUALITY_CLIP: tuple[float, float] = (0.02, 0.98)
UNIT_EFFECT_HALF_WIDTH = 0.05  # per-user difficulty, uniform in [-0.05, 0.05]
FEEDBACK_RATE = 0.25  # share of successful calls with explicit feedback
FEEDBACK_POSITIVE_SLOPE = 0.9  # P(+1 | q) = 0.9 q
FEEDBACK_NEGATIVE_SLOPE = 0.6  # P(-1 | q) = 0.6 (1 - q); the rest is 0
LATENCY_SIGMA_TTFT = 0.3
ERROR_TYPES: tuple[str, ...] = ("rate_limit", "timeout", "server_error")
ERROR_TYPE_SHARES: tuple[float, ...] = (0.5, 0.3, 0.2)
ERROR_LATENCY_MEDIAN_MS: tuple[float, ...] = (80.0, 30_000.0, 1_500.0)
ERROR_LATENCY_SIGMA: tuple[float, ...] = (0.3, 0.02, 0.5)
ERROR_RATE_PER_1K_MAX_TOKENS = 0.004  # long generations time out more often

USER_SEGMENTS: tuple[str, ...] = ("free", "pro", "enterprise")
USER_SEGMENT_WEIGHTS: tuple[float, ...] = (0.5, 0.35, 0.15)
REGIONS: tuple[str, ...] = ("us", "eu", "apac", "latam")
REGION_WEIGHTS: tuple[float, ...] = (0.45, 0.3, 0.15, 0.1)
REGION_LATENCY_FACTOR: tuple[float, ...] = (1.0, 1.05, 1.25, 1.15)
LANGUAGES: tuple[str, ...] = ("en", "es", "de", "fr", "ja")
LANGUAGE_WEIGHTS: tuple[float, ...] = (0.6, 0.15, 0.1, 0.1, 0.05)
LANGUAGE_QUALITY_EFFECT: tuple[float, ...] = (0.01, 0.0, -0.005, -0.005, -0.04)
SMALL_MODEL_JA_PENALTY = 0.04  # small models are worse in Japanese (a context interaction)

# Traffic share per UTC hour (diurnal curve peaking mid-afternoon UTC); latency grows with load.
_HOURS = np.arange(24)
HOUR_WEIGHTS: tuple[float, ...] = tuple(
    float(w) for w in (1.0 + 0.8 * np.cos((_HOURS - 15) * 2 * np.pi / 24)) / 24.0
)
HOUR_LATENCY_LOAD = 0.15  # latency factor = 1 + 0.15 * (traffic share / mean share - 1) clipped


def hour_latency_factor() -> np.ndarray:
    """Latency multiplier per UTC hour: busier hours are slower."""
    w = np.asarray(HOUR_WEIGHTS)
    return 1.0 + HOUR_LATENCY_LOAD * (w / w.mean() - 1.0)


@dataclass(frozen=True)
class ModelSpec:
    """Serving behaviour of one model: latency shape and its base error rate."""

    name: str
    provider: str
    small: bool
    latency_base_ms: float
    latency_ms_per_output_token: float
    latency_ms_per_input_token: float
    latency_sigma: float
    ttft_base_ms: float
    base_error_rate: float


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("gpt-4o-mini", "openai", True, 250.0, 12.0, 0.05, 0.35, 220.0, 0.010),
        ModelSpec("gpt-4o", "openai", False, 400.0, 20.0, 0.10, 0.40, 350.0, 0.015),
        ModelSpec("claude-haiku-4-5", "anthropic", True, 300.0, 10.0, 0.05, 0.35, 260.0, 0.008),
        ModelSpec("claude-sonnet-4-5", "anthropic", False, 500.0, 22.0, 0.12, 0.45, 450.0, 0.020),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


@dataclass(frozen=True)
class SimConfig:
    """One serving configuration (what the registry would publish)."""

    config_id: str
    model: str
    provider: str
    prompt_id: str
    temperature: float
    top_p: float
    max_tokens: int


def config_id_for(  # noqa: PLR0917 - mirrors the config fields in order
    use_case: str, model: str, prompt_id: str, temperature: float, top_p: float, max_tokens: int
) -> str:
    """The configuration's id, in the platform's one format (``model|prompt|t=..|p=..|mt=..``,
    :func:`strategies.search_space.candidate_config_id`); ids are scoped by use case."""
    del use_case  # ids are per use case already (registry and warehouse key by use case)
    return candidate_config_id(
        {
            "model": model,
            "prompt_id": prompt_id,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
    )


def make_config(  # noqa: PLR0917 - mirrors the config fields in order
    use_case: str, model: str, prompt_id: str, temperature: float, top_p: float, max_tokens: int
) -> SimConfig:
    """Build a :class:`SimConfig` with its canonical id; validates against the search space."""
    uc = USE_CASES.get(use_case)
    if uc is None:
        raise ValueError(f"unknown use case {use_case!r}; known: {sorted(USE_CASES)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {list(MODELS)}")
    if prompt_id not in uc.prompts:
        raise ValueError(f"unknown prompt {prompt_id!r} for {use_case}; known: {list(uc.prompts)}")
    if not TEMPERATURE_BOUNDS[0] <= temperature <= TEMPERATURE_BOUNDS[1]:
        raise ValueError(f"temperature {temperature} outside {TEMPERATURE_BOUNDS}")
    if not TOP_P_BOUNDS[0] <= top_p <= TOP_P_BOUNDS[1]:
        raise ValueError(f"top_p {top_p} outside {TOP_P_BOUNDS}")
    if int(max_tokens) < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    return SimConfig(
        config_id=config_id_for(use_case, model, prompt_id, temperature, top_p, max_tokens),
        model=model,
        provider=MODELS[model].provider,
        prompt_id=prompt_id,
        temperature=float(temperature),
        top_p=float(top_p),
        max_tokens=int(max_tokens),
    )


@dataclass(frozen=True)
class UseCaseSpec:
    """One LLM feature: its traffic shape, quality landscape and logged configurations."""

    name: str
    code: str  # short tag used in request ids
    task_types: tuple[str, ...]
    task_type_weights: tuple[float, ...]
    task_type_effects: tuple[float, ...]
    input_median: float
    input_sigma: float
    output_median: float
    output_sigma: float
    best_temperature: float
    temperature_penalty: float
    best_top_p: float
    top_p_penalty: float
    model_quality: dict[str, float]
    prompts: dict[str, float]  # prompt id -> quality bonus
    prompt_extra_input_tokens: dict[str, int]
    max_tokens_choices: tuple[int, ...]
    production: tuple[str, str, float, float, int]  # model, prompt, temperature, top_p, max
    exploration: tuple[tuple[str, str, float, float, int], ...]
    default_requests_per_day: int


def _uc(**kw: object) -> UseCaseSpec:
    return UseCaseSpec(**kw)  # type: ignore[arg-type]


_BASE_USE_CASES: tuple[UseCaseSpec, ...] = (
    _uc(
        name="support-summarize",
        code="ss",
        task_types=("ticket", "chat", "email"),
        task_type_weights=(0.5, 0.3, 0.2),
        task_type_effects=(0.0, 0.01, -0.02),
        input_median=1500.0,
        input_sigma=0.5,
        output_median=180.0,
        output_sigma=0.45,
        best_temperature=0.3,
        temperature_penalty=0.15,
        best_top_p=0.9,
        top_p_penalty=0.2,
        model_quality={
            "gpt-4o-mini": 0.72,
            "gpt-4o": 0.80,
            "claude-haiku-4-5": 0.76,
            "claude-sonnet-4-5": 0.83,
        },
        # summarize-v2's bonus is calibrated below so the experiment's true lift is exactly 0.02
        prompts={"summarize-v1": 0.0, "summarize-v2": 0.02, "summarize-v3-bullets": -0.01},
        prompt_extra_input_tokens={
            "summarize-v1": 0,
            "summarize-v2": 0,
            "summarize-v3-bullets": 40,
        },
        max_tokens_choices=(128, 256, 512, 1024),
        production=("gpt-4o", "summarize-v1", 0.7, 1.0, 512),
        exploration=(
            ("gpt-4o-mini", "summarize-v1", 0.3, 0.9, 512),
            ("claude-haiku-4-5", "summarize-v2", 0.3, 0.9, 512),
            ("claude-sonnet-4-5", "summarize-v1", 0.5, 1.0, 256),
            ("gpt-4o", "summarize-v2", 0.2, 0.9, 128),
        ),
        default_requests_per_day=4000,
    ),
    _uc(
        name="ticket-classify",
        code="tc",
        task_types=("billing", "technical", "account", "other"),
        task_type_weights=(0.3, 0.4, 0.2, 0.1),
        task_type_effects=(0.01, -0.01, 0.02, -0.05),
        input_median=400.0,
        input_sigma=0.4,
        output_median=6.0,
        output_sigma=0.3,
        best_temperature=0.0,
        temperature_penalty=0.2,
        best_top_p=1.0,
        top_p_penalty=0.15,
        model_quality={
            "gpt-4o-mini": 0.86,
            "gpt-4o": 0.90,
            "claude-haiku-4-5": 0.88,
            "claude-sonnet-4-5": 0.91,
        },
        prompts={"classify-v1": 0.0, "classify-v2-fewshot": 0.03},
        prompt_extra_input_tokens={"classify-v1": 0, "classify-v2-fewshot": 350},
        max_tokens_choices=(4, 8, 16, 64),
        production=("gpt-4o", "classify-v1", 0.0, 1.0, 16),
        exploration=(
            ("claude-haiku-4-5", "classify-v1", 0.0, 1.0, 16),
            ("gpt-4o-mini", "classify-v2-fewshot", 0.2, 1.0, 16),
            ("claude-haiku-4-5", "classify-v2-fewshot", 0.3, 1.0, 8),
        ),
        default_requests_per_day=3000,
    ),
    _uc(
        name="sales-email",
        code="se",
        task_types=("outreach", "follow_up", "renewal"),
        task_type_weights=(0.5, 0.3, 0.2),
        task_type_effects=(-0.01, 0.01, 0.02),
        input_median=600.0,
        input_sigma=0.4,
        output_median=350.0,
        output_sigma=0.35,
        best_temperature=0.8,
        temperature_penalty=0.12,
        best_top_p=0.95,
        top_p_penalty=0.2,
        model_quality={
            "gpt-4o-mini": 0.68,
            "gpt-4o": 0.78,
            "claude-haiku-4-5": 0.74,
            "claude-sonnet-4-5": 0.82,
        },
        prompts={"email-v1": 0.0, "email-v2-personalized": 0.025},
        prompt_extra_input_tokens={"email-v1": 0, "email-v2-personalized": 150},
        max_tokens_choices=(256, 512, 1024),
        production=("claude-haiku-4-5", "email-v1", 0.7, 1.0, 512),
        exploration=(
            ("gpt-4o-mini", "email-v1", 0.9, 0.95, 512),
            ("claude-sonnet-4-5", "email-v2-personalized", 0.8, 0.95, 1024),
            ("gpt-4o", "email-v1", 0.3, 1.0, 256),
        ),
        default_requests_per_day=1500,
    ),
    _uc(
        name="code-review",
        code="cr",
        task_types=("bugfix", "feature", "refactor"),
        task_type_weights=(0.4, 0.4, 0.2),
        task_type_effects=(0.01, -0.01, 0.0),
        input_median=1200.0,
        input_sigma=0.6,
        output_median=600.0,
        output_sigma=0.5,
        best_temperature=0.2,
        temperature_penalty=0.15,
        best_top_p=0.95,
        top_p_penalty=0.2,
        model_quality={
            "gpt-4o-mini": 0.60,
            "gpt-4o": 0.74,
            "claude-haiku-4-5": 0.70,
            "claude-sonnet-4-5": 0.82,
        },
        prompts={"review-v1": 0.0, "review-v2-checklist": 0.03},
        prompt_extra_input_tokens={"review-v1": 0, "review-v2-checklist": 200},
        max_tokens_choices=(512, 1024, 2048),
        production=("claude-sonnet-4-5", "review-v1", 0.5, 1.0, 1024),
        exploration=(
            ("gpt-4o", "review-v2-checklist", 0.2, 0.95, 2048),
            ("claude-haiku-4-5", "review-v1", 0.4, 1.0, 1024),
            ("gpt-4o-mini", "review-v1", 0.2, 1.0, 512),
        ),
        default_requests_per_day=1500,
    ),
)

# Experiments and injected events (the simulator turns them on or off per spec).
AB_EXPERIMENT_ID = "exp-summarize-prompt-v2"
AB_USE_CASE = "support-summarize"
AB_TREATMENT_PROMPT = "summarize-v2"
AB_TRUE_LIFT = 0.02
AA_EXPERIMENT_ID = "exp-classify-aa"
AA_USE_CASE = "ticket-classify"
DRIFT_USE_CASE = "sales-email"
DRIFT_QUALITY_FACTOR = 0.75  # production quality drops by 25 % relative
DRIFT_INPUT_TOKEN_FACTOR = 1.4  # inputs get 40 % longer (all sales-email traffic)
SPIKE_USE_CASE = "code-review"
SPIKE_OUTPUT_TOKEN_FACTOR = 3  # billed output tokens triple for one day


# --------------------------------------------------------------------------------------------
# true functions
# --------------------------------------------------------------------------------------------


def _lognormal_mu(median: float) -> float:
    return math.log(median)


def output_token_pmf(use_case: str, upto: int) -> np.ndarray:
    """P(desired output tokens = k) for k = 0..upto (k=0 has mass 0; the tail is not included).

    Desired tokens are ``max(1, round(LogNormal(log(median), sigma)))``.
    """
    uc = USE_CASES[use_case]
    k = np.arange(upto + 1, dtype=float)
    mu, s = _lognormal_mu(uc.output_median), uc.output_sigma
    upper = ndtr((np.log(k + 0.5) - mu) / s)
    lower = np.where(k > 1, ndtr((np.log(np.maximum(k - 0.5, 1e-12)) - mu) / s), 0.0)
    pmf = upper - lower
    pmf[0] = 0.0
    return np.asarray(pmf)


def truncation_probability(use_case: str, max_tokens: int) -> float:
    """P(the model wanted more than ``max_tokens`` tokens): the answer is cut off."""
    uc = USE_CASES[use_case]
    mu, s = _lognormal_mu(uc.output_median), uc.output_sigma
    return float(1.0 - ndtr((math.log(max_tokens + 0.5) - mu) / s))


def expected_output_tokens(use_case: str, max_tokens: int) -> float:
    """E[min(desired, max_tokens)] of a successful call (exact over the discrete distribution)."""
    pmf = output_token_pmf(use_case, max_tokens)
    below = float(np.sum(np.arange(max_tokens) * pmf[:max_tokens]))
    return below + max_tokens * (1.0 - float(np.sum(pmf[:max_tokens])))


def expected_input_tokens(use_case: str, prompt_id: str, factor: float = 1.0) -> float:
    """E[input tokens] of a call (``factor`` models the drift of input lengths)."""
    uc = USE_CASES[use_case]
    mean = uc.input_median * math.exp(uc.input_sigma**2 / 2) * factor
    return mean + uc.prompt_extra_input_tokens[prompt_id]


def core_quality(
    use_case: str, model: str, prompt_id: str, temperature: float, top_p: float
) -> float:
    """Quality of an untruncated answer before context effects (clipped to [0.05, 0.95])."""
    uc = USE_CASES[use_case]
    value = (
        uc.model_quality[model]
        + uc.prompts[prompt_id]
        - uc.temperature_penalty * (temperature - uc.best_temperature) ** 2
        - uc.top_p_penalty * (top_p - uc.best_top_p) ** 2
    )
    return float(min(max(value, 0.05), 0.95))


@cache
def _context_grid(use_case: str, small_model: bool) -> tuple[np.ndarray, np.ndarray]:
    """Additive context effects and their probabilities (task type x language x unit effect)."""
    uc = USE_CASES[use_case]
    lang_eff = np.asarray(LANGUAGE_QUALITY_EFFECT, dtype=float).copy()
    if small_model:
        lang_eff[LANGUAGES.index("ja")] -= SMALL_MODEL_JA_PENALTY
    n_mid = 8  # midpoint rule for the uniform unit effect
    unit_eff = UNIT_EFFECT_HALF_WIDTH * (2 * (np.arange(n_mid) + 0.5) / n_mid - 1)
    effects = (
        np.asarray(uc.task_type_effects)[:, None, None]
        + lang_eff[None, :, None]
        + unit_eff[None, None, :]
    ).ravel()
    weights = (
        np.asarray(uc.task_type_weights)[:, None, None]
        * np.asarray(LANGUAGE_WEIGHTS)[None, :, None]
        * np.full(n_mid, 1.0 / n_mid)[None, None, :]
    ).ravel()
    return effects, weights / weights.sum()


def row_quality_mean(core: np.ndarray, truncated: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """Per-row mean quality (the same formula the generator and :func:`true_quality` use)."""
    base = np.where(truncated, core * TRUNCATION_FACTOR, core)
    return np.clip(base + effect, *QUALITY_CLIP)


def true_quality(  # noqa: PLR0917 - the agreed public signature
    use_case: str,
    model: str,
    prompt_id: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    *,
    drift_factor: float = 1.0,
) -> float:
    """True expected quality of a successful call of ANY configuration in the search space.

    ``drift_factor`` multiplies the row mean (the drift event uses 0.75 on the production config).
    """
    if use_case not in USE_CASES:
        raise ValueError(f"unknown use case {use_case!r}; known: {sorted(USE_CASES)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {list(MODELS)}")
    if prompt_id not in USE_CASES[use_case].prompts:
        raise ValueError(f"unknown prompt {prompt_id!r} for {use_case}")
    core = core_quality(use_case, model, prompt_id, temperature, top_p)
    p_trunc = truncation_probability(use_case, int(max_tokens))
    effects, weights = _context_grid(use_case, MODELS[model].small)
    full = row_quality_mean(np.full_like(effects, core), np.zeros(effects.shape, bool), effects)
    cut = row_quality_mean(np.full_like(effects, core), np.ones(effects.shape, bool), effects)
    mean = (1 - p_trunc) * float(weights @ full) + p_trunc * float(weights @ cut)
    return mean * drift_factor


def true_error_rate(use_case: str, model: str, max_tokens: int) -> float:
    """Probability that a call fails (model base rate + timeouts growing with ``max_tokens``)."""
    del use_case  # same serving infrastructure for every feature
    return MODELS[model].base_error_rate + ERROR_RATE_PER_1K_MAX_TOKENS * max_tokens / 1024.0


def expected_latency_factor() -> float:
    """E[region factor] x E[hour-of-day load factor] (both independent of the call)."""
    region = float(np.dot(REGION_WEIGHTS, REGION_LATENCY_FACTOR))
    hour = float(np.dot(HOUR_WEIGHTS, hour_latency_factor()) / np.sum(HOUR_WEIGHTS))
    return region * hour


def true_mean_latency_ms(
    use_case: str, model: str, prompt_id: str, max_tokens: int, input_factor: float = 1.0
) -> float:
    """True mean latency of a SUCCESSFUL call (lognormal noise has mean 1)."""
    spec = MODELS[model]
    mean_core = (
        spec.latency_base_ms
        + spec.latency_ms_per_output_token * expected_output_tokens(use_case, max_tokens)
        + spec.latency_ms_per_input_token * expected_input_tokens(use_case, prompt_id, input_factor)
    )
    return mean_core * expected_latency_factor()


def _calibrate_ab_bonus() -> None:
    """Set summarize-v2's bonus so that the A/B experiment's true absolute lift is exactly 0.02."""
    model, prompt, temp, top_p, max_tokens = USE_CASES[AB_USE_CASE].production
    control = true_quality(AB_USE_CASE, model, prompt, temp, top_p, max_tokens)
    prompts = USE_CASES[AB_USE_CASE].prompts
    lo, hi = 0.0, 0.1
    for _ in range(80):  # bisection; the lift is increasing in the bonus
        prompts[AB_TREATMENT_PROMPT] = (lo + hi) / 2
        lift = true_quality(AB_USE_CASE, model, AB_TREATMENT_PROMPT, temp, top_p, max_tokens)
        if lift - control < AB_TRUE_LIFT:
            lo = prompts[AB_TREATMENT_PROMPT]
        else:
            hi = prompts[AB_TREATMENT_PROMPT]
    prompts[AB_TREATMENT_PROMPT] = (lo + hi) / 2


USE_CASES: dict[str, UseCaseSpec] = {uc.name: uc for uc in _BASE_USE_CASES}
USE_CASE_NAMES: tuple[str, ...] = tuple(USE_CASES)
_calibrate_ab_bonus()


def production_config(use_case: str) -> SimConfig:
    """The configuration that serves most traffic of ``use_case`` (and the experiment control)."""
    return make_config(use_case, *USE_CASES[use_case].production)


def exploration_configs(use_case: str) -> tuple[SimConfig, ...]:
    """Configurations that share the exploration slice of the traffic."""
    return tuple(make_config(use_case, *c) for c in USE_CASES[use_case].exploration)


def ab_treatment_config() -> SimConfig:
    """The A/B treatment: the production configuration with prompt summarize-v2."""
    model, _, temp, top_p, max_tokens = USE_CASES[AB_USE_CASE].production
    return make_config(AB_USE_CASE, model, AB_TREATMENT_PROMPT, temp, top_p, max_tokens)


__all__ = [
    "AA_EXPERIMENT_ID",
    "AA_USE_CASE",
    "AB_EXPERIMENT_ID",
    "AB_TREATMENT_PROMPT",
    "AB_TRUE_LIFT",
    "AB_USE_CASE",
    "DRIFT_INPUT_TOKEN_FACTOR",
    "DRIFT_QUALITY_FACTOR",
    "DRIFT_USE_CASE",
    "ERROR_TYPES",
    "HOUR_WEIGHTS",
    "LANGUAGES",
    "MODELS",
    "MODEL_NAMES",
    "REGIONS",
    "SPIKE_OUTPUT_TOKEN_FACTOR",
    "SPIKE_USE_CASE",
    "TEMPERATURE_BOUNDS",
    "TOP_P_BOUNDS",
    "USER_SEGMENTS",
    "USE_CASES",
    "USE_CASE_NAMES",
    "ModelSpec",
    "SimConfig",
    "UseCaseSpec",
    "ab_treatment_config",
    "config_id_for",
    "core_quality",
    "expected_input_tokens",
    "expected_latency_factor",
    "expected_output_tokens",
    "exploration_configs",
    "hour_latency_factor",
    "make_config",
    "output_token_pmf",
    "production_config",
    "row_quality_mean",
    "true_error_rate",
    "true_mean_latency_ms",
    "true_quality",
    "truncation_probability",
]
