"""``search.toml`` parsed, and the search space each use case gets (its own, from its logs).

:func:`load_search_config` / :func:`search_config_from_mapping` give a validated
:class:`SearchConfig`; :func:`resolve_space` builds a use case's space from what its logs show
plus what its config names (the shared ``[space]`` lists only with ``use_global_models``).
Re-exported by :mod:`tasks.search.study`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from strategies.search import (
    Objective,
    SearchSpace,
    SearchStrategy,
    make_strategy,
    weights_for,
)
from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings

__all__ = [
    "SearchConfig",
    "load_search_config",
    "resolve_space",
    "search_config_from_mapping",
]

_SEARCH_KEYS = {
    "sampler",
    "objective",
    "preset",
    "n_candidates",
    "min_requests",
    "lookback_days",
    "max_pending_days",
    "seed",
    "n_startup_trials",
    "population_size",
    "study_prefix",
    "storage",
    "weights",
}


@dataclass(frozen=True)
class SearchConfig:
    """The ``[search]``, ``[space]`` and ``[use_cases.*.space]`` tables of ``search.toml``."""

    sampler: str = "tpe"
    objective: Objective = "single"
    preset: str = "balanced"
    weights: dict[str, float] = field(default_factory=dict)
    n_candidates: int = 4
    min_requests: int = 300
    lookback_days: int = 14
    max_pending_days: int | None = 7
    seed: int | None = 7
    n_startup_trials: int = 8
    population_size: int = 8
    study_prefix: str = "llmopt"
    storage: str | None = None
    space: dict[str, Any] = field(default_factory=dict)
    use_case_spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    global_opt_in: frozenset[str] = frozenset()  # use cases with use_global_models = true

    def __post_init__(self) -> None:
        if self.n_candidates < 0 or self.min_requests < 1 or self.lookback_days < 1:
            raise ConfigError(
                "search: n_candidates >= 0, min_requests >= 1 and lookback_days >= 1 required"
            )
        if self.objective not in ("single", "multi"):
            raise ConfigError(f"search: objective must be single or multi, not {self.objective!r}")
        try:
            self.strategy()
        except ValueError as exc:
            raise ConfigError(f"search: {exc}") from exc

    def strategy(self) -> SearchStrategy:
        return make_strategy(
            self.sampler,
            objective=self.objective,
            weights=weights_for(self.preset, self.weights),
            seed=self.seed,
            n_startup_trials=self.n_startup_trials,
            population_size=self.population_size,
        )

    @property
    def use_cases(self) -> tuple[str, ...]:
        return tuple(sorted(self.use_case_spaces))


def search_config_from_mapping(mapping: Mapping[str, Any]) -> SearchConfig:
    """Parse a loaded ``search.toml``; unknown keys are an error (typos must not be ignored)."""
    search = dict(mapping.get("search", {}))
    unknown = sorted(set(search) - _SEARCH_KEYS)
    if unknown:
        raise ConfigError(f"search.toml [search]: unknown keys {unknown}")
    tables = dict(mapping.get("use_cases", {}))
    use_cases = {str(name): dict(table.get("space", {})) for name, table in tables.items()}
    opted_in = frozenset(str(n) for n, t in tables.items() if t.get("use_global_models"))
    pending = search.get("max_pending_days", 7)
    return SearchConfig(
        sampler=str(search.get("sampler", "tpe")),
        objective=search.get("objective", "single"),
        preset=str(search.get("preset", "balanced")),
        weights={str(k): float(v) for k, v in dict(search.get("weights", {})).items()},
        n_candidates=int(search.get("n_candidates", 4)),
        min_requests=int(search.get("min_requests", 300)),
        lookback_days=int(search.get("lookback_days", 14)),
        max_pending_days=None if pending is None or int(pending) <= 0 else int(pending),
        seed=None if search.get("seed") is None else int(search["seed"]),
        n_startup_trials=int(search.get("n_startup_trials", 8)),
        population_size=int(search.get("population_size", 8)),
        study_prefix=str(search.get("study_prefix", "llmopt")),
        storage=search.get("storage"),
        space=dict(mapping.get("space", {})),
        use_case_spaces=use_cases,
        global_opt_in=opted_in,
    )


def load_search_config(settings: Settings) -> SearchConfig:
    """``<config_dir>/search.toml`` parsed and validated."""
    return search_config_from_mapping(load_config("search", settings))


def _logged_values(
    use_case: str,
    con: duckdb.DuckDBPyConnection | None,
    logged_configs: pd.DataFrame | None,
) -> dict[str, list[Any]]:
    """What the use case's own logs show: distinct models, prompts, max_tokens; the
    temperature and top_p values seen (their range bounds the search)."""
    columns = ("model", "prompt_id", "max_tokens", "temperature", "top_p")
    if logged_configs is not None:
        found = {
            c: logged_configs[c].dropna().unique().tolist() if c in logged_configs else []
            for c in columns
        }
    elif con is not None:
        found = {}
        for column in columns:
            try:
                rows = con.execute(
                    f"SELECT DISTINCT {column} FROM usage_logs "
                    f"WHERE use_case = ? AND {column} IS NOT NULL ORDER BY 1",
                    [use_case],
                ).fetchall()
            except duckdb.BinderException:  # a hand-made table without the column
                rows = []
            found[column] = [r[0] for r in rows]
    else:
        found = {c: [] for c in columns}
    found["max_tokens"] = [int(v) for v in found["max_tokens"]]
    return found


def resolve_space(
    config: SearchConfig,
    use_case: str,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    logged_configs: pd.DataFrame | None = None,
) -> SearchSpace:
    """The use case's search space: what its own logs show plus what its config names for it.

    Models, prompt ids and max_tokens are the values the use case has logged plus those its own
    ``[use_cases.<name>.space]`` names; the shared ``[space]`` lists join only when the use case
    opts in (``use_global_models = true``), so exploration never spends a use case's traffic on
    a model it has never used unless asked to. Temperature and top_p are bounded by the use
    case's own setting, else by the range its logs show, else (nothing logged) by ``[space]``.
    Steps come from ``[space]``; forbidden rules add up (shared + own). ``logged_configs`` (the
    use case's :func:`config_metrics` rows) answers without a scan.

    Args:
        config: the parsed ``search.toml``.
        use_case: the use case.
        con: the warehouse (read when ``logged_configs`` is not given).
        logged_configs: the use case's logged configurations.

    Returns:
        The search space.

    Raises:
        ConfigError: the space is empty or inconsistent (the message names the use case).
    """
    own = config.use_case_spaces.get(use_case, {})
    shared = config.space
    opted_in = use_case in config.global_opt_in
    logged = _logged_values(use_case, con, logged_configs)
    merged: dict[str, Any] = {
        k: v for k, v in shared.items() if k in ("temperature_step", "top_p_step")
    }
    merged.update({k: v for k, v in own.items() if k in ("temperature_step", "top_p_step")})
    merged["forbidden"] = [*shared.get("forbidden", ()), *own.get("forbidden", ())]
    for key, column in (
        ("models", "model"),
        ("prompt_ids", "prompt_id"),
        ("max_tokens", "max_tokens"),
    ):
        values = [*logged[column], *own.get(key, ()), *(shared.get(key, ()) if opted_in else ())]
        merged[key] = sorted(dict.fromkeys(values))
    for key in ("temperature", "top_p"):
        if key in own:
            merged[key] = own[key]
        elif logged[key]:
            merged[key] = [min(logged[key]), max(logged[key])]
        elif key in shared:
            merged[key] = shared[key]
    try:
        return SearchSpace.from_mapping(merged)
    except ValueError as exc:
        raise ConfigError(f"search.toml space for {use_case!r}: {exc}") from exc
