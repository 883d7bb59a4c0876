-- Canonical warehouse schema (DESIGN.md section 3). Applied idempotently on every connection.
-- One row per LLM call. request_id is the dedupe key.
CREATE TABLE IF NOT EXISTS usage_logs (
    request_id     VARCHAR NOT NULL,          -- dedupe key, enforced by the ingest (anti-join); no
                                              -- PRIMARY KEY: its ART index costs ~1.5x at 10 M rows
    ts             TIMESTAMPTZ NOT NULL,      -- call start, UTC
    day            DATE NOT NULL,             -- UTC date of ts, for partition-style aggregation
    use_case       VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    provider       VARCHAR,
    prompt_id      VARCHAR,
    config_id      VARCHAR,
    experiment_id  VARCHAR,
    variant_id     VARCHAR,
    unit_id        VARCHAR,
    propensity     DOUBLE,
    temperature    DOUBLE,
    top_p          DOUBLE,
    max_tokens     INTEGER,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    latency_ms     DOUBLE NOT NULL,
    ttft_ms        DOUBLE,
    cost_usd       DOUBLE NOT NULL,
    cost_source    VARCHAR NOT NULL,          -- 'log' | 'price_table' | 'override'
    status         VARCHAR NOT NULL,          -- 'success' | 'error'
    error_type     VARCHAR,
    quality        DOUBLE,
    feedback       TINYINT,
    task_type      VARCHAR,
    user_segment   VARCHAR,
    region         VARCHAR,
    language       VARCHAR,
    metadata       JSON,
    source_file    VARCHAR NOT NULL,
    source_line    BIGINT NOT NULL,
    ingest_id      VARCHAR NOT NULL,
    cache_read_tokens  BIGINT,                -- of input_tokens, read from the provider's cache
    cache_write_tokens BIGINT,                -- of input_tokens, written to the cache
    reasoning_tokens   BIGINT                 -- of output_tokens, spent on reasoning
);
