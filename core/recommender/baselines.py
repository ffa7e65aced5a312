"""Baseline recommenders: popularity, item-kNN by co-occurrence, zero-shot content.

Estimators in the scikit-learn manner: `__init__` stores parameters only, `fit(train,
catalogue)` validates and returns self, learned attributes end in `_`. Each scores the
full catalogue (`items_`, sorted item ids) and implements `core.recommender.protocol.Recommender`.

Privacy: popularity counts and co-occurrence similarities are statistics of personal
data, so a fitted Popularity or ItemKNN must not be shipped without noise and an entry
in the budget ledger. ZeroShotContent learns nothing from interactions (only item text,
which is catalogue data); it reads a user's own history at query time.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from core.minilm import embed_texts
from core.recommender.co_visits import CoVisits
from core.recommender.fields import DESCRIPTION_WORDS
from core.recommender.protocol import Recommender
from core.store.interactions import ITEM, TS, USER

TIEBREAK = 1e-6  # below any real difference of similarity sums


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value).strip() or None


def item_text(item: Mapping[str, object], *, description_words: int = DESCRIPTION_WORDS) -> str:
    """What the content model reads of an item: title | category | brand | the first
    `description_words` words of the description (parts that are missing are left out)."""
    description = _text(item.get("description"))
    if description:
        description = " ".join(description.split()[:description_words])
    parts = [_text(item.get("title")) or str(item.get(ITEM)), _text(item.get("category")),
             _text(item.get("brand")), description]
    return " | ".join(p for p in parts if p)


def _catalogue_items(catalogue: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    """The sorted item ids of `catalogue`; every trained item must be among them."""
    if ITEM not in catalogue.columns:
        raise ValueError(f"the catalogue has no {ITEM!r} column (columns: "
                         f"{list(catalogue.columns)}): pass "
                         "core.store.interactions.load_catalogue().")
    items = np.array(sorted(catalogue[ITEM].astype(str).unique()), dtype=object)
    missing = set(train[ITEM].astype(str)) - set(items)
    if missing:
        raise ValueError(f"{len(missing)} trained items are not in the catalogue (e.g. "
                         f"{sorted(missing)[:3]}): pass a catalogue that holds every item, "
                         "e.g. core.store.interactions.interacted_catalogue(catalogue, "
                         "interactions).")
    return items


def _history_matrix(history: pd.DataFrame, queries: pd.DataFrame, items: np.ndarray, *,
                    decay: float = 1.0) -> sp.csr_matrix:
    """(Q, I) weights of each query user's history items: decay ** (steps back from the
    most recent), summed over repeats; items outside `items` are ignored."""
    row = pd.Index(queries[USER].astype(str)).get_indexer(history[USER].astype(str))
    col = pd.Index(items).get_indexer(history[ITEM].astype(str))
    frame = pd.DataFrame({"row": row, "col": col, TS: pd.to_datetime(history[TS]).to_numpy()})
    frame = frame[(frame["row"] >= 0)].sort_values(["row", TS], kind="stable")
    back = frame.groupby("row").cumcount(ascending=False).to_numpy()
    weight = np.power(decay, back, dtype=np.float64)
    keep = frame["col"].to_numpy() >= 0
    return sp.csr_matrix((weight[keep], (frame["row"].to_numpy()[keep],
                                         frame["col"].to_numpy()[keep])),
                         shape=(len(queries), len(items)))


class Popularity(BaseEstimator):
    """Score = number of training interactions with the item (the same for everyone)."""

    name = "popularity"

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> Popularity:
        self.items_ = _catalogue_items(catalogue, train)
        counts = train[ITEM].astype(str).value_counts()
        self.counts_ = counts.reindex(self.items_, fill_value=0).to_numpy(dtype=np.float64)
        return self

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        return np.tile(self.counts_, (len(queries), 1))  # (Q, I)


class ItemKNN(BaseEstimator):
    """Item-item cosine similarity of co-occurrence in users' training histories.

    sim(i, j) = users with both / sqrt(users with i * users with j), sim(i, i) = 0.
    Score of an item = sum of its similarities to the user's history items, the item
    `b` steps back from the most recent weighted `recency_decay ** b` (1.0: all alike).
    With `popularity_tiebreak`, training popularity (worth less than 1e-6) orders items
    of equal score, e.g. the many that co-occur with nothing in a short history; without
    it they fall back to item-id order, which can put never-trained items in a top k."""

    name = "item-knn"

    def __init__(self, recency_decay: float = 1.0, popularity_tiebreak: bool = True):
        self.recency_decay = recency_decay
        self.popularity_tiebreak = popularity_tiebreak

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> ItemKNN:
        if not 0.0 < self.recency_decay <= 1.0:
            raise ValueError(f"recency_decay={self.recency_decay}: must lie in (0, 1].")
        self.items_ = _catalogue_items(catalogue, train)
        table = CoVisits.fit(train)  # over the trained items
        at = pd.Index(self.items_).get_indexer(table.items)  # (T,) their catalogue columns
        pick = sp.csr_matrix((np.ones(len(at)), (np.arange(len(at)), at)),
                             shape=(len(at), len(self.items_)))  # (T, I)
        self.similarity_ = (pick.T @ table.similarity @ pick).tocsr()  # (I, I)
        degree = np.zeros(len(self.items_))  # (I,) users with the item
        degree[at] = table.degree
        popularity = degree / max(degree.max(initial=0.0), 1.0)  # (I,) in [0, 1]
        self.tiebreak_ = TIEBREAK * popularity * float(self.popularity_tiebreak)  # (I,)
        return self

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        weights = _history_matrix(history, queries, self.items_, decay=self.recency_decay)
        scores = np.asarray((weights @ self.similarity_).todense())  # (Q, I)
        return scores + self.tiebreak_[None, :]


class ZeroShotContent(BaseEstimator):
    """Frozen pretrained MiniLM: cosine between the mean embedding of the user's history
    items and each item's embedding (`item_text`). Learns nothing from interactions, so
    it can rank items that nobody has bought yet; users without history score 0."""

    name = "zero-shot-content"

    def __init__(self, description_words: int = DESCRIPTION_WORDS, batch_size: int = 64):
        self.description_words = description_words
        self.batch_size = batch_size

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> ZeroShotContent:
        self.items_ = _catalogue_items(catalogue, train)
        rows = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}).drop_duplicates(ITEM)
        rows = rows.set_index(ITEM).loc[self.items_].reset_index()
        texts = [item_text(r, description_words=self.description_words)
                 for r in rows.to_dict("records")]
        self.embeddings_ = embed_texts(texts, batch_size=self.batch_size)  # (I, H)
        return self

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        weights = _history_matrix(history, queries, self.items_)  # (Q, I)
        counts = np.asarray(weights.sum(axis=1)).ravel()  # (Q,)
        mean = weights @ self.embeddings_ / np.maximum(counts, 1.0)[:, None]  # (Q, H)
        norm = np.linalg.norm(mean, axis=1, keepdims=True)  # (Q, 1)
        users = np.divide(mean, norm, out=np.zeros_like(mean), where=norm > 0)
        return users @ self.embeddings_.T  # (Q, I): rows of embeddings_ are unit vectors


BASELINES: tuple[type[Recommender], ...] = (Popularity, ItemKNN, ZeroShotContent)
