-- Monitoring tables (tasks/monitoring/store.py). Applied idempotently after schema.sql.
-- One row per alert raised (after de-duplication); repeats of an incident within the cooldown
-- are not stored again, they show up as "suppressed" in the nightly report.
CREATE TABLE IF NOT EXISTS monitoring_alerts (
    alert_id          VARCHAR PRIMARY KEY,       -- run_id | incident_key
    incident_key      VARCHAR NOT NULL,          -- use_case|kind|name: what de-duplication groups by
    run_id            VARCHAR NOT NULL,
    as_of             DATE NOT NULL,             -- the night (UTC day) the alert is about
    use_case          VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,          -- 'rule' | 'drift' | 'change' | 'anomaly'
    name              VARCHAR NOT NULL,          -- rule name, 'drift', 'change', 'anomaly'
    severity          VARCHAR NOT NULL,          -- 'info' | 'warning' | 'critical'
    message           VARCHAR NOT NULL,
    details           JSON,
    action_kind       VARCHAR,                   -- recovery action decided with it, if any
    target_config_id  VARCHAR,
    notified_via      VARCHAR NOT NULL,          -- 'log' or 'log,apprise(<n> urls)'
    created_at        TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- One row per use case per monitoring run: the status and the full report as JSON.
CREATE TABLE IF NOT EXISTS monitoring_runs (
    run_id      VARCHAR NOT NULL,
    as_of       DATE NOT NULL,
    use_case    VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,                -- 'ok' | 'warning' | 'critical' | 'no_data'
    action_kind VARCHAR,
    report      JSON NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, use_case)
);

-- Every incident seen by a run, raised or suppressed: de-duplication reads the last night an
-- incident was seen, so an ongoing incident stays one alert however many nights it lasts.
CREATE TABLE IF NOT EXISTS monitoring_signals (
    run_id        VARCHAR NOT NULL,
    as_of         DATE NOT NULL,
    incident_key  VARCHAR NOT NULL,
    raised        BOOLEAN NOT NULL,
    PRIMARY KEY (run_id, incident_key)
);
