"""The raw scores of a customer for a target: the content tier and the cross-encoder tier.

1. Content tier, everyone with a history: the mean, over the customer's last
   `profile_len` items, of each item's highest MiniLM cosine to a target item (a target
   item itself counts 1: for a category this is about the share of the recent history
   in it, softened by similar items). Item embeddings are catalogue data, computed once
   and cached on disk; the score is one sparse x dense product.
2. Cross-encoder tier: the customers with the highest content score are re-scored by
   the trained cross-encoder (history = their last `history_len` interactions, context
   = the campaign's season and promotion, candidates = the `ce_items` target items
   closest to their mean history embedding; the max logit). `CrossEncoder.score_pairs`
   batches the pairs; any other (text_a, text_b) -> logits callable can be passed as
   `score_fn`.
Customers without any strong interaction are in the tier "no history".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.campaigns.definition import Campaign, campaign_input
from core.store.interactions import ITEM, USER

TIER_CE, TIER_CONTENT, TIER_NONE = "cross-encoder", "content", "no history"
TIERS = (TIER_CE, TIER_CONTENT, TIER_NONE)

TextScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (a, b) -> logits


def item_embeddings(catalogue: pd.DataFrame, *, cache_dir: Path | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, (I, 384) unit MiniLM embeddings of `core.recommender.baselines.item_text`).

    Item text is catalogue data (not personal), so the embeddings may be cached on disk
    in `cache_dir`, keyed by a hash of the texts and the encoder's package version."""
    from core.minilm import embed_texts, tokenizer_reference
    from core.recommender.baselines import item_text

    rows = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}).drop_duplicates(ITEM)
    rows = rows.sort_values(ITEM, kind="stable")
    items = rows[ITEM].to_numpy(dtype=object)
    texts = [item_text(r) for r in rows.to_dict("records")]
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256("\n".join([tokenizer_reference()["version"], *texts])
                                .encode()).hexdigest()[:24]
        path = cache_dir / f"item_embeddings_{digest}.npy"
        if path.exists():
            cached = np.load(path)
            if cached.shape[0] == len(items):
                return items, cached
    embeddings = np.asarray(embed_texts(texts), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, embeddings)
        os.replace(tmp, path)
    return items, embeddings


def history_profiles(history: pd.DataFrame, users: Sequence[str], items: np.ndarray,
                     embeddings: np.ndarray, item_affinity: np.ndarray, *, last: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, from their `last` most recent items (`history` sorted by user, then
    time, as `as_interactions` leaves it):

    - the content score: the mean over those items of `item_affinity` (each item's
      highest cosine to a target item; a target item itself counts 1), (U,), NaN
      without any item;
    - the profile: the unit mean embedding of those items, (U, H), zeros without any;
    - whether the user has any such item, (U,).
    One sparse (U, I) count matrix times dense vectors."""
    import scipy.sparse as sp

    frame = history[[USER, ITEM]].groupby(USER, sort=False).tail(last)
    rows = pd.Index(users).get_indexer(frame[USER].astype(str))
    cols = pd.Index(items).get_indexer(frame[ITEM].astype(str))
    keep = (rows >= 0) & (cols >= 0)
    counts = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32),
                            (rows[keep], cols[keep])), shape=(len(users), len(items)))
    n = np.asarray(counts.sum(axis=1)).reshape(-1)
    has = n > 0
    score = np.asarray(counts @ item_affinity, dtype=np.float64).reshape(-1)
    score = np.where(has, score / np.maximum(n, 1), np.nan)
    profiles = np.asarray(counts @ embeddings, dtype=np.float32)  # (U, H)
    norms = np.linalg.norm(profiles, axis=1)
    profiles[has] /= norms[has, None]
    return score, profiles, has


def best_targets(profiles: np.ndarray, target_embeddings: np.ndarray, *, k: int,
                 chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(max cosine of the profile over the targets (U,), the `k` target columns closest to
    the profile (U, k), best first): which target items the cross-encoder scores."""
    n, t = len(profiles), len(target_embeddings)
    k = min(k, t)
    best = np.empty(n, dtype=np.float64)
    top = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = profiles[start:start + chunk] @ target_embeddings.T  # (c, T)
        part = (np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < t
                else np.tile(np.arange(t), (len(sims), 1)))
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        cols = np.take_along_axis(part, order, axis=1)
        top[start:start + chunk] = cols
        best[start:start + chunk] = np.take_along_axis(sims, cols[:, :1], axis=1)[:, 0]
    return best, top


def item_records(catalogue: pd.DataFrame) -> dict[str, dict[str, object]]:
    """{item id: its first catalogue row}."""
    rows = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}).drop_duplicates(ITEM)
    return {r[ITEM]: r for r in rows.to_dict("records")}


def recent_items(history: pd.DataFrame, users: Iterable[str], n: int
                 ) -> dict[str, list[tuple[str, str]]]:
    """{user: their last n (event_type, item_id), most recent first}."""
    wanted = set(users)
    frame = history[history[USER].isin(wanted)].groupby(USER, sort=False).tail(n)
    out: dict[str, list[tuple[str, str]]] = {u: [] for u in wanted}
    for user, kind, item in zip(frame[USER], frame["event_type"], frame[ITEM], strict=True):
        out[user].append((str(kind), str(item)))
    return {u: v[::-1] for u, v in out.items()}


def cross_encoder_scores(model, campaign: Campaign, recent: Mapping[str, list[tuple[str, str]]],
                         users: Sequence[str], candidates: np.ndarray,
                         records: Mapping[str, Mapping[str, object]], *,
                         score_fn: TextScorer | None = None, batch_size: int = 128
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(max logit over each user's candidate items (U,), column of the best (U,)).

    candidates: (U, k) item ids per user."""
    if not len(users):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    text_a: list[str] = []
    text_b: list[str] = []
    for user, row in zip(users, candidates, strict=True):
        history = [(kind, records.get(item) or {ITEM: item}) for kind, item in recent[user]]
        for item in row:
            a, b = model.text_pair(campaign_input(history, campaign,
                                                  records.get(item) or {ITEM: item},
                                                  co_visits=model.co_visits,
                                                  with_share=model.config.category_share))
            text_a.append(a)
            text_b.append(b)
    if score_fn is None:
        logits = model.score_pairs(text_a, text_b, batch_size=batch_size)
    else:
        logits = score_fn(text_a, text_b)
    logits = np.asarray(logits, dtype=np.float64).reshape(candidates.shape)  # (U, k)
    best = np.argmax(logits, axis=1)
    return logits[np.arange(len(users)), best], best
