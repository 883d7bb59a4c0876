"""The demo's two extra use cases: a promotion from logged evidence and a contextual routing.

Part of the simulator (the demo and its test only; production code never imports it). Both use
cases are logged random routing worlds of :mod:`tasks.simulation.worlds_routing` (every request
carries its ``propensity``); the nightly flow is told nothing about them but their logs.

* ``faq-answer`` (:data:`PROMOTION_USE_CASE`): only ``gpt-4o`` serves until the day after the
  demo's first night; from then on a new configuration, ``gpt-4o-mini``, gets 40 % of the
  requests at random (propensity logged). Its true quality is higher (0.83 vs 0.80) and it is
  cheaper and faster, so on the balanced objective it beats production; the flow has to find that
  in the logs, propose it, pass the approval policy and walk the staged rollout.
* ``support-route`` (:data:`ROUTING_USE_CASE`): :func:`~tasks.simulation.worlds_routing.
  segmented_world`, where the better model depends on ``user_segment`` (the strong model for
  ``enterprise`` and ``pro``, the cheap one for ``free`` and ``internal``); with
  ``[routing] publish = true`` in the demo's ``budget.toml`` the flow publishes a routing table.

Example:
    >>> import datetime as dt, tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> days = write_story_days(
    ...     start=dt.date(2026, 10, 1), days=3, candidate_from_day=2, out_dir=out, scale=0.1
    ... )
    >>> [len(d) for d in days]
    [2, 2, 2]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.registry.routing import routing_of
from tasks.simulation.worlds_routing import (
    STRONG,
    WEAK,
    RoutingWorld,
    Segment,
    segmented_world,
)

__all__ = [
    "PROMOTION_USE_CASE",
    "ROUTING_USE_CASE",
    "promotion_world",
    "routing_world",
    "story_lines",
    "write_story_days",
]

PROMOTION_USE_CASE = "faq-answer"
ROUTING_USE_CASE = "support-route"

# The routing worlds' two arms (same models, prices and latency), under the use case's own ids.
_FAQ_PRODUCTION = dataclasses.replace(STRONG, config_id="faq-gpt-4o")
_FAQ_CANDIDATE = dataclasses.replace(WEAK, config_id="faq-gpt-4o-mini")


def promotion_world(*, start: dt.date, days: int, seed: int, scale: float = 1.0) -> RoutingWorld:
    """``faq-answer``: production ``gpt-4o`` (60 %) and the better ``gpt-4o-mini`` (40 %).

    Args:
        start: first simulated day.
        days: simulated days.
        seed: the world's seed.
        scale: multiplies the 1,000 requests per day.

    Returns:
        The world (before :func:`write_story_days` removes the candidate's early days).
    """
    return RoutingWorld(
        use_case=PROMOTION_USE_CASE,
        segments=(Segment(name="all", share=1.0, strong_quality=0.80, weak_quality=0.83),),
        strong=_FAQ_PRODUCTION,
        weak=_FAQ_CANDIDATE,
        strong_propensity=0.6,
        requests_per_day=max(1, round(1000 * scale)),
        days=days,
        start=start,
        seed=seed,
    )


def routing_world(*, start: dt.date, days: int, seed: int, scale: float = 1.0) -> RoutingWorld:
    """``support-route``: the segmented world (the best model differs by ``user_segment``).

    Args:
        start: first simulated day.
        days: simulated days.
        seed: the world's seed.
        scale: multiplies the 1,500 requests per day.

    Returns:
        The world.
    """
    return segmented_world(
        use_case=ROUTING_USE_CASE,
        requests_per_day=max(1, round(1500 * scale)),
        days=days,
        start=start,
        seed=seed + 1,
    )


def _day_index(table: pa.Table, start: dt.date) -> np.ndarray:
    dates = pc.cast(table.column("timestamp"), pa.date32()).to_numpy(zero_copy_only=False)
    return (dates - np.datetime64(start, "D")).astype(int)


def _before_candidate(table: pa.Table, start: dt.date, candidate_from_day: int) -> pa.Table:
    """Production alone (propensity 1) on the days before the candidate enters."""
    day = _day_index(table, start)
    early = day < candidate_from_day
    is_candidate = np.array(table.column("config_id").to_pylist()) == _FAQ_CANDIDATE.config_id
    kept = table.filter(pa.array(~(early & is_candidate)))
    kept_early = _day_index(kept, start) < candidate_from_day
    propensity = np.where(kept_early, 1.0, kept.column("propensity").to_numpy())
    index = kept.schema.get_field_index("propensity")
    return kept.set_column(index, kept.schema.field(index), pa.array(propensity, pa.float64()))


def write_story_days(
    *,
    start: dt.date,
    days: int,
    candidate_from_day: int,
    out_dir: Path,
    seed: int = 7,
    scale: float = 1.0,
) -> list[list[Path]]:
    """Write both worlds' logs, one parquet file per use case and day.

    Args:
        start: first simulated day (the demo's ``spec.start_date``).
        days: simulated days.
        candidate_from_day: day index from which ``faq-answer``'s new configuration is logged.
        out_dir: where the files go (beside the demo's other logs).
        seed: the worlds' seed.
        scale: multiplies both worlds' requests per day.

    Returns:
        Per day index, the files written for that day.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    promo = promotion_world(start=start, days=days, seed=seed, scale=scale).simulate()
    tables = {
        PROMOTION_USE_CASE: _before_candidate(promo, start, candidate_from_day),
        ROUTING_USE_CASE: routing_world(start=start, days=days, seed=seed, scale=scale).simulate(),
    }
    per_day: list[list[Path]] = [[] for _ in range(days)]
    for use_case, table in tables.items():
        day = _day_index(table, start)
        for index in range(days):
            path = out_dir / f"story-{index:03d}-{use_case}.parquet"
            pq.write_table(table.filter(pa.array(day == index)), path)
            per_day[index].append(path)
    return per_day


def _item(night: Mapping[str, Any], use_case: str) -> Mapping[str, Any]:
    return night.get("use_cases", {}).get(use_case) or {}


def _first_night(
    nights: Sequence[Mapping[str, Any]], use_case: str, needle: str
) -> tuple[str, str] | None:
    """The first night whose reasons or headline contain ``needle``, and that text."""
    for night in nights:
        item = _item(night, use_case)
        for text in [*item.get("reasons", []), item.get("headline", "")]:
            if needle in text:
                return str(night["as_of"]), str(text)
    return None


def _production_since(nights: Sequence[Mapping[str, Any]], use_case: str, key: str) -> str | None:
    since = None
    for night in nights:
        serving = _item(night, use_case).get("production_config_id") == key
        since = (since or str(night["as_of"])) if serving else None
    return since


def _safety(nights: Sequence[Mapping[str, Any]], use_case: str) -> list[str]:
    said = []
    alerted = [str(n["as_of"]) for n in nights if _item(n, use_case).get("alerts")]
    if alerted:
        said.append(f"monitoring alerts on {len(alerted)} night(s) from {alerted[0]}")
    rolled = next(
        (
            n
            for n in nights
            if (_item(n, use_case).get("published") or {}).get("status") == "rollback"
        ),
        None,
    )
    if rolled is not None:
        said.append(f"rolled back on {rolled['as_of']}")
    for needle, what in (
        ("circuit", "circuit breaker"),
        ("exploration paused", "optimizer paused"),
    ):
        found = _first_night(nights, use_case, needle)
        if found:
            said.append(f"{what} on {found[0]}")
    return said


def _promotion(nights: Sequence[Mapping[str, Any]], use_case: str) -> list[str]:
    found = _first_night(nights, use_case, " from logged evidence")
    if found is None:
        return []
    night, text = found
    match = re.search(r"proposed (\S+) from logged evidence", text)
    candidate = match.group(1) if match else "a configuration"
    item = _item(next(n for n in nights if str(n["as_of"]) == night), use_case)
    published = item.get("published") or {}
    since = _production_since(nights, use_case, candidate)
    where = f"{candidate} on {night} (v{published.get('version')}"
    if published.get("state") != "production":
        return [
            f"proposed from logged evidence: {where} {published.get('status')}: "
            f"{published.get('reason')})"
        ]
    return [
        f"promoted from logged evidence: {where}, approved by {published.get('approved_by')})"
        + (f", production since {since}" if since else ", rollout in progress")
    ]


def _routing(
    nights: Sequence[Mapping[str, Any]], use_case: str, versions: Sequence[Any]
) -> list[str]:
    night_of = {(_item(n, use_case).get("published") or {}).get("version"): n for n in nights}
    for version in versions:
        table = routing_of(version.config)
        night = night_of.get(version.version)
        if table is None or night is None:
            continue
        published = _item(night, use_case).get("published") or {}
        where = f"on {night['as_of']} (v{version.version}"
        if published.get("state") == "production":
            return [
                f"routing table published ({len(table.rows)} contexts of {table.context}) "
                f"{where}, approved by {published.get('approved_by')})"
            ]
        return [
            f"routing table proposed ({len(table.rows)} contexts of {table.context}) "
            f"{where} {published.get('status')}: {published.get('reason')})"
        ]
    return []


def story_lines(
    nights: Sequence[Mapping[str, Any]], versions: Mapping[str, Sequence[Any]]
) -> list[str]:
    """Per use case, what the nights did (read from the flow's summaries and the registry).

    Args:
        nights: the nightly flow's summaries (``summary_dict``), in order.
        versions: per use case, its registry versions (``ConfigVersion``), oldest first.

    Returns:
        One line per use case, e.g. ``faq-answer: promoted from logged evidence: ...`` or
        ``support-route: routing table published (4 contexts of user_segment) ...``.
    """
    lines: list[str] = []
    for use_case in sorted(versions):
        said: list[str] = []
        shipped = _first_night(nights, use_case, " ships ")
        if shipped:
            said.append(f"experiment {shipped[1].split(' ships ')[0]} shipped on {shipped[0]}")
        said += _safety(nights, use_case)
        said += _promotion(nights, use_case)
        said += _routing(nights, use_case, versions[use_case])
        lines.append(f"  {use_case}: " + ("; ".join(said) if said else "production held"))
    labels: dict[str, list[str]] = {}
    for night in nights:
        for experiment, label in (night.get("experiments") or {}).items():
            labels.setdefault(experiment, []).append(str(label))
    for experiment, seen in sorted(labels.items()):
        ships = sum("ship" in label for label in seen)
        lines.append(
            f"  experiment {experiment}: '{seen[-1]}' after {len(seen)} night(s)"
            + (f" (ship on {ships})" if ships else " (never shipped)")
        )
    return lines
