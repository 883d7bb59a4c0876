"""A shipped winner whose rollout stopped is not proposed again every night (same evidence)."""

from __future__ import annotations

from typing import Any

from strategies.traffic import RolloutStep, start_rollout
from tasks.nightly.decisions import experiment_decisions
from tasks.nightly.inputs import RegistryState
from tasks.nightly.use_case import _ended_rollouts

WINNER = "gpt-4o|summarize-v2|t=0.7|p=1.0|mt=512"
CONTROL = "gpt-4o|summarize-v1|t=0.7|p=1.0|mt=512"


def _shipping_experiment() -> dict[str, Any]:
    params = {"model": "gpt-4o", "temperature": 0.7, "top_p": 1.0, "max_tokens": 512}
    return {
        "experiment_id": "exp-prompt",
        "decision": {"action": "ship", "variant": "treatment"},
        "arm_configs": {
            "control": {"config_key": CONTROL, "params": {**params, "prompt_id": "summarize-v1"}},
            "treatment": {"config_key": WINNER, "params": {**params, "prompt_id": "summarize-v2"}},
        },
        "guardrails": {},
    }


def _decide(ended: frozenset[str]) -> tuple[Any, list[str]]:
    reasons: list[str] = []
    decided = experiment_decisions(
        [_shipping_experiment()],
        production_id=CONTROL,
        rollout=None,
        safety=None,
        catalogue={},
        reasons=reasons,
        ended=ended,
    )
    return decided, reasons


def test_a_winner_starts_its_rollout_once_and_not_again_after_it_ended() -> None:
    first, _ = _decide(frozenset())
    assert first.rollout is not None and first.rollout.candidate_config_id == WINNER
    assert first.needs_approval

    again, reasons = _decide(frozenset({WINNER}))
    assert again.rollout is None and not again.needs_approval
    assert any("rollout already ended" in r and "exp-prompt" in r for r in reasons)


def _state(ended: tuple[str, ...], rollout: Any) -> RegistryState:
    return RegistryState(
        base_version=3,
        current_version=3,
        production_id=CONTROL,
        production_params={},
        rollout=rollout,
        serving_versions={},
        ended_rollouts=ended,
    )


def test_tonights_stop_joins_the_remembered_endings_and_a_completion_does_not() -> None:
    rollout = start_rollout(candidate_config_id=WINNER, incumbent_config_id=CONTROL)

    def step(action: str) -> RolloutStep:
        return RolloutStep(
            action=action,  # type: ignore[arg-type]
            state=None,
            production_config_id=CONTROL,
            candidate_share=0.0,
            reason=f"{action} tonight",
        )

    assert _ended_rollouts(_state(("older",), rollout), step("stop")) == {"older", WINNER}
    assert _ended_rollouts(_state((), rollout), step("rollback")) == {WINNER}
    assert _ended_rollouts(_state(("older",), rollout), step("complete")) == {"older"}
    assert _ended_rollouts(_state((), None), None) == frozenset()
