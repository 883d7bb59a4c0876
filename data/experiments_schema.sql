-- Experiment analysis tables (tasks/experiments/). Applied idempotently.
-- Every row carries the run id that produced it and the as-of date analysed; a re-run with the
-- same (run_id, as_of) replaces its rows, so the nightly flow is idempotent.

-- Cumulative per-unit sufficient statistics per experiment x variant x metric x look day.
-- Units are randomization units (unit_id, else request_id); num/den are the per-unit sums.
CREATE TABLE IF NOT EXISTS experiment_stats (
    run_id          VARCHAR NOT NULL,
    as_of           DATE NOT NULL,
    experiment_id   VARCHAR NOT NULL,
    variant_id      VARCHAR NOT NULL,
    metric          VARCHAR NOT NULL,
    look_day        DATE NOT NULL,
    n               BIGINT NOT NULL,      -- units with den > 0
    num_sum         DOUBLE NOT NULL,
    num_sum_squares DOUBLE NOT NULL,
    den_sum         DOUBLE NOT NULL,
    den_sum_squares DOUBLE NOT NULL,
    sum_products    DOUBLE NOT NULL,
    max_den         DOUBLE NOT NULL,      -- 1 when every unit has one observation
    PRIMARY KEY (run_id, as_of, experiment_id, variant_id, metric, look_day)
);

-- One row per experiment x metric x role x treatment arm: effects, intervals, p-values.
CREATE TABLE IF NOT EXISTS experiment_results (
    run_id            VARCHAR NOT NULL,
    as_of             DATE NOT NULL,
    experiment_id     VARCHAR NOT NULL,
    metric            VARCHAR NOT NULL,
    role              VARCHAR NOT NULL,   -- primary | secondary | guardrail | report
    variant_id        VARCHAR NOT NULL,
    control_id        VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,   -- mean | proportion | ratio | cuped
    method            VARCHAR NOT NULL,   -- sequential | fixed | bayesian
    n_control         DOUBLE,
    n_treatment       DOUBLE,
    mean_control      DOUBLE,
    mean_treatment    DOUBLE,
    effect            DOUBLE,
    ci_low            DOUBLE,
    ci_high           DOUBLE,
    relative          DOUBLE,
    relative_ci_low   DOUBLE,
    relative_ci_high  DOUBLE,
    p_value           DOUBLE,
    p_adjusted        DOUBLE,
    chance_to_win     DOUBLE,
    expected_loss     DOUBLE,
    margin            DOUBLE,
    margin_relative   BOOLEAN,
    verdict           VARCHAR NOT NULL,
    analysable        BOOLEAN NOT NULL,
    message           VARCHAR NOT NULL,
    p95_control       DOUBLE,
    p95_treatment     DOUBLE,
    PRIMARY KEY (run_id, as_of, experiment_id, metric, role, variant_id)
);

-- One decision per experiment and run, with its reasons and the full JSON report.
CREATE TABLE IF NOT EXISTS experiment_decisions (
    run_id        VARCHAR NOT NULL,
    as_of         DATE NOT NULL,
    experiment_id VARCHAR NOT NULL,
    action        VARCHAR NOT NULL,       -- ship | keep running | stop: harm | stop: SRM | ...
    variant_id    VARCHAR,                -- the arm to ship / the harmful arm
    reasons       JSON NOT NULL,
    days_needed   DOUBLE,
    units_needed  DOUBLE,
    srm_p_value   DOUBLE,
    days_elapsed  INTEGER,
    report        JSON NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, as_of, experiment_id)
);

-- Sticky stops and their resets (audit trail: rows are never deleted). A stop decided by a
-- nightly look (stop: SRM, stop: harm) stays in force for every later night until a person
-- resets it (`llmopt experiments reset ID --reason TEXT`); the reset fills the reset_* columns.
-- The SRM test restarts after a reset: it counts the units first seen after reset_on
-- (reset_units holds the units per arm up to that day).
CREATE TABLE IF NOT EXISTS experiment_stops (
    experiment_id VARCHAR NOT NULL,
    stopped_on    DATE NOT NULL,          -- the night (as_of) the stop was first decided
    action        VARCHAR NOT NULL,       -- stop: SRM | stop: harm
    variant_id    VARCHAR,                -- the harmful arm
    reasons       JSON NOT NULL,
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    reset_at      TIMESTAMPTZ,            -- NULL while the stop is in force
    reset_by      VARCHAR,
    reset_reason  VARCHAR,
    reset_on      DATE,                   -- last day with the experiment's data at the reset
    reset_units   JSON,                   -- units per arm up to reset_on (the SRM baseline)
    PRIMARY KEY (experiment_id, stopped_on, created_at)
);
