"""The one module of the app with Streamlit caching.

Pages read the warehouse only through `load`, and derive costly tables from it
through `computed` (cached the same way). Each call that misses the
cache opens the read-only snapshot for that one query and closes it (see
`core.store.warehouse`), so the app never holds a file the CLI wants to write.
The cache key carries the snapshot's identity (path, mtime, size, inode):
the CLI publishes a new snapshot with an atomic rename after every commit,
so the next rerun after an ingest misses the cache and shows the new data
without restarting the app.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import Paths
from core.store import warehouse

CACHE_TTL_S = 3600  # the key names the snapshot; this only bounds how long unused entries stay


def snapshot_version(paths: Paths) -> tuple[str, int, int, int]:
    """What identifies the snapshot on disk now; raises `WarehouseMissing`."""
    try:
        stat = paths.snapshot.stat()
    except FileNotFoundError as exc:
        raise warehouse.WarehouseMissing(
            f"No warehouse snapshot at {paths.snapshot}. Create one with `make run` "
            "(demo data) or `clearmark ingest <file>`."
        ) from exc
    return str(paths.snapshot), stat.st_mtime_ns, stat.st_size, stat.st_ino


@st.cache_data(ttl=CACHE_TTL_S, max_entries=256, show_spinner=False)
def _cached_query(
    name: str,
    version: tuple[str, int, int, int],
    params: tuple[tuple[str, object], ...],
    _paths: Paths,
) -> pd.DataFrame:
    # `_paths` is not hashed: `version` already names the snapshot file.
    return warehouse.query(name, _paths, **dict(params))


def load(name: str, paths: Paths | None = None, **params: object) -> pd.DataFrame:
    """Run the named query of `core.store.queries` on the latest snapshot, cached.

    Raises `core.store.warehouse.WarehouseMissing` when there is no warehouse yet.
    """
    paths = paths or Paths()
    return _cached_query(name, snapshot_version(paths), tuple(sorted(params.items())), paths)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=64, show_spinner=False)
def _cached_call(
    key: str,
    version: tuple[str, int, int, int],
    args: tuple[object, ...],
    _fn,
    _paths: Paths,
) -> object:
    # `key` names `_fn` (functions are not hashed); `version` names the snapshot.
    return _fn(_paths, *args)


def computed(fn, *args: object, paths: Paths | None = None) -> object:
    """`fn(paths, *args)` for the latest snapshot, cached like `load`: for tables a page
    derives from several queries at a cost it should not pay on every rerun. `fn` is a
    module-level function (its qualified name and `args` are the cache key)."""
    paths = paths or Paths()
    return _cached_call(f"{fn.__module__}.{fn.__qualname__}", snapshot_version(paths),
                        tuple(args), fn, paths)
