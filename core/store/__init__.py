"""The warehouse: the one module that opens DuckDB, all SQL, reads as frames."""
