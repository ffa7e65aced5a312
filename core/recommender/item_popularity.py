"""Item popularity released with differential privacy, as percentiles the model reads.

A recommender run counts, per item, the training customers who interacted with it; each
customer counts at most `cap` distinct items (their most recent ones), so adding or
removing one customer changes the count vector by at most sqrt(cap) in L2 norm. For a
private run the counts get Gaussian noise of standard deviation
noise_multiplier x sqrt(cap) and are released once (`privacy.ledger`
MECHANISM_GAUSSIAN_COUNTS, composed with the run's DP-SGD by the accountant: the
customer is the unit of both). Everything after the release is post-processing:

- its reliability (`reliability`: how much of the released spread is signal), shown
  with the run's privacy record;
- each item's percentile among the released items (1: least popular .. 100: most),
  which `core.recommender.fields.item_fields` shows the model as the field "item_popularity"
  ("popularity: 73 of 100") and `core.recommender.model` turns into one scalar feature;
- the popularity order of the candidate retrieval
  (`core.recommender.retrieval.CrossEncoderRecommender`).

Items outside the release (held out of training, or new in the catalogue) have no
percentile: the field is absent and the feature is neutral (0), so a new item is
neither pushed nor buried by a popularity it never had the chance to earn.

A non-private run releases the exact counts (noise_multiplier 0) and is recorded as
epsilon = inf like its training.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from core.store.interactions import ITEM, TS, USER

POPULARITY = "popularity"  # catalogue column: the released percentile (1..100)
DEFAULT_CAP = 10


def capped_counts(train: pd.DataFrame, items: Iterable[str], *, cap: int) -> pd.Series:
    """Customers per item (index: `items`, in order), each customer counting at most
    `cap` distinct items: the most recent ones (ties by item id)."""
    if cap < 1:
        raise ValueError(f"cap={cap}: each customer must count at least one item.")
    items = [str(i) for i in items]
    frame = train[[USER, ITEM, TS]].astype({USER: str, ITEM: str})
    frame = frame[frame[ITEM].isin(set(items))]
    latest = (frame.groupby([USER, ITEM], sort=False)[TS].max().reset_index()
              .sort_values([USER, TS, ITEM], ascending=[True, False, True], kind="stable"))
    kept = latest.groupby(USER, sort=False).head(cap)
    counts = kept[ITEM].value_counts()
    return counts.reindex(items, fill_value=0).astype(np.float64)


def noisy(counts: pd.Series, *, noise_multiplier: float, cap: int,
          rng: np.random.Generator | None = None) -> pd.Series:
    """`counts` + N(0, (noise_multiplier * sqrt(cap))^2) per item. The default generator
    is seeded from the operating system's entropy: DP noise that a known seed could
    replay would protect nobody."""
    if noise_multiplier <= 0:
        return counts.copy()
    rng = rng or np.random.default_rng(secrets.randbits(128))
    scale = noise_multiplier * math.sqrt(cap)
    return counts + rng.normal(0.0, scale, size=len(counts))


def reliability(released: pd.Series, *, noise_multiplier: float, cap: int) -> float:
    """The share of the released counts' variance across items that is signal:
    1 - (noise std)^2 / var(released), clipped to [0, 1] (1 for exact counts).

    Post-processing of the release and its public noise scale, so it costs no budget.
    A small catalogue with few customers per item can drown in the noise (reliability
    near 0): the run's privacy record shows it next to the noise."""
    if noise_multiplier <= 0:
        return 1.0
    spread = float(released.var()) if len(released) > 1 else 0.0
    if spread <= 0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - (noise_multiplier ** 2 * cap) / spread)))


def percentiles(values: pd.Series) -> dict[str, int]:
    """{item: percentile 1..100} by rank of `values` (ties by item id)."""
    if values.empty:
        return {}
    order = sorted(values.items(), key=lambda kv: (kv[1], kv[0]))  # least popular first
    top = max(len(order) - 1, 1)
    return {str(item): 1 + (99 * rank) // top for rank, (item, _) in enumerate(order)}


def ranked(popularity: Mapping[str, int | float]) -> list[str]:
    """Items most popular first (ties by item id): the retrieval's popularity list."""
    return [i for i, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))]


def of(catalogue: pd.DataFrame) -> dict[str, int]:
    """{item: percentile} of the catalogue's POPULARITY column (released items only)."""
    known = catalogue[catalogue[POPULARITY].notna()]
    return {str(i): int(p) for i, p in zip(known[ITEM], known[POPULARITY], strict=True)}


def attach(catalogue: pd.DataFrame, popularity: Mapping[str, int]) -> pd.DataFrame:
    """A copy of `catalogue` with the POPULARITY column (missing where not released)."""
    out = catalogue.copy()
    out[POPULARITY] = out[ITEM].astype(str).map(popularity).astype("Float64")
    return out
