"""The nightly flow's forms: the run parameters the Prefect UI shows, the deployment's one
parameter set, and the approval a person answers when a configuration needs it.

Kept apart from :mod:`flows.nightly` (the composition) so the forms can be read, tested and
reused (``llmopt nightly serve``, ``deployments/prefect.yaml``) without the flow's tasks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from tasks.nightly.ingest_step import INCOMING

__all__ = [
    "DEFAULT_INPUTS",
    "ApprovalDecision",
    "NightlyParameters",
    "StrategySwitches",
    "deployment_parameters",
]

DEFAULT_INPUTS = (INCOMING,)  # <LLMOPT_HOME>/data/incoming, any supported format


class StrategySwitches(BaseModel):
    """Which strategies run tonight (all by default)."""

    experiments: bool = Field(True, description="Analyse running experiments and decide")
    search: bool = Field(True, description="Optuna tell/ask: propose exploration candidates")
    frontier: bool = Field(True, description="Pareto frontier and weighted selection")
    budget: bool = Field(True, description="Month-to-date spend, forecast, budget traffic mix")
    bandits: bool = Field(True, description="Thompson-sampling weights for exploration")
    monitoring: bool = Field(True, description="Drift, change points, anomalies, rollback")


class NightlyParameters(BaseModel):
    """The form the Prefect UI shows for a run; every field has a safe default."""

    as_of: dt.date | None = Field(
        None, description="Night to analyse (UTC date); default: the latest day in the warehouse"
    )
    lookback_days: int = Field(14, ge=1, le=90, description="Window for frontier and bandits")
    use_cases: list[str] = Field(
        default_factory=list, description="Use cases to optimize; empty means all"
    )
    input_paths: list[str] = Field(
        default_factory=list, description="Files or globs of new logs to ingest first"
    )
    dry_run: bool = Field(False, description="Analyse and report, but publish nothing")
    strategies: StrategySwitches = Field(default_factory=StrategySwitches)
    approval: Literal["policy", "auto", "human"] = Field(
        "policy",
        description="policy: per-use-case registry policy; auto: approve when guardrails pass; "
        "human: pause and ask in the Prefect UI",
    )
    ask_in_ui: bool = Field(
        False,
        description="When a person must approve: pause this run and ask in the Prefect UI "
        "(true), or leave the proposal as a candidate for `llmopt registry approve` (false)",
    )
    approval_timeout_seconds: int = Field(3600, ge=10, description="How long to wait for a human")
    search_candidates: int = Field(3, ge=0, le=20, description="New candidates per use case")
    lock_wait_seconds: float = Field(0.0, ge=0, description="Wait this long for a running night")


def deployment_parameters() -> dict[str, Any]:
    """The one parameter set of the scheduled deployment (prefect.yaml and ``nightly serve``).

    Reads the incoming folder, asks a person in the Prefect UI when a use case's policy wants
    approval, publishes otherwise. ``tests/e2e_tests`` checks that ``deployments/prefect.yaml``
    carries exactly these values.

    Returns:
        ``{"params": {...}}``, ready for ``parameters=`` of a deployment.
    """
    params = NightlyParameters(input_paths=list(DEFAULT_INPUTS), approval="policy", ask_in_ui=True)
    return {"params": params.model_dump(mode="json")}


class ApprovalDecision(RunInput):
    """What a person answers in the Prefect UI when a configuration needs approval.

    No field is pre-filled: the form cannot be submitted without a choice and a name.
    """

    decision: Literal["approve", "reject"] = Field(
        description="approve: publish this configuration and start its rollout; reject: keep "
        "the current production version serving (recorded in the registry audit)"
    )
    approver: str = Field(
        min_length=1, description="Your name or login: recorded as who approved or rejected"
    )
    reason: str = Field(
        "",
        description="Why (optional for an approval, expected for a rejection): kept in the audit",
    )
