"""The demo's configuration: the shipped generic defaults plus the simulator's use cases.

``make demo``, the tests on simulated data (the ``settings`` fixture) and the benchmarks point
``LLMOPT_CONFIG_DIR`` here. A file missing from this folder falls back to the shipped generic
defaults in ``data/config`` like any user folder. Nothing here applies to a user's own runs:
their configuration folder is ``LLMOPT_HOME/config`` (see ``docs/configuration.md``).
"""

from __future__ import annotations

from pathlib import Path

DEMO_CONFIG_DIR = Path(__file__).resolve().parent
"""Folder of the demo's ``<name>.toml`` files."""

__all__ = ["DEMO_CONFIG_DIR"]
