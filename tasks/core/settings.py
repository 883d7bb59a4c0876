"""Where everything lives: one place that resolves every location from the environment.

Every path and URL has an embedded default under the repository (so a laptop needs nothing
installed) and an ``LLMOPT_*`` environment variable that overrides it (so a shared deployment
points at PostgreSQL, a remote MLflow server, another warehouse file). A ``.env``-style settings
file can be named with ``LLMOPT_SETTINGS_FILE``; real environment variables win over it.

Configuration files resolve per file: ``<config_dir>/<name>.toml`` (``LLMOPT_CONFIG_DIR``, by
default ``LLMOPT_HOME/config``) when it exists, else the shipped generic defaults in
``data/config`` (:data:`DEFAULT_CONFIG_DIR`). See :mod:`tasks.core.config`.

This module imports only the standard library: the registry client uses it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "data" / "config"


def _read_settings_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


@dataclass(frozen=True)
class Settings:
    """Resolved locations; build with :func:`load_settings`, override with ``replace``."""

    home: Path
    warehouse_path: Path
    sim_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    optuna_storage: str
    registry_url: str
    registry_snapshot_dir: Path
    registry_api_url: str
    registry_token: str
    config_dir: Path
    extra: dict[str, str] = field(default_factory=dict)
    default_config_dir: Path = DEFAULT_CONFIG_DIR

    def config_dirs(self) -> tuple[Path, ...]:
        """Folders a configuration file is looked up in, first match wins (per file)."""
        if self.config_dir.resolve() == self.default_config_dir.resolve():
            return (self.default_config_dir,)
        return (self.config_dir, self.default_config_dir)

    def ensure_dirs(self) -> Settings:
        """Create the local folders the defaults point at; return self for chaining."""
        for path in (
            self.home,
            self.warehouse_path.parent,
            self.sim_dir,
            self.mlflow_artifact_root,
            self.registry_snapshot_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def with_home(self, home: Path) -> Settings:
        """Settings whose every embedded default lives under ``home`` (tests, scratch runs).

        An explicitly chosen configuration folder (not ``<old home>/config``) is kept.
        """
        moved = load_settings(env={"LLMOPT_HOME": str(home)})
        if self.config_dir == self.home / "config":
            return replace(moved, default_config_dir=self.default_config_dir)
        return replace(
            moved, config_dir=self.config_dir, default_config_dir=self.default_config_dir
        )


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from ``env`` (default: ``os.environ`` plus the optional settings file)."""
    source: dict[str, str] = {}
    environ = dict(os.environ) if env is None else dict(env)
    settings_file = environ.get("LLMOPT_SETTINGS_FILE")
    if settings_file:
        source.update(_read_settings_file(Path(settings_file)))
    source.update(environ)

    home = Path(source.get("LLMOPT_HOME", str(REPO_ROOT))).resolve()
    data_dir = home / "data"
    mlflow_dir = home / "mlflow"
    warehouse = Path(source.get("LLMOPT_WAREHOUSE", str(data_dir / "warehouse.duckdb")))
    studies_db = warehouse.parent / "optuna_studies.sqlite"
    registry_db = warehouse.parent / "registry.sqlite"
    return Settings(
        home=home,
        warehouse_path=warehouse,
        sim_dir=Path(source.get("LLMOPT_SIM_DIR", str(data_dir / "sim"))),
        mlflow_tracking_uri=source.get(
            "LLMOPT_MLFLOW_TRACKING_URI",
            source.get("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}"),
        ),
        mlflow_artifact_root=Path(
            source.get("LLMOPT_MLFLOW_ARTIFACT_ROOT", str(mlflow_dir / "artifacts"))
        ),
        optuna_storage=source.get("LLMOPT_OPTUNA_STORAGE", f"sqlite:///{studies_db}"),
        registry_url=source.get("LLMOPT_REGISTRY_URL", f"sqlite:///{registry_db}"),
        registry_snapshot_dir=Path(
            source.get("LLMOPT_REGISTRY_SNAPSHOT_DIR", str(data_dir / "registry"))
        ),
        registry_api_url=source.get("LLMOPT_REGISTRY_API_URL", "http://127.0.0.1:8765"),
        registry_token=source.get("LLMOPT_REGISTRY_TOKEN", ""),  # no default secret (issue 15)
        config_dir=Path(source.get("LLMOPT_CONFIG_DIR", str(home / "config"))),
        extra={k: v for k, v in source.items() if k.startswith("LLMOPT_")},
    )


__all__ = ["DEFAULT_CONFIG_DIR", "REPO_ROOT", "Settings", "load_settings", "replace"]
