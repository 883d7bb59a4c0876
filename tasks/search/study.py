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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import optuna
import sqlalchemy

from strategies.search import (
    AskResult,
    BestConfig,
    Candidate,
    ConfigStats,
    Rejection,
    SearchSpace,
    SearchStrategy,
    TrialOutcome,
    ask_candidates,
    pending_candidates,
    tell_ready_trials,
)
from strategies.search_space import candidate_config_id
from tasks.core.config import ConfigError
from tasks.core.settings import Settings
from tasks.search.generations import carry_over, generation_name, latest_generation
from tasks.search.space import (  # re-exported: callers import them from here
    _SEARCH_KEYS,  # noqa: F401
    SearchConfig,
    load_search_config,
    resolve_space,
    search_config_from_mapping,
)
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


def open_generation(
    storage: optuna.storages.BaseStorage | str,
    base: str,
    space: SearchSpace,
    strategy: SearchStrategy,
) -> tuple[str, optuna.Study]:
    """The study of ``space``'s generation (see :mod:`tasks.search.generations`).

    A new generation (the space's choices changed) starts with the trials of the latest
    earlier one that fit it.

    Args:
        storage: the Optuna storage.
        base: the use case's study name.
        space: tonight's search space.
        strategy: the sampler and objective(s).

    Returns:
        The generation's study name and the study.
    """
    name = generation_name(base, space)
    known = set(optuna.get_all_study_names(storage))  # names only, no trials loaded
    study = load_or_create_study(storage, name=name, strategy=strategy)
    if name not in known:
        previous = latest_generation(storage, base, exclude=name)
        if previous is not None:
            carry_over(optuna.load_study(study_name=previous, storage=storage), study, space)
    return name, study


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
    name, study = open_generation(
        store, study_name(use_case, config.objective, config.study_prefix), space, strategy
    )

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
    names = set(optuna.get_all_study_names(store))
    out = []
    for uc in [use_case] if use_case else list(config.use_cases):
        base = study_name(uc, config.objective, config.study_prefix)
        name = latest_generation(store, base)
        if name is None or name not in names:
            out.append(StudyStatus(uc, base, False, {}, (), None, "no study yet: run a round"))
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
