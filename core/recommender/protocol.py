"""What every recommender implements, and turning its scores into top-k lists.

A recommender scores the full catalogue for a moment in a customer's life: the
interactions known then (`history`) and the query (who, when, promotion on or off).
Baselines (`core.recommender.baselines`) and the DP cross-encoder share this protocol, so the
evaluation harness (`core.recommender.evaluate`) treats them alike.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from core.store.interactions import ITEM, USER

QUERY_COLUMNS = (USER, "ts", "promotion")


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> Recommender:
        """Learn from `train` interactions; `catalogue` (item_id, title, ...) is the set of
        items to rank. Sets `items_` (np.ndarray of item ids, the score columns)."""
        ...

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        """history: interactions known at query time (user_pseudonym, item_id, event_type,
        ts, promotion); queries: one row per user (user_pseudonym, ts, promotion).
        Returns scores, shape (len(queries), len(self.items_)), higher is better."""
        ...


def seen_mask(items: np.ndarray, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
    """Boolean (len(queries), len(items)): True where the query's user has the item in
    `history`."""
    column = pd.Index(items)
    row = pd.Index(queries[USER].astype(str))
    users = history[USER].astype(str)
    r = row.get_indexer(users)
    c = column.get_indexer(history[ITEM].astype(str))
    keep = (r >= 0) & (c >= 0)
    mask = np.zeros((len(row), len(column)), dtype=bool)
    mask[r[keep], c[keep]] = True
    return mask


def rank_columns(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Column indices per row, best first (ties by column order, i.e. by item id), the
    first `k` of them (all with None)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (Q, I)
    return order if k is None else order[:, :k]


def recommend(model: Recommender, history: pd.DataFrame, queries: pd.DataFrame, *, k: int,
              exclude_seen: bool) -> pd.DataFrame:
    """Top-`k` items per query: columns user_pseudonym, item_id, rank (1-based), score.

    With `exclude_seen`, items in the user's `history` are never recommended (fewer than
    k rows for a user who has seen nearly everything)."""
    if k < 1:
        raise ValueError(f"k={k}: ask for at least 1 recommendation.")
    if queries[USER].duplicated().any():
        raise ValueError("queries hold several rows for one user: give one row per user.")
    scores = np.asarray(model.score_items(history, queries), dtype=np.float64)
    items = np.asarray(model.items_)
    if scores.shape != (len(queries), len(items)):
        raise ValueError(f"{model.name}.score_items returned shape {scores.shape}, expected "
                         f"{(len(queries), len(items))} (queries x catalogue).")
    if exclude_seen:
        scores = np.where(seen_mask(items, history, queries), -np.inf, scores)
    top = rank_columns(scores, min(k, len(items)))  # (Q, k)
    top_scores = np.take_along_axis(scores, top, axis=1)
    users = np.repeat(queries[USER].astype(str).to_numpy(), top.shape[1])
    out = pd.DataFrame({USER: users, ITEM: items[top].ravel(),
                        "rank": np.tile(np.arange(1, top.shape[1] + 1), len(queries)),
                        "score": top_scores.ravel()})
    return out[np.isfinite(out["score"])].reset_index(drop=True)
