"""The Pareto frontier of a use case from the warehouse, its weighted selection and a PNG plot.

:func:`compute_frontier` reads per-configuration sufficient statistics over a window (one SQL
pass through ``tasks.warehouse.config_metrics``), hands them to the pure
:func:`strategies.frontier.analyse_frontier` and adds what only the warehouse view knows: where
the current production configuration sits and how the selection compares with it.
:func:`plot_frontier` draws the result.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
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
from tasks.plots.canvas import PlacedText, draw_legend, draw_texts, nice_ticks, panel_transform
from tasks.warehouse.config_metrics import SharedConfigMetrics, config_metrics

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


def _panel_artists(
    result: FrontierResult,
    *,
    x_name: str,
    se_name: str,
    z: float,
    selected: Any,
    box: tuple[float, float, float, float],
    ticks: tuple[Sequence[float], Sequence[float]],
    ceiling: float | None,
) -> list[Any]:
    """The data artists of one panel: grid, error bars, points, frontier line, marks, limits."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    x_lo, x_hi, y_lo, y_hi = box
    styles = dict(_FRONTIER_LEGEND)
    grid = [[(x, y_lo), (x, y_hi)] for x in ticks[0]] + [[(x_lo, y), (x_hi, y)] for y in ticks[1]]
    artists: list[Any] = [LineCollection(grid, colors="0.9", linewidths=0.6, zorder=0.5)]
    for on_frontier, colour, marker, size, alpha in (
        (False, "tab:grey", "x", 5.0, 0.6),
        (True, "tab:blue", "o", 6.0, 1.0),
    ):
        pts = [p for p in result.points if p.on_frontier is on_frontier]
        if not pts:
            continue
        bars = []
        for p in pts:
            x, y = getattr(p, x_name), p.quality
            ex, ey = _finite(z * getattr(p, se_name)), _finite(z * p.quality_se)
            bars += [[(x - ex, y), (x + ex, y)], [(x, y - ey), (x, y + ey)]]
        artists.append(LineCollection(bars, colors=colour, linewidths=0.7, alpha=alpha))
        xs, ys = [getattr(p, x_name) for p in pts], [p.quality for p in pts]
        artists.append(
            Line2D(xs, ys, ls="none", marker=marker, ms=size, color=colour, alpha=alpha, zorder=2)
        )
    front = sorted((p for p in result.points if p.on_frontier), key=lambda p: getattr(p, x_name))
    if front:
        xy = ([getattr(p, x_name) for p in front], [p.quality for p in front])
        artists.append(Line2D(*xy, color="tab:blue", alpha=0.4, lw=1))
    for point, name in ((result.production, "production"), (selected, "selected")):
        if point is not None:
            artists.append(
                Line2D([getattr(point, x_name)], [point.quality], **styles[name], zorder=5)
            )
    if result.quality_floor is not None:
        floor = [result.quality_floor] * 2
        artists.append(Line2D([x_lo, x_hi], floor, **styles["quality floor"]))
    if ceiling is not None:
        artists.append(Line2D([ceiling] * 2, [y_lo, y_hi], **styles["latency ceiling"]))
    return artists


def _panel_frame(
    fig: Any,
    texts: list[PlacedText],
    *,
    origin: tuple[float, float, float, float],
    box: tuple[float, float, float, float],
    ticks: tuple[tuple[Sequence[float], Sequence[str]], tuple[Sequence[float], Sequence[str]]],
    label: str,
) -> None:
    """A panel's frame, tick marks and tick labels (in inches); the y labels only when given."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    x0, y0, panel_w, panel_h = origin
    x_lo, x_hi, y_lo, y_hi = box
    (x_ticks, x_labels), (y_ticks, y_labels) = ticks
    inches, tick = fig.dpi_scale_trans, 3 / 72
    fig.add_artist(Rectangle((x0, y0), panel_w, panel_h, fill=False, lw=0.8, transform=inches))
    x_at = [x0 + (x - x_lo) / (x_hi - x_lo) * panel_w for x in x_ticks]
    y_at = [y0 + (y - y_lo) / (y_hi - y_lo) * panel_h for y in y_ticks]
    marks = [[(x, y0), (x, y0 - tick)] for x in x_at] + [[(x0, y), (x0 - tick, y)] for y in y_at]
    fig.add_artist(LineCollection(marks, colors="black", linewidths=0.8, transform=inches))
    for x, text in zip(x_at, x_labels, strict=True):
        texts.append((text, (x, y0 - tick - 2 / 72), 7.5, "center", "top", "black", False))
    for y, text in zip(y_at, y_labels, strict=False):
        texts.append((text, (x0 - tick - 2 / 72, y), 7.5, "right", "center", "black", False))
    texts.append((label, (x0 + panel_w / 2, y0 - 0.24), 8.5, "center", "top", "black", False))


def _title(result: FrontierResult) -> str:
    window = (
        "all days"
        if result.start is None and result.end is None
        else f"{result.start or 'first day'} to {result.end or 'last day'}"
    )
    return (
        f"{result.use_case}: frontier ({len(result.frontier)} of {len(result.points)} configs, "
        f"z={result.z}), {window}; {result.selection.status}"
    )


def _legend_entries(result: FrontierResult, has_selection: bool) -> list[tuple[str, Any]]:
    shown = {
        "frontier": any(p.on_frontier for p in result.points),
        "dominated": any(not p.on_frontier for p in result.points),
        "production": result.production is not None,
        "selected": has_selection,
        "quality floor": result.quality_floor is not None,
        "latency ceiling": result.latency_ceiling_ms is not None,
    }
    return [(label, style) for label, style in _FRONTIER_LEGEND if shown[label]]


def plot_frontier(result: FrontierResult, path: Path | str) -> Path:
    """PNG: quality vs cost and quality vs latency p95; frontier, candidates, production, pick.

    Points carry their +-z standard-error bars; the frontier is joined by a line; production is
    a red star, the selected configuration a black ring; the quality floor and latency ceiling
    are grey lines. A plain ``Figure`` (no pyplot state: safe from several threads) with fixed
    margins, panels, ticks and text drawn as a few artists: ~30 ms per plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    z = result.z if result.z > 0 else 1.0
    panels = (
        ("cost_usd", "cost_se", "cost per request (USD)"),
        ("latency_p95_ms", "latency_p95_se", "latency p95 (ms)"),
    )
    selected = result.point(result.selection.config_key or "")
    marked = [p for p in (result.production, selected) if p is not None]
    ys = [v for p in (*result.points, *marked) for v in _spread(p.quality, z * p.quality_se)]
    ys += [result.quality_floor] if result.quality_floor is not None else []
    y_lo, y_hi = _padded(ys)
    y_ticks, y_labels = nice_ticks(y_lo, y_hi, 6)

    fig_w, fig_h, left, gap, top, bottom, panel_w = 11.0, 4.6, 0.75, 0.3, 0.72, 0.55, 4.9
    panel_h = fig_h - top - bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=_PLOT_DPI)
    FigureCanvasAgg(fig)
    texts: list[PlacedText] = [
        (_title(result), (0.1, fig_h - 0.1), 10.5, "left", "top", "black", True),
        ("mean quality", (0.1, fig_h - top + 0.08), 8.0, "left", "baseline", "black", False),
    ]
    for k, (x_name, se_name, label) in enumerate(panels):
        x0, y0 = left + k * (panel_w + gap), bottom
        xs = [
            v
            for p in (*result.points, *marked)
            for v in _spread(getattr(p, x_name), z * getattr(p, se_name))
        ]
        ceiling = result.latency_ceiling_ms if x_name == "latency_p95_ms" else None
        xs += [ceiling] if ceiling is not None else []
        x_lo, x_hi = _padded(xs)
        data, clip = panel_transform(fig, (x0, y0, panel_w, panel_h), (x_lo, x_hi), (y_lo, y_hi))
        x_ticks, x_labels = nice_ticks(x_lo, x_hi, 6)

        artists = _panel_artists(
            result,
            x_name=x_name,
            se_name=se_name,
            z=z,
            selected=selected,
            box=(x_lo, x_hi, y_lo, y_hi),
            ticks=(x_ticks, y_ticks),
            ceiling=ceiling,
        )
        for artist in artists:
            artist.set_transform(data)
            artist.set_clip_box(clip)
            fig.add_artist(artist)

        _panel_frame(
            fig,
            texts,
            origin=(x0, y0, panel_w, panel_h),
            box=(x_lo, x_hi, y_lo, y_hi),
            ticks=((x_ticks, x_labels), (y_ticks, y_labels if k == 0 else [])),
            label=label,
        )
    entries = _legend_entries(result, selected is not None)
    if not result.points:
        note = f"no configuration to place: {result.selection.reason}"[:110]
        texts.append((note, (left, bottom + panel_h / 2), 9.0, "left", "center", "dimgrey", False))
    draw_legend(fig, texts, (0.1, fig_h - 0.42), entries)
    draw_texts(fig, texts)
    fig.savefig(out, dpi=_PLOT_DPI)
    return out


_PLOT_DPI = 80
_FRONTIER_LEGEND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("frontier", {"color": "tab:blue", "marker": "o", "ms": 6, "ls": "-", "lw": 0.7}),
    ("dominated", {"color": "tab:grey", "marker": "x", "ms": 5, "ls": "none"}),
    ("production", {"marker": "*", "ms": 15, "mfc": "tab:red", "mec": "tab:red", "ls": "none"}),
    (
        "selected",
        {"marker": "o", "ms": 15, "mfc": "none", "mec": "black", "mew": 1.5, "ls": "none"},
    ),
    ("quality floor", {"color": "grey", "ls": "--", "lw": 1}),
    ("latency ceiling", {"color": "grey", "ls": ":", "lw": 1}),
)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _spread(value: float, half_width: float) -> tuple[float, ...]:
    """``value`` and the ends of its error bar, finite ones only."""
    if not math.isfinite(value):
        return ()
    return (value, value - _finite(half_width), value + _finite(half_width))


def _padded(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.06 * (hi - lo) if hi > lo else abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad
