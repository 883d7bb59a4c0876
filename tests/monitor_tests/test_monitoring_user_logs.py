"""Monitoring on logs shaped the way users have them: no ``config_id``, their own use-case names.

Three use cases of a user's own (``claims-triage``, ``invoice-extract``, ``faq-answerer``), 20 days
of 120 calls each, two configurations per use case (90% production, 10% a cheaper model), no
``config_id`` and no ``top_p`` / ``max_tokens`` in any row. On the last night ``claims-triage``'s
production bills 2.59x its usual cost and ``invoice-extract``'s production quality drops from
0.79 to 0.54. Every number below is computed from the rows the test wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.core.settings import Settings, load_settings
from tasks.monitoring import alert_lines, load_monitoring_config, run_monitoring
from tasks.nightly.inputs import aggregate_night
from tasks.nightly.rollup_set import ALL_SPECS
from tasks.warehouse.config_metrics import CONFIG_KEY_SQL
from tasks.warehouse.connection import connect
from tasks.warehouse.queries import latest_day, use_cases
from tasks.warehouse.rollups import refresh_rollups

START = dt.date(2026, 11, 1)
DAYS = 20
NIGHT = START + dt.timedelta(days=DAYS - 1)  # 2026-11-20
PER_DAY = 120
PROD_COST, ALT_COST, SPIKE = 0.002, 0.0005, 2.59
USE_CASES = ("claims-triage", "invoice-extract", "faq-answerer")
NIGHTLY_RUN = f"night-{NIGHT.isoformat()}"  # tasks.nightly.night.run_key_for

ROWS_SQL = """
INSERT INTO usage_logs (request_id, ts, day, use_case, model, provider, prompt_id, temperature,
    input_tokens, output_tokens, latency_ms, cost_usd, cost_source, status, quality, task_type,
    language, source_file, source_line, ingest_id)
SELECT
    $use_case || '-' || d || '-' || i,
    CAST($start AS TIMESTAMPTZ) + to_days(CAST(d AS INTEGER)) + to_seconds(i * 600),
    CAST($start AS DATE) + CAST(d AS INTEGER),
    $use_case,
    CASE WHEN prod THEN 'gpt-4o-mini' ELSE 'claude-haiku-4-5' END,
    CASE WHEN prod THEN 'openai' ELSE 'anthropic' END,
    'triage-v3',
    CASE WHEN prod THEN 0.2 ELSE 0.0 END,
    500 + i % 50, 200 + i % 30, 800.0 + (i % 10) * 20,
    CASE WHEN NOT prod THEN $alt_cost
         WHEN d = $night AND $spike THEN $prod_cost * $spike_factor ELSE $prod_cost END,
    'log',
    CASE WHEN i = 119 THEN 'error' ELSE 'success' END,
    CASE WHEN prod AND d = $night AND $drop THEN 0.45 ELSE 0.70 END + 0.2 * ((i * 7) % 10) / 10,
    'extraction', 'en', 'user-export.jsonl', d * 1000 + i, 'user-test'
FROM (SELECT d, i, i < 108 AS prod FROM range($days) t(d), range($per_day) s(i))
"""


def _load(con: duckdb.DuckDBPyConnection) -> None:
    for name in USE_CASES:
        con.execute(
            ROWS_SQL,
            {
                "use_case": name,
                "start": START,
                "days": DAYS,
                "per_day": PER_DAY,
                "night": DAYS - 1,
                "alt_cost": ALT_COST,
                "prod_cost": PROD_COST,
                "spike_factor": SPIKE,
                "spike": name == "claims-triage",
                "drop": name == "invoice-extract",
            },
        )


def _production_key(con: duckdb.DuckDBPyConnection, use_case: str) -> str:
    """The nightly flow's key of the production configuration (the fallback key here)."""
    row = con.execute(
        f"SELECT DISTINCT {CONFIG_KEY_SQL} FROM usage_logs"
        " WHERE use_case = ? AND model = 'gpt-4o-mini'",
        [use_case],
    ).fetchall()
    assert len(row) == 1
    return str(row[0][0])


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A user's home with the shipped generic configuration and their own warehouse."""
    monkeypatch.delenv("LLMOPT_CONFIG_DIR", raising=False)
    monkeypatch.setenv("LLMOPT_HOME", str(tmp_path))
    settings = load_settings(env={"LLMOPT_HOME": str(tmp_path)}).ensure_dirs()
    con = connect(settings)
    try:
        assert con.execute("SELECT count(*) FROM usage_logs").fetchone() == (0,)
        _load(con)
        assert con.execute("SELECT count(config_id) FROM usage_logs").fetchone() == (0,)
    finally:
        con.close()
    return settings


def _rule(uc: Any, name: str) -> Any:
    return next(r for r in uc.rules if r.rule == name)


@pytest.mark.parametrize("production_known", [False, True], ids=["inferred", "nightly-key"])
def test_rules_fire_on_logs_without_config_id_with_a_baseline_before_the_night(
    user_home: Settings, production_known: bool
) -> None:
    con = connect(user_home)
    try:
        keys = {name: _production_key(con, name) for name in USE_CASES}
        report = run_monitoring(
            con,
            user_home,
            as_of=NIGHT,
            config=load_monitoring_config(user_home),
            production_configs=keys if production_known else None,
            record=False,
        )
        reference = con.execute(
            f"SELECT avg(cost_usd), avg(quality) FROM usage_logs WHERE use_case = 'claims-triage'"
            f" AND {CONFIG_KEY_SQL} = ? AND day BETWEEN ? AND ?",
            [keys["claims-triage"], NIGHT - dt.timedelta(days=14), NIGHT - dt.timedelta(days=1)],
        ).fetchone()
    finally:
        con.close()
    by_uc = {u.use_case: u for u in report.use_cases}
    assert keys["claims-triage"] == "gpt-4o-mini|triage-v3|t=0.2|p=-|mt=-"
    for name in USE_CASES:
        assert by_uc[name].production_config_id == keys[name]
        assert by_uc[name].reference_window == (
            NIGHT - dt.timedelta(days=14),
            NIGHT - dt.timedelta(days=1),
        )

    claims = by_uc["claims-triage"]
    cost = _rule(claims, "cost_spike")
    assert cost.analysable and cost.fired
    assert reference is not None and cost.baseline == pytest.approx(reference[0], rel=1e-12)
    assert cost.baseline == pytest.approx(PROD_COST, rel=1e-12)  # the night is not in it
    assert cost.observed / cost.baseline == pytest.approx(SPIKE, rel=1e-9)
    assert "2.59x the baseline" in cost.reason
    assert not _rule(claims, "quality_drop").fired
    assert "claims-triage|rule|cost_spike" in {a.incident_key for a in claims.alerts}

    invoice = by_uc["invoice-extract"]
    quality = _rule(invoice, "quality_drop")
    assert quality.analysable and quality.fired
    assert quality.baseline == pytest.approx(reference[1], rel=1e-12)  # same rows, same scores
    assert quality.observed == pytest.approx(quality.baseline - 0.25, rel=1e-9)
    assert not _rule(invoice, "cost_spike").fired

    quiet = by_uc["faq-answerer"]
    assert all(r.analysable and not r.fired for r in quiet.rules)
    assert quiet.status == "ok" and quiet.alerts == ()
    if not production_known:
        assert any("inferred from traffic" in n for n in claims.notes)


def test_monitor_after_the_nightly_run_lists_the_nights_alerts_as_raised_not_suppressed(
    user_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    con = connect(user_home)
    try:
        keys = {name: _production_key(con, name) for name in USE_CASES}
        # the nightly flow's aggregate step, where it runs monitoring for all its use cases
        # (production bootstrapped from the logs by the flow itself, registry empty)
        night_inputs = aggregate_night(
            user_home,
            con,
            as_of=NIGHT,
            use_cases=list(USE_CASES),
            run_key=NIGHTLY_RUN,
            lookback_days=28,
            budget=False,
        )
    finally:
        con.close()
    reports = [night_inputs[name].monitoring for name in USE_CASES]
    assert all(r is not None and r.run_id == NIGHTLY_RUN for r in reports)
    nightly = dataclasses.replace(
        reports[0], use_cases=tuple(r.use_cases[0] for r in reports if r is not None)
    )
    assert [u.production_config_id for u in nightly.use_cases] == [keys[n] for n in USE_CASES]
    raised = {a.incident_key for a in nightly.alerts}
    assert {"claims-triage|rule|cost_spike", "invoice-extract|rule|quality_drop"} <= raised
    assert alert_lines(nightly) == [f"[{a.severity}] {a.message}" for a in nightly.alerts]

    assert main(["monitor", "--as-of", NIGHT.isoformat(), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    by_uc = {u["use_case"]: u for u in payload["use_cases"]}
    listed = {a["incident_key"]: a["raised_by"] for u in payload["use_cases"] for a in u["alerts"]}
    assert listed == dict.fromkeys(raised, NIGHTLY_RUN)
    assert all(u["suppressed"] == [] for u in payload["use_cases"])
    assert by_uc["claims-triage"]["status"] != "ok" and by_uc["faq-answerer"]["status"] == "ok"

    assert main(["monitor", "--as-of", NIGHT.isoformat()]) == 0
    human = capsys.readouterr().out
    assert "incident open" not in human and "(suppressed)" not in human
    spike = next(a for a in nightly.alerts if a.incident_key == "claims-triage|rule|cost_spike")
    assert f"ALERT [{spike.severity}] {spike.message} (raised by run {NIGHTLY_RUN})" in human

    # the next night, the same incident is an open incident again (one alert per incident)
    con = connect(user_home)
    try:
        con.execute(
            "UPDATE usage_logs SET day = day + INTERVAL 1 DAY, ts = ts + INTERVAL 1 DAY"
            " WHERE use_case = 'claims-triage' AND day = ?",
            [NIGHT],
        )
        # an in-place UPDATE keeps the row count: rebuild the rollups, as documented
        refresh_rollups(con, ALL_SPECS, full=True)
        later = run_monitoring(
            con,
            user_home,
            as_of=NIGHT + dt.timedelta(days=1),
            production_configs=keys,
            use_cases=["claims-triage"],
            record=False,
        )
    finally:
        con.close()
    (uc,) = later.use_cases
    held = [s for s in uc.suppressed if s.alert.incident_key == "claims-triage|rule|cost_spike"]
    assert uc.alerts == () or all(a.incident_key != spike.incident_key for a in uc.alerts)
    assert [s.kind for s in held] == ["open_incident"]


def test_the_reference_window_length_is_configured_and_ends_before_the_night(
    user_home: Settings,
) -> None:
    config = dataclasses.replace(load_monitoring_config(user_home), reference_days=5)
    con = connect(user_home)
    try:
        key = _production_key(con, "invoice-extract")
        report = run_monitoring(
            con, user_home, as_of=NIGHT, config=config, use_cases=["invoice-extract"], record=False
        )
        five_days = con.execute(
            f"SELECT avg(quality) FROM usage_logs WHERE use_case = 'invoice-extract'"
            f" AND {CONFIG_KEY_SQL} = ? AND day BETWEEN ? AND ?",
            [key, NIGHT - dt.timedelta(days=5), NIGHT - dt.timedelta(days=1)],
        ).fetchone()
    finally:
        con.close()
    (uc,) = report.use_cases
    assert uc.reference_window == (NIGHT - dt.timedelta(days=5), NIGHT - dt.timedelta(days=1))
    assert uc.current_window == (NIGHT, NIGHT)
    quality = _rule(uc, "quality_drop")
    assert five_days is not None and quality.baseline == pytest.approx(five_days[0], rel=1e-12)
    assert quality.fired
    drift = {d.feature: d for d in uc.drift}
    assert drift["quality"].n_reference == 5 * PER_DAY and drift["quality"].n_current == PER_DAY


def test_shared_queries_name_the_latest_night_and_its_use_cases(user_home: Settings) -> None:
    con = connect(user_home)
    try:
        assert latest_day(con) == NIGHT
        assert use_cases(con, NIGHT, NIGHT) == sorted(USE_CASES)
        assert use_cases(con, NIGHT + dt.timedelta(days=1), NIGHT + dt.timedelta(days=9)) == []
        con.execute("DELETE FROM usage_logs")
        assert latest_day(con) is None
    finally:
        con.close()
