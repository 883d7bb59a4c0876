"""Pure decision logic: arrays and frozen dataclasses in, results out.

Nothing in this package imports prefect, duckdb or mlflow (a test enforces it), so every
strategy can be unit-tested, benchmarked and reused outside the nightly flow.
"""

from __future__ import annotations
