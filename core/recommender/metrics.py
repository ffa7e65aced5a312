"""Ranking metrics for next-item prediction with one relevant item per user.

Pure functions with one signature each: `ranked[u]` is user u's ranking (item ids,
best first) and `targets[u]` the one item they interacted with. Each returns the mean
over users, and 0.0 for no users. Rank r is 1-based; an item missing from a ranking
counts as not found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int | None) -> None:
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} rankings but {len(targets)} targets: give one "
                         "ranking per target.")
    if k is not None and k < 1:
        raise ValueError(f"k={k}: the cut-off must be at least 1.")


def _rank(ranking: Sequence[str], target: str, k: int | None = None) -> int | None:
    """1-based rank of `target` among the first `k` (all with None) of `ranking`."""
    head = list(ranking if k is None else ranking[:k])
    try:
        return head.index(target) + 1
    except ValueError:
        return None


def hit_rate_at_k(ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> float:
    """Share of users whose target is in their top k. Range [0, 1]; 1 iff every target
    is ranked within k."""
    _check(ranked, targets, k)
    if not targets:
        return 0.0
    return sum(_rank(r, t, k) is not None for r, t in zip(ranked, targets, strict=True)) / len(
        targets)


def recall_at_k(ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> float:
    """Share of relevant items found in the top k; with one target per user this equals
    `hit_rate_at_k` (the name used for cold-start items). Range [0, 1]."""
    return hit_rate_at_k(ranked, targets, k)


def ndcg_at_k(ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> float:
    """Mean of 1 / log2(rank + 1) for targets ranked within k, else 0 (one relevant item:
    the ideal DCG is 1). Range [0, 1]; 1 iff every target is ranked first."""
    _check(ranked, targets, k)
    if not targets:
        return 0.0
    total = 0.0
    for r, t in zip(ranked, targets, strict=True):
        rank = _rank(r, t, k)
        if rank is not None:
            total += 1.0 / math.log2(rank + 1)
    return total / len(targets)


def mrr(ranked: Sequence[Sequence[str]], targets: Sequence[str]) -> float:
    """Mean reciprocal rank over the full ranking given (1 / rank, 0 where the target is
    missing). Range [0, 1]; 1 iff every target is ranked first."""
    _check(ranked, targets, None)
    if not targets:
        return 0.0
    total = 0.0
    for r, t in zip(ranked, targets, strict=True):
        rank = _rank(r, t)
        if rank is not None:
            total += 1.0 / rank
    return total / len(targets)


def catalogue_coverage(ranked: Sequence[Sequence[str]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top k. Range [0, 1]
    (for rankings drawn from the catalogue); 0.0 for no users."""
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size={catalogue_size}: must be at least 1.")
    if k < 1:
        raise ValueError(f"k={k}: the cut-off must be at least 1.")
    shown = {item for r in ranked for item in list(r)[:k]}
    return len(shown) / catalogue_size
