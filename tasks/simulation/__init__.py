"""The traffic simulator: a tool for the demo, tests and benchmarks, never for production.

Realistic canonical usage logs for a known world, with the ground truth of every question the
platform asks (which configuration is best, by how much an experiment lifts quality, when drift
started). Production modules never import this package (``tests/layout_tests`` checks it) and the
wheel does not ship it.

Modules: :mod:`~tasks.simulation.world` (use cases, models, the true quality landscape),
:mod:`~tasks.simulation.spec` (what to simulate), :mod:`~tasks.simulation.generate` (rows),
:mod:`~tasks.simulation.truth` (the exact truth), :mod:`~tasks.simulation.files` (files and
loading), :mod:`~tasks.simulation.evaluation` (grading strategies against the truth).
"""

from __future__ import annotations

from tasks.simulation.files import (
    LOAD_SIMULATED_SQL,
    SimulationOutput,
    load_simulated,
    write_simulation,
)
from tasks.simulation.generate import (
    iter_simulation,
    simulate,
    simulate_config_traffic,
)
from tasks.simulation.spec import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    DEFAULT_START,
    FORMATS,
    GROUND_TRUTH_FILE,
    SimulationSpec,
    split_requests_per_day,
    unit_prices,
)
from tasks.simulation.truth import (
    DEFAULT_OBJECTIVE,
    ArmTruth,
    ConfigTruth,
    CostSpikeTruth,
    DriftTruth,
    ExperimentTruth,
    GroundTruth,
    OptimalConfig,
    SpaceBounds,
    UseCaseTruth,
    config_truth,
    ground_truth,
    load_ground_truth,
    search_space,
    true_mean_cost_usd,
    true_optimum,
)
from tasks.simulation.world import (
    MODELS,
    USE_CASES,
    SimConfig,
    config_id_for,
    make_config,
    true_error_rate,
    true_quality,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "CANONICAL_SCHEMA",
    "DEFAULT_OBJECTIVE",
    "DEFAULT_START",
    "FORMATS",
    "GROUND_TRUTH_FILE",
    "LOAD_SIMULATED_SQL",
    "MODELS",
    "USE_CASES",
    "ArmTruth",
    "ConfigTruth",
    "CostSpikeTruth",
    "DriftTruth",
    "ExperimentTruth",
    "GroundTruth",
    "OptimalConfig",
    "SimConfig",
    "SimulationOutput",
    "SimulationSpec",
    "SpaceBounds",
    "UseCaseTruth",
    "config_id_for",
    "config_truth",
    "ground_truth",
    "iter_simulation",
    "load_ground_truth",
    "load_simulated",
    "make_config",
    "search_space",
    "simulate",
    "simulate_config_traffic",
    "split_requests_per_day",
    "true_error_rate",
    "true_mean_cost_usd",
    "true_optimum",
    "true_quality",
    "unit_prices",
    "write_simulation",
]
