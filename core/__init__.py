"""Core pipeline: ingest, warehouse, examples, models, scoring."""
