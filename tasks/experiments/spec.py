"""From ``experiments.toml`` to one :class:`~strategies.experiments.ExperimentSpec` per experiment.

``[defaults]`` applies to every experiment found in the logs; ``[experiments."<id>"]`` overrides
it. Unknown keys, unknown metrics and unusable values are a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strategies.experiments import ExperimentSpec, Guardrail
from tasks.core.config import ConfigError
from tasks.experiments.sql import METRICS

__all__ = ["_SPEC_KEYS", "experiment_spec"]

_SPEC_KEYS = {
    "method",
    "alpha",
    "srm_alpha",
    "correction",
    "correction_scale",
    "n_star",
    "power",
    "mde",
    "min_days",
    "max_days",
    "chance_threshold",
    "prior_mean",
    "prior_sd",
    "prior_scale",
    "primary",
    "secondary",
    "guardrails",
    "control",
    "weights",
    "use_case",
    "enabled",
}


def experiment_spec(experiment_id: str, config: Mapping[str, Any]) -> ExperimentSpec | None:
    """The spec of one experiment: ``[defaults]`` overridden by ``[experiments."<id>"]``.

    Args:
        experiment_id: the id the logs carry.
        config: the parsed ``experiments.toml`` (``load_config("experiments", settings)``).

    Returns:
        The spec, or None when the experiment is disabled (``enabled = false``).

    Raises:
        ConfigError: a key, metric or value is unusable (the message names it).
    """
    defaults = dict(config.get("defaults", {}))
    own = dict(config.get("experiments", {}).get(experiment_id, {}))
    where = f"experiments.toml [experiments.{experiment_id!r}]"
    for key in (*defaults, *own):
        if key not in _SPEC_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
    merged = {**defaults, **own}
    if not merged.pop("enabled", True):
        return None
    try:
        guardrails = tuple(
            Guardrail(
                metric=str(g["metric"]),
                margin=float(g["margin"]),
                relative=bool(g.get("relative", True)),
            )
            for g in merged.pop("guardrails", [])
        )
        weights = tuple((str(k), float(v)) for k, v in dict(merged.pop("weights", {})).items())
        secondary = tuple(str(s) for s in merged.pop("secondary", []))
        for name in (merged.get("primary", "quality"), *secondary, *(g.metric for g in guardrails)):
            if name not in METRICS:
                raise ConfigError(f"{where}: unknown metric {name!r}; known: {sorted(METRICS)}")
        return ExperimentSpec(
            experiment_id=experiment_id,
            guardrails=guardrails,
            weights=weights,
            secondary=secondary,
            **merged,
        )
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
