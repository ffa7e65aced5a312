"""Small-cell suppression: the floor every aggregate over customers passes before it is shown.

A count over a handful of customers can single one of them out (the one customer in a
region who bought in March), so every aggregate over customers that leaves the
warehouse hides the cells below `PrivacyConfig.min_cell_size` distinct customers, with
complementary suppression, group by group (`by`: a month's event types, a dimension's
segments, a month's sentiment labels; no `by`: the whole frame is one group):

- a cell under the floor in any of `count_cols` is hidden, and so is a cell whose
  count is missing (unknown is unsafe);
- a group that hides exactly one cell also hides its next smallest cell, so the
  hidden value cannot be recovered from the group's total and the cells shown;
- a group whose hidden cells together still count fewer than the floor, whose cells
  together count fewer than the floor, or whose every cell would be hidden is hidden
  whole ("dropped").

Pure functions: the caller passes the floor in. Imports nothing from the rest of the
project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

CUSTOMERS = "customers"  # the column named queries use for distinct customers in a cell


class Suppression(NamedTuple):
    """What `suppress_small_cells` decided, for a frame of cells (rows)."""

    shown: pd.DataFrame  # the rows kept, in input order, index reset
    hidden: int  # cells hidden in the groups still shown (floor and complementary)
    dropped: int  # groups hidden whole
    mask: np.ndarray  # per input row: True where the cell is not shown


def suppress_small_cells(df: pd.DataFrame, count_cols: str | Sequence[str] = CUSTOMERS, *,
                         min_cell: int, by: Sequence[str] = ()) -> Suppression:
    """Small-cell suppression with complementary suppression (see the module doc).

    `count_cols`: the column (or columns) counting distinct customers per cell, not
    events (one customer with 50 views is still one customer); with several, a cell
    must reach the floor in each, and so must the hidden cells of a group together.
    `by`: the columns whose values make a group (missing values form a group too).
    """
    if min_cell < 1:
        raise ValueError(f"min_cell={min_cell!r}: the floor must be at least 1 "
                         "(distinct customers per cell)")
    columns = [count_cols] if isinstance(count_cols, str) else list(count_cols)
    missing = [c for c in columns if c not in df.columns]
    if missing or not columns:
        raise KeyError(
            f"{missing or columns!r}: not columns of the aggregate (columns: "
            f"{list(df.columns)}); name the column that counts distinct customers per cell"
        )
    values = np.column_stack([
        pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for c in columns]).reshape(len(df), len(columns))
    small = ~(values >= min_cell).all(axis=1)  # NaN compares False: small
    counted = np.nan_to_num(values, nan=0.0)  # an unknown count adds nothing to a sum
    mask = np.zeros(len(df), dtype=bool)
    hidden = dropped = 0
    for rows in _groups(df, list(by)):
        cells = small[rows].copy()
        whole = (counted[rows].sum(axis=0) < min_cell).any() or cells.all()
        if not whole and cells.sum() == 1:
            # complementary: the smallest cell above the floor is hidden too
            above = rows[~cells]
            cells[np.flatnonzero(~cells)[np.argmin(values[above].min(axis=1))]] = True
        if not whole and cells.any():
            whole = (counted[rows[cells]].sum(axis=0) < min_cell).any() or cells.all()
        if whole:
            mask[rows] = True
            dropped += 1
        else:
            mask[rows[cells]] = True
            hidden += int(cells.sum())
    shown = df.loc[~mask].reset_index(drop=True)
    return Suppression(shown=shown, hidden=hidden, dropped=dropped, mask=mask)


def hide_small_cells(df: pd.DataFrame, count_col: str = CUSTOMERS, *, min_cell: int,
                     by: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """`suppress_small_cells` for a chart: `(kept, hidden)`, the rows shown (a new
    frame, index reset) and how many cells are not shown in all, in 0..len(df)."""
    result = suppress_small_cells(df, count_col, min_cell=min_cell, by=by)
    return result.shown, int(result.mask.sum())


def _groups(df: pd.DataFrame, by: list[str]) -> list[np.ndarray]:
    """Row positions of each group, groups in sorted key order (missing keys last)."""
    if df.empty:
        return []
    if not by:
        return [np.arange(len(df))]
    codes = df.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


def hide_until_floor(counts: pd.DataFrame, columns: Sequence[str], *, min_cell: int
                     ) -> np.ndarray:
    """Which rows (the cells of one dimension, e.g. a campaign's age bands) to hide: every
    cell under `min_cell` in any of `columns`, then the next smallest cells until the
    hidden cells together hold at least `min_cell` in every column (or all are hidden),
    so that a total minus the shown cells never reveals a small group. Where the
    dimension must stay on the page (a segment table), this keeps more of it than
    `suppress_small_cells`, which hides such a group whole."""
    if min_cell < 1:
        raise ValueError(f"min_cell={min_cell}: the floor must be at least 1 customer.")
    values = counts[list(columns)].to_numpy(dtype=np.float64)
    hidden = (values < min_cell).any(axis=1)
    while hidden.any() and not hidden.all():
        sums = values[hidden].sum(axis=0)
        if (sums >= min_cell).all():
            break
        shown = np.flatnonzero(~hidden)
        hidden[shown[np.argmin(values[shown].min(axis=1))]] = True
    return hidden
