"""Review sentiment data: labels from stars, the time split, class balance, aspects.

Pure functions over data frames; the warehouse is read only by `load_reviews` (through
`core.store.warehouse.query`). The model (`core.sentiment.model`) and the training loop
(`core.sentiment.train`) build on these.

- Labels come from the stars: 1-2 negative, 3 neutral, 4-5 positive (`label_from_stars`).
- The model reads `summary + " . " + text` (`review_text`), both scrubbed at ingest.
- `time_split`: train on the older reviews, test on the newer ones; every review
  stamped at or after the cut-off is a test review, so no review and no moment is on
  both sides (asserted).
- Class imbalance is handled by a CLASS-WEIGHTED LOSS (`class_weights`, "balanced" =
  n / (k * count_c), normalised to mean 1 over the training pool), not by resampling:
  the privacy unit is the reviewer and Poisson sampling over reviewers must stay
  uniform for the DP-SGD analysis, so the sampling cannot be skewed towards rare
  classes. Class shares of train and test are reported with every run (`class_shares`).
- Aspects (`aspect_terms`, `aggregate_aspects`): the 1-2 word phrases (stopwords
  removed) that carry the token attributions of negative and positive predictions,
  per item, per category and overall, kept only where at least `min_reviewers`
  distinct reviewers back them, so that no single review can surface alone.
- `suppress_shares`: label shares per group (month, category, segment) with small
  cells hidden and complementary suppression, for the page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import Paths
from privacy.disclosure import suppress_small_cells

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2
PROBABILITY_COLUMNS: tuple[str, ...] = ("p_negative", "p_neutral", "p_positive")

# Warehouse columns used here (the reviews table, and items.category joined in).
REVIEW_ID = "review_id"
USER = "user_pseudonym"
ITEM = "item_id"
RATING = "rating"
TS = "ts"
SUMMARY = "summary"
TEXT = "text"
CATEGORY = "category"
LABEL = "label"  # integer class 0..2 in frames; the label name in the warehouse

TEXT_JOINER = " . "
CLASS_WEIGHTINGS = ("balanced", "sqrt", "none")

# Function words that never make an aspect. Not scikit-learn's list: it also drops
# words that are real aspects of products ("thick", "thin", "top", "bottom", "fire").
STOPWORDS = frozenset("""
a about above after again against all almost also although always am among an and another
any anyone anything anyway are around as at be became because become been before being
below besides between both but by can cannot could did do does doing done down during
each either else enough etc even ever every everything few for from further get gets
getting got had has have having he her here hers herself him himself his how however i
if in into is it its itself just least less let like ll many may me might mine more
most much must my myself neither never no nobody none nor not nothing now of off often
on once one only onto or other others otherwise our ours ourselves out over own per
perhaps please quite rather re really same several she should since so some someone
something sometimes still such than that the their theirs them themselves then there
these they this those though through thus to together too toward towards under until
up upon us very via was we were what whatever when where whether which while who whom
whose why will with within without would yet you your yours yourself yourselves
s t d m ve don doesn didn isn wasn weren aren won wouldn couldn shouldn haven hasn hadn
ain im ive id youre theyre thats its dont cant wont didnt doesnt isnt wasnt
""".split())
_WORD = re.compile(r"^[a-z][a-z'-]*[a-z]$")


# --- labels and text -----------------------------------------------------------------


def label_from_stars(stars: Iterable[float] | float) -> np.ndarray:
    """Star ratings (1-5, rounded) -> classes: 1-2 -> 0 (negative), 3 -> 1 (neutral),
    4-5 -> 2 (positive). Raises ValueError for a rating outside 1-5 or missing."""
    values = np.atleast_1d(np.asarray(stars, dtype=float))
    if np.isnan(values).any():
        raise ValueError("a star rating is missing (NaN): every review needs 1 to 5 stars.")
    rounded = np.rint(values).astype(np.int64)
    bad = (rounded < 1) | (rounded > 5)
    if bad.any():
        raise ValueError(f"star rating {values[bad][0]!r} is outside 1-5: labels come from "
                         "1 to 5 stars.")
    return np.array([NEGATIVE, NEGATIVE, NEUTRAL, POSITIVE, POSITIVE])[rounded - 1]


def label_names(labels: Iterable[int]) -> list[str]:
    return [LABELS[int(i)] for i in labels]


def review_text(summary: str | None, text: str | None) -> str:
    """What the model reads: `summary . text` (either may be missing)."""
    parts = [str(p).strip() for p in (summary, text)
             if p is not None and not (isinstance(p, float) and np.isnan(p)) and str(p).strip()]
    return TEXT_JOINER.join(parts)


def review_texts(frame: pd.DataFrame) -> list[str]:
    return [review_text(s, t) for s, t in zip(frame[SUMMARY], frame[TEXT], strict=True)]


def load_reviews(paths: Paths | None = None) -> pd.DataFrame:
    """Every review with its item's category, in a fixed order (time, then review id),
    plus the integer `label` from its stars."""
    from core.store.warehouse import query

    frame = query("sentiment_reviews", paths)
    return with_labels(frame)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame[TS] = pd.to_datetime(frame[TS])
    frame[LABEL] = label_from_stars(frame[RATING]) if len(frame) else np.array([], np.int64)
    return frame.reset_index(drop=True)


def data_fingerprint(reviews: pd.DataFrame) -> str:
    """sha256 (hex) over the (review id, reviewer, ts, rating) rows in a fixed order."""
    frame = reviews[[REVIEW_ID, USER, TS, RATING]].sort_values(REVIEW_ID, kind="stable")
    digest = hashlib.sha256()
    for rid, user, ts, rating in frame.itertuples(index=False, name=None):
        digest.update(f"{rid}\t{user}\t{pd.Timestamp(ts).isoformat()}\t{rating}\n".encode())
    return digest.hexdigest()


# --- split -------------------------------------------------------------------------


@dataclass(frozen=True)
class SentimentSplit:
    train: pd.DataFrame  # reviews stamped before `cutoff`
    test: pd.DataFrame  # reviews stamped at or after `cutoff`
    cutoff: pd.Timestamp


def time_split(reviews: pd.DataFrame, *, test_share: float = 0.2) -> SentimentSplit:
    """Older reviews train, newer reviews test. The cut-off is the (1 - test_share)
    quantile of the review times; reviews stamped exactly at it go to test, so the two
    sides share neither a review nor a moment. Raises ValueError when a side is empty."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share={test_share}: must lie strictly between 0 and 1.")
    if reviews.empty:
        raise ValueError("no reviews to split: ingest reviews first (`clearmark ingest` or "
                         "`clearmark demo`).")
    ts = pd.to_datetime(reviews[TS])
    cutoff = ts.quantile(1.0 - test_share, interpolation="higher")
    before = (ts < cutoff).to_numpy()
    train = reviews.loc[before].reset_index(drop=True)
    test = reviews.loc[~before].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError(f"the time split at {cutoff} leaves {len(train)} train and "
                         f"{len(test)} test reviews: the reviews need more distinct times.")
    assert pd.to_datetime(train[TS]).max() < pd.to_datetime(test[TS]).min()
    assert not set(train[REVIEW_ID]) & set(test[REVIEW_ID])
    return SentimentSplit(train=train, test=test, cutoff=pd.Timestamp(cutoff))


def cap_per_reviewer(reviews: pd.DataFrame, *, cap: int, seed: int = 0) -> pd.DataFrame:
    """At most `cap` reviews per reviewer (a seeded random choice), original order kept."""
    if cap < 1:
        raise ValueError(f"cap={cap}: each reviewer needs at least one review.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reviews))
    shuffled = reviews.iloc[order]
    rank = shuffled.groupby(USER, sort=False).cumcount().to_numpy()
    keep = np.sort(order[rank < cap])
    return reviews.iloc[keep].reset_index(drop=True)


def sample_reviewers(reviews: pd.DataFrame, *, max_reviewers: int | None,
                     seed: int = 0) -> pd.DataFrame:
    """The reviews of a seeded random subset of `max_reviewers` reviewers (None: all)."""
    users = np.array(sorted(reviews[USER].unique()), dtype=object)
    if max_reviewers is None or max_reviewers >= len(users):
        return reviews
    keep = set(np.random.default_rng(seed).choice(users, size=max_reviewers, replace=False))
    return reviews[reviews[USER].isin(keep)].reset_index(drop=True)


def reviewer_groups(reviews: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each reviewer's reviews, reviewers in sorted order."""
    codes, _ = pd.factorize(reviews[USER], sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [np.asarray(g, dtype=np.int64) for g in np.split(order, bounds)] if len(order) \
        else []


# --- class balance -----------------------------------------------------------------


def class_counts(labels: Iterable[int]) -> np.ndarray:
    return np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=len(LABELS))


def class_shares(labels: Iterable[int]) -> dict[str, float]:
    """{label name: share of the reviews}, each in [0, 1] (all 0 when empty)."""
    counts = class_counts(labels)
    total = max(int(counts.sum()), 1)
    return {name: float(c) / total for name, c in zip(LABELS, counts, strict=True)}


def class_weights(labels: Iterable[int], *, scheme: str = "balanced") -> np.ndarray:
    """Per-class loss weights, shape (3,), with mean 1 over the given examples.

    "balanced": n / (k * count_c), every class weighs as much in total;
    "sqrt": its square root (milder); "none": all 1. A class absent from `labels`
    gets weight 0 (it has no example to weigh)."""
    if scheme not in CLASS_WEIGHTINGS:
        raise ValueError(f"class weighting {scheme!r}: choose one of {CLASS_WEIGHTINGS}.")
    counts = class_counts(labels).astype(float)
    present = counts > 0
    weights = np.zeros(len(LABELS))
    if scheme == "none":
        weights[present] = 1.0
    else:
        weights[present] = counts.sum() / (present.sum() * counts[present])
        if scheme == "sqrt":
            weights = np.sqrt(weights)
    total = float((weights * counts).sum())
    if total > 0:
        weights *= counts.sum() / total  # mean weight over the examples is 1
    return weights


def balanced_binary(frame: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Negative and positive reviews (no neutral) in equal numbers: all of the rarer
    class and a seeded random sample of the other. Empty when either class is absent."""
    neg = frame[frame[LABEL] == NEGATIVE]
    pos = frame[frame[LABEL] == POSITIVE]
    n = min(len(neg), len(pos))
    if n == 0:
        return frame.iloc[:0]
    rng = np.random.default_rng(seed)
    parts = [side.iloc[np.sort(rng.choice(len(side), size=n, replace=False))]
             for side in (neg, pos)]
    return pd.concat(parts).reset_index(drop=True)


# --- aspects -----------------------------------------------------------------------


def is_aspect_word(word: str) -> bool:
    return bool(_WORD.match(word)) and word not in STOPWORDS and word.replace("'", "") \
        not in STOPWORDS


def aspect_terms(words: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    """1-2 word phrases of one review and the attribution they carry.

    `words` are the review's words in order (lower case, punctuation as its own
    "word"), `weights` their attributions towards the predicted class. A unigram is
    any non-stopword word; a bigram two such words next to each other. Returns
    {term: summed attribution} for the terms whose attribution is positive (they
    pushed towards the prediction)."""
    terms: dict[str, float] = {}
    words = [w.lower() for w in words]
    ok = [is_aspect_word(w) for w in words]
    for i, (word, weight) in enumerate(zip(words, weights, strict=True)):
        if not ok[i]:
            continue
        terms[word] = terms.get(word, 0.0) + float(weight)
        if i + 1 < len(words) and ok[i + 1]:
            bigram = f"{word} {words[i + 1]}"
            terms[bigram] = terms.get(bigram, 0.0) + float(weight) + float(weights[i + 1])
    return {t: w for t, w in terms.items() if w > 0}


ASPECT_COLUMNS = ("scope", "scope_id", "aspect", "polarity", "weight", "reviewers")


def aspect_rows(reviews: pd.DataFrame, word_lists: Sequence[Sequence[str]],
                weight_lists: Sequence[Sequence[float]]) -> pd.DataFrame:
    """One row per (review, term) that drove the review's predicted label.

    `reviews` (one row per review, aligned with the word lists) needs review_id,
    user_pseudonym, item_id, category and `predicted` (class 0..2). A term's `share`
    is its attribution over the review's total positive attribution (0..1], so long
    reviews weigh no more than short ones. Neutral predictions are left out."""
    rows = []
    for rec, words, weights in zip(reviews.itertuples(index=False), word_lists, weight_lists,
                                   strict=True):
        predicted = int(rec.predicted)
        if predicted == NEUTRAL:
            continue
        mass = float(np.clip(np.asarray(weights, dtype=float), 0, None).sum())
        if mass <= 0:
            continue
        for term, weight in aspect_terms(words, weights).items():
            rows.append((rec.review_id, rec.user_pseudonym, rec.item_id, rec.category,
                         LABELS[predicted], term, min(weight / mass, 1.0)))
    return pd.DataFrame(rows, columns=[REVIEW_ID, USER, ITEM, CATEGORY, "polarity", "aspect",
                                       "share"])


def aggregate_aspects(rows: pd.DataFrame, reviews: pd.DataFrame, *, min_reviewers: int,
                      top_k: int = 15) -> pd.DataFrame:
    """Aspects per scope ('all', 'category', 'item') and polarity, from `aspect_rows`.

    `reviews`: every attributed review with item_id, category, user_pseudonym and
    `predicted`, to count the scope's reviews of each polarity. weight = the mean,
    over the scope's reviews predicted with that polarity, of the share of the
    prediction the aspect carries (in [0, 1]; 0 where absent). reviewers = distinct
    reviewers whose reviews carry it. An aspect backed by fewer than `min_reviewers`
    distinct reviewers never appears; at most `top_k` per scope and polarity, by weight.
    """
    if min_reviewers < 1:
        raise ValueError(f"min_reviewers={min_reviewers}: must be at least 1.")
    out = []
    polar = reviews[reviews["predicted"] != NEUTRAL].assign(
        polarity=lambda f: [LABELS[int(p)] for p in f["predicted"]])
    for scope, key in (("all", None), ("category", CATEGORY), ("item", ITEM)):
        if rows.empty:
            break
        group_cols = ["polarity"] if key is None else [key, "polarity"]
        frame = rows if key is None else rows[rows[key].notna()]
        stats = (frame.groupby(group_cols + ["aspect"], sort=False)
                 .agg(total=("share", "sum"), reviewers=(USER, "nunique")).reset_index())
        stats = stats[stats["reviewers"] >= min_reviewers]
        if stats.empty:
            continue
        scope_reviews = (polar if key is None else polar[polar[key].notna()]) \
            .groupby(group_cols, sort=False).size().rename("scope_reviews").reset_index()
        stats = stats.merge(scope_reviews, on=group_cols, how="left")
        stats["weight"] = stats["total"] / stats["scope_reviews"].clip(lower=1)
        stats = stats.sort_values(group_cols + ["weight", "aspect"],
                                  ascending=[True] * len(group_cols) + [False, True],
                                  kind="stable")
        stats = stats.groupby(group_cols, sort=False).head(top_k)
        stats["scope"] = scope
        stats["scope_id"] = "all" if key is None else stats[key].astype(str)
        out.append(stats[list(ASPECT_COLUMNS)])
    if not out:
        return pd.DataFrame(columns=list(ASPECT_COLUMNS))
    result = pd.concat(out, ignore_index=True)
    result["reviewers"] = result["reviewers"].astype(np.int64)
    return result


# --- shares with small cells hidden ----------------------------------------------------


def suppress_shares(frame: pd.DataFrame, group_cols: Sequence[str], *, min_cell: int,
                    count_col: str = "customers", reviews_col: str = "reviews"
                    ) -> tuple[pd.DataFrame, int, int]:
    """Label shares per group with the privacy floor applied to distinct reviewers.

    `frame`: one row per (group, label) with `reviews_col` (reviews) and `count_col`
    (distinct reviewers). The share of each cell is taken of the group's reviews before
    anything is hidden; the cells then go through
    `privacy.disclosure.suppress_small_cells` by group (cells under `min_cell` hidden
    with complementary suppression; a group that cannot be shown safely is dropped whole).

    Returns (shown rows with a `share` column in [0, 1] of the group's reviews,
    hidden cells, dropped groups)."""
    group_cols = list(group_cols)
    if frame.empty:
        frame = frame.assign(share=pd.Series(dtype=float))
    else:
        frame = frame.assign(share=frame[reviews_col] / frame.groupby(
            group_cols, dropna=False)[reviews_col].transform("sum"))
    result = suppress_small_cells(frame, count_col, min_cell=min_cell, by=group_cols)
    return result.shown, result.hidden, result.dropped
