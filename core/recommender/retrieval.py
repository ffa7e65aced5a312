"""Ranking with a trained cross-encoder: candidate retrieval, re-ranking, new-item slots.

A cross-encoder reads one text pair per (customer, item), too slow for a whole catalogue,
so `CrossEncoderRecommender` re-ranks a cheap candidate set per query, the union of:
the `content_candidates` items whose MiniLM embedding is closest to the mean embedding
of the customer's history items; the `popular_candidates` most popular items by the
model's released counts; the `category_candidates` most popular items of each category
among the history shown; and, for a model with co-visits, the `co_visit_candidates`
items most often bought with the history shown. Never an item the customer already
has. Items outside the set score -inf.

New items (`with_new_item_slots`): an item outside the model's training data
(`trained_items`) can only be judged by its text, while the bought items it competes
with carry purchase evidence, so the model's own order does not put it near the top.
The last `new_item_slots` places of each top `NEW_ITEM_DEPTH` go to the best-ranked new
candidates when fewer new items are there; a promoted item's score is set between its
new neighbours' so that every consumer of the scores sees the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from core.minilm import embed_texts
from core.recommender import item_popularity
from core.recommender.baselines import item_text
from core.recommender.examples import item_records, model_input
from core.recommender.fields import category_key
from core.recommender.model import CrossEncoder
from core.recommender.model_config import NEW_ITEM_DEPTH
from core.store.interactions import EVENT_TYPE, ITEM, PROMOTION, TS, USER


class CrossEncoderRecommender(BaseEstimator):
    """`core.recommender.protocol.Recommender` over a trained CrossEncoder: cheap retrieval
    (see the module docstring), re-ranked by the cross-encoder.

    `fit` takes the popularity list from the model's released counts (the exact counts
    of `train` for a model without them) and computes the catalogue's item embeddings
    (cached per catalogue by `core.minilm`); the CrossEncoder is given, never reloaded.
    `score_items` returns (Q, I) with the cross-encoder logit on each query's candidates
    and -inf elsewhere."""

    def __init__(self, model: CrossEncoder, *, content_candidates: int | None = None,
                 popular_candidates: int | None = None,
                 category_candidates: int | None = None, new_item_slots: int | None = None,
                 batch_size: int = 64, name: str = "cross-encoder"):
        self.model = model
        self.content_candidates = content_candidates
        self.popular_candidates = popular_candidates
        self.category_candidates = category_candidates
        self.new_item_slots = new_item_slots
        self.batch_size = batch_size
        self.name = name

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> CrossEncoderRecommender:
        if ITEM not in catalogue.columns:
            raise ValueError(f"the catalogue has no {ITEM!r} column: pass "
                             "core.store.interactions.load_catalogue() or interacted_catalogue().")
        self.items_ = np.array(sorted(catalogue[ITEM].astype(str).unique()), dtype=object)
        self.records_ = item_records(self.model.with_popularity(catalogue))
        rows = [self.records_[i] for i in self.items_]
        self.embeddings_ = embed_texts([item_text(r) for r in rows])  # (I, H) unit rows
        known = set(self.items_)
        if self.model.item_popularity:
            # the run's DP-released counts (core.recommender.item_popularity): covered by
            # its epsilon
            ranked = [i for i in item_popularity.ranked(self.model.item_popularity)
                      if i in known]
        else:  # a model without released counts: the exact order of `train`
            counts = train[ITEM].astype(str).value_counts()
            counts = counts[counts.index.isin(known)]
            # Ties by item id so that every fit gives one order.
            ranked = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        self.popular_ = np.array(ranked, dtype=object)
        trained = trained_items(self.model, train)
        self.new_ = np.array([i not in trained for i in self.items_], dtype=bool)
        self.column_ = {item: c for c, item in enumerate(self.items_)}
        self.popular_by_category_: dict[str, list[int]] = {}
        for item in self.popular_:  # most popular first
            category = category_key(self.records_[item])
            if category is not None:
                self.popular_by_category_.setdefault(category, []).append(self.column_[item])
        return self

    @property
    def n_content(self) -> int:
        return (self.model.config.content_candidates if self.content_candidates is None
                else self.content_candidates)

    @property
    def n_popular(self) -> int:
        return (self.model.config.popular_candidates if self.popular_candidates is None
                else self.popular_candidates)

    @property
    def n_category(self) -> int:
        return (self.model.config.category_candidates if self.category_candidates is None
                else self.category_candidates)

    @property
    def n_new_slots(self) -> int:
        return (self.model.config.new_item_slots if self.new_item_slots is None
                else self.new_item_slots)

    @property
    def n_co_visits(self) -> int:
        return self.model.config.co_visit_candidates if self.model.co_visits is not None else 0

    def candidates(self, history: pd.DataFrame, queries: pd.DataFrame) -> list[np.ndarray]:
        """Per query, the candidate column indices (content first, then popular, then the
        most popular of the shown history's categories, then the items most often bought
        with the history shown, for a model with co-visits; no item the user has in
        `history` before the query's ts)."""
        known = _known_before(history, queries)
        popular_cols = np.array([self.column_[i] for i in self.popular_], dtype=np.int64)
        out = []
        for user in queries[USER].astype(str):
            rows = known.get(user)
            seen = set() if rows is None else {self.column_[i] for i in rows[ITEM]
                                                 if i in self.column_}
            chosen: list[int] = []
            if rows is not None and seen and self.n_content > 0:
                profile = self.embeddings_[sorted(seen)].mean(axis=0)  # (H,)
                sims = self.embeddings_ @ profile  # (I,)
                for c in np.argsort(-sims, kind="stable"):
                    if len(chosen) == self.n_content:
                        break
                    if c not in seen:
                        chosen.append(int(c))
            taken = set(chosen)
            extra = [int(c) for c in popular_cols if c not in seen and c not in taken]
            chosen += extra[:self.n_popular]
            if self.n_category and rows is not None:
                chosen += self._category_popular(rows, seen | set(chosen))
            if self.n_co_visits and rows is not None:
                chosen += self._co_visited(rows, seen | set(chosen))
            out.append(np.array(chosen, dtype=np.int64))
        return out

    def _category_popular(self, rows: pd.DataFrame, taken: set[int]) -> list[int]:
        """Columns of the `n_category` most popular items (the popularity list's order)
        of each category among the history shown, its most frequent category first, none
        of `taken`."""
        shown = list(rows[ITEM])[-self.model.config.history_len:]
        categories = pd.Series([category_key(self.records_[i]) for i in shown
                                if i in self.records_], dtype=object).dropna()
        out: list[int] = []
        for category in categories.value_counts(sort=True).index:
            fresh = [c for c in self.popular_by_category_.get(category, ())
                     if c not in taken][:self.n_category]
            out += fresh
            taken = taken | set(fresh)
        return out

    def _co_visited(self, rows: pd.DataFrame, taken: set[int]) -> list[int]:
        """Columns of the items with the highest co-visit score against the history
        shown (the model's `history_len` most recent items), none of `taken`."""
        table = self.model.co_visits
        shown = list(rows[ITEM])[-self.model.config.history_len:]
        scores = table.scores(shown)  # (items of the table,)
        out: list[int] = []
        for t in np.argsort(-scores, kind="stable"):
            if len(out) == self.n_co_visits or scores[t] <= 0:
                break
            c = self.column_.get(table.items[t])
            if c is not None and c not in taken:
                out.append(c)
        return out

    def text_pairs(self, history: pd.DataFrame, queries: pd.DataFrame,
                   columns: list[np.ndarray]) -> tuple[list[str], list[str]]:
        """The (text_a, text_b) pairs of every (query, candidate), query by query."""
        known = _known_before(history, queries)
        text_a: list[str] = []
        text_b: list[str] = []
        n = self.model.config.history_len
        share = self.model.config.category_share
        for query, cols in zip(queries.to_dict("records"), columns, strict=True):
            rows = known.get(str(query[USER]))
            recent = [] if rows is None else list(zip(rows[EVENT_TYPE], rows[ITEM],
                                                      strict=True))[-n:][::-1]
            ts = pd.Timestamp(query[TS]) if TS in query and not pd.isna(query[TS]) else None
            promotion = query.get(PROMOTION)
            promotion = None if promotion is None or pd.isna(promotion) else bool(promotion)
            for c in cols:
                a, b = self.model.text_pair(model_input(recent, ts, promotion,
                                                        self.items_[c], self.records_,
                                                        co_visits=self.model.co_visits,
                                                        with_share=share))
                text_a.append(a)
                text_b.append(b)
        return text_a, text_b

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        columns = self.candidates(history, queries)
        text_a, text_b = self.text_pairs(history, queries, columns)
        logits = self.model.score_pairs(text_a, text_b, batch_size=self.batch_size)
        scores = np.full((len(queries), len(self.items_)), -np.inf)  # (Q, I)
        start = 0
        for q, cols in enumerate(columns):
            scores[q, cols] = logits[start:start + len(cols)]
            start += len(cols)
            if self.n_new_slots:
                scores[q, cols] = with_new_item_slots(scores[q, cols], self.new_[cols],
                                                      self.n_new_slots)
        return scores


def trained_items(model: CrossEncoder, train: pd.DataFrame) -> set[str]:
    """The items `model` was trained on: those of its popularity release (DP or exact
    counts), else those of `train`. Any other item is new to it (`with_new_item_slots`)."""
    return set(model.item_popularity) or set(train[ITEM].astype(str))


def with_new_item_slots(scores: np.ndarray, new: np.ndarray, slots: int, *,
                        depth: int = NEW_ITEM_DEPTH) -> np.ndarray:
    """`scores` (n,) of one query's candidates with the best-scored `new` items moved
    into the last `slots` places of the top `depth` where fewer new items are there; the
    relative order of all other candidates is kept (module docstring)."""
    order = np.argsort(-scores, kind="stable")
    if len(order) <= depth:
        return scores
    wanted = slots - int(new[order[:depth]].sum())
    promoted = [c for c in order[depth:] if new[c]][:max(wanted, 0)]
    if not promoted:
        return scores
    moved = set(promoted)
    kept = [c for c in order[:depth + len(promoted)] if c not in moved]
    above, below = scores[kept[depth - len(promoted) - 1]], scores[kept[depth - len(promoted)]]
    out = scores.copy()
    for j, c in enumerate(promoted):  # evenly between the two neighbours, in order
        out[c] = above - (above - below) * (j + 1) / (len(promoted) + 1)
    return out


def _known_before(history: pd.DataFrame, queries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{user: their `history` rows, oldest first}. The history is taken as given: the
    caller decides what is known at query time (core.recommender.evaluate passes the
    interactions that precede the target in the user's sequence; scoring passes
    everything)."""
    if history.empty:
        return {}
    users = set(queries[USER].astype(str))
    frame = history.astype({USER: str, ITEM: str})
    frame = frame[frame[USER].isin(users)].sort_values([USER, TS, ITEM], kind="stable")
    return {u: rows for u, rows in frame.groupby(USER, sort=False)}
