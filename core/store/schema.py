"""The warehouse's tables (DuckDB DDL), created if missing by every write transaction.

Nothing in the warehouse can name a person: customers appear only as keyed pseudonyms,
with generalized attributes; review text is scrubbed.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_pseudonym VARCHAR NOT NULL,      -- HMAC-SHA256 of the customer id
    age_band VARCHAR,                     -- generalized, e.g. '30-39'
    region VARCHAR,                       -- generalized from city / postcode
    signup_month VARCHAR,                 -- 'YYYY-MM' (or coarser when k demands)
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR NOT NULL,             -- catalogue id: not personal data
    title VARCHAR,
    brand VARCHAR,
    category VARCHAR,
    price DOUBLE,
    description VARCHAR,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    user_pseudonym VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,          -- view, click, add_to_cart, purchase, review
    ts TIMESTAMP NOT NULL,
    promotion BOOLEAN,                    -- NULL where the source does not say
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    review_id VARCHAR NOT NULL,           -- hash of pseudonym, item, time, text
    user_pseudonym VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    rating DOUBLE NOT NULL,
    ts TIMESTAMP NOT NULL,
    summary VARCHAR,                      -- scrubbed
    text VARCHAR,                         -- scrubbed
    verified BOOLEAN,
    helpful_votes INTEGER,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_runs (
    run_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,              -- file name (no directories of the steward)
    source_format VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,         -- sha256 of the file's bytes
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_accepted BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    dropped_columns VARCHAR,              -- direct identifiers and unmapped columns not stored
    quarantine_file VARCHAR
);
CREATE TABLE IF NOT EXISTS ingest_rejections (
    run_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    rows BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS scrub_counts (
    run_id VARCHAR NOT NULL,
    pii_type VARCHAR NOT NULL,
    found BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS anonymity_reports (
    run_id VARCHAR NOT NULL,
    quasi_identifiers VARCHAR NOT NULL,
    k_target INTEGER NOT NULL,
    k_reached INTEGER,                    -- NULL when there are no users with attributes
    generalization VARCHAR NOT NULL,      -- levels applied, e.g. 'signup: quarter'
    suppressed_users BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS review_sentiment (   -- one row per review, latest model only
    review_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,              -- sentiment model (data/models/sentiment/<run_id>)
    label VARCHAR NOT NULL,               -- negative, neutral, positive (predicted from text)
    p_negative DOUBLE NOT NULL,
    p_neutral DOUBLE NOT NULL,
    p_positive DOUBLE NOT NULL,
    scored_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS review_aspects (     -- words driving predictions, >= floor reviewers
    run_id VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,               -- 'item', 'category' or 'all'
    scope_id VARCHAR NOT NULL,            -- item_id, category, or 'all'
    aspect VARCHAR NOT NULL,              -- 1-2 words, stopwords removed
    polarity VARCHAR NOT NULL,            -- negative or positive
    weight DOUBLE NOT NULL,               -- mean share of the predictions it carries, 0..1
    reviewers BIGINT NOT NULL             -- distinct reviewers behind it (>= min_cell_size)
);
CREATE TABLE IF NOT EXISTS review_token_weights (  -- word attributions of example reviews
    run_id VARCHAR NOT NULL,
    review_id VARCHAR NOT NULL,
    spans VARCHAR NOT NULL                -- JSON [[start, end, weight], ...] in summary . text
);
CREATE TABLE IF NOT EXISTS recommendations (    -- top-K per customer (`clearmark score`)
    run_id VARCHAR NOT NULL,              -- ranking model (data/models/<run_id>)
    user_pseudonym VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    rank INTEGER NOT NULL,                -- 1 = best
    score DOUBLE NOT NULL,                -- model logit (higher is better)
    created_at TIMESTAMP NOT NULL
);
-- Explanations of recommendations computed after scoring (explain.stored): per
-- (run, customer, item, method) the attributions as JSON, for the profile's first view.
CREATE TABLE IF NOT EXISTS explanations (
    run_id VARCHAR NOT NULL,
    user_pseudonym VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL,              -- explain.result.METHODS
    fields_digest VARCHAR NOT NULL,       -- which model input was explained
    payload VARCHAR NOT NULL              -- explain.stored.to_json
);
-- Campaign audiences (core.campaigns). Pseudonyms only: the map back to customer ids is
-- made outside the warehouse by the steward (`clearmark activate`).
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    target_kind VARCHAR NOT NULL,         -- 'item', 'items' or 'category'
    target VARCHAR NOT NULL,              -- JSON list of item ids (or the one category)
    promotion BOOLEAN NOT NULL,
    season VARCHAR NOT NULL,              -- winter, spring, summer, autumn or 'any'
    rule VARCHAR NOT NULL,                -- 'top_n', 'top_pct' or 'min_prob'
    rule_value DOUBLE NOT NULL,
    holdout_share DOUBLE NOT NULL,
    seed INTEGER NOT NULL,
    run_id VARCHAR,                       -- ranking model; NULL: the latest at scoring time
    created_at TIMESTAMP NOT NULL,
    created_by VARCHAR NOT NULL           -- OS user
);
CREATE TABLE IF NOT EXISTS campaign_scores (   -- latest scoring of each campaign
    campaign_id VARCHAR NOT NULL,
    user_pseudonym VARCHAR NOT NULL,
    score DOUBLE,                         -- raw score of its tier (logit or cosine)
    probability DOUBLE NOT NULL,          -- calibrated
    decile INTEGER NOT NULL,              -- 1 = the top 10% by probability
    in_audience BOOLEAN NOT NULL,
    in_holdout BOOLEAN NOT NULL,          -- control group: never exported
    rank INTEGER NOT NULL,                -- 1 = best
    tier VARCHAR NOT NULL,                -- 'cross-encoder', 'content' or 'no history'
    best_item VARCHAR                     -- the target item that scored best
);
CREATE TABLE IF NOT EXISTS campaign_scorings (  -- one row per scoring run
    campaign_id VARCHAR NOT NULL,
    scored_at TIMESTAMP NOT NULL,
    run_id VARCHAR,
    summary VARCHAR NOT NULL              -- JSON: calibration, validation, warnings, timing
);
CREATE TABLE IF NOT EXISTS campaign_reasons (   -- why audience members score high (capped)
    campaign_id VARCHAR NOT NULL,
    user_pseudonym VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    reasons VARCHAR NOT NULL,             -- JSON list of up to 3 phrases
    history DOUBLE NOT NULL,              -- field-group SHAP sums (probability units)
    context DOUBLE NOT NULL,
    item DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_exports (
    campaign_id VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    exported_at TIMESTAMP NOT NULL,
    exported_by VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_backtests (
    campaign_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    cutoff TIMESTAMP NOT NULL,
    horizon_days INTEGER NOT NULL,
    run_id VARCHAR,                       -- the model trained on data before the cutoff
    result VARCHAR NOT NULL               -- JSON
);
CREATE TABLE IF NOT EXISTS activation_log (     -- `clearmark activate` (steward only)
    activated_at TIMESTAMP NOT NULL,
    activated_by VARCHAR NOT NULL,
    export_file VARCHAR NOT NULL,         -- file name only
    export_sha256 VARCHAR NOT NULL,
    rows_in BIGINT NOT NULL,
    rows_matched BIGINT NOT NULL,
    out_file VARCHAR NOT NULL             -- file name only
);
"""
