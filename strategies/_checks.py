"""Argument checks shared by the strategies' validated constructors and entry points.

Each returns the value as a float or raises :class:`ValueError` in one wording, so a bad setting
reads the same wherever it is caught: ``<name> must be in (low, high), got <value>``,
``<name> must be finite and >= 0, got <value>``, ``<name> must be finite and > 0, got <value>``.

Example:
    >>> require_open_interval("alpha", 0.05, 0.0, 0.5)
    0.05
    >>> require_open_interval("alpha", 0.7, 0.0, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be in (0, 0.5), got 0.7
    >>> require_finite_positive("mde", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: mde must be finite and > 0, got inf
"""

from __future__ import annotations

import math

__all__ = ["require_finite_nonnegative", "require_finite_positive", "require_open_interval"]


def require_open_interval(name: str, value: float, low: float, high: float) -> float:
    """``value`` when ``low < value < high``, else ValueError.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        low: exclusive lower bound.
        high: exclusive upper bound.
    """
    if not low < value < high:
        raise ValueError(f"{name} must be in ({low:g}, {high:g}), got {value}")
    return float(value)


def require_finite_nonnegative(name: str, value: float) -> float:
    """``value`` when it is finite and ``>= 0``, else ValueError naming ``name``."""
    return _finite(name, value, ok=value >= 0, bound=">= 0")


def require_finite_positive(name: str, value: float) -> float:
    """``value`` when it is finite and ``> 0``, else ValueError naming ``name``."""
    return _finite(name, value, ok=value > 0, bound="> 0")


def _finite(name: str, value: float, *, ok: bool, bound: str) -> float:
    if not (math.isfinite(value) and ok):
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return float(value)
