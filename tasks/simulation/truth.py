"""The ground truth of a simulated world: per-configuration truth, optima, experiments, drift
and cost spikes, computed exactly (Monte Carlo only for p95 latency).

Part of the simulator (a tool for the demo, tests and benchmarks; never imported by production
code).

Size: one module because the truth dataclasses are the schema of ``ground_truth.json`` and the
exact computations beside them are what fills each field (split, a new field would be added in
one file and computed in another); it is a test and benchmark tool, not production code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.simulation import world as w
from tasks.simulation.generate import _Arm, _arms, _chunk, _salt
from tasks.simulation.spec import GROUND_TRUTH_FILE, P95_DRAWS, SimulationSpec, unit_prices
from tasks.simulation.world import (
    SimConfig,
    config_id_for,
    true_error_rate,
    true_quality,
)

# --------------------------------------------------------------------------------------------
# ground truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigTruth(SimConfig):
    """True expected behaviour of one configuration (means over ALL calls unless noted): the
    configuration's own fields, then what the world does with it."""

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
class SpaceBounds:
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
    search_space: SpaceBounds
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
                search_space=SpaceBounds(**{k: tuple(v) for k, v in d["search_space"].items()}),
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
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(SimConfig)}
    return ConfigTruth(
        **fields,
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


def search_space(use_case: str) -> SpaceBounds:
    uc = w.USE_CASES[use_case]
    return SpaceBounds(
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
    use_cases = _use_case_truths(spec)
    prices = {
        m: {"input_usd_per_token": unit_prices(m)[0], "output_usd_per_token": unit_prices(m)[1]}
        for m in w.MODEL_NAMES
    }
    return GroundTruth(
        spec=spec,
        use_cases=use_cases,
        experiments=_experiment_truths(spec, use_cases),
        drift=_drift_truth(spec, use_cases),
        cost_spike=_cost_spike_truth(spec, use_cases),
        prices=prices,
    )


def _use_case_truths(spec: SimulationSpec) -> dict[str, UseCaseTruth]:
    """Per use case: the truth of every logged configuration, production and the optima."""
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
    return use_cases


def _experiment_truths(
    spec: SimulationSpec, use_cases: Mapping[str, UseCaseTruth]
) -> tuple[ExperimentTruth, ...]:
    """The true lifts and guardrail deltas of the world's A/B and A/A experiments."""
    experiments: list[ExperimentTruth] = []
    if not spec.experiments:
        return ()
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
    return tuple(experiments)


def _drift_truth(spec: SimulationSpec, use_cases: Mapping[str, UseCaseTruth]) -> DriftTruth | None:
    """The drift the world injects (None when the spec has none)."""
    if not spec.drift_active:
        return None
    prod = w.production_config(w.DRIFT_USE_CASE)
    before = use_cases[w.DRIFT_USE_CASE].config(prod.config_id).true_mean_quality
    return DriftTruth(
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


def _cost_spike_truth(
    spec: SimulationSpec, use_cases: Mapping[str, UseCaseTruth]
) -> CostSpikeTruth | None:
    """The one-day cost spike the world injects (None when the spec has none)."""
    if not spec.cost_spike_active:
        return None
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
    return CostSpikeTruth(
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


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``ground_truth.json`` (a file, or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / GROUND_TRUTH_FILE
    return GroundTruth.from_dict(json.loads(p.read_text(encoding="utf-8")))
