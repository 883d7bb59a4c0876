"""``monitoring.toml`` to a :class:`~strategies.monitor.settings.MonitoringConfig`.

The file is found and checked against its schema by :func:`tasks.core.config.load_config`
(``LLMOPT_HOME/config`` first, then the shipped generic defaults); here its tables become the
typed configuration. Every key is optional; unknown keys and bad values are a
:class:`~tasks.core.config.ConfigError` naming the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from strategies.monitor.anomaly import AnomalyThresholds
from strategies.monitor.degradation import DegradationRules, RecoveryPolicy
from strategies.monitor.drift import DriftThresholds
from strategies.monitor.settings import (
    CATEGORICAL_FIELDS,
    NUMERIC_FIELDS,
    MonitoringConfig,
    NotifierConfig,
)
from tasks.core.config import ConfigError, load_config
from tasks.core.settings import Settings


def _build(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"monitoring.toml [{where}]: unknown keys {sorted(unknown)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"monitoring.toml [{where}]: {exc}") from exc


def _use_cases(
    raw: Mapping[str, Any], base_rules: Mapping[str, Any], base_policy: Mapping[str, Any]
) -> tuple[dict[str, DegradationRules], dict[str, RecoveryPolicy], dict[str, str]]:
    rules: dict[str, DegradationRules] = {}
    policy: dict[str, RecoveryPolicy] = {}
    production: dict[str, str] = {}
    for name, raw_section in dict(raw.get("use_cases", {})).items():
        section = dict(raw_section)
        if "production_config_id" in section:
            production[name] = str(section.pop("production_config_id"))
        rules[name] = _build(
            DegradationRules, {**base_rules, **section.pop("rules", {})}, f"use_cases.{name}.rules"
        )
        policy[name] = _build(
            RecoveryPolicy, {**base_policy, **section.pop("policy", {})}, f"use_cases.{name}.policy"
        )
        if section:
            raise ConfigError(f"monitoring.toml [use_cases.{name}]: unknown keys {sorted(section)}")
    return rules, policy, production


def _change_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    change = dict(raw.get("change", {}))
    fields: dict[str, Any] = {
        "change_metrics": tuple(change.pop("metrics", MonitoringConfig.change_metrics)),
        "change_min_votes": int(change.pop("min_votes", 2)),
        "change_tolerance": int(change.pop("tolerance", 3)),
        "min_relative_scale": float(change.pop("min_relative_scale", 0.02)),
        "adwin": dict(change.pop("adwin", {})),
        "page_hinkley": dict(change.pop("page_hinkley", {})),
        "cusum": dict(change.pop("cusum", {})),
    }
    if change:
        raise ConfigError(f"monitoring.toml [change]: unknown keys {sorted(change)}")
    return fields


def parse_monitoring_config(raw: Mapping[str, Any]) -> MonitoringConfig:
    """Turn the TOML dict into a :class:`MonitoringConfig`; unknown keys are errors, not ignored.

    Args:
        raw: the parsed ``monitoring.toml`` document.

    Returns:
        The typed configuration.

    Raises:
        ConfigError: an unknown key, a bad value or an inconsistent window.
    """
    base_rules = dict(raw.get("rules", {}))
    base_policy = dict(raw.get("policy", {}))
    use_case_rules, use_case_policy, production = _use_cases(raw, base_rules, base_policy)
    drift = dict(raw.get("drift", {}))
    anomaly = dict(raw.get("anomaly", {}))
    notifier = dict(raw.get("notifier", {}))
    notifier["urls"] = tuple(notifier.get("urls", ()))
    drift_fields: dict[str, Any] = {
        "numeric_fields": tuple(drift.pop("numeric", MonitoringConfig.numeric_fields)),
        "categorical_fields": tuple(drift.pop("categorical", MonitoringConfig.categorical_fields)),
        "quantile_bins": int(drift.pop("quantile_bins", 100)),
    }
    drift.setdefault("min_rows", 100)
    alert_on_anomalies = bool(anomaly.pop("alert", False))
    try:
        config = MonitoringConfig(
            **dict(raw.get("windows", {})),
            **drift_fields,
            drift=_build(DriftThresholds, drift, "drift"),
            **_change_fields(raw),
            anomaly=_build(AnomalyThresholds, anomaly, "anomaly"),
            alert_on_anomalies=alert_on_anomalies,
            rules=_build(DegradationRules, base_rules, "rules"),
            policy=_build(RecoveryPolicy, base_policy, "policy"),
            use_case_rules=use_case_rules,
            use_case_policy=use_case_policy,
            production_config_ids=production,
            notifier=_build(NotifierConfig, notifier, "notifier"),
        )
        config.detectors()  # fail now on bad detector keys, not in the middle of the night
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"monitoring.toml: {exc}") from exc
    return config


def load_monitoring_config(settings: Settings | None = None) -> MonitoringConfig:
    """Read ``monitoring.toml`` from the config folders (all defaults when no file exists).

    Args:
        settings: resolved settings (default: from the environment).

    Returns:
        The typed configuration.

    Raises:
        ConfigError: the file breaks its schema or holds a bad value.
    """
    try:
        raw = load_config("monitoring", settings)
    except ConfigError as exc:
        if "not found" not in str(exc):
            raise
        raw = {}
    return parse_monitoring_config(raw)


__all__ = [
    "CATEGORICAL_FIELDS",
    "NUMERIC_FIELDS",
    "MonitoringConfig",
    "NotifierConfig",
    "load_monitoring_config",
    "parse_monitoring_config",
]
