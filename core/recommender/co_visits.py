"""Co-visits: how many customers interacted with both items of a pair.

The item-kNN baseline's statistic (`core.recommender.baselines.ItemKNN`), shipped inside a
NON-PRIVATE model so that the cross-encoder can read it: for a (history, candidate)
pair the value is the sum, over the distinct history items h shown to the model, of
the cosine of co-occurrence

    sim(h, c) = customers with both / sqrt(customers with h * customers with c).

The model reads it as the field "item_co_visits" ("bought with history: 0.412"), a
number only (`core.recommender.fields.co_visit_feature`; the encoder never reads its text), so
masking the field removes it and field SHAP attributes it like any other field.

Privacy: the counts are exact statistics of the training customers, so only a
non-private run (epsilon recorded as inf) may carry them
(`core.recommender.planning.model_config_for` switches the feature off for DP runs). A DP
release of pair counts does not pay here: each customer adds up to cap*(cap-1)/2 pairs,
so the noise per pair is several times the typical count (a few customers per pair).

Training examples leave the customer's own visits out (`score(..., own=...)`): at test
time a target's co-visits never include the test interaction itself, so a feature that
counted the customer's own pairs would be stronger in training than it can ever be
when it is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.store.interactions import ITEM, USER

FILE = "co_visits.npz"


class CoVisits:
    """Pair counts (I, I) of customers with both items, and each item's customer count."""

    def __init__(self, items: Sequence[str], counts: sp.spmatrix, degree: np.ndarray):
        self.items = np.asarray(items, dtype=object)
        self.counts = sp.csr_matrix(counts, dtype=np.float64)
        self.degree = np.asarray(degree, dtype=np.float64)
        if self.counts.shape != (len(self.items), len(self.items)) or (
                self.degree.shape != (len(self.items),)):
            raise ValueError(f"co-visit counts {self.counts.shape} and degrees "
                             f"{self.degree.shape} do not fit {len(self.items)} items.")
        self.column = {item: c for c, item in enumerate(self.items)}
        scale = np.divide(1.0, np.sqrt(self.degree), out=np.zeros_like(self.degree),
                          where=self.degree > 0)
        # (I, I) sim(i, j), 0 on the diagonal: what the retrieval and ItemKNN read
        self.similarity = (sp.diags(scale) @ self.counts @ sp.diags(scale)).tocsr()
        # The last history's scores over all items: a query's candidates share its
        # history, so scoring them costs one row product (one tuple: thread-safe swap).
        self._last: tuple[tuple[int, ...], np.ndarray] = ((), np.zeros(len(self.items)))

    @classmethod
    def fit(cls, interactions: pd.DataFrame) -> CoVisits:
        """From the distinct (customer, item) pairs of `interactions`."""
        pairs = interactions[[USER, ITEM]].astype(str).drop_duplicates()
        items = np.array(sorted(pairs[ITEM].unique()), dtype=object)
        users = pd.Index(pairs[USER].unique())
        x = sp.csr_matrix((np.ones(len(pairs)), (users.get_indexer(pairs[USER]),
                                                 pd.Index(items).get_indexer(pairs[ITEM]))),
                          shape=(len(users), len(items)))  # (U, I) customer has item
        counts = (x.T @ x).tocsr()  # (I, I)
        degree = counts.diagonal().copy()  # (I,) customers with the item
        counts.setdiag(0.0)
        counts.eliminate_zeros()
        return cls(items, counts, degree)

    def _columns(self, items: Iterable[str]) -> list[int]:
        return sorted({self.column[i] for i in items if i in self.column})

    def score(self, history: Sequence[str], candidate: str, *,
              own: frozenset[str] = frozenset()) -> float:
        """Sum of sim(h, candidate) over the distinct `history` items. `own`: the items
        of the customer whose example this is, left out of the counts."""
        c = self.column.get(candidate)
        if c is None:
            return 0.0
        if not own:  # sim(c, c) is 0, so the row of the whole history serves
            return float(self._row(tuple(self._columns(history)))[c])
        columns = [h for h in self._columns(history) if h != c]
        if not columns:
            return 0.0
        mine = 1.0 if candidate in own else 0.0
        co = self.counts[columns, c].toarray().ravel()  # (H,)
        held = np.array([1.0 if self.items[h] in own else 0.0 for h in columns])
        co = co - mine * held  # the customer's own pairs (h, c)
        degree_c = self.degree[c] - mine
        degree_h = self.degree[columns]
        scale = np.sqrt(np.maximum(degree_h * degree_c, 0.0))
        sims = np.divide(co, scale, out=np.zeros_like(co), where=scale > 0)
        return float(np.clip(sims, 0.0, None).sum())

    def scores(self, history: Sequence[str]) -> np.ndarray:
        """score(history, c) for every item c of `items` (I,): the retrieval's view."""
        return self._row(tuple(self._columns(history))).copy()

    def _row(self, columns: tuple[int, ...]) -> np.ndarray:
        key, row = self._last
        if key == columns:
            return row
        row = self._compute_row(list(columns))
        self._last = (columns, row)
        return row

    def _compute_row(self, columns: list[int]) -> np.ndarray:
        if not columns:
            return np.zeros(len(self.items))
        return np.asarray(self.similarity[columns].sum(axis=0)).ravel()  # (I,)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        with path.open("wb") as handle:
            np.savez_compressed(handle, items=self.items.astype(str), data=self.counts.data,
                                indices=self.counts.indices, indptr=self.counts.indptr,
                                degree=self.degree)
        return path

    @classmethod
    def load(cls, folder: Path) -> CoVisits | None:
        """The saved counts, or None where the run has none."""
        path = Path(folder) / FILE
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as saved:
            items = saved["items"].astype(object)
            counts = sp.csr_matrix((saved["data"], saved["indices"], saved["indptr"]),
                                   shape=(len(items), len(items)))
            return cls(items, counts, saved["degree"])


def own_items(interactions: pd.DataFrame) -> dict[str, frozenset[str]]:
    """{customer: their distinct items} of `interactions` (what `CoVisits.score` leaves
    out of a training example's counts)."""
    return {str(u): frozenset(rows.astype(str)) for u, rows in interactions.groupby(USER)[ITEM]}
