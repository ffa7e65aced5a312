"""All SQL of the project: the schema and named, parameterized queries.

Nothing in the warehouse can name a person: customers appear only as keyed
pseudonyms, with generalized attributes; review text is scrubbed.
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
"""

QUERIES = {
    "table_counts": """
        SELECT 'users' AS table_name, count(*) AS rows FROM users
        UNION ALL SELECT 'items', count(*) FROM items
        UNION ALL SELECT 'events', count(*) FROM events
        UNION ALL SELECT 'reviews', count(*) FROM reviews
        UNION ALL SELECT 'ingest_runs', count(*) FROM ingest_runs
    """,
    "fingerprint_seen": """
        SELECT run_id, source, finished_at FROM ingest_runs
        WHERE fingerprint = $fingerprint AND table_name = $table_name
    """,
    "last_ingest_runs": """
        SELECT run_id, source, source_format, table_name, finished_at,
               rows_read, rows_accepted, rows_rejected
        FROM ingest_runs ORDER BY finished_at DESC LIMIT $limit
    """,
    "rejections_by_reason": """
        SELECT r.reason, sum(r.rows) AS rows
        FROM ingest_rejections r GROUP BY r.reason ORDER BY rows DESC
    """,
    "events_by_type_month": """
        SELECT date_trunc('month', ts) AS month, event_type, count(*) AS events,
               count(DISTINCT user_pseudonym) AS customers
        FROM events GROUP BY ALL ORDER BY month, event_type
    """,
    "reviews_by_star": """
        SELECT CAST(round(rating) AS INTEGER) AS stars, count(*) AS reviews,
               count(DISTINCT user_pseudonym) AS customers
        FROM reviews GROUP BY ALL ORDER BY stars
    """,
    "latest_anonymity_report": """
        SELECT * FROM anonymity_reports
        WHERE run_id = (SELECT run_id FROM ingest_runs ORDER BY finished_at DESC LIMIT 1)
    """,
    # The report of the most recent run that made one: only a customers ingest
    # does, so `latest_anonymity_report` is empty once items or events come after.
    "latest_anonymity_report_any_run": """
        WITH runs AS (
            SELECT run_id, max(finished_at) AS finished_at FROM ingest_runs GROUP BY run_id
        )
        SELECT a.*, runs.finished_at
        FROM anonymity_reports a JOIN runs USING (run_id)
        WHERE a.run_id = (
            SELECT a2.run_id FROM anonymity_reports a2 JOIN runs r2 USING (run_id)
            ORDER BY r2.finished_at DESC LIMIT 1
        )
    """,
    # Interactions for recommenders (core.interactions): NULL parameters mean "all".
    # Ties in time are broken by item, then event type, so every load gives one order.
    "interactions": """
        SELECT user_pseudonym, item_id, event_type, ts, promotion FROM events
        WHERE ($event_types::VARCHAR[] IS NULL
               OR list_contains($event_types::VARCHAR[], event_type))
          AND ($before::TIMESTAMP IS NULL OR ts < $before::TIMESTAMP)
        ORDER BY user_pseudonym, ts, item_id, event_type
    """,
    "catalogue": """
        SELECT item_id, title, brand, category, price, description FROM items
        ORDER BY item_id
    """,
}
