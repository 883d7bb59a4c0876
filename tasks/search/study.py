"""Optuna studies on real storage and the nightly search round against the warehouse.

One persistent study per use case and objective, in an RDB storage: SQLite next to the warehouse
by default (``settings.optuna_storage``), any SQLAlchemy URL (PostgreSQL) for a shared deployment.
The study is reloaded by name every night; nothing lives in process memory between nights.

The nightly flow calls :func:`run_search_round` once per use case:

1. read per-configuration sufficient statistics of the last ``lookback_days`` from the warehouse
   (``tasks.warehouse.config_metrics.config_metrics``, one SQL pass);
2. *tell* every pending trial whose configuration reached ``min_requests`` (the rest stay
   RUNNING; long-unserved ones are FAILED with the reason);
3. *ask* for new candidates until ``n_candidates`` are collecting traffic;
4. return the told trials, the candidates to serve (with the config id serving must log) and the
   best configuration so far.

:func:`search_status` summarises the studies without touching the warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import optuna
import pandas as pd
import sqlalchemy

from strategies.search import (
    AskResult,
    BestConfig,
    Candidate,
    ConfigStats,
    Objective,
    Rejection,
    SearchSpace,
    SearchStrategy,
    TrialOutcome,
    ask_candidates,
    make_strategy,
    pending_candidates,
    tell_ready_trials,
    weights_for,
)
from strategies.search_space import candidate_config_id
from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings
from tasks.warehouse.config_metrics import SharedConfigMetrics, config_metrics

__all__ = [
    "SearchConfig",
    "SearchRoundResult",
    "StudyStatus",
    "config_stats",
    "delete_study",
    "load_or_create_study",
    "load_search_config",
    "open_storage",
    "redact_url",
    "resolve_space",
    "run_search_round",
    "search_config_from_mapping",
    "search_status",
    "study_name",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)

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


# --------------------------------------------------------------------------- storage
def open_storage(url: str, *, schema_checked: bool = False) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (creates the SQLite folder; pings pooled connections otherwise).

    ``schema_checked``: the tables were created and their version checked earlier in this
    process (the nightly flow does it once before fanning out), so skip Optuna's alembic check,
    which costs ~50 ms per open.
    """
    engine_kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs=engine_kwargs, skip_compatibility_check=schema_checked
    )
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_wal)
        storage.engine.dispose()  # connections opened before the listener: reopen with it
    return storage


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: a commit no longer waits for fsync (Optuna commits every
    suggested parameter: ~60% of a search round on the default journal). A crash can lose the
    last commits but never corrupts the file; readers do not block the writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def redact_url(url: str) -> str:
    """The URL without its password (results and logs must not leak credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"


def study_name(use_case: str, objective: str, prefix: str = "llmopt") -> str:
    return f"{prefix}:{use_case}:{objective}"


def load_or_create_study(
    storage: optuna.storages.BaseStorage | str, *, name: str, strategy: SearchStrategy
) -> optuna.Study:
    """Reload the study by name (or create it); refuse one whose directions do not match."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=strategy.directions,
        load_if_exists=True,
        sampler=strategy.sampler(0),
    )
    if list(study.directions) != list(strategy.directions):
        raise ConfigError(
            f"study {name!r} exists with directions {[d.name for d in study.directions]}, "
            f"the configured objective needs {[d.name for d in strategy.directions]}; "
            "use another study_prefix"
        )
    return study


def delete_study(storage: optuna.storages.BaseStorage | str, name: str) -> bool:
    """Delete a study if it exists; True when something was deleted."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- warehouse
def config_stats(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str,
    start: dt.date,
    end: dt.date,
    shared: SharedConfigMetrics | None = None,
) -> dict[str, ConfigStats]:
    """Statistics per configuration key, also reachable by the candidate id of its parameters.

    A configuration logged under another id (say, the simulator's or the registry's) with the
    same parameters as a candidate is found through the alias, but only when exactly one logged
    configuration has those parameters (sums could merge; a p95 cannot).
    """
    frame = config_metrics(con, use_case=use_case, start=start, end=end, shared=shared)
    by_key = {
        row.config_key: row
        for row in (ConfigStats.from_row(r) for r in frame.to_dict(orient="records"))
    }
    aliases: dict[str, list[ConfigStats]] = {}
    for row in by_key.values():
        if row.params is not None:
            aliases.setdefault(candidate_config_id(row.params), []).append(row)
    for alias, rows in aliases.items():
        if alias not in by_key and len(rows) == 1:
            by_key[alias] = rows[0]
    return by_key


# --------------------------------------------------------------------------- the round
@dataclass(frozen=True)
class SearchRoundResult:
    """One nightly ask/tell round for one use case (JSON-serialisable)."""

    use_case: str
    study_name: str
    storage: str
    as_of: dt.date
    objective: str
    objective_names: tuple[str, ...]
    sampler: str
    window: tuple[dt.date, dt.date]
    told: tuple[TrialOutcome, ...]
    failed: tuple[TrialOutcome, ...]
    still_pending: tuple[TrialOutcome, ...]
    new_candidates: tuple[Candidate, ...]
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]
    best: BestConfig | None
    trial_counts: dict[str, int]
    shortfall_reason: str = ""

    @property
    def serve_config_ids(self) -> tuple[str, ...]:
        """What the traffic plan should route exploration traffic to tomorrow."""
        return tuple(c.config_id for c in self.candidates)


def run_search_round(
    settings: Settings,
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str,
    as_of: dt.date,
    n_candidates: int | None = None,
    config: SearchConfig | None = None,
    storage: optuna.storages.BaseStorage | str | None = None,
    shared: SharedConfigMetrics | None = None,
) -> SearchRoundResult:
    """Tell ready trials their observed objective, ask for new candidates; see the module doc.

    ``shared`` (the night's statistics, history up to ``as_of`` and the search window) spares
    the warehouse scans.
    """
    config = config or load_search_config(settings)
    url = config.storage or settings.optuna_storage
    store = storage if storage is not None else open_storage(url)
    strategy = config.strategy()
    history = shared.slice(use_case, None, as_of) if shared is not None else None
    space = resolve_space(config, use_case, con, logged_configs=history)
    name = study_name(use_case, config.objective, config.study_prefix)
    study = load_or_create_study(store, name=name, strategy=strategy)

    start = as_of - dt.timedelta(days=config.lookback_days - 1)
    stats = config_stats(con, use_case=use_case, start=start, end=as_of, shared=shared)
    outcomes = tell_ready_trials(
        study,
        stats,
        strategy=strategy,
        min_requests=config.min_requests,
        as_of=as_of,
        max_pending_days=config.max_pending_days,
    )
    pending = [o for o in outcomes if o.status == "pending"]
    wanted = config.n_candidates if n_candidates is None else n_candidates
    asked = (
        ask_candidates(
            study,
            space,
            strategy=strategy,
            n=wanted - len(pending),
            as_of=as_of,
            observed=stats,
            min_requests=config.min_requests,
        )
        if wanted > len(pending)
        else AskResult(candidates=())
    )
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return SearchRoundResult(
        use_case=use_case,
        study_name=name,
        storage=_storage_label(storage, url),
        as_of=as_of,
        objective=config.objective,
        objective_names=strategy.objective_names,
        sampler=strategy.name,
        window=(start, as_of),
        told=tuple(o for o in outcomes if o.status == "told"),
        failed=tuple(o for o in outcomes if o.status == "failed"),
        still_pending=tuple(pending),
        new_candidates=asked.candidates,
        candidates=pending_candidates(study),
        rejected=asked.rejected,
        best=strategy.best(study),
        trial_counts=dict(sorted(counts.items())),
        shortfall_reason=asked.shortfall_reason,
    )


def _storage_label(storage: optuna.storages.BaseStorage | str | None, url: str) -> str:
    if isinstance(storage, str):
        return redact_url(storage)
    if isinstance(storage, optuna.storages.RDBStorage):
        return redact_url(str(storage.url))
    return redact_url(url) if storage is None else type(storage).__name__


@dataclass(frozen=True)
class StudyStatus:
    """A study at a glance (no warehouse needed)."""

    use_case: str
    study_name: str
    exists: bool
    trial_counts: dict[str, int]
    candidates: tuple[Candidate, ...]
    best: BestConfig | None
    reason: str = ""


def search_status(
    settings: Settings,
    *,
    use_case: str | None = None,
    config: SearchConfig | None = None,
    storage: optuna.storages.BaseStorage | str | None = None,
) -> list[StudyStatus]:
    """Status of the study of ``use_case`` (or of every use case in ``search.toml``)."""
    config = config or load_search_config(settings)
    store = (
        storage if storage is not None else open_storage(config.storage or settings.optuna_storage)
    )
    strategy = config.strategy()
    names = {s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)}
    out = []
    for uc in [use_case] if use_case else list(config.use_cases):
        name = study_name(uc, config.objective, config.study_prefix)
        if name not in names:
            out.append(StudyStatus(uc, name, False, {}, (), None, "no study yet: run a round"))
            continue
        study = optuna.load_study(study_name=name, storage=store)
        counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        out.append(
            StudyStatus(
                use_case=uc,
                study_name=name,
                exists=True,
                trial_counts=dict(sorted(counts.items())),
                candidates=pending_candidates(study),
                best=strategy.best(study),
            )
        )
    return out


# --------------------------------------------------------------------------- simulation
