"""Fast drawing on a plain matplotlib ``Figure``: text as cached glyph outlines, hand-drawn
ticks, panels without Axes, one-line legends.

Why this module exists. The night writes an experiment interval plot, and per use case a
monitoring plot and a frontier plot. Drawn the usual way (pyplot, one Axes per panel, matplotlib
ticks and text, ``tight_layout``), most of the time went into matplotlib's Axes, tick and text
layout rather than into the data: ~0.3 s per figure (matplotlib 3.11 lays out and renders text
glyph by glyph, ~0.1-0.3 ms a glyph, and builds several artists per tick), which for 20 use
cases x 3 plots came to roughly 30 s of an ~80 s night. Measured with 50 experiments and 20 use
cases (minimum of runs, 2 cores), before -> after: experiment plot 8.8 s -> 0.48 s, monitoring
plots 10.0 s -> 1.0 s, frontier plots 5.2 s -> 0.55 s; 24 s -> 2.0 s in all (12x).

What it does instead. The caller lays the figure out itself in inches (fixed margins: no
``tight_layout``). :func:`panel_transform` maps a panel's data limits onto a box of the figure,
so data artists (lines, collections, patches) are added to the figure itself: an Axes costs
~10 ms to build, more than everything it holds here. :func:`nice_ticks` picks the tick values
and labels, which the caller draws as one ``LineCollection`` of marks. Every text of the figure
is collected as a :data:`PlacedText` and drawn by :func:`draw_texts` as ONE ``PathCollection``
of glyph outlines, built from per-character outlines cached for the life of the process, so a
new number or label costs next to nothing.

Thread safety. Nothing here touches pyplot or any other global matplotlib state (no figure
manager, no current figure, no rcParams changes): each plot builds its own ``Figure`` with its
own ``FigureCanvasAgg``, so use cases can be plotted from several threads at once and two threads
write identical bytes. The module's caches are plain dicts whose values are never changed after
they are built; two threads can at worst build the same entry twice. matplotlib's ``get_font``
keeps one FreeType font object per thread.

Limits. Single-line text only (no newlines, no mathtext, no rotation); no kerning (invisible at
these sizes) and no hinting, so glyphs look a little softer than matplotlib's own text;
horizontal alignment ``left``/``center``/``right`` and vertical ``baseline``/``center``/``top``
use fixed DejaVu Sans proportions (matplotlib's default font); sizes are in points, positions in
inches from the figure's lower left corner. Text is filled paths, so it is not selectable in
vector output: meant for PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Transform, TransformedBbox
    from numpy.typing import NDArray

__all__ = [
    "HAlign",
    "LegendEntry",
    "PlacedText",
    "VAlign",
    "draw_legend",
    "draw_texts",
    "nice_ticks",
    "panel_transform",
    "text_outline",
    "text_width",
]

HAlign = Literal["left", "center", "right"]
VAlign = Literal["baseline", "center", "top"]
# text, (x, y) in inches from the figure's lower left, size (pt), ha, va, colour, bold
PlacedText = tuple[str, tuple[float, float], float, HAlign, VAlign, str, bool]
# label, and either {"patch": colour} (a box) or keyword arguments of ``Line2D``
LegendEntry = tuple[str, Mapping[str, Any]]

_RISE: dict[VAlign, float] = {"center": -0.36, "top": -0.76, "baseline": 0.0}  # em, DejaVu Sans
_SHIFT: dict[HAlign, float] = {"left": 0.0, "center": -0.5, "right": -1.0}  # of the text width
_LEGEND_PT = 7.5
_MAX_OUTLINES = 4000
_CHARS: dict[tuple[str, float, bool], tuple[NDArray[np.float64], NDArray[np.uint8], float]] = {}
_OUTLINES: dict[tuple[str, float, bool], tuple[MplPath, float]] = {}


def text_outline(text: str, size: float, bold: bool) -> tuple[MplPath, float]:
    """``text`` as one glyph outline in points (baseline at y=0) and its advance width (pt).

    Built from cached per-character outlines (no kerning: invisible at these sizes), so new
    numbers cost next to nothing. The caches are safe to share between threads: at worst an
    entry is built twice.
    """
    key = (text, size, bold)
    hit = _OUTLINES.get(key)
    if hit is not None:
        return hit
    from matplotlib.path import Path as MplPath

    vertices: list[NDArray[np.float64]] = []
    codes: list[NDArray[np.uint8]] = []
    x = 0.0
    for char in text:
        char_vertices, char_codes, advance = _char_outline(char, size, bold)
        if len(char_vertices):
            vertices.append(char_vertices + np.array([x, 0.0]))
            codes.append(char_codes)
        x += advance
    outline = (
        MplPath(np.concatenate(vertices), np.concatenate(codes))
        if vertices
        else MplPath(np.zeros((1, 2)), [MplPath.MOVETO])
    )
    if len(_OUTLINES) > _MAX_OUTLINES:
        _OUTLINES.clear()
    _OUTLINES[key] = (outline, x)
    return outline, x


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Advance width of ``text`` in inches."""
    return text_outline(text, size, bold)[1] / 72


def _char_outline(
    char: str, size: float, bold: bool
) -> tuple[NDArray[np.float64], NDArray[np.uint8], float]:
    """One character's outline (points), path codes and advance width (pt), cached."""
    key = (char, size, bold)
    hit = _CHARS.get(key)
    if hit is None:
        from matplotlib.font_manager import FontProperties, findfont, get_font
        from matplotlib.ft2font import LoadFlags
        from matplotlib.textpath import text_to_path

        prop = FontProperties(size=size, weight="bold" if bold else "normal")
        vertices, codes = text_to_path.get_text_path(prop, char)  # font units: 100 pt
        font = get_font(findfont(prop))  # one FT2Font per thread
        font.set_size(size, 72)
        advance = font.load_char(ord(char), flags=LoadFlags.NO_HINTING).linearHoriAdvance
        hit = _CHARS[key] = (
            np.asarray(vertices, dtype=float).reshape(-1, 2) * (size / text_to_path.FONT_SCALE),
            np.asarray(codes, dtype=np.uint8),
            advance / 65536,
        )
    return hit


def draw_texts(fig: Figure, texts: Sequence[PlacedText]) -> None:
    """Every text of the figure as glyph outlines in one collection (call it once, last)."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Affine2D

    outlines: list[MplPath] = []
    offsets: list[tuple[float, float]] = []
    colours: list[str] = []
    for text, (x, y), size, ha, va, colour, bold in texts:
        outline, width = text_outline(text, size, bold)
        outlines.append(outline)
        offsets.append((x + _SHIFT[ha] * width / 72, y + _RISE[va] * size / 72))
        colours.append(colour)
    fig.add_artist(
        PathCollection(
            outlines,
            offsets=offsets,
            offset_transform=fig.dpi_scale_trans,
            transform=Affine2D().scale(1 / 72) + fig.dpi_scale_trans,
            facecolors=colours,
            edgecolors="none",
            linewidths=0,
        )
    )


def nice_ticks(lo: float, hi: float, bins: int) -> tuple[list[float], list[str]]:
    """Tick values inside ``[lo, hi]`` (matplotlib's MaxNLocator) and labels with just enough
    decimals for the step."""
    from matplotlib.ticker import MaxNLocator

    values = [float(v) for v in MaxNLocator(nbins=bins).tick_values(lo, hi) if lo <= v <= hi]
    if len(values) < 2:
        return values, [f"{v:,.4g}" for v in values]
    step = values[1] - values[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    return values, [f"{(0.0 if abs(v) < step / 1e6 else v):,.{decimals}f}" for v in values]


def draw_legend(
    fig: Figure,
    texts: list[PlacedText],
    at: tuple[float, float],
    entries: Sequence[LegendEntry],
) -> None:
    """A one-line legend from ``at`` (inches): each entry's swatch, then its label (appended to
    ``texts``). A style with ``patch`` is a box of that colour, any other is keyword arguments
    of ``Line2D``."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    x, y = at
    inches = fig.dpi_scale_trans
    for label, style in entries:
        if "patch" in style:
            box = Rectangle((x, y - 0.06), 0.26, 0.12, color=style["patch"], transform=inches)
            fig.add_artist(box)
        else:
            xs = [x, x + 0.13, x + 0.26]
            fig.add_artist(Line2D(xs, [y] * 3, markevery=[1], transform=inches, **style))
        texts.append((label, (x + 0.33, y), _LEGEND_PT, "left", "center", "black", False))
        x += 0.33 + text_width(label, _LEGEND_PT) + 0.3


def panel_transform(
    fig: Figure,
    box: tuple[float, float, float, float],
    x_lim: tuple[float, float],
    y_lim: tuple[float, float],
) -> tuple[Transform, TransformedBbox]:
    """The data-to-pixel transform and the clip box of a panel at ``box`` (inches: x, y,
    width, height) showing ``x_lim`` by ``y_lim``. Panels are figure-level artists: an Axes
    costs ~10 ms to build, more than everything it would hold here."""
    from matplotlib.transforms import Bbox, BboxTransform, TransformedBbox

    area = Bbox.from_bounds(*box)
    limits = Bbox([[x_lim[0], y_lim[0]], [x_lim[1], y_lim[1]]])
    return BboxTransform(limits, area) + fig.dpi_scale_trans, TransformedBbox(
        area, fig.dpi_scale_trans
    )
