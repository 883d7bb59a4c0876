"""What each configuration file may contain: sections, keys and their types, in one place.

The loader (:mod:`tasks.core.config`) checks every file against its schema before a capability
sees it, so a typo or a key outside its section is an error naming the file and line instead of
a silently ignored setting (a forgotten ``[defaults]`` header in ``registry.toml`` used to mean
human approval without a word). The capabilities keep parsing their own values (ranges, metric
names); this module only says where a key may stand and what type it has.

A capability that adds a key adds it here too; ``tests/config_tests/test_config_files.py``
checks the schema against the capabilities' dataclasses and the shipped files.

Size: one declarative table per configuration file, kept together on purpose (the one place).

Example:
    >>> from tasks.core.config_schema import SCHEMAS
    >>> sorted(SCHEMAS["registry"].sections)
    ['defaults']
    >>> SCHEMAS["registry"].each_use_case is not None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal[
    "int",
    "number",
    "str",
    "bool",
    "str_list",
    "number_list",
    "int_list",
    "number_table",
    "table_list",
]

__all__ = ["SCHEMAS", "Key", "Kind", "Section", "describe", "key_homes"]


@dataclass(frozen=True, kw_only=True)
class Key:
    """One key: its type, the allowed string values (empty: any) and, for a list of tables,
    the schema of each table."""

    kind: Kind
    choices: tuple[str, ...] = ()
    item: Section | None = None


@dataclass(frozen=True, kw_only=True)
class Section:
    """A TOML table: its keys, its named sub-tables and, when it has one, the table every
    ``[<name>.<anything>]`` entry follows (``each_use_case`` under ``use_cases``, or
    ``each_experiment`` under ``experiments``)."""

    keys: Mapping[str, Key] = field(default_factory=dict)
    sections: Mapping[str, Section] = field(default_factory=dict)
    each_use_case: Section | None = None
    each_experiment: Section | None = None


def _k(kind: Kind, *choices: str) -> Key:
    return Key(kind=kind, choices=tuple(choices))


_INT, _NUM, _STR, _BOOL = _k("int"), _k("number"), _k("str"), _k("bool")

# ------------------------------------------------------------------ budget.toml
_BUDGET_USE_CASE = {
    "forecast_method": _k("str", "mean", "trend"),
    "forecast_window_days": _INT,
    "forecast_level": _NUM,
    "latency_ceiling_ms": _NUM,
    "min_exploration_share": _NUM,
    "min_candidate_requests": _INT,
    "monthly_budget_usd": _NUM,
}
_BUDGET = Section(
    sections={
        "defaults": Section(keys=_BUDGET_USE_CASE),
        "bandit": Section(
            keys={
                "window_days": _INT,
                "floor": _NUM,
                "draws": _INT,
                "reward": _k("str", "quality", "success", "feedback"),
                "linucb_alpha": _NUM,
                "linucb_features": _k("str_list"),
            }
        ),
        "offpolicy": Section(
            keys={
                "window_days": _INT,
                "context": _STR,
                "reward": _k("str", "quality", "success"),
                "level": _NUM,
                "min_ess": _NUM,
                "max_unsupported_mass": _NUM,
            }
        ),
        "routing": Section(  # contextual routing (tasks/allocation/routing.py)
            keys={
                "window_days": _INT,
                "context_columns": _k("str_list"),
                "floor": _NUM,
                "confidence": _NUM,
                "min_ess": _NUM,
                "publish": _BOOL,
            }
        ),
    },
    each_use_case=Section(keys={**_BUDGET_USE_CASE, "context_columns": _k("str_list")}),
)

# ------------------------------------------------------------------ experiments.toml
_GUARDRAIL = Section(keys={"metric": _STR, "margin": _NUM, "relative": _BOOL})
_EXPERIMENT = {
    "method": _k("str", "sequential", "fixed", "bayesian"),
    "alpha": _NUM,
    "srm_alpha": _NUM,
    "correction": _k("str", "none", "holm", "bh"),
    "correction_scale": _k("str", "absolute", "relative"),
    "n_star": _NUM,
    "power": _NUM,
    "mde": _NUM,
    "min_days": _INT,
    "max_days": _INT,
    "chance_threshold": _NUM,
    "prior_mean": _NUM,
    "prior_sd": _NUM,
    "prior_scale": _k("str", "absolute", "relative"),
    "primary": _STR,
    "secondary": _k("str_list"),
    "guardrails": Key(kind="table_list", item=_GUARDRAIL),
    "control": _STR,
    "weights": _k("number_table"),
    "use_case": _STR,
    "enabled": _BOOL,
}
_EXPERIMENTS = Section(
    sections={"defaults": Section(keys=_EXPERIMENT)},
    each_experiment=Section(keys=_EXPERIMENT),
)

# ------------------------------------------------------------------ monitoring.toml
_ACTION = _k("str", "rollback", "circuit_breaker", "pause_optimizer", "alert_only")
_RULES = Section(
    keys={
        "quality_drop_relative": _NUM,
        "error_rate_max": _NUM,
        "cost_ratio_max": _NUM,
        "latency_p95_slo_ms": _NUM,
        "min_requests": _INT,
        "alpha": _NUM,
        "quality_floor": _NUM,
    }
)
_POLICY = Section(
    keys={
        "on_quality_drop": _ACTION,
        "on_error_rate": _ACTION,
        "on_cost_spike": _ACTION,
        "on_latency_slo": _ACTION,
        "pause_optimizer": _BOOL,
        "cooldown_days": _INT,
    }
)
_MONITORING = Section(
    sections={
        "windows": Section(
            keys={
                "reference_days": _INT,
                "current_days": _INT,
                "series_days": _INT,
                "alert_window_days": _INT,
                "hourly": _BOOL,
                "hourly_days": _INT,
            }
        ),
        "drift": Section(
            keys={
                "numeric": _k("str_list"),
                "categorical": _k("str_list"),
                "quantile_bins": _INT,
                "alpha": _NUM,
                "min_ks": _NUM,
                "min_cramers_v": _NUM,
                "psi_bins": _INT,
                "psi_alert": _NUM,
                "min_rows": _INT,
                "psi_epsilon": _NUM,
            }
        ),
        "change": Section(
            keys={
                "metrics": _k("str_list"),
                "min_votes": _INT,
                "tolerance": _INT,
                "min_relative_scale": _NUM,
            },
            sections={
                "adwin": Section(
                    keys={
                        "delta": _NUM,
                        "clock": _INT,
                        "min_window_length": _INT,
                        "grace_period": _INT,
                    }
                ),
                "page_hinkley": Section(
                    keys={
                        "min_instances": _INT,
                        "delta": _NUM,
                        "threshold": _NUM,
                        "alpha": _NUM,
                        "mode": _k("str", "both", "up", "down"),
                    }
                ),
                "cusum": Section(keys={"target": _NUM, "k": _NUM, "h": _NUM, "relearn": _INT}),
            },
        ),
        "anomaly": Section(
            keys={
                "z": _NUM,
                "iqr_k": _NUM,
                "mad": _NUM,
                "min_votes": _INT,
                "min_reference": _INT,
                "min_relative_scale": _NUM,
                "alert": _BOOL,
            }
        ),
        "rules": _RULES,
        "policy": _POLICY,
        "notifier": Section(
            keys={
                "urls": _k("str_list"),
                "min_severity": _k("str", "info", "warning", "critical"),
                "title_prefix": _STR,
            }
        ),
    },
    each_use_case=Section(
        keys={"production_config_id": _STR}, sections={"rules": _RULES, "policy": _POLICY}
    ),
)

# ------------------------------------------------------------------ nightly.toml
_OBJECTIVE = {
    "preset": _STR,
    "kind": _k("str", "reward", "max_quality", "min_cost"),
    "weights": _k("number_table"),
    "max_cost_per_request": _NUM,
    "monthly_budget_usd": _NUM,
    "quality_floor": _NUM,
    "level": _NUM,
    "min_requests": _INT,
}
_NIGHTLY = Section(
    sections={
        "objective": Section(keys=_OBJECTIVE, each_use_case=Section(keys=_OBJECTIVE)),
        "traffic": Section(
            keys={
                "max_exploration_share": _NUM,
                "min_arm_share": _NUM,
                "rollout_stages": _k("number_list"),
            }
        ),
        "rollout": Section(
            keys={
                "min_requests": _INT,
                "quality_margin": _NUM,
                "error_rate_margin": _NUM,
                "latency_ratio_limit": _NUM,
                "alpha": _NUM,
                "power": _NUM,
                "max_nights": _INT,
                "max_holds": _INT,
            }
        ),
        "search": Section(keys={"candidates_per_night": _INT}),
        "windows": Section(keys={"lookback_days": _INT}),
        "auto_experiments": Section(  # experiments the flow creates (strategies.experiment_design)
            keys={
                "enabled": _BOOL,
                "traffic_share": _NUM,
                "mde": _NUM,
                "power": _NUM,
                "n_star": _NUM,
                "min_days": _INT,
                "max_days": _INT,
            }
        ),
    }
)

# ------------------------------------------------------------------ registry.toml
_APPROVAL = {
    "approval": _k("str", "auto", "human"),
    "auto_promote": _BOOL,
    "required_guardrails": _k("str_list"),
    "four_eyes": _BOOL,
}
_REGISTRY = Section(
    sections={"defaults": Section(keys=_APPROVAL)}, each_use_case=Section(keys=_APPROVAL)
)

# ------------------------------------------------------------------ search.toml
_FORBIDDEN = Section(
    keys={
        "reason": _STR,
        "models": _k("str_list"),
        "prompt_ids": _k("str_list"),
        "max_tokens": _k("int_list"),
        "temperature": _k("number_list"),
        "top_p": _k("number_list"),
    }
)
_SPACE = Section(
    keys={
        "models": _k("str_list"),
        "prompt_ids": _k("str_list"),
        "max_tokens": _k("int_list"),
        "temperature": _k("number_list"),
        "temperature_step": _NUM,
        "top_p": _k("number_list"),
        "top_p_step": _NUM,
        "forbidden": Key(kind="table_list", item=_FORBIDDEN),
    }
)
_SEARCH = Section(
    sections={
        "search": Section(
            keys={
                "sampler": _k("str", "tpe", "nsga2", "random"),
                "objective": _k("str", "single", "multi"),
                "preset": _STR,
                "weights": _k("number_table"),
                "n_candidates": _INT,
                "min_requests": _INT,
                "lookback_days": _INT,
                "max_pending_days": _INT,
                "seed": _INT,
                "n_startup_trials": _INT,
                "population_size": _INT,
                "study_prefix": _STR,
                "storage": _STR,
            }
        ),
        "space": _SPACE,
        "frontier": Section(
            keys={
                "window_days": _INT,
                "z": _NUM,
                "min_requests": _INT,
                "preset": _STR,
                "quality_floor": _NUM,
                "latency_ceiling_ms": _NUM,
            }
        ),
    },
    each_use_case=Section(
        keys={"use_global_models": _BOOL},  # opt in to [space] models (tasks/search/study.py)
        sections={"space": _SPACE},
    ),
)

SCHEMAS: dict[str, Section] = {
    "budget": _BUDGET,
    "experiments": _EXPERIMENTS,
    "monitoring": _MONITORING,
    "nightly": _NIGHTLY,
    "registry": _REGISTRY,
    "search": _SEARCH,
}
"""Schema per configuration file name (``<name>.toml``)."""


def key_homes(schema: Section, key: str) -> list[str]:
    """The tables (as ``[a.b]`` headers) where ``key`` is allowed, for "misplaced key" hints.

    Args:
        schema: the file's root section.
        key: a key name.

    Returns:
        Headers such as ``["[defaults]", "[use_cases.<name>]"]``, outermost first.
    """
    found: list[str] = []

    def walk(section: Section, prefix: str) -> None:
        if key in section.keys:
            found.append(f"[{prefix}]" if prefix else "the top level")
        for name, child in section.sections.items():
            walk(child, f"{prefix}.{name}" if prefix else name)
        if section.each_use_case is not None:
            walk(section.each_use_case, f"{prefix}.use_cases.<name>".lstrip("."))
        if section.each_experiment is not None:
            walk(section.each_experiment, f'{prefix}.experiments."<id>"'.lstrip("."))

    walk(schema, "")
    return found


def describe(schema: Section) -> dict[str, Any]:
    """A plain-dict view of a schema (sections -> keys -> kind), for docs and ``config check``."""
    out: dict[str, Any] = {k: v.kind for k, v in schema.keys.items()}
    for name, child in schema.sections.items():
        out[name] = describe(child)
    if schema.each_use_case is not None:
        out["use_cases.<name>"] = describe(schema.each_use_case)
    if schema.each_experiment is not None:
        out['experiments."<id>"'] = describe(schema.each_experiment)
    return out
