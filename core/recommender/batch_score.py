"""Batch scoring: the top-K recommendations of a registered model for every customer.

Reads the read snapshot (short connections, through `core.store.warehouse`), ranks each
customer's candidates with the model in batches of customers, and writes all rows in
ONE `write_transaction` at the end, replacing the rows of the same run id. The app
keeps serving the previous snapshot meanwhile; the new rows appear when the write
publishes the next snapshot.

What a customer's query is: their whole known history (every strong interaction in
the warehouse), the context of the scoring moment (`at`, default now: season and
weekday; promotion unknown), and the ranking catalogue of the model's training (the
items that occur in interactions). Customers without interactions get the popular
candidates, ranked by the model from context alone. Items the customer already has
are excluded unless `exclude_seen=False` (data where customers re-buy).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core.config import Paths
from core.recommender.protocol import recommend
from core.store.interactions import ITEM, PROMOTION, TS, USER
from core.store.queries import QUERIES
from core.store.warehouse import query, write_transaction

DEFAULT_K = 10
BATCH_CUSTOMERS = 256  # customers per model call (~18k pairs): each call projects its items once


@dataclass(frozen=True)
class ScoringResult:
    run_id: str
    customers: int
    rows: int
    seconds: float
    created_at: pd.Timestamp

    @property
    def customers_per_second(self) -> float:
        return self.customers / self.seconds if self.seconds > 0 else float("inf")


def recommend_all(recommender, customers: list[str], history: pd.DataFrame, *,
                  k: int = DEFAULT_K, at: pd.Timestamp, exclude_seen: bool = True,
                  batch_customers: int = BATCH_CUSTOMERS, progress: bool = True
                  ) -> pd.DataFrame:
    """Top-`k` rows (user_pseudonym, item_id, rank, score) for every customer, in
    batches of `batch_customers`; a tqdm bar reports customers/s."""
    by_user = history.assign(**{USER: history[USER].astype(str)})
    frames = []
    bar = tqdm(total=len(customers), disable=not progress, desc="score", unit="customer")
    for start in range(0, len(customers), batch_customers):
        chunk = customers[start:start + batch_customers]
        queries = pd.DataFrame({USER: chunk, TS: at,
                                PROMOTION: pd.array([pd.NA] * len(chunk), dtype="boolean")})
        known = by_user[by_user[USER].isin(set(chunk))]
        frames.append(recommend(recommender, known, queries, k=k, exclude_seen=exclude_seen))
        bar.update(len(chunk))
    bar.close()
    columns = [USER, ITEM, "rank", "score"]
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=columns))[columns]


def shard_of(customer: str, count: int) -> int:
    """The shard (0 .. count-1) of a customer: a stable hash of the pseudonym, the same in
    every process and on every machine (Python's own hash() of a str is salted per
    process, so it cannot split work between processes)."""
    if count < 1:
        raise ValueError(f"count={count}: at least one shard.")
    digest = hashlib.blake2b(str(customer).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class ScoredRows:
    """Recommendations computed but not written (`score_customers`)."""

    run_id: str
    customers: int
    rows: pd.DataFrame  # user_pseudonym, item_id, rank (int32), score (float64)
    seconds: float


def score_customers(paths: Paths | None = None, run_id: str | None = None, *,
                    k: int = DEFAULT_K, at: pd.Timestamp | None = None,
                    exclude_seen: bool = True, batch_customers: int = BATCH_CUSTOMERS,
                    max_customers: int | None = None, shard: tuple[int, int] | None = None,
                    progress: bool = True) -> ScoredRows:
    """The top-`k` rows of model `run_id` (default: the latest complete run) for every
    customer, or with `shard=(index, count)` for the customers whose `shard_of` is
    `index` (taken after `max_customers`, so the shards partition exactly what an
    unsharded run scores). Reads the snapshot only: nothing is written."""
    from core.recommender import registry
    from core.recommender.data import load_training_data
    from core.recommender.retrieval import CrossEncoderRecommender

    paths = paths or Paths()
    if k < 1:
        raise ValueError(f"k={k}: ask for at least 1 recommendation per customer.")
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard={shard}: give (index, count) with 0 <= index < count.")
    run_id = run_id or registry.latest_run(paths)
    if run_id is None:
        raise registry.RegistryError(f"no trained model in {paths.models_dir}: train one with "
                                     "`clearmark train` first.")
    loaded = registry.load(run_id, paths)
    history, catalogue = load_training_data(paths)
    recommender = CrossEncoderRecommender(loaded.model, name=run_id).fit(history, catalogue)
    customers = query("scoring_customers", paths)[USER].astype(str).tolist()
    if max_customers is not None:
        customers = customers[:max_customers]
    if shard is not None:
        customers = [c for c in customers if shard_of(c, shard[1]) == shard[0]]
    at = pd.Timestamp.now().floor("s") if at is None else pd.Timestamp(at)
    started = time.perf_counter()
    rows = recommend_all(recommender, customers, history, k=k, at=at,
                         exclude_seen=exclude_seen, batch_customers=batch_customers,
                         progress=progress)
    seconds = time.perf_counter() - started
    rows = pd.DataFrame({USER: rows[USER].astype(str), ITEM: rows[ITEM].astype(str),
                         "rank": rows["rank"].astype(np.int32),
                         "score": rows["score"].astype(np.float64)})
    return ScoredRows(run_id=run_id, customers=len(customers), rows=rows, seconds=seconds)


def score(paths: Paths | None = None, run_id: str | None = None, *, k: int = DEFAULT_K,
          at: pd.Timestamp | None = None, exclude_seen: bool = True,
          batch_customers: int = BATCH_CUSTOMERS, max_customers: int | None = None,
          progress: bool = True) -> ScoringResult:
    """Score every customer with model `run_id` (default: the latest complete run) and
    write the top-`k` into `recommendations` (rows of the same run id are replaced).
    Several processes or machines: `core.recommender.batch_score_distributed`."""
    paths = paths or Paths()
    scored = score_customers(paths, run_id, k=k, at=at, exclude_seen=exclude_seen,
                             batch_customers=batch_customers, max_customers=max_customers,
                             progress=progress)
    created_at = pd.Timestamp.now().floor("us")
    out = scored.rows.assign(run_id=scored.run_id, created_at=created_at)
    with write_transaction(paths) as con:
        con.execute(QUERIES["recommendations_delete_run"], {"run_id": scored.run_id})
        con.register("new_recommendations", out)
        con.execute(QUERIES["recommendations_insert"])
        con.unregister("new_recommendations")
    return ScoringResult(run_id=scored.run_id, customers=scored.customers, rows=len(out),
                         seconds=scored.seconds, created_at=created_at)
