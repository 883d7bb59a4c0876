"""A use case's study follows its search space: a new generation when the choices change.

Optuna refuses to suggest a categorical parameter with other choices than earlier trials of the
same study had (``CategoricalDistribution does not support dynamic value space``). A use case's
space comes from its own logs, so it grows: a model that appears in the logs mid-month must not
break the nightly search. Each set of categorical choices (models, prompts, max_tokens) gets its
own study, ``<base>@<fingerprint>``; when a new one is created, the trials of the latest earlier
generation that fit the new space are carried over (finished ones with their values, running
ones still waiting for their traffic), so nothing the search has learnt or is serving is lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from strategies.search import SearchSpace

__all__ = ["carry_over", "generation_name", "latest_generation", "space_fingerprint"]

GENERATION_ATTR = "llmopt_generation"
_CATEGORICAL = ("model", "prompt_id", "max_tokens")
_CARRIED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def space_fingerprint(space: SearchSpace) -> str:
    """A short, stable hash of the space's categorical choices.

    >>> space = SearchSpace(models=("m",), prompt_ids=("p",), max_tokens=(256,))
    >>> space_fingerprint(space) == space_fingerprint(space) and len(space_fingerprint(space))
    10
    """
    key = json.dumps(
        [list(space.models), list(space.prompt_ids), [int(m) for m in space.max_tokens]]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def generation_name(base: str, space: SearchSpace) -> str:
    """The study name for ``space``: ``<base>@<fingerprint>``."""
    return f"{base}@{space_fingerprint(space)}"


def latest_generation(
    storage: optuna.storages.BaseStorage | str, base: str, *, exclude: str | None = None
) -> str | None:
    """The most recent study of ``base`` (a generation, or the plain ``base`` of older runs).

    Args:
        storage: the Optuna storage.
        base: the use case's study name without a generation.
        exclude: a name to leave out (the generation being created).

    Returns:
        The study name, or None when the use case has no study yet.
    """
    found: list[tuple[int, str]] = []
    # the studies' names and attributes only: get_all_study_summaries would also load every
    # trial of every study (a query per study, growing night after night)
    for frozen in optuna.storages.get_storage(storage).get_all_studies():
        name = frozen.study_name
        if name == exclude or not (name == base or name.startswith(f"{base}@")):
            continue
        found.append((int(frozen.user_attrs.get(GENERATION_ATTR, 0)), name))
    return max(found)[1] if found else None


def carry_over(previous: optuna.Study, study: optuna.Study, space: SearchSpace) -> int:
    """Copy ``previous``'s trials that fit ``space`` into the new ``study``.

    Args:
        previous: the latest earlier generation.
        study: the new, empty generation.
        space: the new study's space.

    Returns:
        How many trials were carried over.
    """
    generation = int(previous.user_attrs.get(GENERATION_ATTR, 0)) + 1
    study.set_user_attr(GENERATION_ATTR, generation)
    choices: dict[str, tuple[str | int, ...]] = {
        "model": tuple(space.models),
        "prompt_id": tuple(space.prompt_ids),
        "max_tokens": tuple(space.max_tokens),
    }
    carried = 0
    for trial in previous.get_trials(deepcopy=False, states=_CARRIED):
        distributions = _fitted(trial, choices)
        if distributions is None:
            continue
        study.add_trial(
            create_trial(
                state=trial.state,
                values=trial.values if trial.state is TrialState.COMPLETE else None,
                params=dict(trial.params),
                distributions=distributions,
                user_attrs=dict(trial.user_attrs),
            )
        )
        carried += 1
    return carried


def _fitted(
    trial: FrozenTrial, choices: Mapping[str, tuple[str | int, ...]]
) -> dict[str, BaseDistribution] | None:
    """The trial's distributions in the new space, or None when a value falls outside it."""
    fitted: dict[str, BaseDistribution] = dict(trial.distributions)
    for name in _CATEGORICAL:
        if name not in fitted:
            continue
        if trial.params[name] not in choices[name]:
            return None
        fitted[name] = CategoricalDistribution(list(choices[name]))
    return fitted
