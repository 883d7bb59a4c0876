-- Ingestion bookkeeping tables (tasks/ingest.py, tasks/pricing.py, tasks/validation.py).
-- Applied idempotently on every ingest; safe to list in tasks/warehouse.SCHEMA_FILES.

-- Rows that broke a rule: kept with their raw text, where they came from, and why.
CREATE TABLE IF NOT EXISTS quarantine (
    ingest_id      VARCHAR NOT NULL,
    source_file    VARCHAR NOT NULL,
    source_line    BIGINT NOT NULL,           -- 1-based line (text), row (Parquet), element (JSON array)
    record_index   INTEGER NOT NULL,          -- 0, or the span index inside one OTLP line
    reason         VARCHAR NOT NULL,          -- malformed_json, missing_field, bad_type, ...
    detail         VARCHAR,                   -- e.g. the offending field names
    request_id     VARCHAR,
    raw            VARCHAR,                   -- the original text (invalid UTF-8 bytes replaced by U+FFFD)
    quarantined_at TIMESTAMPTZ NOT NULL
);

-- One row per committed file: re-ingesting a file with the same content hash adds nothing.
CREATE TABLE IF NOT EXISTS ingest_manifest (
    ingest_id      VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    path           VARCHAR NOT NULL,
    size_bytes     BIGINT NOT NULL,
    content_hash   VARCHAR NOT NULL,          -- sha256 of the file bytes as stored (compressed or not)
    file_format    VARCHAR NOT NULL,          -- jsonl | json | csv | parquet
    shape          VARCHAR NOT NULL,          -- canonical | litellm | otel
    lines_read     BIGINT NOT NULL,
    blank_lines    BIGINT NOT NULL,
    ingested       BIGINT NOT NULL,
    duplicates     BIGINT NOT NULL,
    quarantined    BIGINT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL
);

-- USD per million tokens, per logged model name, with effective ranges [from, to).
CREATE TABLE IF NOT EXISTS price_table (
    model                     VARCHAR NOT NULL,
    provider                  VARCHAR,
    input_usd_per_mtok        DOUBLE NOT NULL,
    output_usd_per_mtok       DOUBLE NOT NULL,
    tier_input_tokens         BIGINT,         -- above this many input tokens the tier prices apply
    tier_input_usd_per_mtok   DOUBLE,
    tier_output_usd_per_mtok  DOUBLE,
    effective_from            TIMESTAMPTZ NOT NULL,
    effective_to              TIMESTAMPTZ,    -- NULL: still valid
    source                    VARCHAR NOT NULL,  -- 'genai-prices' | 'override'
    source_detail             VARCHAR,        -- genai-prices model id / version, or the override note
    loaded_at                 TIMESTAMPTZ NOT NULL
);

-- Cache prices (added later: ALTER keeps existing warehouses working). NULL: the input price.
ALTER TABLE price_table ADD COLUMN IF NOT EXISTS cache_read_usd_per_mtok DOUBLE;
ALTER TABLE price_table ADD COLUMN IF NOT EXISTS cache_write_usd_per_mtok DOUBLE;
ALTER TABLE price_table ADD COLUMN IF NOT EXISTS tier_cache_read_usd_per_mtok DOUBLE;
ALTER TABLE price_table ADD COLUMN IF NOT EXISTS tier_cache_write_usd_per_mtok DOUBLE;

-- Cached and reasoning token counts (nullable; also in data/schema.sql for new warehouses).
ALTER TABLE usage_logs ADD COLUMN IF NOT EXISTS cache_read_tokens BIGINT;
ALTER TABLE usage_logs ADD COLUMN IF NOT EXISTS cache_write_tokens BIGINT;
ALTER TABLE usage_logs ADD COLUMN IF NOT EXISTS reasoning_tokens BIGINT;

-- Where an appended file's read stopped: the next read starts at end_offset when the first
-- end_offset bytes still hash to content_hash (plain JSONL only).
ALTER TABLE ingest_manifest ADD COLUMN IF NOT EXISTS end_offset BIGINT;
ALTER TABLE ingest_manifest ADD COLUMN IF NOT EXISTS end_line BIGINT;

-- Watermark of a pull source (LiteLLM PostgreSQL): the newest (startTime, request_id) read.
CREATE TABLE IF NOT EXISTS source_watermarks (
    source         VARCHAR NOT NULL,          -- the URL without password
    watermark_ts   TIMESTAMPTZ,
    watermark_id   VARCHAR,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Models looked up in genai-prices (found or not), so each model is looked up once.
CREATE TABLE IF NOT EXISTS price_lookups (
    model          VARCHAR NOT NULL,
    found          BOOLEAN NOT NULL,
    detail         VARCHAR,
    looked_up_at   TIMESTAMPTZ NOT NULL
);

-- Great Expectations results, one row per ingest run (logged to MLflow by the nightly flow).
CREATE TABLE IF NOT EXISTS validation_results (
    run_id         VARCHAR NOT NULL,
    suite_name     VARCHAR NOT NULL,
    validated_at   TIMESTAMPTZ NOT NULL,
    success        BOOLEAN NOT NULL,
    evaluated      INTEGER NOT NULL,
    successful     INTEGER NOT NULL,
    sample_rows    BIGINT NOT NULL,
    total_rows     BIGINT NOT NULL,
    results        JSON NOT NULL
);
