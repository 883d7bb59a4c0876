"""Per-capability configuration files (TOML under ``data/config``), loaded one way.

Each capability keeps its settings in ``data/config/<name>.toml``: experiments, search,
monitoring, budget, registry, rollout. Tests and users point ``LLMOPT_CONFIG_DIR`` elsewhere.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tasks.core.errors import LlmoptError
from tasks.core.settings import Settings, load_settings


class ConfigError(LlmoptError, ValueError):
    """A configuration file is missing or malformed; the message names the file and key."""


def load_config(name: str, settings: Settings | None = None) -> dict[str, Any]:
    """Load ``<config_dir>/<name>.toml`` as a dict; a clear :class:`ConfigError` if unusable."""
    config_dir = (settings or load_settings()).config_dir
    path = Path(config_dir) / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


__all__ = ["ConfigError", "load_config"]
