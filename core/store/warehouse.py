"""The one module that opens DuckDB connections.

DuckDB lets a file be held by one read-write process or by any number of
read-only processes, never both. The CLI is the only writer; after every
committed write it publishes a read-only snapshot (a checkpointed copy,
swapped in with an atomic rename). The app and other readers open the
snapshot with a short-lived connection per query, so a reader never blocks
a writer and a writer never breaks a reader that has the old snapshot open.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from core.config import Paths
from core.store.queries import QUERIES
from core.store.schema import SCHEMA


class WarehouseError(RuntimeError):
    """A problem with the warehouse file, with a message that says what to do."""


class WarehouseMissing(WarehouseError):
    pass


def _connect_writer(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:  # another process holds the lock
        raise WarehouseError(
            f"{path} is held by another process ({exc}). Wait for the other "
            "write (ingest, training, scoring) to finish and run the command again."
        ) from exc


@contextmanager
def write_transaction(paths: Paths | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """One write = one transaction: everything commits or nothing does.

    On success the read snapshot is republished; on failure the warehouse
    is left exactly as it was."""
    paths = paths or Paths()
    con = _connect_writer(paths.warehouse)
    try:
        con.execute(SCHEMA)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        _publish_snapshot(paths)  # still holding the file: no other writer can interleave
    finally:
        con.close()


def _publish_snapshot(paths: Paths) -> None:
    tmp = paths.snapshot.with_name(paths.snapshot.name + f".{os.getpid()}.tmp")
    shutil.copyfile(paths.warehouse, tmp)
    os.replace(tmp, paths.snapshot)


def ensure_schema(paths: Paths | None = None) -> None:
    """Create an empty warehouse (and its snapshot) if there is none."""
    paths = paths or Paths()
    with write_transaction(paths):
        pass


@contextmanager
def read_connection(paths: Paths | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection to the latest snapshot."""
    paths = paths or Paths()
    if not paths.snapshot.exists():
        raise WarehouseMissing(
            f"No warehouse at {paths.warehouse}. Create one with `clearmark demo` "
            "(generated demo data) or `clearmark ingest <file>`."
        )
    con = duckdb.connect(str(paths.snapshot), read_only=True)
    try:
        yield con
    finally:
        con.close()


def query(name: str, paths: Paths | None = None, **params: object) -> pd.DataFrame:
    """Run a named query from `core.store.queries` on the read snapshot."""
    sql = QUERIES[name]
    with read_connection(paths) as con:
        return con.execute(sql, params or None).df()


def table_counts(paths: Paths | None = None) -> dict[str, int]:
    df = query("table_counts", paths)
    return dict(zip(df["table_name"], df["rows"].astype(int), strict=True))
