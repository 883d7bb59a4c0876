"""Fixtures of the flow tests: one Prefect temporary server for the whole session, and a home
for closed-loop nightly runs.

Starting Prefect's test server takes seconds; the flow test modules share one instead of
starting their own (each flow run is still its own run, keyed by its parameters).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks.core.settings import Settings, load_settings

#: The nightly flow with only its loop (promotion, experiments, rollout) switched on.
LOOP_ONLY = {
    "search": False,
    "bandits": False,
    "frontier": False,
    "budget": False,
    "monitoring": False,
}

#: ``registry.toml`` of the closed-loop tests: approval and promotion are automatic.
AUTO_REGISTRY_TOML = """
[defaults]
approval = "auto"
auto_promote = true
four_eyes = false
required_guardrails = ["srm", "quality", "error_rate", "latency_p95", "cost_per_request"]
"""

NIGHTLY_TOML = """
[objective]
preset = "{preset}"

[traffic]
max_exploration_share = 0.10
min_arm_share = 0.01
rollout_stages = [0.05, 0.25, 0.50, 1.0]

[rollout]
min_requests = 100
quality_margin = 0.02
error_rate_margin = {error_rate_margin}
latency_ratio_limit = {latency_ratio_limit}
alpha = 0.05
max_holds = 3
"""


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Prefect's temporary server and database, up for the session."""
    # imported here: prefect.testing pulls in the whole Prefect server (~3 s per test process),
    # which the many flow tests that never start it (and every other worker) do not need
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass(frozen=True)
class LoopHome:
    """A home and a configuration folder (``LLMOPT_HOME``, ``LLMOPT_CONFIG_DIR`` point at them)
    for nightly runs night after night, with the registry's automatic policy."""

    config: Path
    settings: Settings

    def write_nightly(
        self,
        preset: str,
        *,
        latency_ratio_limit: float = 1.25,
        error_rate_margin: float = 0.01,
        extra: str = "",
    ) -> None:
        """Write ``nightly.toml``: the objective's preset, the rollout's margins, ``extra`` tables.

        Args:
            preset: the objective's preset.
            latency_ratio_limit: the rollout's latency ratio limit.
            error_rate_margin: the rollout's error-rate margin.
            extra: more TOML, appended.
        """
        text = NIGHTLY_TOML.format(
            preset=preset,
            error_rate_margin=error_rate_margin,
            latency_ratio_limit=latency_ratio_limit,
        )
        (self.config / "nightly.toml").write_text(text + extra)

    def night(self, as_of: dt.date, input_paths: Sequence[Path]) -> dict[str, Any]:
        """One run of the nightly flow (its loop only, auto approval); it must not fail.

        Args:
            as_of: the night.
            input_paths: the log files it ingests.

        Returns:
            The flow's summary.
        """
        from flows.nightly import NightlyParameters, nightly_optimization

        summary = nightly_optimization(
            params=NightlyParameters(
                as_of=as_of,
                input_paths=[str(p) for p in input_paths],
                approval="auto",
                strategies=LOOP_ONLY,
            )
        )
        assert summary["failures"] == {}
        return summary

    def registry_view(self, use_case: str) -> dict[str, Any]:
        """The registry's production of ``use_case`` and its history.

        Args:
            use_case: the use case.

        Returns:
            ``config`` and ``metadata`` of the production version, ``production`` (its
            production config id), ``rollout`` (the metadata's), ``versions`` and ``audit``
            (``(version, action, actor)`` per event).
        """
        from tasks.nightly.inputs import production_of
        from tasks.registry.store import RegistryStore

        store = RegistryStore.from_settings(self.settings)
        try:
            production = store.get(use_case, "production")
            versions = list(store.versions_of(use_case))
            audit = [(e.version, e.action, e.actor) for e in store.history(use_case)]
        finally:
            store.dispose()
        metadata = dict(production.config.metadata or {})
        return {
            "config": production.config,
            "metadata": metadata,
            "production": production_of(production)[0],
            "rollout": metadata.get("rollout"),
            "versions": versions,
            "audit": audit,
        }


@pytest.fixture
def loop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoopHome:
    """A fresh :class:`LoopHome` under ``tmp_path`` (no ``nightly.toml`` yet)."""
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMOPT_CONFIG_DIR", str(config))
    (config / "registry.toml").write_text(AUTO_REGISTRY_TOML)
    return LoopHome(config=config, settings=load_settings().ensure_dirs())
