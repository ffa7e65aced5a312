"""Interactions and the catalogue as data frames, read from the warehouse.

The recommenders learn from "strong" interactions only: a purchase, a review
(which on Amazon data stands for a purchase) or an add-to-cart. Views and
clicks are left out by default: they are several times more frequent, mostly
browsing that did not lead anywhere, and they drown the signal for the task
the models are judged on (what will this customer buy next). Where the
warehouse holds only reviews (the Amazon review files), the reviews are the
interactions.
"""

from __future__ import annotations

import pandas as pd

from core import columns as C
from core.config import Paths
from core.store.warehouse import query

USER, ITEM, EVENT_TYPE, TS, PROMOTION = C.USER, C.ITEM_ID, C.EVENT_TYPE, C.TS, C.PROMOTION
INTERACTION_COLUMNS = (USER, ITEM, EVENT_TYPE, TS, PROMOTION)
CATALOGUE_COLUMNS = (ITEM, "title", "brand", "category", "price", "description")
STRONG_EVENT_TYPES = ("purchase", "review", "add_to_cart")
# The order of interactions everywhere: by user, then time; ties (Amazon stamps reviews
# by the day) by item, then event type, so that every load and split gives one order.
SORT_KEYS = [USER, TS, ITEM, EVENT_TYPE]


def load_interactions(paths: Paths | None = None, *,
                      event_types: tuple[str, ...] | None = None,
                      before: pd.Timestamp | None = None) -> pd.DataFrame:
    """Interactions (`INTERACTION_COLUMNS`) sorted by user, then time, then item.

    `event_types` None means `STRONG_EVENT_TYPES`; pass `core.columns.EVENT_TYPES` for
    every event. `before` keeps events strictly before that time. DuckDB filters."""
    types = list(STRONG_EVENT_TYPES if event_types is None else event_types)
    stamp = None if before is None else pd.Timestamp(before).to_pydatetime()
    frame = query("interactions", paths, event_types=types, before=stamp)
    return as_interactions(frame)


def load_catalogue(paths: Paths | None = None) -> pd.DataFrame:
    """Every item of the warehouse (`CATALOGUE_COLUMNS`), sorted by item id. Item text is
    catalogue data, not personal data."""
    return query("catalogue", paths)[list(CATALOGUE_COLUMNS)].reset_index(drop=True)


def as_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the interaction columns and dtypes, in the canonical order (a copy).

    Hand-made frames may leave out `event_type` (then "purchase") and `promotion`
    (then unknown)."""
    missing = {USER, ITEM, TS} - set(frame.columns)
    if missing:
        raise ValueError(f"interactions lack the columns {sorted(missing)}; they need "
                         f"{list(INTERACTION_COLUMNS)}.")
    out = pd.DataFrame({
        USER: frame[USER].astype(str),
        ITEM: frame[ITEM].astype(str),
        EVENT_TYPE: (frame[EVENT_TYPE].astype(str) if EVENT_TYPE in frame
                     else pd.Series("purchase", index=frame.index)),
        TS: pd.to_datetime(frame[TS]),
        PROMOTION: (frame[PROMOTION].astype("boolean") if PROMOTION in frame
                    else pd.Series(pd.NA, index=frame.index, dtype="boolean")),
    })
    return out.sort_values(SORT_KEYS, kind="stable").reset_index(drop=True)


def collapse_repeats(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per run of consecutive events of a user on the same item, keeping the run's
    last (strongest: a funnel ends add_to_cart -> purchase) row.

    Without it, a generated purchase directly follows the add-to-cart of the same item, and
    next-item prediction degenerates into "the item just carted". Amazon reviews have no
    such runs; repeats that are not consecutive are kept (they are real repeat purchases)."""
    frame = as_interactions(interactions)
    nxt = frame.shift(-1)
    same_as_next = (frame[USER] == nxt[USER]) & (frame[ITEM] == nxt[ITEM])
    return frame[~same_as_next.fillna(False).astype(bool)].reset_index(drop=True)


def interacted_catalogue(catalogue: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    """The catalogue rows of the items that occur in `interactions` (the ranking catalogue:
    on Amazon data the metadata file lists ten times more items than anyone reviewed).
    An item without a catalogue row gets one with its id only."""
    ids = pd.Index(interactions[ITEM].astype(str).unique()).sort_values()
    known = catalogue.assign(item_id=catalogue[ITEM].astype(str)).drop_duplicates(ITEM)
    out = pd.DataFrame({ITEM: ids}).merge(known, on=ITEM, how="left")
    return out[[c for c in CATALOGUE_COLUMNS if c in out.columns]].reset_index(drop=True)
