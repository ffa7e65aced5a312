"""Aggregates over customers, and the small-cell floor applied before any is shown.

A count over a handful of customers can single one of them out (the one
customer in a region who bought in March), so every aggregate over
customers that leaves the warehouse drops the cells below
`PrivacyConfig.min_cell_size` distinct customers. Pure functions: the
caller passes the floor in.
"""

from __future__ import annotations

import pandas as pd

CUSTOMERS = "customers"  # the column named queries use for distinct customers in a cell


def hide_small_cells(
    df: pd.DataFrame, count_col: str = CUSTOMERS, *, min_cell: int
) -> tuple[pd.DataFrame, int]:
    """Drop the rows of `df` whose `count_col` is below `min_cell`.

    `count_col` must count distinct customers in the cell (not events: one
    customer with 50 views is still one customer). A missing count (NaN) is
    treated as unsafe and hidden too.

    Returns `(kept, hidden)`: the remaining rows (a new frame, index reset)
    and how many cells were hidden, in 0..len(df).
    """
    if min_cell < 1:
        raise ValueError(f"min_cell={min_cell!r}: the floor must be at least 1 customer")
    if count_col not in df.columns:
        raise KeyError(
            f"{count_col!r} is not a column of the aggregate (columns: {list(df.columns)}); "
            "name the column that counts distinct customers per cell"
        )
    counts = pd.to_numeric(df[count_col], errors="coerce")
    keep = counts >= min_cell  # NaN compares False: hidden
    kept = df.loc[keep.to_numpy()].reset_index(drop=True)
    return kept, int(len(df) - len(kept))
