"""Config registry: versioned, approved configurations that serving systems read.

This package ``__init__`` imports nothing, so ``import tasks.registry.client`` stays free of
SQLAlchemy, Prefect, DuckDB and MLflow. Modules (serving-side ones are standard library only):

- ``model``          the configuration dataclasses and validation (stdlib)
- ``assignment``     deterministic variant assignment (stdlib)
- ``snapshot``       atomic 0644 JSON snapshot files and their directory lock (stdlib)
- ``client``         the serving-side HTTP client, stale-while-revalidate (stdlib)
- ``errors``         the registry's LlmoptError subclasses (stdlib)
- ``auth``           principals, roles and the 0600 tokens file (stdlib)
- ``schema``, ``reads``, ``writes``, ``rows``, ``store``   the SQLAlchemy store and lifecycle
- ``snapshot_sync``  snapshots re-derived from committed state, reconciled at startup
- ``policy``         approval policy (``data/config/registry.toml``, four eyes) and ``submit``
- ``responses``, ``app``, ``api``, ``processes``   the HTTP JSON API and its server
"""

from __future__ import annotations

__all__: list[str] = []
