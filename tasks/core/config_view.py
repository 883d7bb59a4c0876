"""What a use case actually gets from the configuration files, and a starting config for a user.

Pure functions over loaded TOML documents (no warehouse, no capability imports):

* :func:`effective_for` overlays each file's per-use-case tables on its shared tables the way
  the capabilities do (``[defaults]`` + ``[use_cases.<name>]`` in budget and registry; ``[rules]``
  / ``[policy]`` + ``[use_cases.<name>.rules|policy]`` in monitoring; ``[space]`` +
  ``[use_cases.<name>.space]`` in search, forbidden rules adding up; ``[objective]`` +
  ``[objective.use_cases.<name>]`` in nightly; ``[defaults]`` + ``[experiments."<id>"]`` for the
  experiments of that use case). ``llmopt config check`` prints it.
* :func:`starter_files` writes the text of a commented starting configuration for the use cases a
  warehouse holds (``llmopt init``): the shipped generic defaults, then one commented table per
  use case with what the logs show (spend, p95 latency, prompts) as hints.

Example:
    >>> docs = {"registry": {"defaults": {"approval": "human"},
    ...                      "use_cases": {"a": {"approval": "auto"}}}}
    >>> effective_for("a", docs)["registry"]
    {'approval': 'auto'}
    >>> effective_for("b", docs)["registry"]
    {'approval': 'human'}
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ObservedExperiment",
    "ObservedUseCase",
    "effective_for",
    "named_use_cases",
    "starter_files",
]


def _table(doc: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    value: Any = doc
    for key in keys:
        value = value.get(key, {}) if isinstance(value, Mapping) else {}
    return dict(value) if isinstance(value, Mapping) else {}


def named_use_cases(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Use cases the configuration names anywhere (per-use-case tables, experiments' use_case).

    Args:
        docs: loaded documents by file name (``"budget"``, ``"registry"``, ...).

    Returns:
        Sorted, without duplicates.
    """
    names: set[str] = set()
    for doc in docs.values():
        names.update(_table(doc, "use_cases"))
    names.update(_table(docs.get("nightly", {}), "objective", "use_cases"))
    for exp in _table(docs.get("experiments", {}), "experiments").values():
        if isinstance(exp, Mapping) and isinstance(exp.get("use_case"), str):
            names.add(exp["use_case"])
    return sorted(names)


def effective_for(use_case: str, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The settings ``use_case`` gets from each file (shared tables overlaid by its own).

    Args:
        use_case: the use case name as logged.
        docs: loaded documents by file name; a missing file contributes nothing.

    Returns:
        ``{file name: settings}``; only the per-use-case parts (global tables such as
        ``[bandit]`` or ``[drift]`` apply to every use case alike and are not repeated).
    """
    out: dict[str, Any] = {}
    for name in ("budget", "registry"):
        if name in docs:
            doc = docs[name]
            out[name] = {**_table(doc, "defaults"), **_table(doc, "use_cases", use_case)}
    if "monitoring" in docs:
        doc = docs["monitoring"]
        own = _table(doc, "use_cases", use_case)
        out["monitoring"] = {
            "rules": {**_table(doc, "rules"), **_table(own, "rules")},
            "policy": {**_table(doc, "policy"), **_table(own, "policy")},
            **(
                {"production_config_id": own["production_config_id"]}
                if "production_config_id" in own
                else {}
            ),
        }
    if "search" in docs:
        doc = docs["search"]
        shared, own = _table(doc, "space"), _table(doc, "use_cases", use_case, "space")
        space = {**shared, **own}
        space["forbidden"] = [*shared.get("forbidden", []), *own.get("forbidden", [])]
        out["search"] = {"space": space}
    if "nightly" in docs:
        objective = _table(docs["nightly"], "objective")
        objective.pop("use_cases", None)
        out["nightly"] = {
            "objective": {
                **objective,
                **_table(docs["nightly"], "objective", "use_cases", use_case),
            }
        }
    if "experiments" in docs:
        doc = docs["experiments"]
        defaults = _table(doc, "defaults")
        out["experiments"] = {
            exp_id: {**defaults, **spec}
            for exp_id, spec in _table(doc, "experiments").items()
            if isinstance(spec, Mapping) and spec.get("use_case") == use_case
        }
    return out


@dataclass(frozen=True, kw_only=True)
class ObservedExperiment:
    """An experiment seen in the logs: its id and variants (by number of calls, largest first)."""

    experiment_id: str
    variants: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ObservedUseCase:
    """What the warehouse shows about one use case, for the starting config's hints."""

    name: str
    requests: int
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    spend_30d_usd: float | None = None
    latency_p95_ms: float | None = None
    prompt_ids: tuple[str, ...] = ()
    max_tokens: tuple[int, ...] = ()
    experiments: tuple[ObservedExperiment, ...] = field(default_factory=tuple)


def _q(name: str) -> str:
    return json.dumps(name)


def _fmt(value: float | None, unit: str = "") -> str:
    return "unknown" if value is None else f"{value:,.2f}{unit}"


def _stubs(name: str, uc: ObservedUseCase) -> list[str]:
    key = _q(uc.name)
    if name == "budget":
        return [
            f"# [use_cases.{key}]   # spend over the last 30 logged days: "
            f"{_fmt(uc.spend_30d_usd)} USD",
            "# monthly_budget_usd = 0.0",
        ]
    if name == "monitoring":
        return [
            f"# [use_cases.{key}.rules]   # p95 latency in the logs: "
            f"{_fmt(uc.latency_p95_ms, ' ms')}",
            "# latency_p95_slo_ms = 0",
            "# error_rate_max = 0.01",
        ]
    if name == "registry":
        return [
            f'# [use_cases.{key}]   # default: a person approves (approval = "human")',
            '# approval = "auto"',
            "# auto_promote = false",
        ]
    if name == "search":
        return [
            f"# [use_cases.{key}.space]   # unset lists come from what the logs show",
            f"# prompt_ids = {json.dumps(list(uc.prompt_ids))}",
            f"# max_tokens = {json.dumps(list(uc.max_tokens))}",
        ]
    if name == "nightly":
        return [f"# [objective.use_cases.{key}]", '# preset = "balanced"']
    if name == "experiments":
        lines: list[str] = []
        for exp in uc.experiments:
            variants = list(exp.variants)
            control = "control" if "control" in variants else (variants[0] if variants else "")
            weights = ", ".join(f"{_q(v)} = {1 / max(len(variants), 1):.4g}" for v in variants)
            lines += [
                f"# [experiments.{_q(exp.experiment_id)}]",
                f"# use_case = {key}",
                f"# control = {_q(control)}",
                f"# weights = {{ {weights} }}",
                "# mde = 0.01",
                "",
            ]
        return lines[:-1]
    return []


def starter_files(
    defaults_dir: Path,
    names: Sequence[str],
    use_cases: Sequence[ObservedUseCase],
    *,
    today: dt.date,
) -> dict[str, str]:
    """The text of each starting configuration file, for ``llmopt init``.

    Args:
        defaults_dir: the shipped generic defaults (``data/config``), copied with their comments.
        names: configuration file names to write (without ``.toml``).
        use_cases: what the warehouse holds; each gets commented per-use-case tables.
        today: the date written in the header.

    Returns:
        ``{name: file text}``; every text is valid TOML equal in effect to the shipped defaults
        (the per-use-case tables are commented out until the user edits them).
    """
    listed = ", ".join(uc.name for uc in use_cases) or "none yet (ingest logs, then re-run)"
    out: dict[str, str] = {}
    for name in names:
        shipped = (defaults_dir / f"{name}.toml").read_text(encoding="utf-8")
        header = [
            f"# Written by `llmopt init` on {today.isoformat()} from the shipped defaults",
            f"# ({defaults_dir / (name + '.toml')}). This file replaces them as a whole:",
            "# a key you delete falls back to the code's built-in default, not to data/config.",
            f"# Use cases found in the warehouse: {listed}.",
            "# Check your edits with `llmopt config check`.",
            "",
        ]
        stubs: list[str] = []
        for uc in use_cases:
            lines = _stubs(name, uc)
            if lines:
                stubs += ["", *lines]
        tail = ["", "# ---- your use cases (uncomment and edit) ----", *stubs] if stubs else []
        out[name] = "\n".join([*header, shipped.rstrip("\n"), *tail]) + "\n"
    return out
