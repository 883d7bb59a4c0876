"""The experiment interval plot: one forest plot, a block per experiment, a row per comparison.

Why a hand-laid figure: the nightly flow draws it every night for every experiment, and
matplotlib's Axes, tick and text layout cost more than the data (see :mod:`tasks.plots.canvas`).
The figure is laid out in inches from the label widths; data go into a few collections and all
text into one glyph collection. No pyplot state, so it is safe from several threads.

The steps, one function each: :func:`_plan_rows` (which row shows what), :func:`_row_marks`
(bars, caps, points, margins and labels in data units), :func:`_geometry` (inches),
:func:`_draw_data` (collections) and :func:`_texts` (every label). Entry point:
:func:`plot_experiment_intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strategies.experiments import Comparison, ExperimentReport
from tasks.plots.canvas import PlacedText, draw_legend, draw_texts, nice_ticks, text_width

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_experiment_intervals"]

_PLOT_DPI = 90
_ROW_IN = 0.19  # height of one row (inches)
_LABEL_PT = 7.5
_VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "harm": "tab:red"}
_INTERVAL_LEGEND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("better", {"color": "tab:green", "lw": 2.2}),
    ("worse / harm", {"color": "tab:red", "lw": 2.2}),
    ("other verdicts", {"color": "tab:blue", "lw": 2.2}),
    ("point estimate", {"color": "grey", "marker": "o", "ms": 5, "ls": "none"}),
    ("guardrail margin", {"color": "tab:red", "marker": "|", "ms": 9, "mew": 2.2, "ls": "none"}),
)

Segment = list[tuple[float, float]]


@dataclass
class _Rows:
    """Rows by y (row index from the top): experiment headers, notes and comparisons."""

    headers: list[tuple[float, str, str]] = field(default_factory=list)  # y, text, colour
    notes: list[tuple[float, str]] = field(default_factory=list)  # y, text
    rows: list[tuple[float, Comparison]] = field(default_factory=list)
    bands: list[tuple[float, float]] = field(default_factory=list)  # first, last row shaded
    n_rows: float = 1.0


@dataclass
class _Marks:
    """What the comparison rows draw, in (percent, row) data units."""

    segments: list[Segment] = field(default_factory=list)
    seg_colours: list[str] = field(default_factory=list)
    caps: list[Segment] = field(default_factory=list)
    cap_colours: list[str] = field(default_factory=list)
    margins: list[Segment] = field(default_factory=list)
    points: dict[str, list[tuple[float, float, str]]] = field(
        default_factory=lambda: {"o": [], "<": [], ">": []}
    )
    labels: list[tuple[float, str, str]] = field(default_factory=list)  # y, label, verdict


@dataclass(frozen=True)
class _Geometry:
    """Figure layout in inches."""

    fig_w: float
    fig_h: float
    left: float
    plot_w: float
    pad: float
    gap: float
    bottom: float
    rows_h: float
    row_in: float
    x_lo: float
    x_hi: float

    def y_in(self, row: float) -> float:
        return self.bottom + self.rows_h - (row + 0.5) * self.row_in

    def x_in(self, value: float) -> float:
        return self.left + (value - self.x_lo) / (self.x_hi - self.x_lo) * self.plot_w


def _effect_limits(values: Sequence[float]) -> tuple[float, float]:
    """x range (percent) holding every value unless a few outliers would squash the rest:
    then the range stops at 3x the 90th percentile magnitude and those rows are clipped."""
    finite = [v for v in values if math.isfinite(v)] + [0.0]
    mags = sorted(abs(v) for v in finite)
    cap = max(3.0 * mags[int(0.9 * (len(mags) - 1))], 1.0)
    lo, hi = max(min(finite), -cap), min(max(finite), cap)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def _plan_rows(reports: Sequence[ExperimentReport]) -> _Rows:
    """A header per experiment, then its comparisons; every other experiment shaded."""
    plan = _Rows()
    y = 0.0
    for k, rep in enumerate(reports):
        top = y
        action = rep.decision.action
        colour = "tab:green" if action.startswith("ship") else "black"
        colour = "tab:red" if action.startswith("stop") else colour
        plan.headers.append(
            (y, f"{rep.experiment_id}: {rep.decision.label} ({rep.method})", colour)
        )
        y += 1.0
        for c in rep.comparisons:
            plan.rows.append((y, c))
            y += 1.0
        if not rep.comparisons:
            plan.notes.append((y, "no comparisons"))
            y += 1.0
        if k % 2 == 0:
            plan.bands.append((top, y - 1.0))
        y += 0.5
    plan.n_rows = max(y - 0.5, 1.0)
    return plan


def _x_range(rows: Sequence[tuple[float, Comparison]]) -> tuple[float, float]:
    values: list[float] = []
    for _, c in rows:
        if c.analysable and math.isfinite(c.relative):
            values += [100 * c.relative, 100 * c.relative_ci_low, 100 * c.relative_ci_high]
            if c.margin is not None and c.margin_relative:
                values.append(100 * c.margin * (-1.0 if c.higher_is_better else 1.0))
    return _effect_limits(values)


def _row_marks(plan: _Rows, x_lo: float, x_hi: float) -> _Marks:
    """Bars, end caps (or arrows when clipped), points, margins and labels per row."""
    marks = _Marks()

    def clip(v: float) -> float:
        return min(max(v, x_lo), x_hi)

    for yc, c in plan.rows:
        label = f"{c.metric} [{c.role}] {c.variant}"
        if c.margin is not None and not c.margin_relative:
            label += f" (margin {c.margin:g} abs)"
        if not (c.analysable and math.isfinite(c.relative)):
            note = f"cannot analyse: {c.message}" if c.message else "cannot analyse"
            plan.notes.append((yc, note[:90]))
            marks.labels.append((yc, label, ""))
            continue
        colour = _VERDICT_COLOURS.get(c.verdict, "tab:blue")
        point = 100 * c.relative
        lo = 100 * c.relative_ci_low if not math.isnan(c.relative_ci_low) else point
        hi = 100 * c.relative_ci_high if not math.isnan(c.relative_ci_high) else point
        marks.segments.append([(clip(lo), yc), (clip(hi), yc)])
        marks.seg_colours.append(colour)
        clipped = False
        for k, end in enumerate((lo, hi, point)):
            if not x_lo < end < x_hi:
                marks.points["<" if end <= x_lo else ">"].append((clip(end), yc, colour))
                clipped = True
            elif k < 2:  # an interval end: a cap
                marks.caps.append([(end, yc - 0.28), (end, yc + 0.28)])
                marks.cap_colours.append(colour)
            else:
                marks.points["o"].append((point, yc, colour))
        if c.margin is not None and c.margin_relative:
            m = clip(100 * c.margin * (-1.0 if c.higher_is_better else 1.0))
            marks.margins.append([(m, yc - 0.42), (m, yc + 0.42)])
        verdict = c.verdict or ""
        if clipped:
            verdict += f" ({point:+.3g}% [{lo:+.3g}, {hi:+.3g}])"
        marks.labels.append((yc, label, verdict))
    return marks


def _geometry(plan: _Rows, marks: _Marks, x_lo: float, x_hi: float) -> _Geometry:
    """Margins from the label widths; rows shrink so the PNG stays under Agg's 2^16 px."""
    label_w = max([text_width(t, _LABEL_PT) for _, t, _v in marks.labels] + [0.6])
    verdict_w = max([text_width(v, _LABEL_PT) for _, _t, v in marks.labels if v] + [0.6])
    header_w = max([text_width(t, 8.5, bold=True) for _, t, _c in plan.headers] + [0.0])
    pad, gap, plot_w = 0.12, 0.1, 5.0
    fig_w = max(2 * pad + label_w + plot_w + 2 * gap + verdict_w, header_w + 2 * pad, 6.0)
    plot_w = fig_w - (2 * pad + label_w + 2 * gap + verdict_w)
    top_in, bottom_in = 0.95, 0.55
    row_in = min(_ROW_IN, (60_000 / _PLOT_DPI - top_in - bottom_in) / plan.n_rows)
    rows_h = row_in * plan.n_rows
    return _Geometry(
        fig_w=fig_w,
        fig_h=top_in + bottom_in + rows_h,
        left=pad + label_w + gap,
        plot_w=plot_w,
        pad=pad,
        gap=gap,
        bottom=bottom_in,
        rows_h=rows_h,
        row_in=row_in,
        x_lo=x_lo,
        x_hi=x_hi,
    )


def _draw_data(fig: Figure, geo: _Geometry, plan: _Rows, marks: _Marks) -> list[float]:
    """Bands, grid, ticks and the data collections; returns the x tick values."""
    from matplotlib.collections import LineCollection, PolyCollection

    n_rows = plan.n_rows
    ax = fig.add_axes(
        (
            geo.left / geo.fig_w,
            geo.bottom / geo.fig_h,
            geo.plot_w / geo.fig_w,
            geo.rows_h / geo.fig_h,
        )
    )
    ax.xaxis.set_visible(False)  # ticks drawn below: matplotlib's tick objects are costly
    ax.yaxis.set_visible(False)
    ax.patch.set_visible(False)  # let the bands show through
    ax.set_xlim(geo.x_lo, geo.x_hi)
    ax.set_ylim(n_rows - 0.5, -0.5)
    inches = fig.dpi_scale_trans
    x0, x1, half = geo.pad / 2, geo.fig_w - geo.pad / 2, geo.row_in / 2
    shaded = [
        [(x0, geo.y_in(a) + half), (x1, geo.y_in(a) + half), (x1, geo.y_in(b) - half),
         (x0, geo.y_in(b) - half)]
        for a, b in plan.bands
    ]  # fmt: skip
    fig.add_artist(
        PolyCollection(shaded, facecolors="0.95", edgecolors="none", transform=inches, zorder=-1)
    )
    x_ticks, _ = nice_ticks(geo.x_lo, geo.x_hi, 9)
    grid = [[(x, -0.5), (x, n_rows - 0.5)] for x in x_ticks]
    ax.add_collection(LineCollection(grid, colors="0.88", linewidths=0.6, zorder=0.5))
    ax.axvline(0, color="black", ls="--", lw=0.8)
    tick, top = 3 / 72, geo.bottom + geo.rows_h
    tick_marks = [[(geo.x_in(x), geo.bottom), (geo.x_in(x), geo.bottom - tick)] for x in x_ticks]
    tick_marks += [[(geo.x_in(x), top), (geo.x_in(x), top + tick)] for x in x_ticks]
    fig.add_artist(LineCollection(tick_marks, colors="black", linewidths=0.8, transform=inches))
    ax.add_collection(
        LineCollection(marks.segments, colors=marks.seg_colours, linewidths=2.2, zorder=2)
    )
    ax.add_collection(
        LineCollection(marks.caps, colors=marks.cap_colours, linewidths=1.2, zorder=2)
    )
    ax.add_collection(LineCollection(marks.margins, colors="tab:red", linewidths=2.2, zorder=2.5))
    for marker, pts in marks.points.items():
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                c=[p[2] for p in pts],
                marker=marker,
                s=22 if marker == "o" else 30,
                zorder=3,
                clip_on=False,
                edgecolors="white" if marker == "o" else "face",
                linewidths=0.5,
            )
    return list(x_ticks)


def _texts(
    geo: _Geometry, plan: _Rows, marks: _Marks, reports: Sequence[ExperimentReport]
) -> list[PlacedText]:
    """Tick labels, axis title, row labels and verdicts, headers, notes and the title."""
    x_ticks, x_labels = nice_ticks(geo.x_lo, geo.x_hi, 9)
    top = geo.bottom + geo.rows_h
    texts: list[PlacedText] = []
    for x, text in zip(x_ticks, x_labels, strict=True):
        below, above = (geo.x_in(x), geo.bottom - 5 / 72), (geo.x_in(x), top + 5 / 72)
        texts.append((text, below, 8.0, "center", "top", "black", False))
        texts.append((text, above, 8.0, "center", "baseline", "black", False))
    axis_title = (geo.left + geo.plot_w / 2, geo.bottom - 0.27)
    axis_label = "effect vs control (% of control)"
    texts.append((axis_label, axis_title, 9.0, "center", "top", "black", False))
    right = geo.left + geo.plot_w + geo.gap
    for yc, label, verdict in marks.labels:
        y = geo.y_in(yc)
        texts.append((label, (geo.left - geo.gap, y), _LABEL_PT, "right", "center", "black", False))
        if verdict:
            colour = _VERDICT_COLOURS.get(verdict.split(" (")[0], "tab:blue")
            texts.append((verdict, (right, y), _LABEL_PT, "left", "center", colour, False))
    for yc, text, colour in plan.headers:
        texts.append((text, (geo.pad, geo.y_in(yc)), 8.5, "left", "center", colour, True))
    for yc, text in plan.notes:
        where = (geo.left + 0.05, geo.y_in(yc))
        texts.append((text, where, _LABEL_PT, "left", "center", "dimgrey", False))
    if not reports:
        where = (geo.left + geo.plot_w / 2, geo.y_in(0))
        texts.append(("no experiments", where, 9.0, "center", "center", "black", False))
    as_of = max((r.as_of or "" for r in reports), default="")
    title = "Experiments" + (f" to {as_of}" if as_of else "")
    title += ": relative effect vs control per comparison"
    texts.append((title, (geo.pad, geo.fig_h - 0.1), 10.0, "left", "top", "black", True))
    return texts


def plot_experiment_intervals(reports: Sequence[ExperimentReport], path: Path | str) -> Path:
    """Save the experiment interval plot (PNG): a forest plot, one row per comparison.

    Rows are grouped under a header per experiment (id, decision, method). Each row shows the
    relative effect in percent of control: the interval (bar with end ticks), the night's point
    estimate (dot; drawn separately since an always-valid interval need not contain it), the
    verdict (colour, and named on the right), and for guardrails with a relative margin a red
    bar at the margin on the harmful side (absolute margins are named in the label). Rows that
    cannot be analysed say so; values beyond the x range end in an arrow and are printed.
    About 0.5 s for 50 experiments.

    Args:
        reports: the experiment reports to draw, in the order they are listed.
        path: where the PNG goes (parent folders are created).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = _plan_rows(reports)
    x_lo, x_hi = _x_range(plan.rows)
    marks = _row_marks(plan, x_lo, x_hi)
    geo = _geometry(plan, marks, x_lo, x_hi)
    fig = Figure(figsize=(geo.fig_w, geo.fig_h), dpi=_PLOT_DPI)
    FigureCanvasAgg(fig)
    _draw_data(fig, geo, plan, marks)
    texts = _texts(geo, plan, marks, reports)
    draw_legend(fig, texts, (geo.pad, geo.fig_h - 0.38), _INTERVAL_LEGEND)
    draw_texts(fig, texts)
    fig.savefig(path, dpi=_PLOT_DPI)
    return path
