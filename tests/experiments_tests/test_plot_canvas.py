"""tasks/plots/canvas.py, the drawing helpers behind the experiment, monitoring and frontier plots:
tick labels, text metrics and placement, panels, legends, and identical output from threads."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tasks.plots.canvas import (
    LegendEntry,
    PlacedText,
    draw_legend,
    draw_texts,
    nice_ticks,
    panel_transform,
    text_outline,
    text_width,
)

DPI = 100


def _figure(w: float = 4.0, h: float = 2.0) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _ink(fig: Figure) -> np.ndarray:
    """Boolean mask (row 0 at the top) of the pixels that are not white."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return np.asarray((rgb < 200).any(axis=-1))


def test_nice_ticks_stay_in_range_with_just_enough_decimals() -> None:
    assert nice_ticks(0.0, 1.0, 5) == (
        [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0],
        ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"],
    )
    values, labels = nice_ticks(0.0, 25_000.0, 5)
    assert labels == ["0", "5,000", "10,000", "15,000", "20,000", "25,000"]
    assert values[-1] == 25_000.0
    # a quarter step needs two decimals; nothing outside [lo, hi]
    values, labels = nice_ticks(-0.7, 0.5, 5)
    assert labels == ["-0.50", "-0.25", "0.00", "0.25", "0.50"]
    assert all(-0.7 <= v <= 0.5 for v in values)
    # zero never prints as "-0.0" even when the locator's arithmetic leaves a tiny residue
    assert "0.0" in nice_ticks(-0.3, 0.3, 6)[1]
    assert all(not label.startswith("-0.0") for label in nice_ticks(-0.3, 0.3, 6)[1])
    assert nice_ticks(0.5, 0.5, 4) == ([], [])


def test_text_width_is_the_sum_of_glyph_advances() -> None:
    # no kerning: a string is as wide as its characters laid end to end
    assert text_width("ab", 8.0) == text_width("a", 8.0) + text_width("b", 8.0)
    assert abs(text_width("ab", 16.0) - 2 * text_width("ab", 8.0)) < 1e-12
    assert text_width("ab", 8.0, bold=True) > text_width("ab", 8.0)
    assert 0.1 < text_width("0.25", 10.0) < 0.35  # four DejaVu digits at 10 pt: ~0.22 in
    outline, width = text_outline("", 8.0, False)
    assert width == 0.0 and np.asarray(outline.vertices).shape == (1, 2)  # draws nothing
    assert text_outline("x", 8.0, False)[0] is text_outline("x", 8.0, False)[0]  # cached


def test_draw_texts_places_and_aligns_each_text() -> None:
    fig = _figure()
    texts: list[PlacedText] = [
        ("right", (2.0, 1.5), 12.0, "right", "center", "black", False),
        ("left", (2.0, 0.5), 12.0, "left", "center", "black", True),
    ]
    draw_texts(fig, texts)
    ink = _ink(fig)
    x_px = 2.0 * DPI
    top_rows, bottom_rows = ink[:DPI], ink[DPI:]  # y > 1 in and y < 1 in
    cols_top = np.flatnonzero(top_rows.any(axis=0))
    cols_bottom = np.flatnonzero(bottom_rows.any(axis=0))
    assert cols_top.size and cols_bottom.size
    # right-aligned text ends at x, left-aligned text starts at x (within a pixel of side bearing)
    assert x_px - 6 <= cols_top.max() <= x_px + 1
    assert x_px - 1 <= cols_bottom.min() <= x_px + 6
    # widths in pixels agree with the measured advance widths
    width_top = text_width("right", 12.0) * DPI
    assert 0.8 * width_top <= cols_top.max() - cols_top.min() + 1 <= width_top + 1
    # vertically centred on y: the ink's middle row is within two pixels of 1.5 in from the bottom
    rows_top = np.flatnonzero(top_rows.any(axis=1))
    middle = (rows_top.min() + rows_top.max()) / 2
    assert abs(middle - (2.0 - 1.5) * DPI) <= 2


def test_panel_transform_maps_limits_onto_the_box_and_clips_to_it() -> None:
    fig = _figure()
    data, clip = panel_transform(fig, (0.5, 0.25, 3.0, 1.5), (10.0, 20.0), (-1.0, 1.0))
    corners = data.transform(np.array([[10.0, -1.0], [20.0, 1.0], [15.0, 0.0]]))
    assert np.allclose(corners, [[50.0, 25.0], [350.0, 175.0], [200.0, 100.0]])
    assert np.allclose(clip.bounds, (50.0, 25.0, 300.0, 150.0))


def test_legend_lays_entries_out_left_to_right() -> None:
    fig = _figure(6.0, 1.0)
    texts: list[PlacedText] = []
    entries: list[LegendEntry] = [
        ("series", {"color": "tab:blue", "lw": 1}),
        ("window", {"patch": "0.5"}),
    ]
    draw_legend(fig, texts, (0.1, 0.5), entries)
    assert [t[0] for t in texts] == ["series", "window"]
    (x0, y0), (x1, y1) = texts[0][1], texts[1][1]
    assert y0 == y1 == 0.5
    assert x1 - x0 > text_width("series", 7.5)  # the second entry starts after the first label
    boxes = [a for a in fig.artists if isinstance(a, Rectangle)]
    assert len(boxes) == 1 and boxes[0].get_xy() == (x1 - 0.33, 0.5 - 0.06)


def _render(size: float) -> bytes:
    fig = _figure()
    texts: list[PlacedText] = [
        (f"value {k / 7:.4f} µs", (0.1, 0.2 + 0.15 * k), size, "left", "baseline", "black", False)
        for k in range(10)
    ]
    draw_legend(fig, texts, (2.5, 1.8), [("swatch", {"patch": "tab:red"})])
    draw_texts(fig, texts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def test_threads_draw_identical_bytes_from_cold_caches() -> None:
    size = 9.37  # a size no plot uses: every glyph is built while the threads race
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(_render, [size] * 8))
    assert len(set(outputs)) == 1
    assert _render(size) == outputs[0]  # and the same as a warm, single-threaded draw
