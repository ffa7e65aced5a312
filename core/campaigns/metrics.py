"""How good probabilities are: calibration (ECE, reliability) and ranking (AUC, lift).

Every function takes per-customer probabilities (or any score where higher is better),
0/1 labels and optional non-negative weights, all of one length; weights count a
customer that many times (a sample weighted back to its population).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ECE_BINS = 10


def as_arrays(p, y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, labels, weights) as float64 vectors of one length (weights: ones
    when None); `ValueError` when the lengths differ."""
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (p.shape == y.shape == w.shape):
        raise ValueError(f"{p.shape[0]} probabilities, {y.shape[0]} labels and "
                         f"{w.shape[0]} weights: give one of each per customer.")
    return p, y, w


def reliability_table(probabilities, labels, *, bins: int = ECE_BINS,
                      weights=None) -> pd.DataFrame:
    """Per equal-width probability bin: lower, upper, customers (weighted), mean predicted,
    observed rate (NaN where empty). The data of a reliability diagram."""
    p, y, w = as_arrays(probabilities, labels, weights)
    index = np.minimum((np.clip(p, 0, 1) * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = index == b
        total = float(w[m].sum())
        rows.append({"bin": b, "lower": b / bins, "upper": (b + 1) / bins,
                     "customers": total,
                     "mean_predicted": float(np.average(p[m], weights=w[m])) if total
                     else float("nan"),
                     "observed_rate": float(np.average(y[m], weights=w[m])) if total
                     else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(probabilities, labels, *, bins: int = ECE_BINS,
                               weights=None) -> float:
    """ECE = sum over equal-width bins of (bin weight / total) * |mean p - observed rate|.

    Range [0, 1]; 0 for perfectly calibrated probabilities (in every bin the mean
    predicted probability equals the observed rate)."""
    table = reliability_table(probabilities, labels, bins=bins, weights=weights)
    full = table[table["customers"] > 0]
    if full.empty:
        return float("nan")
    gap = (full["mean_predicted"] - full["observed_rate"]).abs()
    return float((full["customers"] * gap).sum() / full["customers"].sum())


def auc(probabilities, labels, *, weights=None) -> float:
    """ROC AUC in [0, 1] (0.5: no better than chance); NaN when one class is missing."""
    from sklearn.metrics import roc_auc_score

    p, y, w = as_arrays(probabilities, labels, weights)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p, sample_weight=w))


def top_share_lift(probabilities, labels, *, share: float = 0.1, weights=None) -> float:
    """Positive rate among the top `share` (by weight) ranked by probability, divided by
    the overall rate. 1 = random targeting; 1/share at best. NaN without positives."""
    p, y, w = as_arrays(probabilities, labels, weights)
    if w.sum() <= 0 or (y * w).sum() <= 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(w[order])
    top = order[:max(int(np.searchsorted(cum, share * cum[-1], side="left")) + 1, 1)]
    rate_top = float((y[top] * w[top]).sum() / w[top].sum())
    return rate_top / float((y * w).sum() / w.sum())


def decile_lift(probabilities, labels, *, weights=None) -> list[dict[str, float]]:
    """Per decile of the ranking (1 = top 10% by weight): positive rate / overall rate."""
    p, y, w = as_arrays(probabilities, labels, weights)
    if not len(p) or (y * w).sum() <= 0:
        return []
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    decile = np.minimum((np.concatenate([[0.0], cum[:-1]]) * 10).astype(int), 9)
    base = (y * w).sum() / w.sum()
    out = []
    for d in range(10):
        rows = order[decile == d]
        if len(rows) and w[rows].sum() > 0:
            rate = (y[rows] * w[rows]).sum() / w[rows].sum()
            out.append({"decile": d + 1, "rate": float(rate), "lift": float(rate / base)})
    return out
