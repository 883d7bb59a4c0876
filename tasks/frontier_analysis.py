"""The Pareto frontier of a use case from the warehouse, its weighted selection and a PNG plot.

:func:`compute_frontier` reads per-configuration sufficient statistics over a window (one SQL
pass through ``tasks.config_metrics``), hands them to the pure
:func:`strategies.frontier.analyse_frontier` and adds what only the warehouse view knows: where
the current production configuration sits and how the selection compares with it.
:func:`plot_frontier` draws the result.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from strategies.frontier import (
    Excluded,
    FrontierAnalysis,
    FrontierPoint,
    Selection,
    analyse_frontier,
)
from strategies.search import ConfigStats, RewardWeights, weights_for
from tasks.config_metrics import SharedConfigMetrics, config_metrics

__all__ = ["FrontierResult", "compute_frontier", "most_served_config", "plot_frontier"]


@dataclass(frozen=True)
class FrontierResult:
    """Frontier of one use case over ``[start, end]`` (JSON-serialisable)."""

    use_case: str
    start: dt.date | None
    end: dt.date | None
    preset: str
    weights: RewardWeights
    z: float
    quality_floor: float | None
    latency_ceiling_ms: float | None
    points: tuple[FrontierPoint, ...]
    frontier: tuple[str, ...]
    excluded: tuple[Excluded, ...]
    selection: Selection
    production_config: str | None
    production: FrontierPoint | None
    production_note: str
    score_gain_vs_production: float | None

    def point(self, config_key: str) -> FrontierPoint | None:
        return next((p for p in self.points if p.config_key == config_key), None)


def compute_frontier(
    con: duckdb.DuckDBPyConnection | None,
    *,
    use_case: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    production_config: str | None = None,
    preset: str = "balanced",
    weights: Mapping[str, float] | RewardWeights | None = None,
    quality_floor: float | None = None,
    latency_ceiling_ms: float | None = None,
    z: float = 1.96,
    min_requests: int = 100,
    shared: SharedConfigMetrics | None = None,
) -> FrontierResult:
    """Noise-aware frontier, constrained weighted selection and the production comparison.

    ``weights`` is a full :class:`RewardWeights` or a mapping of overrides on ``preset``.
    No data or no feasible configuration gives a result saying so (``selection.status``).
    ``shared`` serves the window's statistics when the night computed them already.
    """
    resolved = weights if isinstance(weights, RewardWeights) else weights_for(preset, weights)
    frame = config_metrics(con, use_case=use_case, start=start, end=end, shared=shared)
    stats = [ConfigStats.from_row(r) for r in frame.to_dict(orient="records")]
    analysis: FrontierAnalysis = analyse_frontier(
        stats,
        weights=resolved,
        z=z,
        min_requests=min_requests,
        quality_floor=quality_floor,
        latency_ceiling_ms=latency_ceiling_ms,
    )
    production = analysis.point(production_config) if production_config else None
    note, gain = _production_note(analysis, production_config, production)
    return FrontierResult(
        use_case=use_case,
        start=start,
        end=end,
        preset=preset,
        weights=resolved,
        z=z,
        quality_floor=quality_floor,
        latency_ceiling_ms=latency_ceiling_ms,
        points=analysis.points,
        frontier=tuple(p.config_key for p in analysis.frontier),
        excluded=analysis.excluded,
        selection=analysis.selection,
        production_config=production_config,
        production=production,
        production_note=note,
        score_gain_vs_production=gain,
    )


def _production_note(
    analysis: FrontierAnalysis, key: str | None, production: FrontierPoint | None
) -> tuple[str, float | None]:
    if key is None:
        return "no production configuration given", None
    if production is None:
        excluded = next((e for e in analysis.excluded if e.config_key == key), None)
        why = excluded.reason if excluded else "no traffic in the window"
        return f"production {key!r} cannot be placed: {why}", None
    if production.dominated_by:
        state = f"dominated by {', '.join(production.dominated_by)}"
    else:
        state = "on the frontier"
    chosen = analysis.point(analysis.selection.config_key or "")
    if chosen is None:
        return f"production is {state}", None
    gain = chosen.score - production.score
    if chosen.config_key == key:
        return f"production is {state} and is the selected configuration", 0.0
    return f"production is {state}; selection gains {gain:+.4f} reward", gain


def most_served_config(
    con: duckdb.DuckDBPyConnection,
    *,
    use_case: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str | None:
    """The configuration that served most calls in the window: production when none is named."""
    frame = config_metrics(con, use_case=use_case, start=start, end=end)
    if frame.empty:
        return None
    return str(
        frame.sort_values(["n", "config_key"], ascending=[False, True]).iloc[0]["config_key"]
    )


def plot_frontier(result: FrontierResult, path: Path | str) -> Path:
    """PNG: quality vs cost and quality vs latency p95; frontier, candidates, production, pick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    panels: tuple[tuple[str, str, str], ...] = (
        ("cost_usd", "cost_se", "cost per request (USD)"),
        ("latency_p95_ms", "latency_p95_se", "latency p95 (ms)"),
    )
    z = result.z if result.z > 0 else 1.0
    for ax, (x_name, se_name, label) in zip(axes, panels, strict=True):
        for on_frontier, style in ((False, _DOMINATED), (True, _FRONTIER)):
            pts = [p for p in result.points if p.on_frontier is on_frontier]
            if not pts:
                continue
            ax.errorbar(
                [getattr(p, x_name) for p in pts],
                [p.quality for p in pts],
                xerr=[_finite(z * getattr(p, se_name)) for p in pts],
                yerr=[_finite(z * p.quality_se) for p in pts],
                **style,
            )
        front = sorted(
            (p for p in result.points if p.on_frontier), key=lambda p: getattr(p, x_name)
        )
        if front:
            ax.plot(
                [getattr(p, x_name) for p in front],
                [p.quality for p in front],
                color="tab:blue",
                alpha=0.4,
                lw=1,
            )
        _mark(ax, result.production, x_name, marker="*", face="tab:red", label="production")
        selected = result.point(result.selection.config_key or "")
        _mark(ax, selected, x_name, marker="o", face="none", label="selected")
        if result.quality_floor is not None:
            ax.axhline(result.quality_floor, color="grey", ls="--", lw=1, label="quality floor")
        if x_name == "latency_p95_ms" and result.latency_ceiling_ms is not None:
            ax.axvline(result.latency_ceiling_ms, color="grey", ls=":", lw=1, label="ceiling")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean quality")
    axes[1].legend(loc="lower right", fontsize=8)
    window = (
        "all days"
        if result.start is None and result.end is None
        else f"{result.start or 'first day'} to {result.end or 'last day'}"
    )
    fig.suptitle(
        f"{result.use_case}: frontier ({len(result.frontier)} of {len(result.points)} configs, "
        f"z={result.z}), {window}; {result.selection.status}"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


_FRONTIER: dict[str, Any] = {
    "fmt": "o",
    "color": "tab:blue",
    "ms": 6,
    "label": "frontier",
    "elinewidth": 0.8,
    "capsize": 2,
}
_DOMINATED: dict[str, Any] = {
    "fmt": "x",
    "color": "tab:grey",
    "ms": 5,
    "label": "dominated",
    "elinewidth": 0.5,
    "alpha": 0.6,
}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _mark(
    ax: Any, point: FrontierPoint | None, x_name: str, *, marker: str, face: str, label: str
) -> None:
    if point is None:
        return
    ax.scatter(
        [getattr(point, x_name)],
        [point.quality],
        marker=marker,
        s=220,
        facecolors=face,
        edgecolors="tab:red" if face != "none" else "black",
        linewidths=1.5,
        zorder=5,
        label=label,
    )
