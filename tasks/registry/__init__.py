"""Config registry: versioned, approved configurations that serving systems read.

This package ``__init__`` imports nothing, so ``import tasks.registry.client`` stays free of
SQLAlchemy, Prefect, DuckDB and MLflow. Modules:

- ``model``       the configuration dataclasses and validation (stdlib)
- ``assignment``  deterministic variant assignment (stdlib)
- ``snapshot``    atomic JSON snapshot files (stdlib)
- ``client``      the serving-side HTTP client (stdlib)
- ``store``       SQLAlchemy store: versions, lifecycle, aliases, audit
- ``policy``      approval policy (``data/config/registry.toml``) and ``submit``
- ``api``         HTTP JSON API server
"""

from __future__ import annotations

__all__: list[str] = []
