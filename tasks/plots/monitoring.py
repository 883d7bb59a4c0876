"""The monitoring plot: one PNG per use case with its series, windows, change points, anomalies.

Drawn on a plain ``Figure`` with the fast helpers of :mod:`tasks.plots.canvas`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strategies.monitor.report import MonitoringReport, SeriesResult, UseCaseReport
from tasks.plots.canvas import PlacedText, draw_legend, draw_texts, nice_ticks, panel_transform


def plot_monitoring(
    report: MonitoringReport | UseCaseReport | Sequence[UseCaseReport], out_dir: Path | str
) -> list[Path]:
    """One PNG per use case (``monitor_<use case>_<as_of>.png``); returns the written paths.

    A panel per monitored metric (rows) and granularity (columns: day, and hour when hourly
    monitoring is on): the series, the use case's reference window (grey) and current window
    (yellow), the series centre (dotted), consensus change points (red lines) and anomalies
    (orange dots). A plain ``Figure`` (no pyplot state: safe from several threads), fixed
    margins, panels, ticks and text drawn as a few artists: ~50 ms per use case.

    Args:
        report: a run's report, one use case's, or a sequence of use case reports.
        out_dir: the folder to write into (created if missing).

    Returns:
        The written PNG paths (use cases without series get none).
    """
    # matplotlib is imported when a plot is drawn: importing monitoring must not pay for it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(report, MonitoringReport):
        reports: Sequence[UseCaseReport] = report.use_cases
    elif isinstance(report, UseCaseReport):
        reports = (report,)
    else:
        reports = report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for uc in reports:
        columns = [g for g in ("day", "hour") if any(s.granularity == g for s in uc.series)]
        if not columns:
            continue
        metrics = list(dict.fromkeys(s.metric for s in uc.series))
        panels: dict[tuple[str, str], SeriesResult] = {
            (s.metric, s.granularity): s for s in uc.series
        }
        # fixed layout in inches: title + legend on top, dates under the last row
        col_w = 9.0 if len(columns) == 1 else 6.4
        left, right, gap_x, top, bottom, row_h, gap_y = 0.75, 0.15, 0.8, 0.72, 0.35, 1.35, 0.34
        fig_w = left + right + len(columns) * col_w + (len(columns) - 1) * gap_x
        fig_h = top + bottom + len(metrics) * row_h + (len(metrics) - 1) * gap_y
        fig = Figure(figsize=(fig_w, fig_h), dpi=_PLOT_DPI)
        FigureCanvasAgg(fig)
        texts: list[PlacedText] = [
            (
                f"{uc.use_case}: {' and '.join(columns)} series to {uc.as_of} ({uc.status})",
                (0.1, fig_h - 0.1),
                11.0,
                "left",
                "top",
                "black",
                True,
            )
        ]
        for j, granularity in enumerate(columns):
            present = [m for m in metrics if (m, granularity) in panels]
            for i, metric in enumerate(metrics):
                s = panels.get((metric, granularity))
                if s is None:
                    continue
                box = (
                    left + j * (col_w + gap_x),
                    fig_h - top - (i + 1) * row_h - i * gap_y,
                    col_w,
                    row_h,
                )
                _monitor_panel(fig, box, s, uc, texts, last_row=metric == present[-1])
        draw_legend(fig, texts, (0.1, fig_h - 0.47), _MONITOR_LEGEND)
        draw_texts(fig, texts)
        path = out / f"monitor_{uc.use_case}_{uc.as_of.isoformat()}.png"
        fig.savefig(path, dpi=_PLOT_DPI)
        paths.append(path)
    return paths


_PLOT_DPI = 80
_TICK_PT, _LABEL_PT = 3.0, 7.0
_MONITOR_LEGEND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("series", {"color": "tab:blue", "marker": ".", "lw": 1}),
    ("series centre", {"color": "0.35", "ls": ":", "lw": 0.9}),
    ("reference window (drift, rules)", {"patch": "0.88"}),
    ("current window", {"patch": "#fff1c4"}),
    ("change point", {"color": "tab:red", "marker": "|", "ms": 10, "mew": 1.5, "ls": "none"}),
    ("anomaly", {"color": "tab:orange", "marker": "o", "ms": 6, "ls": "none"}),
)


@dataclass(frozen=True)
class _Scale:
    """A panel's data ranges and ticks (data coordinates)."""

    n: int
    lo: float
    hi: float
    x_lim: tuple[float, float]
    y_ticks: list[float]
    y_labels: list[str]
    x_ticks: list[int]


def _scale(s: SeriesResult) -> tuple[_Scale, np.ndarray]:
    """The panel's ranges and ticks, and the series as floats (NaN where missing)."""
    n = len(s.periods)
    y = np.asarray([np.nan if v is None else v for v in s.values], dtype=float)
    shown = [float(v) for v in y if np.isfinite(v)] + [a.value for a in s.anomalies]
    shown += [s.center] if s.center is not None else []
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
    pad = 0.08 * (hi - lo) if hi > lo else abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    y_ticks, y_labels = nice_ticks(lo, hi, 4)
    step = max(1, -(-n // 9))
    if s.granularity == "hour":
        step = max(step, 24 * max(1, -(-n // (24 * 9))))  # whole days when hours span many
    x_lim = (-0.5, max(n, 1) - 0.5)
    scale = _Scale(n, lo, hi, x_lim, y_ticks, y_labels, list(range(0, n, step)))
    return scale, y


def _monitor_panel(
    fig: Any,
    box: tuple[float, float, float, float],
    s: SeriesResult,
    uc: UseCaseReport,
    texts: list[PlacedText],
    *,
    last_row: bool,
) -> None:
    scale, y = _scale(s)
    data, clip = panel_transform(fig, box, scale.x_lim, (scale.lo, scale.hi))
    for artist in _series_artists(s, uc, scale, y):
        artist.set_transform(data)
        artist.set_clip_box(clip)
        fig.add_artist(artist)
    _panel_frame(fig, box, s, scale, texts, last_row=last_row)


def _series_artists(s: SeriesResult, uc: UseCaseReport, scale: _Scale, y: np.ndarray) -> list[Any]:
    """The windows, grid, series, centre, change points and anomalies, in data coordinates."""
    # lazy, as in plot_monitoring
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    n, lo, hi, x_lim = scale.n, scale.lo, scale.hi, scale.x_lim
    artists: list[Any] = []
    days = [p[:10] for p in s.periods]
    for (start, end), colour in ((uc.reference_window, "0.88"), (uc.current_window, "#fff1c4")):
        inside = [k for k, d in enumerate(days) if start.isoformat() <= d <= end.isoformat()]
        if inside:
            span = inside[-1] - inside[0] + 1
            artists.append(Rectangle((inside[0] - 0.5, lo), span, hi - lo, color=colour, lw=0))
    grid = [[(x_lim[0], v), (x_lim[1], v)] for v in scale.y_ticks]
    grid += [[(k, lo), (k, hi)] for k in scale.x_ticks]
    artists.append(LineCollection(grid, colors="0.9", linewidths=0.6, zorder=0.5))
    artists.append(
        Line2D(np.arange(n), y, marker=".", ms=4 if n > 60 else 6, lw=1, color="tab:blue", zorder=2)
    )
    if s.center is not None:
        artists.append(Line2D(x_lim, [s.center] * 2, color="0.35", lw=0.9, ls=":", zorder=2))
    index = {p: k for k, p in enumerate(s.periods)}
    changes = [[(index[p], lo), (index[p], hi)] for p in s.change_points if p in index]
    if changes:
        artists.append(LineCollection(changes, colors="tab:red", linewidths=1.5, zorder=2.5))
    flagged = [(index[a.period], a.value) for a in s.anomalies if a.period in index]
    if flagged:
        xs, ys = zip(*flagged, strict=True)
        artists.append(Line2D(xs, ys, ls="none", marker="o", ms=6.5, color="tab:orange", zorder=3))
    return artists


def _panel_frame(
    fig: Any,
    box: tuple[float, float, float, float],
    s: SeriesResult,
    scale: _Scale,
    texts: list[PlacedText],
    *,
    last_row: bool,
) -> None:
    """The panel's frame, tick marks, tick labels (dates on the last row) and title, in inches."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    x0, y0, w, h = box
    inches = fig.dpi_scale_trans
    fig.add_artist(Rectangle((x0, y0), w, h, fill=False, ec="black", lw=0.8, transform=inches))
    tick = _TICK_PT / 72
    y_at = [y0 + (v - scale.lo) / (scale.hi - scale.lo) * h for v in scale.y_ticks]
    x_at = [x0 + (k + 0.5) / max(scale.n, 1) * w for k in scale.x_ticks]
    marks = [[(x0 - tick, v), (x0, v)] for v in y_at]
    marks += [[(v, y0 - tick), (v, y0)] for v in x_at] if last_row else []
    fig.add_artist(LineCollection(marks, colors="black", linewidths=0.8, transform=inches))
    for at, label in zip(y_at, scale.y_labels, strict=True):
        texts.append(
            (label, (x0 - tick - 2 / 72, at), _LABEL_PT, "right", "center", "black", False)
        )
    if last_row:
        for at, k in zip(x_at, scale.x_ticks, strict=True):
            p = s.periods[k]
            label = p[5:10] if s.granularity == "day" else p[5:13].replace("T", " ") + "h"
            texts.append(
                (label, (at, y0 - tick - 2 / 72), _LABEL_PT, "center", "top", "black", False)
            )
    title = f"{s.metric} ({s.granularity}): {s.reason}"
    texts.append((title, (x0, y0 + h + 3 / 72), 8.0, "left", "baseline", "black", False))


__all__ = ["plot_monitoring"]
