"""The experiment interval (forest) plot: every row drawn, legible layout, safe from threads."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from strategies.experiments import ExperimentReport
from tasks.experiments.analyze import analyze_stats_csv, plot_experiment_intervals

HEADER = "experiment,metric,kind,variant,n,sum,sum_squares,weight\n"
GREEN, RED = (44, 160, 44), (214, 39, 40)  # tab:green (better verdict), tab:red (margins)
LEGEND_PX = 60  # the title and legend (with colour swatches) sit above this row


def _reports(tmp_path: Path) -> dict[str, ExperimentReport]:
    rng = np.random.default_rng(3)
    lines = []
    for exp, lift in (("win", 0.05), ("flat", 0.0)):
        for variant, mean in (("control", 0.70), ("b", 0.70 + lift)):
            x = rng.normal(mean, 0.2, 3000)
            lines.append(
                f"{exp},quality,mean,{variant},3000,{float(x.sum())!r},{float((x * x).sum())!r},\n"
            )
    path = tmp_path / "stats.csv"
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    reports = {r.experiment_id: r for r in analyze_stats_csv(path, method="fixed")}
    assert reports["win"].comparisons[0].verdict == "better"
    assert reports["flat"].comparisons[0].verdict != "better"
    return reports


def _pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(path).convert("RGB"))


def _has(image: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((image[LEGEND_PX:] == colour).all(axis=-1).any())


def test_rows_are_drawn_with_their_verdict_colour_and_the_plot_grows_with_them(
    tmp_path: Path,
) -> None:
    reports = _reports(tmp_path)
    win = _pixels(plot_experiment_intervals([reports["win"]], tmp_path / "win.png"))
    flat = _pixels(plot_experiment_intervals([reports["flat"]], tmp_path / "flat.png"))
    assert _has(win, GREEN) and not _has(flat, GREEN)
    assert not _has(flat, RED)  # no guardrail: no margin line
    many = [
        dataclasses.replace(r, experiment_id=f"{r.experiment_id}-{i}")
        for i in range(30)
        for r in reports.values()
    ]
    tall = _pixels(plot_experiment_intervals(many, tmp_path / "many.png"))
    # one row per comparison plus a header per experiment, at a fixed row height
    assert tall.shape[0] > 12 * win.shape[0]
    assert tall.shape[1] >= win.shape[1]  # longer experiment ids widen the figure


def test_guardrail_margin_clipped_and_unanalysable_rows(tmp_path: Path) -> None:
    report = _reports(tmp_path)["flat"]
    (c,) = report.comparisons
    rows = (
        dataclasses.replace(
            c, metric="cost_usd", role="guardrail", margin=0.1, margin_relative=True
        ),
        dataclasses.replace(c, metric="latency_ms", relative_ci_high=math.inf, verdict="worse"),
        dataclasses.replace(c, metric="error_rate", relative=-1.0, relative_ci_low=-1.0),
        dataclasses.replace(c, metric="errors", analysable=False, message="no traffic"),
        dataclasses.replace(c, metric="tokens", relative=math.nan),
    )
    edge = dataclasses.replace(report, comparisons=rows)
    image = _pixels(plot_experiment_intervals([edge], tmp_path / "edge.png"))
    assert _has(image, RED)  # the margin line and the worse interval
    assert (
        image.shape[0] > _pixels(plot_experiment_intervals([report], tmp_path / "one.png")).shape[0]
    )
    empty = _pixels(plot_experiment_intervals([], tmp_path / "none.png"))
    assert empty.shape[0] > 50


def test_two_threads_draw_the_same_bytes_as_one(tmp_path: Path) -> None:
    reports = list(_reports(tmp_path).values()) * 5
    expected = plot_experiment_intervals(reports, tmp_path / "serial.png").read_bytes()
    with ThreadPoolExecutor(2) as pool:
        paths = list(
            pool.map(
                lambda k: plot_experiment_intervals(reports, tmp_path / f"thread-{k}.png"),
                range(4),
            )
        )
    assert all(p.read_bytes() == expected for p in paths)


@pytest.mark.parametrize("count", [2, 50])
def test_labels_fit_left_of_the_plot_area(tmp_path: Path, count: int) -> None:
    reports = list(_reports(tmp_path).values())
    rows = [
        dataclasses.replace(
            r,
            experiment_id=f"exp-{i}",
            comparisons=tuple(
                dataclasses.replace(c, metric="a_rather_long_metric_name", variant="variant-b")
                for c in r.comparisons
            ),
        )
        for i in range(count)
        for r in reports[:1]
    ]
    image = _pixels(plot_experiment_intervals(rows, tmp_path / f"labels-{count}.png"))
    # the first pixel column holds nothing but the background (white or the band grey):
    # labels are right-aligned against the plot, never cut at the figure's left edge
    assert set(map(tuple, image[:, 0])) <= {(255, 255, 255), (242, 242, 242)}
