"""Who is in the audience, who is held out, and what an audience of a given size brings.

All functions read probabilities in rank order (best first), as `rank_scores` leaves
them. The holdout is a pure function of the audience and the seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.campaigns.definition import Campaign, check_rule
from core.store.interactions import USER


def audience_mask(probabilities: np.ndarray, rule: str, value: float) -> np.ndarray:
    """Who is in the audience; `probabilities` in rank order (best first)."""
    check_rule(rule, value)
    p = np.asarray(probabilities, dtype=np.float64)
    n = len(p)
    if rule == "min_prob":
        return p >= value
    size = int(value) if rule == "top_n" else math.ceil(n * value / 100.0)
    mask = np.zeros(n, dtype=bool)
    mask[:min(size, n)] = True
    return mask


def holdout_mask(pseudonyms: Sequence[str], in_audience: np.ndarray, *, share: float,
                 seed: int, campaign_id: str) -> np.ndarray:
    """The control group: round(share x audience) audience members with the smallest
    hash sha256(campaign id | seed | pseudonym). A pure function of the audience and the
    seed: the same seed and audience always give the same holdout (re-scoring does not
    reshuffle it), and a small change of the audience changes the holdout little."""
    in_audience = np.asarray(in_audience, dtype=bool)
    members = np.flatnonzero(in_audience)
    k = int(round(share * len(members)))
    out = np.zeros(len(in_audience), dtype=bool)
    if k == 0:
        return out
    keys = np.array([int.from_bytes(hashlib.sha256(
        f"{campaign_id}|{seed}|{pseudonyms[i]}".encode()).digest()[:8], "big")
        for i in members], dtype=np.uint64)
    out[members[np.argsort(keys, kind="stable")[:k]]] = True
    return out


def assign_audience(scores: pd.DataFrame, campaign: Campaign) -> pd.DataFrame:
    """`scores` (rank order) with in_audience and in_holdout by the campaign's rule."""
    audience = audience_mask(scores["probability"].to_numpy(), campaign.rule,
                             campaign.rule_value)
    holdout = holdout_mask(scores[USER].astype(str).tolist(), audience,
                           share=campaign.holdout_share, seed=campaign.seed,
                           campaign_id=campaign.campaign_id)
    return scores.assign(in_audience=audience, in_holdout=holdout)


def size_curve(probabilities, *, sizes: Sequence[int] | None = None) -> pd.DataFrame:
    """Expected figures of an audience of the top n customers by probability.

    Columns: n, share (of all customers), expected_conversions (= expected true positives
    = sum of p in the audience), expected_false_positives (n - sum p), precision (sum p /
    n, in [0, 1]), expected_recall (share of all expected conversions reached, [0, 1]),
    lift (precision / mean p over everyone; 1 = random)."""
    p = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1]
    total = len(p)
    if not total:
        return pd.DataFrame(columns=["n", "share", "expected_conversions",
                                     "expected_false_positives", "precision",
                                     "expected_recall", "lift"])
    if sizes is None:
        sizes = np.unique(np.linspace(1, total, num=min(total, 101)).round().astype(int))
    sizes = np.clip(np.asarray(sizes, dtype=np.int64), 0, total)
    cum = np.concatenate([[0.0], np.cumsum(p)])
    tp = cum[sizes]
    n = sizes.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n > 0, tp / n, np.nan)
        mean = cum[-1] / total
        return pd.DataFrame({
            "n": sizes, "share": n / total, "expected_conversions": tp,
            "expected_false_positives": n - tp, "precision": precision,
            "expected_recall": tp / cum[-1] if cum[-1] > 0 else np.nan,
            "lift": precision / mean if mean > 0 else np.nan})


def at_size(probabilities, n: int) -> dict[str, float]:
    """`size_curve` at one audience size."""
    return {k: float(v) for k, v in size_curve(probabilities, sizes=[n]).iloc[0].items()}
