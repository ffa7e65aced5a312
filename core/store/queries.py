"""All SQL of the project: named, parameterized queries (the tables: `core.store.schema`).

Nothing in the warehouse can name a person: customers appear only as keyed
pseudonyms, with generalized attributes; review text is scrubbed.
"""

QUERIES = {
    # --- review sentiment (core.sentiment, dashboard/views/sentiment.py) -----------------
    "sentiment_reviews": """
        SELECT r.review_id, r.user_pseudonym, r.item_id, r.rating, r.ts, r.summary, r.text,
               i.category
        FROM reviews r
        LEFT JOIN (SELECT item_id, any_value(category) AS category FROM items GROUP BY ALL) i
            USING (item_id)
        ORDER BY r.ts, r.review_id
    """,
    "sentiment_tables": """
        SELECT count(*) AS tables FROM information_schema.tables
        WHERE table_name IN ('review_sentiment', 'review_aspects', 'review_token_weights')
    """,
    "sentiment_status": """
        SELECT run_id, count(*) AS reviews, max(scored_at) AS scored_at
        FROM review_sentiment GROUP BY run_id ORDER BY scored_at DESC, run_id
    """,
    "sentiment_overall": """
        SELECT s.label, count(*) AS reviews, count(DISTINCT r.user_pseudonym) AS customers
        FROM review_sentiment s JOIN reviews r USING (review_id)
        GROUP BY ALL ORDER BY s.label
    """,
    "sentiment_by_month": """
        SELECT date_trunc('month', r.ts) AS month, s.label, count(*) AS reviews,
               count(DISTINCT r.user_pseudonym) AS customers
        FROM review_sentiment s JOIN reviews r USING (review_id)
        GROUP BY ALL ORDER BY month, s.label
    """,
    "sentiment_by_category": """
        SELECT coalesce(i.category, 'unknown category') AS category, s.label,
               count(*) AS reviews, count(DISTINCT r.user_pseudonym) AS customers
        FROM review_sentiment s JOIN reviews r USING (review_id)
        LEFT JOIN (SELECT item_id, any_value(category) AS category FROM items GROUP BY ALL) i
            USING (item_id)
        GROUP BY ALL ORDER BY category, s.label
    """,
    "sentiment_by_item": """
        SELECT r.item_id, coalesce(i.title, r.item_id) AS title, s.label, count(*) AS reviews,
               count(DISTINCT r.user_pseudonym) AS customers
        FROM review_sentiment s JOIN reviews r USING (review_id)
        LEFT JOIN (SELECT item_id, any_value(title) AS title FROM items GROUP BY ALL) i
            USING (item_id)
        GROUP BY ALL ORDER BY r.item_id, s.label
    """,
    # Customer segments: one block per generalized attribute (users may repeat per run).
    "sentiment_by_segment": """
        WITH u AS (
            SELECT user_pseudonym, any_value(age_band) AS age_band,
                   any_value(region) AS region
            FROM users GROUP BY ALL
        ), j AS (
            SELECT s.label, r.user_pseudonym, u.age_band, u.region
            FROM review_sentiment s JOIN reviews r USING (review_id)
            LEFT JOIN u USING (user_pseudonym)
        )
        SELECT 'age band' AS dimension, coalesce(age_band, 'unknown') AS segment, label,
               count(*) AS reviews, count(DISTINCT user_pseudonym) AS customers
        FROM j GROUP BY ALL
        UNION ALL
        SELECT 'region', coalesce(region, 'unknown'), label, count(*),
               count(DISTINCT user_pseudonym)
        FROM j GROUP BY ALL
        ORDER BY dimension, segment, label
    """,
    "sentiment_by_stars": """
        SELECT CAST(round(r.rating) AS INTEGER) AS stars, s.label, count(*) AS reviews,
               count(DISTINCT r.user_pseudonym) AS customers
        FROM review_sentiment s JOIN reviews r USING (review_id)
        GROUP BY ALL ORDER BY stars, s.label
    """,
    # Stars and text disagree: 4-5 stars with a negative text, 1-2 stars with a positive one.
    "sentiment_disagreements": """
        SELECT r.review_id, CAST(round(r.rating) AS INTEGER) AS stars, s.label,
               s.p_negative, s.p_neutral, s.p_positive, r.summary, r.text, w.spans
        FROM review_sentiment s JOIN reviews r USING (review_id)
        LEFT JOIN review_token_weights w ON w.run_id = s.run_id AND w.review_id = s.review_id
        WHERE (r.rating >= 4 AND s.label = 'negative') OR (r.rating <= 2 AND s.label = 'positive')
        ORDER BY greatest(s.p_negative, s.p_positive) DESC, r.review_id LIMIT $limit
    """,
    "sentiment_examples": """
        SELECT r.review_id, CAST(round(r.rating) AS INTEGER) AS stars, s.label,
               s.p_negative, s.p_neutral, s.p_positive, r.summary, r.text, w.spans
        FROM review_token_weights w
        JOIN review_sentiment s ON s.run_id = w.run_id AND s.review_id = w.review_id
        JOIN reviews r ON r.review_id = w.review_id
        WHERE s.label = $label
        ORDER BY greatest(s.p_negative, s.p_neutral, s.p_positive) DESC, r.review_id
        LIMIT $limit
    """,
    "sentiment_aspects": """
        SELECT a.scope, a.scope_id, a.aspect, a.polarity, a.weight, a.reviewers
        FROM review_aspects a
        WHERE a.scope = $scope AND ($scope_id::VARCHAR IS NULL OR a.scope_id = $scope_id)
        ORDER BY a.scope_id, a.polarity, a.weight DESC, a.aspect
    """,
    "sentiment_aspect_scopes": """
        SELECT a.scope, a.scope_id, coalesce(i.title, a.scope_id) AS name,
               count(*) AS aspects
        FROM review_aspects a
        LEFT JOIN (SELECT item_id, any_value(title) AS title FROM items GROUP BY ALL) i
            ON a.scope = 'item' AND i.item_id = a.scope_id
        GROUP BY ALL ORDER BY a.scope, name
    """,
    "table_counts": """
        SELECT 'users' AS table_name, count(*) AS rows FROM users
        UNION ALL SELECT 'items', count(*) FROM items
        UNION ALL SELECT 'events', count(*) FROM events
        UNION ALL SELECT 'reviews', count(*) FROM reviews
        UNION ALL SELECT 'ingest_runs', count(*) FROM ingest_runs
    """,
    # What the demo pipeline sizes its steps by (core.cli.pipeline).
    "pipeline_sizes": """
        SELECT (SELECT count(DISTINCT user_pseudonym) FROM events) AS customers,
               (SELECT count(DISTINCT user_pseudonym) FROM reviews) AS reviewers,
               (SELECT count(*) FROM reviews) AS reviews
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
    "privacy_dropped_columns": """
        SELECT source, table_name, dropped_columns, finished_at FROM ingest_runs
        WHERE dropped_columns IS NOT NULL AND dropped_columns <> ''
        ORDER BY finished_at
    """,
    "privacy_scrub_counts": """
        SELECT pii_type, sum(found) AS found FROM scrub_counts GROUP BY pii_type
        ORDER BY found DESC, pii_type
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
    # Interactions for recommenders (core.store.interactions): NULL parameters mean "all".
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
    # --- customer profile page (one customer, by pseudonym only) ------------------
    # Whether a table exists in the snapshot: pages check before reading a table that
    # a later command creates (recommendations after `clearmark score`).
    "table_exists": """
        SELECT count(*) > 0 AS present FROM information_schema.tables
        WHERE table_name = $table_name
    """,
    "top_active_customers": """
        SELECT user_pseudonym, count(*) AS events, max(ts) AS last_seen
        FROM events GROUP BY user_pseudonym
        ORDER BY events DESC, user_pseudonym LIMIT $limit
    """,
    # Substring match, case-insensitive: a pasted fragment of a pseudonym finds it.
    "customer_search": """
        SELECT u.user_pseudonym, count(e.item_id) AS events
        FROM users u LEFT JOIN events e USING (user_pseudonym)
        WHERE contains(lower(u.user_pseudonym), lower(trim($text)))
        GROUP BY u.user_pseudonym
        ORDER BY events DESC, u.user_pseudonym LIMIT $limit
    """,
    "customer_attributes": """
        SELECT user_pseudonym, age_band, region, signup_month FROM users
        WHERE user_pseudonym = $user
    """,
    "customer_activity": """
        SELECT count(*) AS events, count(DISTINCT item_id) AS items,
               min(ts) AS first_seen, max(ts) AS last_seen
        FROM events WHERE user_pseudonym = $user
    """,
    # Most recent first; ties broken by item and type so every load gives one order.
    "customer_history": """
        SELECT e.ts, e.event_type, e.item_id, i.title, i.category, i.price, e.promotion
        FROM events e LEFT JOIN items i USING (item_id)
        WHERE e.user_pseudonym = $user
        ORDER BY e.ts DESC, e.item_id, e.event_type LIMIT $limit
    """,
    # Share of the customer's interactions (events of any type) per item category.
    "customer_category_affinity": """
        SELECT coalesce(i.category, 'unknown category') AS category,
               count(*) AS interactions,
               count(*) / sum(count(*)) OVER () AS share
        FROM events e LEFT JOIN items i USING (item_id)
        WHERE e.user_pseudonym = $user
        GROUP BY ALL ORDER BY interactions DESC, category
    """,
    # --- batch scoring (core.recommender.batch_score) ---------------------------------
    # Every customer: those in `users` and those with events (an events-only ingest
    # has no users rows).
    "scoring_customers": """
        SELECT user_pseudonym FROM users
        UNION SELECT user_pseudonym FROM events
        ORDER BY user_pseudonym
    """,
    "recommendations_delete_run": """
        DELETE FROM recommendations WHERE run_id = $run_id
    """,
    # `new_recommendations` is a data frame registered on the write connection.
    "recommendations_insert": """
        INSERT INTO recommendations (run_id, user_pseudonym, item_id, rank, score, created_at)
        SELECT run_id, user_pseudonym, item_id, rank, score, created_at
        FROM new_recommendations
    """,
    "explanations_delete_run": """
        DELETE FROM explanations WHERE run_id = $run_id
    """,
    # `new_explanations` is a data frame registered on the write connection.
    "explanations_insert": """
        INSERT INTO explanations (run_id, user_pseudonym, item_id, method, fields_digest,
                                  payload)
        SELECT run_id, user_pseudonym, item_id, method, fields_digest, payload
        FROM new_explanations
    """,
    "explanations_for_customer": """
        SELECT item_id, method, fields_digest, payload FROM explanations
        WHERE run_id = $run_id AND user_pseudonym = $user
    """,
    "recommendation_counts": """
        SELECT run_id, count(DISTINCT user_pseudonym) AS customers, count(*) AS rows,
               max(created_at) AS created_at
        FROM recommendations GROUP BY run_id ORDER BY created_at DESC, run_id
    """,
    # The scoring run whose recommendations were written last (`clearmark score`).
    "latest_scored_run": """
        SELECT run_id, max(created_at) AS created_at,
               count(DISTINCT user_pseudonym) AS customers
        FROM recommendations GROUP BY run_id
        ORDER BY created_at DESC, run_id DESC LIMIT 1
    """,
    "recommendations_for_customer": """
        SELECT r.rank, r.item_id, i.title, i.category, i.price, r.score, r.created_at
        FROM recommendations r LEFT JOIN items i USING (item_id)
        WHERE r.run_id = $run_id AND r.user_pseudonym = $user
        ORDER BY r.rank, r.item_id LIMIT $limit
    """,
    # --- campaign audiences (core.campaigns, dashboard/views/campaigns.py) ------------
    "campaigns_list": """
        SELECT campaign_id, name, target_kind, target, promotion, season, rule, rule_value,
               holdout_share, seed, run_id, created_at, created_by
        FROM campaigns ORDER BY created_at DESC, campaign_id
    """,
    "campaign_by_id": """
        SELECT campaign_id, name, target_kind, target, promotion, season, rule, rule_value,
               holdout_share, seed, run_id, created_at, created_by
        FROM campaigns WHERE campaign_id = $campaign_id
    """,
    "campaign_scores": """
        SELECT user_pseudonym, rank, tier, best_item, score, probability, decile,
               in_audience, in_holdout
        FROM campaign_scores WHERE campaign_id = $campaign_id ORDER BY rank
    """,
    "campaign_latest_scoring": """
        SELECT campaign_id, scored_at, run_id, summary FROM campaign_scorings
        WHERE campaign_id = $campaign_id ORDER BY scored_at DESC LIMIT 1
    """,
    "campaign_reasons": """
        SELECT r.user_pseudonym, r.item_id, r.reasons, r.history, r.context, r.item
        FROM campaign_reasons r JOIN campaign_scores s
            ON s.campaign_id = r.campaign_id AND s.user_pseudonym = r.user_pseudonym
        WHERE r.campaign_id = $campaign_id ORDER BY s.rank
    """,
    # What leaves the app: the audience without the holdout, best first.
    "campaign_export_rows": """
        SELECT s.user_pseudonym, s.score, s.probability, s.decile, r.reasons
        FROM campaign_scores s LEFT JOIN campaign_reasons r
            ON r.campaign_id = s.campaign_id AND r.user_pseudonym = s.user_pseudonym
        WHERE s.campaign_id = $campaign_id AND s.in_audience AND NOT s.in_holdout
        ORDER BY s.rank
    """,
    "campaign_exports_list": """
        SELECT campaign_id, rows, exported_at, exported_by, file_name FROM campaign_exports
        WHERE $campaign_id::VARCHAR IS NULL OR campaign_id = $campaign_id
        ORDER BY exported_at DESC
    """,
    "campaign_latest_backtest": """
        SELECT campaign_id, created_at, cutoff, horizon_days, run_id, result
        FROM campaign_backtests WHERE campaign_id = $campaign_id
        ORDER BY created_at DESC LIMIT 1
    """,
    # Writes of core.campaigns.storage, run on the write connection. Definitions first:
    # whether an id is taken (the write connection sees what the snapshot may not yet).
    "campaign_exists": """
        SELECT count(*) > 0 AS present FROM campaigns WHERE campaign_id = $campaign_id
    """,
    "campaign_insert": """
        INSERT INTO campaigns (campaign_id, name, target_kind, target, promotion, season,
                               rule, rule_value, holdout_share, seed, run_id, created_at,
                               created_by)
        VALUES ($campaign_id, $name, $target_kind, $target, $promotion, $season, $rule,
                $rule_value, $holdout_share, $seed, $run_id, $created_at, $created_by)
    """,
    "campaign_scores_delete": """
        DELETE FROM campaign_scores WHERE campaign_id = $campaign_id
    """,
    # `new_campaign_scores` is a data frame registered on the write connection.
    "campaign_scores_insert": """
        INSERT INTO campaign_scores (campaign_id, user_pseudonym, score, probability, decile,
                                     in_audience, in_holdout, rank, tier, best_item)
        SELECT campaign_id, user_pseudonym, score, probability, decile, in_audience,
               in_holdout, rank, tier, best_item
        FROM new_campaign_scores
    """,
    "campaign_reasons_delete": """
        DELETE FROM campaign_reasons WHERE campaign_id = $campaign_id
    """,
    # `new_campaign_reasons` is a data frame registered on the write connection.
    "campaign_reasons_insert": """
        INSERT INTO campaign_reasons (campaign_id, user_pseudonym, item_id, reasons, history,
                                      context, item)
        SELECT campaign_id, user_pseudonym, item_id, reasons, history, context, item
        FROM new_campaign_reasons
    """,
    "campaign_scoring_insert": """
        INSERT INTO campaign_scorings (campaign_id, scored_at, run_id, summary)
        VALUES ($campaign_id, $scored_at, $run_id, $summary)
    """,
    # A new audience rule: the flags come from `new_audience_flags`, a data frame
    # (user_pseudonym, in_audience, in_holdout) registered on the write connection.
    "campaign_rule_update": """
        UPDATE campaigns SET rule = $rule, rule_value = $rule_value
        WHERE campaign_id = $campaign_id
    """,
    "campaign_audience_update": """
        UPDATE campaign_scores SET in_audience = f.in_audience, in_holdout = f.in_holdout
        FROM new_audience_flags f
        WHERE campaign_scores.campaign_id = $campaign_id
          AND campaign_scores.user_pseudonym = f.user_pseudonym
    """,
    # Reasons exist for exported members only: drop those out of the audience or held out.
    "campaign_reasons_delete_non_members": """
        DELETE FROM campaign_reasons
        WHERE campaign_id = $campaign_id AND user_pseudonym IN (
            SELECT user_pseudonym FROM campaign_scores
            WHERE campaign_id = $campaign_id AND (NOT in_audience OR in_holdout))
    """,
    "campaign_export_insert": """
        INSERT INTO campaign_exports (campaign_id, rows, exported_at, exported_by, file_name)
        VALUES ($campaign_id, $rows, $exported_at, $exported_by, $file_name)
    """,
    "campaign_activation_insert": """
        INSERT INTO activation_log (activated_at, activated_by, export_file, export_sha256,
                                    rows_in, rows_matched, out_file)
        VALUES ($activated_at, $activated_by, $export_file, $export_sha256, $rows_in,
                $rows_matched, $out_file)
    """,
    "campaign_backtest_insert": """
        INSERT INTO campaign_backtests (campaign_id, created_at, cutoff, horizon_days, run_id,
                                        result)
        VALUES ($campaign_id, $created_at, $cutoff, $horizon_days, $run_id, $result)
    """,
    # Per customer known before $before (NULL: everyone): generalized attributes, strong
    # interactions ($event_types) and their last time, and the most frequent category.
    "campaign_customer_features": """
        WITH e AS (
            SELECT user_pseudonym, item_id, ts FROM events
            WHERE list_contains($event_types::VARCHAR[], event_type)
              AND ($before::TIMESTAMP IS NULL OR ts < $before::TIMESTAMP)
        ), cat AS (
            SELECT item_id, any_value(category) AS category FROM items GROUP BY ALL
        ), per_cat AS (
            SELECT e.user_pseudonym, coalesce(cat.category, 'unknown category') AS category,
                   count(*) AS n
            FROM e LEFT JOIN cat USING (item_id) GROUP BY ALL
        ), top AS (
            SELECT user_pseudonym, category AS top_category FROM (
                SELECT user_pseudonym, category, row_number() OVER (
                    PARTITION BY user_pseudonym ORDER BY n DESC, category) AS r
                FROM per_cat)
            WHERE r = 1
        ), act AS (
            SELECT user_pseudonym, count(*) AS interactions, max(ts) AS last_ts
            FROM e GROUP BY ALL
        ), u AS (
            SELECT user_pseudonym, any_value(age_band) AS age_band,
                   any_value(region) AS region
            FROM users GROUP BY ALL
        ), everyone AS (
            SELECT user_pseudonym FROM u WHERE $before::TIMESTAMP IS NULL
            UNION
            SELECT DISTINCT user_pseudonym FROM events
            WHERE $before::TIMESTAMP IS NULL OR ts < $before::TIMESTAMP
        )
        SELECT p.user_pseudonym, u.age_band, u.region,
               coalesce(act.interactions, 0) AS interactions, act.last_ts, top.top_category
        FROM everyone p LEFT JOIN u USING (user_pseudonym)
        LEFT JOIN act USING (user_pseudonym) LEFT JOIN top USING (user_pseudonym)
        ORDER BY p.user_pseudonym
    """,
    "activation_log_recent": """
        SELECT activated_at, activated_by, export_file, export_sha256, rows_in, rows_matched,
               out_file
        FROM activation_log ORDER BY activated_at DESC LIMIT $limit
    """,
    "latest_event_ts": """
        SELECT max(ts) AS ts FROM events
        WHERE list_contains($event_types::VARCHAR[], event_type)
    """,
    # --- explanations (explain.export, core.cli.explain) ----------------------------------
    "explain_customers_with_recommendations": """
        SELECT DISTINCT user_pseudonym FROM recommendations WHERE run_id = $run_id
        ORDER BY user_pseudonym
    """,
    # One row per recommendation of the given customers (first catalogue row per item).
    "explain_recommendations_for_customers": """
        WITH i AS (
            SELECT item_id, any_value(title) AS title FROM items GROUP BY item_id
        )
        SELECT r.user_pseudonym, r.rank, r.item_id, i.title, r.score, r.created_at
        FROM recommendations r LEFT JOIN i USING (item_id)
        WHERE r.run_id = $run_id AND list_contains($users::VARCHAR[], r.user_pseudonym)
        ORDER BY r.user_pseudonym, r.rank, r.item_id
    """,
}
