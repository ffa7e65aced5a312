"""Campaign audiences: who is likely to buy the target, how sure we are, how many, and why.

A `Campaign` names a target (one item, a list of items, or a category), a context
(season, promotion on or off) and an audience rule (`top_n`, `top_pct` or `min_prob`).
Scoring gives every customer a calibrated probability that their next interaction is
with the target, picks the audience by the rule, and draws a seeded holdout from it.

Propensity, and what a probability means here
    The label everywhere is "the customer's next strong interaction (purchase, review,
    add-to-cart) is with a target item". For a list or a category the score of a customer
    is the MAX over the target items of the pair score (the customer's best target item).
    The alternative, P(next interaction in the set) = the sum of a softmax over the whole
    catalogue, needs every catalogue item scored for every customer: far too slow on a
    CPU. The max is monotone in each item's score and names one item to explain; the
    calibration below turns it into the probability of the set, whatever its scale.

Two tiers (fast on 2 cores)
    1. Content tier, everyone with a history: the mean, over the customer's last
       `profile_len` items, of each item's highest MiniLM cosine to a target item (a
       target item itself counts 1: for a category this is about the share of the
       recent history in it, softened by similar items). Item embeddings are catalogue
       data, computed once and cached on disk; the score is one sparse x dense product.
       Cost: seconds for 100k customers. (Against the cosine of the mean history
       embedding to the best target item it gave a higher validation AUC on generated
       data and at all four Gift Cards cutoffs of the benchmark.)
    2. Cross-encoder tier: the `ce_customers` customers with the highest content score
       are re-scored by the trained cross-encoder (history = their last `history_len`
       interactions, context = the campaign's season and promotion, candidates = the
       `ce_items` target items closest to their mean history embedding; the max
       logit). `CrossEncoder.score_pairs` batches pairs by length under
       `torch.inference_mode` with 2 threads and computes each side's frozen lower
       layers once per distinct text (a customer's history once, an item once); any
       other (text_a, text_b) -> logits callable can be passed as `score_fn`.
    Customers without any strong interaction get the rate at which a customer's first
    interaction is with the target (tier "no history").
    Each tier has its own calibrator, so the probabilities of the tiers are on one scale
    and the final ranking is by probability (ties: cross-encoder tier first, then raw
    score, then pseudonym).

Calibration (leave-last-out validation, cross-fitted)
    Validation customers are those with at least 3 interactions; their validation target
    (second to last interaction) gives the label; their history is what precedes it in
    train. They are scored exactly like the population (same tiers: the cross-encoder
    scores the validation customers whose content score reaches the population's tier
    threshold, a seeded sample of at most `val_ce_customers`, weighted back to the tier's
    size in the overall metrics). Isotonic regression and Platt scaling are both fitted
    with K-fold cross-fitting; the one with the lower out-of-fold expected calibration
    error (10 equal-width bins) is refitted on all validation customers and applied.
    Every reported "after" figure (ECE, reliability, AUC, top-decile lift) is
    out-of-fold, never in-sample. "Before" reads the raw score as a probability:
    sigmoid(logit) for the cross-encoder, the content score clipped to [0, 1].

Privacy
    Customers appear only as pseudonyms. Segment tables hide every cell under
    `PrivacyConfig.min_cell_size` customers (on the audience and the population side),
    and keep hiding the next smallest cells of a dimension until the hidden cells together
    hold at least that many, so that totals minus the shown cells give no small cell away.
    The holdout never leaves the warehouse; exports are refused below `MIN_EXPORT` rows.
    Not covered by any epsilon, and stored only in the warehouse (never shipped with a
    model): the calibrators and validation metrics (statistics of the customers' own
    interactions, like the popularity list the model ships with, see core.recommender.train).

Import direction: core never imports `explain`. The explanation of audience members
(`explainer`) and the CSV cell neutralizer (`cell`) are passed in by the callers: the CLI
(`core.cli.campaigns`, the composition root) and the dashboard page.
"""

from __future__ import annotations

import getpass
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import PROJECT_ROOT, Paths, PrivacyConfig
from core.recommender.co_visits import CoVisits
from core.recommender.fields import (
    Field,
    ModelInput,
    category_share,
    field_kind,
    history_fields,
    item_fields,
)
from core.recommender.splits import histories_frame, leave_last_out
from core.store.interactions import (
    ITEM,
    STRONG_EVENT_TYPES,
    TS,
    USER,
    as_interactions,
    load_catalogue,
    load_interactions,
)
from core.store.warehouse import query, write_transaction

TARGET_KINDS = ("item", "items", "category")
RULES = ("top_n", "top_pct", "min_prob")
SEASON_CHOICES = ("winter", "spring", "summer", "autumn", "any")
CALIBRATIONS = ("auto", "isotonic", "platt")
TIER_CE, TIER_CONTENT, TIER_NONE = "cross-encoder", "content", "no history"
TIERS = (TIER_CE, TIER_CONTENT, TIER_NONE)
OUTCOME_EVENT_TYPES = ("purchase", "review")  # "bought": Amazon reviews stand for purchases
MIN_EXPORT = 100  # exported rows (audience without the holdout)
MIN_POSITIVES = 100  # validation customers with a target label, below: a warning
MIN_AUC = 0.6
MIN_TIER_POSITIVES = 10  # below: the tier is calibrated by Platt scaling only
ECE_BINS = 10
REASONS_PER_CUSTOMER = 3
RECENCY_BUCKETS = ((30, "0-30 days"), (90, "31-90 days"), (365, "91-365 days"))
RECENCY_OLDEST, NO_INTERACTIONS = ">365 days", "no interactions"
FREQUENCY_BUCKETS = ((1, "1"), (3, "2-3"), (9, "4-9"))
FREQUENCY_MOST = "10+"
SEGMENT_DIMENSIONS = (("age_band", "age band"), ("region", "region"),
                      ("recency", "recency"), ("frequency", "frequency"),
                      ("top_category", "top category"))
UNKNOWN = "unknown"
FIELD_GROUPS = ("history", "context", "item")
EXPORT_COLUMNS = ("pseudonym", "score", "probability", "decile",
                  *(f"reason_{i}" for i in range(1, REASONS_PER_CUSTOMER + 1)))

TextScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (a, b) -> logits
# fields -> (reason phrases, best first; attribution per field name, probability units)
Explainer = Callable[[ModelInput], tuple[Sequence[str], Mapping[str, float]]]
Cell = Callable[[object], object]  # explain.csv_safe.safe_cell


class CampaignError(RuntimeError):
    """A campaign cannot be created, scored or exported; the message says what to do."""


class ExportRefused(CampaignError):
    pass


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        return f"uid {os.getuid()}"


def _utc_now() -> datetime:
    """Naive UTC (DuckDB TIMESTAMP columns hold no zone)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_campaign_id() -> str:
    return f"cmp_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{os.urandom(3).hex()}"


def season_of(when: datetime | pd.Timestamp | None = None) -> str:
    from core.recommender.fields import SEASONS

    return SEASONS[(when or datetime.now(UTC)).month]


# --- the campaign -----------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """One campaign definition (table `campaigns`).

    target: item ids ('item': exactly one, 'items': one or more) or one category name.
    season: the context the model is asked about ('any' leaves the season out).
    rule / rule_value: 'top_n' (customers), 'top_pct' (percent of all scored customers,
        0-100] or 'min_prob' (calibrated probability, [0, 1]).
    holdout_share: share of the audience kept as an untreated control group, [0, 0.5].
    seed: the holdout's seed (same seed, same audience: same holdout).
    run_id: the ranking model (None: the latest complete run at scoring time).
    """

    campaign_id: str
    name: str
    target_kind: str
    target: tuple[str, ...]
    promotion: bool
    season: str
    rule: str
    rule_value: float
    holdout_share: float = 0.10
    seed: int = 0
    run_id: str | None = None
    created_at: datetime = field(default_factory=_utc_now)
    created_by: str = field(default_factory=current_user)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", tuple(str(t) for t in self.target))
        if not str(self.name).strip():
            raise CampaignError("the campaign needs a name.")
        if self.target_kind not in TARGET_KINDS:
            raise CampaignError(f"target_kind={self.target_kind!r}: choose one of "
                                f"{TARGET_KINDS}.")
        if not self.target or any(not t.strip() for t in self.target):
            raise CampaignError("the target is empty: name the item(s) or the category.")
        if self.target_kind in ("item", "category") and len(self.target) != 1:
            raise CampaignError(f"target_kind={self.target_kind!r} takes exactly one "
                                f"target, got {len(self.target)}: use 'items' for a list.")
        if self.season not in SEASON_CHOICES:
            raise CampaignError(f"season={self.season!r}: choose one of {SEASON_CHOICES}.")
        check_rule(self.rule, self.rule_value)
        if not 0.0 <= self.holdout_share <= 0.5:
            raise CampaignError(f"holdout_share={self.holdout_share}: choose a share in "
                                "[0, 0.5] (0.10 is usual).")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.campaign_id})"

    def to_row(self) -> dict[str, object]:
        row = asdict(self)
        row["target"] = json.dumps(list(self.target))
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Campaign:
        run_id = row.get("run_id")
        created = pd.Timestamp(row["created_at"]).to_pydatetime()
        return cls(campaign_id=str(row["campaign_id"]), name=str(row["name"]),
                   target_kind=str(row["target_kind"]),
                   target=tuple(json.loads(str(row["target"]))),
                   promotion=bool(row["promotion"]), season=str(row["season"]),
                   rule=str(row["rule"]), rule_value=float(row["rule_value"]),
                   holdout_share=float(row["holdout_share"]), seed=int(row["seed"]),
                   run_id=None if run_id is None or pd.isna(run_id) else str(run_id),
                   created_at=created, created_by=str(row["created_by"]))


def check_rule(rule: str, value: float) -> None:
    if rule not in RULES:
        raise CampaignError(f"rule={rule!r}: choose one of {RULES}.")
    if rule == "top_n" and not (value >= 1 and float(value).is_integer()):
        raise CampaignError(f"top_n={value}: give a whole number of customers (>= 1).")
    if rule == "top_pct" and not 0 < value <= 100:
        raise CampaignError(f"top_pct={value}: give a percentage in (0, 100].")
    if rule == "min_prob" and not 0 <= value <= 1:
        raise CampaignError(f"min_prob={value}: give a probability in [0, 1].")


def new_campaign(*, name: str, target_kind: str, target: Sequence[str], promotion: bool,
                 season: str, rule: str, rule_value: float, holdout_share: float = 0.10,
                 seed: int = 0, run_id: str | None = None) -> Campaign:
    return Campaign(campaign_id=new_campaign_id(), name=name, target_kind=target_kind,
                    target=tuple(target), promotion=promotion, season=season, rule=rule,
                    rule_value=float(rule_value), holdout_share=holdout_share, seed=seed,
                    run_id=run_id)


def target_items(campaign: Campaign, catalogue: pd.DataFrame) -> np.ndarray:
    """The catalogue item ids the campaign targets (sorted)."""
    ids = catalogue[ITEM].astype(str)
    if campaign.target_kind == "category":
        chosen = ids[catalogue["category"].astype("string") == campaign.target[0]]
        what = f"category {campaign.target[0]!r}"
    else:
        chosen = ids[ids.isin(set(campaign.target))]
        what = f"item(s) {list(campaign.target)[:5]}"
    if chosen.empty:
        raise CampaignError(f"no catalogue item matches the target {what}: pick items or a "
                            "category that the warehouse holds (see the Campaigns page).")
    return np.array(sorted(set(chosen)), dtype=object)


def target_categories(campaign: Campaign, catalogue: pd.DataFrame) -> list[str]:
    if campaign.target_kind == "category":
        return [campaign.target[0]]
    rows = catalogue[catalogue[ITEM].astype(str).isin(set(campaign.target))]
    return sorted(rows["category"].dropna().astype(str).unique())


def campaign_input(history: Sequence[tuple[str, Mapping[str, object]]], campaign: Campaign,
                   candidate: Mapping[str, object], *, co_visits: CoVisits | None = None,
                   with_share: bool = False) -> ModelInput:
    """The model input of one customer and one target item in the campaign's context:
    history fields (most recent first), season (unless 'any'), promotion, item fields
    (with the co-visit score against the history, for a model that reads co-visits, and
    the category share of the history, for a model that reads it). No weekday: a
    campaign does not have one."""
    context = []
    if campaign.season != "any":
        context.append(Field("ctx_season", "a", f"season: {campaign.season}"))
    context.append(Field("ctx_promotion", "a",
                         f"promotion: {'on' if campaign.promotion else 'off'}"))
    value = None if co_visits is None else co_visits.score(
        [str(record.get(ITEM)) for _, record in history], str(candidate.get(ITEM)))
    share = category_share(history, candidate) if with_share else None
    return (*history_fields(history), *context,
            *item_fields(candidate, co_visits=value, share=share))


# --- storage of definitions -----------------------------------------------------------------


def save_campaign(paths: Paths, campaign: Campaign) -> Campaign:
    row = campaign.to_row()
    with write_transaction(paths) as con:
        exists = con.execute("SELECT count(*) FROM campaigns WHERE campaign_id = ?",
                             [campaign.campaign_id]).fetchone()[0]
        if exists:
            raise CampaignError(f"campaign {campaign.campaign_id} already exists.")
        con.execute(f"INSERT INTO campaigns ({', '.join(row)}) VALUES "
                    f"({', '.join('?' for _ in row)})", list(row.values()))
    return campaign


def list_campaigns(paths: Paths) -> pd.DataFrame:
    return query("campaigns_list", paths)


def load_campaign(paths: Paths, campaign_id: str) -> Campaign:
    rows = query("campaign_by_id", paths, campaign_id=campaign_id)
    if rows.empty:
        raise CampaignError(f"no campaign {campaign_id!r}: list them with `clearmark "
                            "campaign list`, create one with `clearmark campaign create`.")
    return Campaign.from_row(rows.iloc[0].to_dict())


# --- metrics: calibration, ranking ----------------------------------------------------------


def _arrays(p, y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    p, y, w = _arrays(probabilities, labels, weights)
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

    p, y, w = _arrays(probabilities, labels, weights)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p, sample_weight=w))


def top_share_lift(probabilities, labels, *, share: float = 0.1, weights=None) -> float:
    """Positive rate among the top `share` (by weight) ranked by probability, divided by
    the overall rate. 1 = random targeting; 1/share at best. NaN without positives."""
    p, y, w = _arrays(probabilities, labels, weights)
    if w.sum() <= 0 or (y * w).sum() <= 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(w[order])
    top = order[:max(int(np.searchsorted(cum, share * cum[-1], side="left")) + 1, 1)]
    rate_top = float((y[top] * w[top]).sum() / w[top].sum())
    return rate_top / float((y * w).sum() / w.sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


class SmoothedIsotonic:
    """Isotonic regression whose step values are shrunk toward the overall rate by
    `prior` pseudo-customers: (positives + prior * rate) / (customers + prior) per step,
    kept non-decreasing. A step of 8 customers who all bought reads 0.9, not a certain
    1.0 (plain isotonic regression claims certainty from a handful of cases)."""

    def __init__(self, prior: float = 1.0):
        self.prior = prior

    def fit(self, x: np.ndarray, y: np.ndarray) -> SmoothedIsotonic:
        from sklearn.isotonic import IsotonicRegression

        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        rate = float(np.mean(y))
        steps = self.iso_.predict(x)
        values = np.unique(steps)  # ascending
        step = np.searchsorted(values, steps)
        n = np.bincount(step, minlength=len(values))
        pos = np.bincount(step, weights=y, minlength=len(values))
        self.values_ = values
        self.smoothed_ = np.maximum.accumulate((pos + self.prior * rate) / (n + self.prior))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        steps = self.iso_.predict(x)
        # Between steps (interpolated values) read the smoothed value of the lower step.
        index = np.clip(np.searchsorted(self.values_, steps, side="right") - 1, 0,
                        len(self.values_) - 1)
        return self.smoothed_[index]


class Calibrator:
    """Scores -> probabilities, by (smoothed) isotonic regression or Platt scaling (sklearn
    style: `__init__` stores parameters, `fit` returns self, learned attributes end in _).

    method "auto" fits both with `folds`-fold cross-fitting and keeps the one with the
    lower out-of-fold ECE (ties: Platt, the simpler); with fewer than
    `MIN_TIER_POSITIVES` positives only Platt is tried. Without two classes the
    calibrator is the constant observed rate. `oof_` holds the out-of-fold probabilities
    of the chosen method (what honest metrics are computed on); `ece_` the out-of-fold
    ECE of each method tried."""

    def __init__(self, method: str = "auto", *, folds: int = 5, bins: int = ECE_BINS,
                 seed: int = 0):
        self.method = method
        self.folds = folds
        self.bins = bins
        self.seed = seed

    @staticmethod
    def _make(method: str):
        if method == "isotonic":
            return SmoothedIsotonic()
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e4, max_iter=1000)

    @staticmethod
    def _fit_one(method: str, x: np.ndarray, y: np.ndarray):
        model = Calibrator._make(method)
        return model.fit(x if method == "isotonic" else x.reshape(-1, 1), y)

    @staticmethod
    def _predict_one(method: str, model, x: np.ndarray) -> np.ndarray:
        if method == "isotonic":
            return np.asarray(model.predict(x), dtype=np.float64)
        return model.predict_proba(x.reshape(-1, 1))[:, 1]

    def fit(self, scores, labels) -> Calibrator:
        from sklearn.model_selection import StratifiedKFold

        if self.method not in CALIBRATIONS:
            raise ValueError(f"method={self.method!r}: choose one of {CALIBRATIONS}.")
        x = np.asarray(scores, dtype=np.float64).reshape(-1)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if x.shape != y.shape or not len(x):
            raise ValueError(f"{x.shape[0]} scores and {y.shape[0]} labels: give one label "
                             "per score, at least one.")
        if not np.isfinite(x).all():
            raise ValueError("scores hold NaN or inf: calibrate finite scores only.")
        positives = int(y.sum())
        negatives = len(y) - positives
        self.n_, self.positives_ = len(y), positives
        self.rate_ = positives / len(y)
        if positives == 0 or negatives == 0:
            self.method_ = "constant"
            self.oof_ = np.full(len(y), self.rate_)
            self.ece_ = {"constant": expected_calibration_error(self.oof_, y, bins=self.bins)}
            return self
        if self.method != "auto":
            methods = [self.method]
        elif positives < MIN_TIER_POSITIVES:
            methods = ["platt"]
        else:
            methods = ["platt", "isotonic"]
        k = min(self.folds, positives, negatives)
        oof: dict[str, np.ndarray] = {}
        if k >= 2:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed)
            for method in methods:
                out = np.empty(len(y))
                for fit_rows, held in splitter.split(x.reshape(-1, 1), y):
                    if len(np.unique(y[fit_rows])) < 2:
                        out[held] = y[fit_rows].mean()
                        continue
                    model = self._fit_one(method, x[fit_rows], y[fit_rows])
                    out[held] = self._predict_one(method, model, x[held])
                oof[method] = out
        else:  # too few of one class to hold any out: in-sample (stated by `cross_fitted`)
            for method in methods:
                oof[method] = self._predict_one(method, self._fit_one(method, x, y), x)
        self.cross_fitted_ = k >= 2
        self.ece_ = {m: expected_calibration_error(v, y, bins=self.bins)
                     for m, v in oof.items()}
        self.method_ = min(methods, key=lambda m: (self.ece_[m], m != "platt"))
        self.oof_ = oof[self.method_]
        self.model_ = self._fit_one(self.method_, x, y)
        return self

    def predict(self, scores) -> np.ndarray:
        x = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.method_ == "constant":
            return np.full(len(x), self.rate_)
        return np.clip(self._predict_one(self.method_, self.model_, x), 0.0, 1.0)


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringConfig:
    """How a campaign is scored (see the module docstring).

    ce_customers: customers re-scored by the cross-encoder (the top by content score).
    ce_items: target items per customer the cross-encoder scores (closest to the profile).
    val_customers: validation customers used to calibrate (None: all of them).
    val_ce_customers: validation customers of the cross-encoder tier scored by it.
    profile_len: most recent interactions in a customer's content profile.
    folds / bins: cross-fitting folds and ECE bins. calibration: auto, isotonic, platt.
    reasons: audience members explained (the first by rank, holdout excluded).
    """

    ce_customers: int = 2000
    ce_items: int = 1
    val_customers: int | None = None
    val_ce_customers: int = 1000
    profile_len: int = 20
    folds: int = 5
    bins: int = ECE_BINS
    calibration: str = "auto"
    batch_size: int = 128
    reasons: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ce_customers < 0 or self.val_ce_customers < 0 or self.reasons < 0:
            raise ValueError("ce_customers, val_ce_customers and reasons must be >= 0.")
        if self.ce_items < 1 or self.profile_len < 1 or self.folds < 2 or self.bins < 1:
            raise ValueError("ce_items, profile_len and bins must be >= 1, folds >= 2.")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration={self.calibration!r}: choose one of "
                             f"{CALIBRATIONS}.")


@dataclass
class Propensity:
    """Scores of every customer (one row each, best first) and how much to trust them.

    scores: user_pseudonym, rank, tier, best_item, score, probability, decile.
    calibration: per tier and overall: method, ECE before/after, reliability tables.
    validation: customers, positives, base rate, AUC and top-decile lift (out-of-fold).
    """

    scores: pd.DataFrame
    calibration: dict[str, object]
    validation: dict[str, object]
    warnings: list[str]
    timing: dict[str, float]
    tiers: dict[str, int]
    targets: list[str]

    def summary(self) -> dict[str, object]:
        return {"calibration": self.calibration, "validation": self.validation,
                "warnings": self.warnings, "timing": self.timing, "tiers": self.tiers,
                "targets": self.targets, "customers": len(self.scores),
                "expected_conversions": float(self.scores["probability"].sum())}


def item_embeddings(catalogue: pd.DataFrame, *, cache_dir: Path | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, (I, 384) unit MiniLM embeddings of `core.recommender.baselines.item_text`).

    Item text is catalogue data (not personal), so the embeddings may be cached on disk
    in `cache_dir`, keyed by a hash of the texts and the encoder's package version."""
    from core.minilm import embed_texts
    from core.recommender.baselines import item_text
    from core.recommender.model import tokenizer_reference

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
    One sparse (U, I) count matrix times dense vectors: seconds for 100k customers."""
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


def _records(catalogue: pd.DataFrame) -> dict[str, dict[str, object]]:
    rows = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}).drop_duplicates(ITEM)
    return {r[ITEM]: r for r in rows.to_dict("records")}


def _recent(history: pd.DataFrame, users: Iterable[str], n: int
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


def _raw_probability(tier: str, score: np.ndarray) -> np.ndarray:
    """The raw score read as a probability ("before calibration"): sigmoid of the logit,
    the content score (a mean cosine) clipped to [0, 1]."""
    return _sigmoid(score) if tier == TIER_CE else np.clip(score, 0.0, 1.0)


def _calibration_report(tier: str, calibrator: Calibrator, scores: np.ndarray,
                        labels: np.ndarray, bins: int) -> dict[str, object]:
    before = _raw_probability(tier, scores)
    return {
        "method": calibrator.method_, "candidates_ece": calibrator.ece_,
        "cross_fitted": bool(getattr(calibrator, "cross_fitted_", True)),
        "customers": int(len(labels)), "positives": int(labels.sum()),
        "ece_before": expected_calibration_error(before, labels, bins=bins),
        "ece_after": expected_calibration_error(calibrator.oof_, labels, bins=bins),
        "reliability_before": reliability_table(before, labels, bins=bins).to_dict("records"),
        "reliability_after": reliability_table(calibrator.oof_, labels, bins=bins)
        .to_dict("records"),
    }


def propensity(interactions: pd.DataFrame, catalogue: pd.DataFrame, campaign: Campaign, *,
               customers: Sequence[str] | None = None, model=None,
               config: ScoringConfig = ScoringConfig(), score_fn: TextScorer | None = None,
               embeddings: tuple[np.ndarray, np.ndarray] | None = None) -> Propensity:
    """Calibrated propensity of every customer for the campaign's target (pure: data
    frames in, data frames out). `customers` is the population (None: everyone in
    `interactions`); `model` a CrossEncoder (None: content tier only)."""
    clock = {"start": time.perf_counter()}
    warnings: list[str] = []
    frame = as_interactions(interactions)
    items, vectors = embeddings if embeddings is not None else item_embeddings(catalogue)
    targets = target_items(campaign, catalogue)
    column = pd.Index(items)
    target_cols = column.get_indexer(targets)
    if (target_cols < 0).any():
        raise CampaignError("target items are missing from the item embeddings: pass the "
                            "embeddings of this catalogue.")
    target_vectors = vectors[target_cols]
    records = _records(catalogue if model is None else model.with_popularity(catalogue))
    users = np.array(sorted(set(map(str, customers if customers is not None else []))
                            | set(frame[USER])), dtype=object)
    clock["embeddings"] = time.perf_counter()

    # Content tier: everyone with a history.
    affinity = (vectors @ target_vectors.T).max(axis=1)  # (I,)
    cheap, profiles, has = history_profiles(frame, users, items, vectors, affinity,
                                            last=config.profile_len)
    _, top = best_targets(profiles, target_vectors, k=config.ce_items)
    del profiles

    # Validation: leave-last-out targets, histories from train.
    split = leave_last_out(frame)
    valid = split.valid
    if config.val_customers is not None and len(valid) > config.val_customers:
        valid = valid.sample(n=config.val_customers, random_state=config.seed)
    valid = valid.sort_values(USER, kind="stable").reset_index(drop=True)
    known = histories_frame(split.train, valid, n=max(config.profile_len, 1), same_time=True)
    v_users = valid[USER].to_numpy(dtype=object)
    v_cheap, v_profiles, v_has = history_profiles(known, v_users, items, vectors, affinity,
                                                  last=config.profile_len)
    _, v_top = best_targets(v_profiles, target_vectors, k=config.ce_items)
    del v_profiles
    target_set = set(targets)
    v_label = valid[ITEM].astype(str).isin(target_set).to_numpy()
    v_keep = v_has
    v_users, v_cheap, v_top, v_label = (v_users[v_keep], v_cheap[v_keep], v_top[v_keep],
                                        v_label[v_keep].astype(int))
    valid = valid[v_keep].reset_index(drop=True)
    if not len(v_label):
        raise CampaignError("no validation customers (customers with at least 3 "
                            "interactions): the probabilities cannot be calibrated. Ingest "
                            "more history.")
    clock["content"] = time.perf_counter()

    # Cross-encoder tier: the population's top by content score.
    with_history = np.flatnonzero(has)
    # `users` is sorted, so index order is pseudonym order (the tie-break).
    order = with_history[np.lexsort((with_history, -cheap[with_history]))]
    n_ce = min(config.ce_customers, len(order)) if model is not None else 0
    ce_rows = order[:n_ce]
    threshold = float(cheap[ce_rows[-1]]) if n_ce else math.inf
    v_tier = np.flatnonzero(v_cheap >= threshold) if n_ce else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    v_ce = (np.sort(rng.choice(v_tier, size=config.val_ce_customers, replace=False))
            if len(v_tier) > config.val_ce_customers else v_tier)
    ce_weight = len(v_tier) / len(v_ce) if len(v_ce) else 1.0
    ce_score = np.full(len(users), np.nan)
    best_col = top[:, 0].copy()
    v_ce_score = np.zeros(0)
    if n_ce:
        history_len = model.config.history_len
        recent = _recent(frame, users[ce_rows], history_len)
        cand = targets[top[ce_rows]]
        scored, which = cross_encoder_scores(model, campaign, recent, list(users[ce_rows]),
                                             cand, records, score_fn=score_fn,
                                             batch_size=config.batch_size)
        ce_score[ce_rows] = scored
        best_col[ce_rows] = top[ce_rows, which]
        if len(v_ce):
            v_known = histories_frame(split.train, valid.iloc[v_ce], n=history_len,
                                      same_time=True)
            v_recent = _recent(v_known, v_users[v_ce], history_len)
            v_ce_score, _ = cross_encoder_scores(
                model, campaign, v_recent, list(v_users[v_ce]), targets[v_top[v_ce]],
                records, score_fn=score_fn, batch_size=config.batch_size)
    clock["cross_encoder"] = time.perf_counter()

    # Calibration per tier.
    def calibrator() -> Calibrator:
        return Calibrator(config.calibration, folds=config.folds, bins=config.bins,
                          seed=config.seed)

    content_cal = calibrator().fit(v_cheap, v_label)
    report = {"bins": config.bins, "tiers": {
        TIER_CONTENT: _calibration_report(TIER_CONTENT, content_cal, v_cheap, v_label,
                                          config.bins)}}
    ce_cal = None
    if len(v_ce):
        ce_cal = calibrator().fit(v_ce_score, v_label[v_ce])
        report["tiers"][TIER_CE] = _calibration_report(TIER_CE, ce_cal, v_ce_score,
                                                       v_label[v_ce], config.bins)
        report["tiers"][TIER_CE]["weight"] = ce_weight
        if ce_cal.positives_ < MIN_TIER_POSITIVES:
            warnings.append(f"only {ce_cal.positives_} validation positives in the "
                            f"cross-encoder tier: calibrated by {ce_cal.method_} scaling; "
                            "its probabilities are uncertain.")
    elif n_ce:
        warnings.append("no validation customer reaches the cross-encoder tier: its "
                        "customers are calibrated on their content score instead.")

    # Probabilities of the population.
    tier = np.full(len(users), TIER_NONE, dtype=object)
    tier[has] = TIER_CONTENT
    score = cheap.copy()
    probability = np.empty(len(users))
    probability[has] = content_cal.predict(cheap[has])
    if ce_cal is not None:
        tier[ce_rows] = TIER_CE
        score[ce_rows] = ce_score[ce_rows]
        probability[ce_rows] = ce_cal.predict(ce_score[ce_rows])
    firsts = frame.groupby(USER, sort=False).head(1)
    no_history_rate = float(firsts[ITEM].isin(target_set).mean()) if len(firsts) else 0.0
    probability[~has] = no_history_rate
    best_item = np.where(has, targets[best_col], None)

    # Validation of the whole (out-of-fold): content rows outside the CE tier plus the
    # cross-encoder sample weighted up to the tier's size.
    in_tier = np.zeros(len(v_label), dtype=bool)
    in_tier[v_tier] = ce_cal is not None
    rest = ~in_tier
    oof = np.concatenate([content_cal.oof_[rest], ce_cal.oof_ if ce_cal is not None else []])
    raw = np.concatenate([_raw_probability(TIER_CONTENT, v_cheap[rest]),
                          _raw_probability(TIER_CE, v_ce_score) if ce_cal is not None
                          else []])
    labels = np.concatenate([v_label[rest], v_label[v_ce] if ce_cal is not None else []])
    weights = np.concatenate([np.ones(int(rest.sum())),
                              np.full(len(v_ce) if ce_cal is not None else 0, ce_weight)])
    report["overall"] = {
        "ece_before": expected_calibration_error(raw, labels, bins=config.bins,
                                                 weights=weights),
        "ece_after": expected_calibration_error(oof, labels, bins=config.bins,
                                                weights=weights),
        "reliability_before": reliability_table(raw, labels, bins=config.bins,
                                                weights=weights).to_dict("records"),
        "reliability_after": reliability_table(oof, labels, bins=config.bins,
                                               weights=weights).to_dict("records"),
    }
    # Rank validation customers as the population is ranked (rank_scores): by
    # probability, then tier, then raw score; metrics read the rank, not the many ties of
    # a step-wise (isotonic) probability.
    raw_score = np.concatenate([v_cheap[rest], v_ce_score if ce_cal is not None else []])
    tier_key = np.concatenate([np.ones(int(rest.sum())),
                               np.zeros(len(v_ce) if ce_cal is not None else 0)])
    position = np.empty(len(oof))
    position[np.lexsort((-raw_score, tier_key, -oof))] = np.arange(len(oof))
    positives = int(v_label.sum())
    validation = {
        "customers": int(len(v_label)), "positives": positives,
        "base_rate": float(v_label.mean()),
        "auc": auc(-position, labels, weights=weights),
        "top_decile_lift": top_share_lift(-position, labels, weights=weights),
        "lift_by_decile": decile_lift(-position, labels, weights=weights),
        "split": split.name, "no_history_rate": no_history_rate,
    }
    if positives < MIN_POSITIVES:
        warnings.append(f"only {positives} validation customers' next interaction was "
                        f"with the target (fewer than {MIN_POSITIVES}): probabilities, AUC "
                        "and lift rest on few cases.")
    if not validation["auc"] >= MIN_AUC:  # NaN too
        warnings.append(f"validation AUC {validation['auc']:.2f} is below {MIN_AUC}: the "
                        "model hardly separates the target's buyers from the others.")
    if model is None:
        warnings.append("no cross-encoder: every customer is scored by content "
                        "similarity only.")

    scores = pd.DataFrame({USER: users, "tier": tier, "best_item": best_item,
                           "score": score, "probability": probability})
    scores = rank_scores(scores)
    clock["end"] = time.perf_counter()
    timing = {"embeddings_s": clock["embeddings"] - clock["start"],
              "content_s": clock["content"] - clock["embeddings"],
              "cross_encoder_s": clock["cross_encoder"] - clock["content"],
              "calibration_s": clock["end"] - clock["cross_encoder"],
              "total_s": clock["end"] - clock["start"],
              "cross_encoder_pairs": int((n_ce + len(v_ce)) * min(config.ce_items,
                                                                  len(targets)))}
    tiers = {t: int((scores["tier"] == t).sum()) for t in TIERS}
    return Propensity(scores=scores, calibration=report, validation=validation,
                      warnings=warnings, timing=timing, tiers=tiers,
                      targets=[str(t) for t in targets])


def decile_lift(probabilities, labels, *, weights=None) -> list[dict[str, float]]:
    """Per decile of the ranking (1 = top 10% by weight): positive rate / overall rate."""
    p, y, w = _arrays(probabilities, labels, weights)
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


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Sorted best first with rank (1-based) and decile (1 = top 10% of customers): by
    probability, then tier (cross-encoder first), raw score, pseudonym."""
    key = scores["tier"].map({t: i for i, t in enumerate(TIERS)}).fillna(len(TIERS))
    out = scores.assign(_tier=key, _score=scores["score"].fillna(-np.inf))
    out = out.sort_values(["probability", "_tier", "_score", USER],
                          ascending=[False, True, False, True], kind="stable")
    out = out.drop(columns=["_tier", "_score"]).reset_index(drop=True)
    n = len(out)
    out["rank"] = np.arange(1, n + 1)
    out["decile"] = (np.arange(n) * 10 // max(n, 1)) + 1
    return out


# --- audience, holdout, size trade-off --------------------------------------------------------


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


# --- segments ---------------------------------------------------------------------------------


def customer_features(paths: Paths, *, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per customer (known before `before`): age_band, region, interactions (strong),
    last_ts, top_category (query `campaign_customer_features`)."""
    stamp = None if before is None else pd.Timestamp(before).to_pydatetime()
    return query("campaign_customer_features", paths,
                 event_types=list(STRONG_EVENT_TYPES), before=stamp)


def _bucket(value: float, buckets: tuple[tuple[int, str], ...], last: str) -> str:
    for limit, label in buckets:
        if value <= limit:
            return label
    return last


def segment_features(raw: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """user_pseudonym and one label per `SEGMENT_DIMENSIONS`: age band, region, recency
    (days from the last strong interaction to `as_of`: 0-30, 31-90, 91-365, >365),
    frequency (strong interactions: 1, 2-3, 4-9, 10+) and top category."""
    as_of = pd.Timestamp(as_of)
    days = (as_of - pd.to_datetime(raw["last_ts"])).dt.total_seconds() / 86400.0
    count = pd.to_numeric(raw["interactions"], errors="coerce").fillna(0)

    def text(column: str) -> pd.Series:
        return raw[column].astype("string").fillna(UNKNOWN).astype(object)

    return pd.DataFrame({
        USER: raw[USER].astype(str),
        "age_band": text("age_band"), "region": text("region"),
        "recency": [NO_INTERACTIONS if c == 0 or pd.isna(d) else
                    _bucket(math.floor(max(d, 0.0)), RECENCY_BUCKETS, RECENCY_OLDEST)
                    for d, c in zip(days, count, strict=True)],
        "frequency": [NO_INTERACTIONS if c == 0 else
                      _bucket(c, FREQUENCY_BUCKETS, FREQUENCY_MOST) for c in count],
        "top_category": [NO_INTERACTIONS if c == 0 else t
                         for t, c in zip(text("top_category"), count, strict=True)],
    })


def suppress(counts: pd.DataFrame, columns: Sequence[str], *, min_cell: int
             ) -> np.ndarray:
    """Which rows (cells of one dimension) to hide: every cell with a count under
    `min_cell` in any of `columns`, then the next smallest cells until the hidden cells
    together hold at least `min_cell` in every column (or all are hidden), so that a
    total minus the shown cells never reveals a small group."""
    if min_cell < 1:
        raise ValueError(f"min_cell={min_cell}: the floor must be at least 1 customer.")
    values = counts[list(columns)].to_numpy(dtype=np.float64)
    hidden = (values < min_cell).any(axis=1)
    while hidden.any() and not hidden.all():
        sums = values[hidden].sum(axis=0)
        if (sums >= min_cell).all():
            break
        shown = np.flatnonzero(~hidden)
        hidden[shown[np.argmin(values[shown].min(axis=1))]] = True
    return hidden


def segments(features: pd.DataFrame, audience: Iterable[str], *,
             min_cell: int = PrivacyConfig().min_cell_size
             ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The audience vs the whole population per segment of each dimension.

    Returns (rows, hidden cells per dimension). Rows: dimension, segment, audience,
    population (customers), audience_share and population_share (of the dimension's
    totals, [0, 1]) and lift (audience share / population share; 1 = as common as in
    the population). Cells under `min_cell` customers on either side are hidden (see
    `suppress`)."""
    members = set(map(str, audience))
    in_audience = features[USER].astype(str).isin(members)
    total_a, total_p = int(in_audience.sum()), len(features)
    rows, hidden = [], {}
    for column, label in SEGMENT_DIMENSIONS:
        counts = pd.DataFrame({"segment": features[column], "a": in_audience}) \
            .groupby("segment", sort=True)["a"].agg(audience="sum", population="size") \
            .reset_index()
        drop = suppress(counts, ["audience", "population"], min_cell=min_cell)
        hidden[label] = int(drop.sum())
        for row in counts[~drop].itertuples(index=False):
            a_share = row.audience / total_a if total_a else float("nan")
            p_share = row.population / total_p if total_p else float("nan")
            rows.append({"dimension": label, "segment": str(row.segment),
                         "audience": int(row.audience), "population": int(row.population),
                         "audience_share": a_share, "population_share": p_share,
                         "lift": a_share / p_share if p_share else float("nan")})
    columns = ["dimension", "segment", "audience", "population", "audience_share",
               "population_share", "lift"]
    return pd.DataFrame(rows, columns=columns), hidden


def segment_drivers(features: pd.DataFrame, reasons: pd.DataFrame, *,
                    min_cell: int = PrivacyConfig().min_cell_size
                    ) -> tuple[pd.DataFrame, dict[str, int]]:
    """What drives the scores of the explained audience members of each segment: the
    mean SHAP attribution of the history, context and item fields (probability units).
    Rows: dimension, segment, members, history, context, item; segments with fewer than
    `min_cell` explained members are hidden (see `suppress`)."""
    joined = features.merge(reasons[[USER, *FIELD_GROUPS]], on=USER, how="inner")
    rows, hidden = [], {}
    for column, label in SEGMENT_DIMENSIONS:
        grouped = joined.groupby(column, sort=True)
        means = grouped[list(FIELD_GROUPS)].mean()
        means["members"] = grouped.size()
        means = means.reset_index().rename(columns={column: "segment"})
        drop = suppress(means, ["members"], min_cell=min_cell)
        hidden[label] = int(drop.sum())
        for row in means[~drop].to_dict("records"):
            rows.append({"dimension": label, "segment": str(row["segment"]),
                         "members": int(row["members"]),
                         **{g: float(row[g]) for g in FIELD_GROUPS}})
    return pd.DataFrame(rows, columns=["dimension", "segment", "members", *FIELD_GROUPS]), \
        hidden


# --- reasons ----------------------------------------------------------------------------------


def group_attributions(attributions: Mapping[str, float]) -> dict[str, float]:
    """Field attributions summed per group (history, context, item; core.recommender.fields)."""
    out = dict.fromkeys(FIELD_GROUPS, 0.0)
    for name, value in attributions.items():
        out[field_kind(name)] += float(value)
    return out


def explain_audience(scores: pd.DataFrame, interactions: pd.DataFrame,
                     catalogue: pd.DataFrame, campaign: Campaign, *, explainer: Explainer,
                     history_len: int, cap: int, co_visits: CoVisits | None = None,
                     with_share: bool = False) -> pd.DataFrame:
    """Reasons for the first `cap` audience members by rank (holdout and customers
    without history left out): the explainer's top `REASONS_PER_CUSTOMER` phrases on the
    customer's best target item, and the attributions per field group.

    Columns: user_pseudonym, item_id, reasons (list), history, context, item."""
    columns = [USER, ITEM, "reasons", *FIELD_GROUPS]
    chosen = scores[scores["in_audience"] & ~scores["in_holdout"]
                    & scores["best_item"].notna()].head(cap)
    if chosen.empty or cap <= 0:
        return pd.DataFrame(columns=columns)
    frame = as_interactions(interactions[interactions[USER].isin(set(chosen[USER]))])
    recent = _recent(frame, chosen[USER], history_len)
    records = _records(catalogue)
    rows = []
    for user, item in zip(chosen[USER], chosen["best_item"], strict=True):
        history = [(kind, records.get(i) or {ITEM: i}) for kind, i in recent[user]]
        fields = campaign_input(history, campaign, records.get(item) or {ITEM: item},
                                co_visits=co_visits, with_share=with_share)
        phrases, attributions = explainer(fields)
        rows.append({USER: user, ITEM: item,
                     "reasons": [str(p) for p in list(phrases)[:REASONS_PER_CUSTOMER]],
                     **group_attributions(attributions)})
    return pd.DataFrame(rows, columns=columns)


# --- storing a scoring ------------------------------------------------------------------------


def _json(value: object) -> str:
    def default(v: object) -> object:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (pd.Timestamp, datetime)):
            return v.isoformat()
        return str(v)

    def clean(v: object) -> object:  # NaN / inf are not JSON
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.floating):
            return clean(float(v))
        return v

    return json.dumps(clean(value), default=default, sort_keys=True)


SCORE_COLUMNS = ("campaign_id", USER, "score", "probability", "decile", "in_audience",
                 "in_holdout", "rank", "tier", "best_item")


def save_scoring(paths: Paths, campaign: Campaign, result: Propensity, scores: pd.DataFrame,
                 *, run_id: str | None, reasons: pd.DataFrame | None = None) -> None:
    """Replace the campaign's scores (and reasons) and append the scoring summary, in one
    transaction."""
    frame = scores.assign(campaign_id=campaign.campaign_id)
    frame = frame.assign(score=frame["score"].astype(float),
                         best_item=frame["best_item"].astype(object))[list(SCORE_COLUMNS)]
    summary = {**result.summary(), "campaign": campaign.to_row(), "run_id": run_id,
               "audience": int(frame["in_audience"].sum()),
               "holdout": int(frame["in_holdout"].sum()),
               "explained": 0 if reasons is None else len(reasons)}
    with write_transaction(paths) as con:
        con.execute("DELETE FROM campaign_scores WHERE campaign_id = ?",
                    [campaign.campaign_id])
        con.register("campaign_scores_frame", frame)
        con.execute(f"INSERT INTO campaign_scores ({', '.join(SCORE_COLUMNS)}) "
                    f"SELECT {', '.join(SCORE_COLUMNS)} FROM campaign_scores_frame")
        con.unregister("campaign_scores_frame")
        con.execute("DELETE FROM campaign_reasons WHERE campaign_id = ?",
                    [campaign.campaign_id])
        if reasons is not None and len(reasons):
            rows = reasons.assign(campaign_id=campaign.campaign_id,
                                  reasons=[json.dumps(list(r)) for r in reasons["reasons"]])
            cols = ["campaign_id", USER, ITEM, "reasons", *FIELD_GROUPS]
            con.register("campaign_reasons_frame", rows[cols])
            con.execute(f"INSERT INTO campaign_reasons ({', '.join(cols)}) "
                        f"SELECT {', '.join(cols)} FROM campaign_reasons_frame")
            con.unregister("campaign_reasons_frame")
        con.execute("INSERT INTO campaign_scorings VALUES (?, ?, ?, ?)",
                    [campaign.campaign_id, _utc_now(), run_id, _json(summary)])


@dataclass
class Scored:
    campaign: Campaign
    run_id: str | None
    result: Propensity
    scores: pd.DataFrame
    reasons: pd.DataFrame | None
    seconds: float


def score_campaign(paths: Paths, campaign_id: str, *, config: ScoringConfig = ScoringConfig(),
                   score_fn_factory: Callable[[object], TextScorer] | None = None,
                   explainer_factory: Callable[[object], Explainer] | None = None,
                   use_model: bool = True) -> Scored:
    """Score, pick the audience and holdout, explain (with an explainer), and store.

    The model is the campaign's `run_id`, else the latest complete run."""
    from core.registry import store as registry

    started = time.perf_counter()
    campaign = load_campaign(paths, campaign_id)
    model = None
    run_id = None
    if use_model:
        run_id = campaign.run_id or registry.latest_run(paths)
        if run_id is None:
            raise CampaignError("no trained model: train one with `clearmark train` (or "
                                "score by content similarity only with --no-model).")
        model = registry.load(run_id, paths).model
    interactions = load_interactions(paths)
    catalogue = load_catalogue(paths)
    features = customer_features(paths)
    result = propensity(interactions, catalogue, campaign, customers=features[USER].tolist(),
                        model=model, config=config,
                        score_fn=score_fn_factory(model) if model is not None
                        and score_fn_factory else None,
                        embeddings=item_embeddings(catalogue,
                                                   cache_dir=paths.data_dir / "cache"))
    scores = assign_audience(result.scores, campaign)
    reasons = None
    if model is not None and explainer_factory is not None and config.reasons > 0:
        t0 = time.perf_counter()
        reasons = explain_audience(scores, interactions, model.with_popularity(catalogue),
                                   campaign,
                                   explainer=explainer_factory(model),
                                   history_len=model.config.history_len, cap=config.reasons,
                                   co_visits=model.co_visits,
                                   with_share=model.config.category_share)
        result.timing["reasons_s"] = time.perf_counter() - t0
        result.timing["reasons_customers"] = len(reasons)
    save_scoring(paths, campaign, result, scores, run_id=run_id, reasons=reasons)
    return Scored(campaign=campaign, run_id=run_id, result=result, scores=scores,
                  reasons=reasons, seconds=time.perf_counter() - started)


def reassign_audience(paths: Paths, campaign_id: str, *, rule: str, value: float) -> Campaign:
    """Change the campaign's rule and re-derive audience and holdout from the stored
    probabilities (no re-scoring)."""
    campaign = replace(load_campaign(paths, campaign_id), rule=rule, rule_value=float(value))
    scores = query("campaign_scores", paths, campaign_id=campaign_id)
    if scores.empty:
        raise CampaignError(f"campaign {campaign_id} is not scored yet: run `clearmark "
                            f"campaign score {campaign_id}`.")
    flags = assign_audience(scores.drop(columns=["in_audience", "in_holdout"]), campaign)
    frame = flags[[USER, "in_audience", "in_holdout"]]
    with write_transaction(paths) as con:
        con.execute("UPDATE campaigns SET rule = ?, rule_value = ? WHERE campaign_id = ?",
                    [rule, float(value), campaign_id])
        con.register("campaign_flags_frame", frame)
        con.execute("UPDATE campaign_scores SET in_audience = f.in_audience, "
                    "in_holdout = f.in_holdout FROM campaign_flags_frame f "
                    "WHERE campaign_scores.campaign_id = ? "
                    "AND campaign_scores.user_pseudonym = f.user_pseudonym", [campaign_id])
        con.unregister("campaign_flags_frame")
        # Reasons exist for members only; a changed audience keeps those still in it.
        con.execute("DELETE FROM campaign_reasons WHERE campaign_id = ? AND user_pseudonym "
                    "IN (SELECT user_pseudonym FROM campaign_scores WHERE campaign_id = ? "
                    "AND (NOT in_audience OR in_holdout))", [campaign_id, campaign_id])
    return campaign


# --- export and activation --------------------------------------------------------------------


def export_frame(rows: pd.DataFrame, *, cell: Cell, min_rows: int = MIN_EXPORT
                 ) -> pd.DataFrame:
    """The CSV's rows (`EXPORT_COLUMNS`, every cell through `cell`): holdout members are
    dropped, below `min_rows` rows the export is refused (`ExportRefused`)."""
    if "in_holdout" in rows:
        rows = rows[~rows["in_holdout"].astype(bool)]
    if len(rows) < min_rows:
        raise ExportRefused(f"the audience has {len(rows)} exportable customers (holdout "
                            f"excluded), fewer than the minimum of {min_rows}: a smaller "
                            "list could single customers out. Widen the rule (e.g. "
                            "`clearmark campaign audience <id> --rule top_pct --value 10`).")

    def reasons_of(value: object) -> list[str]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return []
        listed = json.loads(value) if isinstance(value, str) else list(value)
        return [str(r) for r in listed][:REASONS_PER_CUSTOMER]

    out = []
    for row in rows.to_dict("records"):
        reasons = reasons_of(row.get("reasons"))
        reasons += [""] * (REASONS_PER_CUSTOMER - len(reasons))
        score = row.get("score")
        values = [row[USER], "" if score is None or pd.isna(score) else round(float(score), 6),
                  round(float(row["probability"]), 6), int(row["decile"]), *reasons]
        out.append([cell(v) for v in values])
    return pd.DataFrame(out, columns=[cell(c) for c in EXPORT_COLUMNS])


def export_csv(paths: Paths, campaign_id: str, *, cell: Cell, min_rows: int = MIN_EXPORT
               ) -> tuple[bytes, int]:
    """(CSV bytes, rows) of the campaign's audience without the holdout. Not logged: the
    caller logs what it hands out (`log_export`)."""
    load_campaign(paths, campaign_id)
    rows = query("campaign_export_rows", paths, campaign_id=campaign_id)
    frame = export_frame(rows, cell=cell, min_rows=min_rows)
    buffer = StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8"), len(frame)


def log_export(paths: Paths, campaign_id: str, *, rows: int, file_name: str,
               who: str | None = None) -> None:
    with write_transaction(paths) as con:
        con.execute("INSERT INTO campaign_exports VALUES (?, ?, ?, ?, ?)",
                    [campaign_id, int(rows), _utc_now(), who or current_user(),
                     Path(file_name).name])


def export_file_name(campaign: Campaign) -> str:
    return f"campaign_{campaign.campaign_id}_audience.csv"


def write_export(paths: Paths, campaign_id: str, out: Path, *, cell: Cell,
                 min_rows: int = MIN_EXPORT) -> int:
    """Write the export to `out` and log it; returns the rows written."""
    data, rows = export_csv(paths, campaign_id, cell=cell, min_rows=min_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    log_export(paths, campaign_id, rows=rows, file_name=out.name)
    return rows


def _read_raw(path: Path) -> pd.DataFrame:
    from core.ingest.readers import LINE_COLUMN, detect_format, read_csv, read_jsonl, read_parquet

    reader = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}[
        detect_format(path)]
    frames = [chunk.frame for chunk in reader(path)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.drop(columns=[LINE_COLUMN], errors="ignore")


def activate(export_file: Path, customers_file: Path, out: Path, *, key: bytes,
             paths: Paths, cell: Cell, id_column: str = "customer_id",
             columns: Sequence[str] = ()) -> dict[str, int]:
    """The steward's re-identification for activation: recompute the HMAC pseudonym of
    every raw customer id with the key, join the export on it, and write `out` with
    customer_id, the raw `columns` asked for, then the export's columns. Logged in
    `activation_log`. `out` must lie outside the data directory and the repository (it
    holds personal data); every cell goes through `cell` (raw files are not trusted)."""
    from privacy.pseudonym import pseudonymize

    resolved = out.resolve()
    for root in (paths.data_dir, PROJECT_ROOT):
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            raise CampaignError(f"{out} lies inside {root}: the activation file names "
                                "customers; write it outside the data directory and the "
                                "repository.")
    exported = pd.read_csv(export_file, dtype=str, keep_default_na=False)
    if "pseudonym" not in exported.columns:
        raise CampaignError(f"{export_file} has no 'pseudonym' column: pass a file written "
                            "by `clearmark campaign export`.")
    raw = _read_raw(customers_file)
    missing = [c for c in (id_column, *columns) if c not in raw.columns]
    if missing:
        raise CampaignError(f"{customers_file} lacks the column(s) {missing} (columns: "
                            f"{list(raw.columns)[:12]}): name the id column with "
                            "--id-column.")
    raw = raw[[id_column, *columns]].dropna(subset=[id_column])
    raw = raw.assign(**{id_column: raw[id_column].astype(str)}).drop_duplicates(id_column)
    raw["pseudonym"] = pseudonymize(raw[id_column].tolist(), key=key)
    joined = exported.merge(raw, on="pseudonym", how="inner")
    ordered = joined[[id_column, *columns, *[c for c in exported.columns]]]
    ordered = ordered.rename(columns={id_column: "customer_id"})
    safe = ordered.map(cell)
    out.parent.mkdir(parents=True, exist_ok=True)
    safe.to_csv(out, index=False)
    digest = hashlib.sha256(Path(export_file).read_bytes()).hexdigest()
    with write_transaction(paths) as con:
        con.execute("INSERT INTO activation_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [_utc_now(), current_user(), Path(export_file).name, digest,
                     len(exported), len(joined), out.name])
    return {"rows_in": len(exported), "rows_matched": len(joined)}


# --- backtest ---------------------------------------------------------------------------------


def assert_before(frame: pd.DataFrame, cutoff: pd.Timestamp, what: str,
                  column: str = TS) -> None:
    """Internal invariant of the backtest: nothing at or after the cutoff is an input."""
    if len(frame) and frame[column].notna().any():
        latest = pd.to_datetime(frame[column]).max()
        assert latest < pd.Timestamp(cutoff), (
            f"{what}: a row at {latest} is not before the cutoff {cutoff}")


def train_before(paths: Paths, *, cutoff: pd.Timestamp, train_config=None,
                 model_config=None, bert_config=None, progress: bool = False) -> str:
    """The backtest's one training call: a model that sees only events strictly before
    the cutoff (interactions and the candidates' popularity), a DP run charged to the
    ledger like every other. Returns its run id."""
    from core.recommender.train import train

    if "before" not in inspect.signature(train).parameters:
        raise CampaignError("core.recommender.train.train has no `before` keyword yet, so a model "
                            "restricted to data before the cutoff cannot be trained: "
                            "update clearmark (or pass --run-id of a model trained on "
                            "data before the cutoff).")
    return train(paths, train_config, before=pd.Timestamp(cutoff),
                 model_config=model_config, bert_config=bert_config, progress=progress)


def popularity_ranking(history: pd.DataFrame, catalogue: pd.DataFrame,
                       categories: Sequence[str], customers: Sequence[str]) -> np.ndarray:
    """Popularity-based targeting: customers ordered by their count of past interactions
    in the target categories, then by their count of all interactions, then pseudonym.
    Returns indices into `customers`, best first."""
    category = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}) \
        .drop_duplicates(ITEM).set_index(ITEM)["category"]
    in_target = history[ITEM].astype(str).map(category).isin(set(categories))
    users = pd.Index([str(u) for u in customers])
    per_user = pd.DataFrame({USER: history[USER].astype(str), "t": in_target.astype(int)})
    grouped = per_user.groupby(USER)["t"].agg(["sum", "size"]).reindex(users, fill_value=0)
    by_name = np.argsort(np.argsort(np.asarray(users, dtype=str), kind="stable"))
    return np.lexsort((by_name, -grouped["size"].to_numpy(), -grouped["sum"].to_numpy()))


def gains(order: np.ndarray, positive: np.ndarray, *, points: int = 20
          ) -> list[dict[str, float]]:
    """Cumulative share of positives captured when targeting the top share of customers in
    `order` (indices, best first), at `points` equal steps plus 1%, 2% and 5%."""
    n = len(order)
    total = positive.sum()
    hits = np.concatenate([[0], np.cumsum(positive[order])])
    shares = sorted({0.01, 0.02, 0.05, *np.round(np.arange(1, points + 1) / points, 4)})
    out = []
    for share in shares:
        k = max(1, math.ceil(share * n))
        out.append({"share": float(share), "captured": float(hits[k] / total) if total
                    else float("nan"), "precision": float(hits[k] / k)})
    return out


def _ranking_report(order: np.ndarray, positive: np.ndarray, base: float,
                    truth: np.ndarray | None) -> dict[str, object]:
    n = len(order)
    top = order[:max(1, math.ceil(0.1 * n))]
    precision = float(positive[top].mean()) if len(top) else float("nan")
    report = {"top_decile_precision": precision,
              "top_decile_lift": precision / base if base > 0 else float("nan"),
              "gains": gains(order, positive)}
    if truth is not None:
        from scipy.stats import spearmanr

        known = ~np.isnan(truth)
        ranks = np.empty(n)
        ranks[order] = np.arange(n)
        report["truth_spearman"] = float(spearmanr(-ranks[known], truth[known]).statistic) \
            if known.sum() > 2 else float("nan")
        top_known = top[known[top]]
        mean_all = float(np.nanmean(truth))
        report["truth_top_decile_mean"] = float(np.mean(truth[top_known])) \
            if len(top_known) else float("nan")
        report["truth_top_decile_lift"] = report["truth_top_decile_mean"] / mean_all \
            if mean_all > 0 else float("nan")
    return report


def backtest(paths: Paths, campaign: Campaign, *, cutoff: pd.Timestamp | str,
             horizon_days: int = 90, train_config=None, model_config=None, bert_config=None,
             config: ScoringConfig = ScoringConfig(), run_id: str | None = None,
             score_fn_factory: Callable[[object], TextScorer] | None = None,
             truth: pd.DataFrame | None = None, progress: bool = False) -> dict[str, object]:
    """Build the audience as of `cutoff` from data before it only, then measure who
    actually bought (purchase or review) a target item in [cutoff, cutoff + horizon).

    The model is trained by `train_before` (data before the cutoff only; a ledger entry)
    unless `run_id` names one. Compared with random targeting (lift 1 by definition) and
    popularity targeting (`popularity_ranking`): gains, top-decile lift, precision and
    recall at the campaign's rule. `truth` (user_pseudonym, preference: the planted
    preference for the target, generator only) adds rank correlations with it."""
    from core.registry import store as registry

    cutoff = pd.Timestamp(cutoff)
    if horizon_days < 1:
        raise CampaignError(f"horizon_days={horizon_days}: give at least 1 day.")
    end = cutoff + pd.Timedelta(days=horizon_days)
    history = load_interactions(paths, before=cutoff)
    assert_before(history, cutoff, "interactions")
    if history.empty:
        raise CampaignError(f"no interactions before {cutoff.date()}: pick a later cutoff.")
    raw_features = customer_features(paths, before=cutoff)
    assert_before(raw_features, cutoff, "customer features", column="last_ts")
    catalogue = load_catalogue(paths)  # item text: catalogue data, not time-bound
    started = time.perf_counter()
    if run_id is None:
        run_id = train_before(paths, cutoff=cutoff, train_config=train_config,
                              model_config=model_config, bert_config=bert_config,
                              progress=progress)
    train_s = time.perf_counter() - started
    model = registry.load(run_id, paths).model
    customers = raw_features[USER].astype(str).tolist()
    result = propensity(history, catalogue, campaign, customers=customers, model=model,
                        config=config, score_fn=score_fn_factory(model)
                        if score_fn_factory else None,
                        embeddings=item_embeddings(catalogue,
                                                   cache_dir=paths.data_dir / "cache"))
    scores = assign_audience(result.scores, campaign)
    targets = set(result.targets)

    outcome = load_interactions(paths, event_types=OUTCOME_EVENT_TYPES, before=end)
    outcome = outcome[outcome[TS] >= cutoff]
    buyers = set(outcome.loc[outcome[ITEM].astype(str).isin(targets), USER].astype(str))
    users = scores[USER].astype(str).to_numpy()
    positive = np.isin(users, list(buyers))
    base = float(positive.mean()) if len(positive) else float("nan")
    truth_values = None
    if truth is not None:
        truth_values = pd.Series(truth["preference"].to_numpy(dtype=float),
                                 index=truth[USER].astype(str)).reindex(users).to_numpy()

    model_order = np.arange(len(users))  # scores are in rank order
    pop_order = popularity_ranking(history, catalogue, target_categories(campaign,
                                                                         catalogue), users)
    rng = np.random.default_rng(campaign.seed)
    random_order = rng.permutation(len(users))
    audience = scores["in_audience"].to_numpy()
    hits = int(positive[audience].sum())
    report = {
        "campaign_id": campaign.campaign_id, "cutoff": cutoff.isoformat(),
        "horizon_days": horizon_days, "window_end": end.isoformat(), "run_id": run_id,
        "customers": len(users), "buyers": int(positive.sum()), "base_rate": base,
        "targets": result.targets,
        "inputs": {"interactions": len(history),
                   "latest_input_ts": pd.Timestamp(history[TS].max()).isoformat(),
                   "customers_known": len(customers)},
        "rankings": {"model": _ranking_report(model_order, positive, base, truth_values),
                     "popularity": _ranking_report(pop_order, positive, base, truth_values),
                     "random (one seeded draw)": _ranking_report(random_order, positive,
                                                                 base, truth_values)},
        "at_rule": {"rule": campaign.rule, "value": campaign.rule_value,
                    "audience": int(audience.sum()), "buyers_in_audience": hits,
                    "precision": hits / audience.sum() if audience.sum() else float("nan"),
                    "recall": hits / positive.sum() if positive.sum() else float("nan"),
                    "expected_conversions": float(scores.loc[audience, "probability"].sum())},
        "calibration": {
            "ece_after": result.calibration["overall"]["ece_after"],
            "ece_before": result.calibration["overall"]["ece_before"],
            "tiers": {t: {k: r[k] for k in ("method", "ece_before", "ece_after", "customers",
                                            "positives")}
                      for t, r in result.calibration["tiers"].items()}},
        "realized_calibration": {
            "note": "probabilities are of the NEXT interaction; the window counts any "
                    "purchase in it, so observed rates exceed them for active customers",
            "ece": expected_calibration_error(scores["probability"], positive)},
        "validation": result.validation, "warnings": result.warnings,
        "timing": {**result.timing, "train_s": train_s},
    }
    model_lift = report["rankings"]["model"]["top_decile_lift"]
    pop_lift = report["rankings"]["popularity"]["top_decile_lift"]
    report["top_decile_lift_vs_random"] = model_lift
    report["top_decile_lift_vs_popularity"] = model_lift / pop_lift if pop_lift else \
        float("nan")
    if positive.sum() < 20:
        report["warnings"] = [*report["warnings"], f"only {int(positive.sum())} customers "
                              "bought the target in the window: the lifts are noisy."]
    return report


def save_backtest(paths: Paths, report: Mapping[str, object]) -> None:
    with write_transaction(paths) as con:
        con.execute("INSERT INTO campaign_backtests VALUES (?, ?, ?, ?, ?, ?)",
                    [report["campaign_id"], _utc_now(),
                     pd.Timestamp(report["cutoff"]).to_pydatetime(),
                     int(report["horizon_days"]), report.get("run_id"), _json(report)])
