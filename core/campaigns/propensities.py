"""Calibrated propensity of every customer for a campaign's target, and how far to trust it.

What a probability means here
    The label everywhere is "the customer's next strong interaction (purchase, review,
    add-to-cart) is with a target item". For a list or a category the score of a customer
    is the MAX over the target items of the pair score (the customer's best target item).
    The alternative, P(next interaction in the set) = the sum of a softmax over the whole
    catalogue, needs every catalogue item scored for every customer: far too slow on a
    CPU. The max is monotone in each item's score and names one item to explain; the
    calibration turns it into the probability of the set, whatever its scale.

Tiers (core.campaigns.tiers)
    Each tier has its own calibrator, so the probabilities of the tiers are on one scale
    and the final ranking is by probability (ties: cross-encoder tier first, then raw
    score, then pseudonym). Customers without any strong interaction get the rate at
    which a customer's first interaction is with the target (tier "no history").

Calibration (leave-last-out validation, cross-fitted)
    Validation customers are those with at least 3 interactions; their validation target
    (second to last interaction) gives the label; their history is what precedes it in
    train. They are scored exactly like the population (same tiers: the cross-encoder
    scores the validation customers whose content score reaches the population's tier
    threshold, a seeded sample of at most `val_ce_customers`, weighted back to the tier's
    size in the overall metrics). Each tier is calibrated by `Calibrator`. Every reported
    "after" figure (ECE, reliability, AUC, top-decile lift) is out-of-fold, never
    in-sample. "Before" reads the raw score as a probability: sigmoid(logit) for the
    cross-encoder, the content score clipped to [0, 1].
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.campaigns.calibration import CALIBRATIONS, MIN_TIER_POSITIVES, Calibrator, sigmoid
from core.campaigns.definition import Campaign, CampaignError, target_items
from core.campaigns.metrics import (
    ECE_BINS,
    auc,
    decile_lift,
    expected_calibration_error,
    reliability_table,
    top_share_lift,
)
from core.campaigns.tiers import (
    TIER_CE,
    TIER_CONTENT,
    TIER_NONE,
    TIERS,
    TextScorer,
    best_targets,
    cross_encoder_scores,
    history_profiles,
    item_embeddings,
    item_records,
    recent_items,
)
from core.recommender.splits import Split, histories_frame, leave_last_out
from core.store.interactions import ITEM, USER, as_interactions

MIN_POSITIVES = 100  # validation customers with a target label, below: a warning
MIN_AUC = 0.6


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


DEFAULT_SCORING = ScoringConfig()


@dataclass
class Propensity:
    """Scores of every customer (one row each, best first) and how much to trust them.

    scores: user_pseudonym, rank, tier, best_item, score, probability, decile.
    calibration: per tier and overall: method, ECE before/after, reliability tables.
    validation: customers, positives, base rate, AUC and top-decile lift (out-of-fold).
    timing: seconds per step; tiers: customers per tier; targets: the target item ids.
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


def raw_probability(tier: str, score: np.ndarray) -> np.ndarray:
    """The raw score read as a probability ("before calibration"): sigmoid of the logit,
    the content score (a mean cosine) clipped to [0, 1]."""
    return sigmoid(score) if tier == TIER_CE else np.clip(score, 0.0, 1.0)


def calibration_report(tier: str, calibrator: Calibrator, scores: np.ndarray,
                       labels: np.ndarray, bins: int) -> dict[str, object]:
    """One tier's calibration: method, ECE and reliability before and after (out-of-fold)."""
    before = raw_probability(tier, scores)
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


# --- the steps of `propensity` ------------------------------------------------------------------


@dataclass
class _Inputs:
    frame: pd.DataFrame  # interactions, sorted by user then time
    users: np.ndarray  # the population, sorted pseudonyms
    items: np.ndarray  # (I,) item ids of the embeddings
    vectors: np.ndarray  # (I, H) unit item embeddings
    targets: np.ndarray  # (T,) target item ids, sorted
    target_vectors: np.ndarray  # (T, H)
    affinity: np.ndarray  # (I,) each item's highest cosine to a target item
    records: dict[str, dict[str, object]]  # item id -> catalogue row


@dataclass
class _Content:
    users: np.ndarray  # (U,)
    score: np.ndarray  # (U,) content score, NaN without history
    has: np.ndarray  # (U,) any history
    top: np.ndarray  # (U, k) target columns closest to the profile, best first


@dataclass
class _Validation:
    split: Split
    frame: pd.DataFrame  # validation targets of customers with a history
    users: np.ndarray
    score: np.ndarray  # content score
    top: np.ndarray
    label: np.ndarray  # 1: the validation target is a target item


@dataclass
class _CrossEncoderTier:
    rows: np.ndarray  # population rows in the tier
    score: np.ndarray  # (U,) logit of the population, NaN outside the tier
    best_col: np.ndarray  # (U,) target column of each customer's best item
    v_tier: np.ndarray  # validation rows whose content score reaches the tier
    v_sample: np.ndarray  # those scored by the cross-encoder (seeded sample)
    v_score: np.ndarray  # their logits
    weight: float  # validation customers in the tier per sampled one


def _inputs(interactions: pd.DataFrame, catalogue: pd.DataFrame, campaign: Campaign,
            customers: Sequence[str] | None, model,
            embeddings: tuple[np.ndarray, np.ndarray] | None) -> _Inputs:
    frame = as_interactions(interactions)
    items, vectors = embeddings if embeddings is not None else item_embeddings(catalogue)
    targets = target_items(campaign, catalogue)
    target_cols = pd.Index(items).get_indexer(targets)
    if (target_cols < 0).any():
        raise CampaignError("target items are missing from the item embeddings: pass the "
                            "embeddings of this catalogue.")
    target_vectors = vectors[target_cols]
    records = item_records(catalogue if model is None else model.with_popularity(catalogue))
    users = np.array(sorted(set(map(str, customers if customers is not None else []))
                            | set(frame[USER])), dtype=object)
    return _Inputs(frame=frame, users=users, items=items, vectors=vectors, targets=targets,
                   target_vectors=target_vectors,
                   affinity=(vectors @ target_vectors.T).max(axis=1), records=records)


def _content_tier(history: pd.DataFrame, users: np.ndarray, inputs: _Inputs,
                  config: ScoringConfig) -> _Content:
    score, profiles, has = history_profiles(history, users, inputs.items, inputs.vectors,
                                            inputs.affinity, last=config.profile_len)
    _, top = best_targets(profiles, inputs.target_vectors, k=config.ce_items)
    return _Content(users=users, score=score, has=has, top=top)


def _validation_set(inputs: _Inputs, config: ScoringConfig) -> _Validation:
    """Leave-last-out targets (a seeded sample of `val_customers`), content-scored on the
    history before them; customers without such history are left out."""
    split = leave_last_out(inputs.frame)
    valid = split.valid
    if config.val_customers is not None and len(valid) > config.val_customers:
        valid = valid.sample(n=config.val_customers, random_state=config.seed)
    valid = valid.sort_values(USER, kind="stable").reset_index(drop=True)
    known = histories_frame(split.train, valid, n=max(config.profile_len, 1), same_time=True)
    content = _content_tier(known, valid[USER].to_numpy(dtype=object), inputs, config)
    label = valid[ITEM].astype(str).isin(set(inputs.targets)).to_numpy()
    keep = content.has
    if not keep.any():
        raise CampaignError("no validation customers (customers with at least 3 "
                            "interactions): the probabilities cannot be calibrated. Ingest "
                            "more history.")
    return _Validation(split=split, frame=valid[keep].reset_index(drop=True),
                       users=content.users[keep], score=content.score[keep],
                       top=content.top[keep], label=label[keep].astype(int))


def _ce_scores(model, campaign: Campaign, history: pd.DataFrame, users: np.ndarray,
               top: np.ndarray, inputs: _Inputs, config: ScoringConfig,
               score_fn: TextScorer | None) -> tuple[np.ndarray, np.ndarray]:
    recent = recent_items(history, users, model.config.history_len)
    return cross_encoder_scores(model, campaign, recent, list(users), inputs.targets[top],
                                inputs.records, score_fn=score_fn,
                                batch_size=config.batch_size)


def _cross_encoder_tier(model, campaign: Campaign, inputs: _Inputs, population: _Content,
                        validation: _Validation, config: ScoringConfig,
                        score_fn: TextScorer | None) -> _CrossEncoderTier:
    """The population's top `ce_customers` by content score, and the validation customers
    at or above the same content score (a seeded sample), scored by the cross-encoder."""
    with_history = np.flatnonzero(population.has)
    # `users` is sorted, so index order is pseudonym order (the tie-break).
    order = with_history[np.lexsort((with_history, -population.score[with_history]))]
    n_ce = min(config.ce_customers, len(order)) if model is not None else 0
    rows = order[:n_ce]
    threshold = float(population.score[rows[-1]]) if n_ce else math.inf
    v_tier = (np.flatnonzero(validation.score >= threshold) if n_ce
              else np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(config.seed)
    v_sample = (np.sort(rng.choice(v_tier, size=config.val_ce_customers, replace=False))
                if len(v_tier) > config.val_ce_customers else v_tier)
    score = np.full(len(inputs.users), np.nan)
    best_col = population.top[:, 0].copy()
    v_score = np.zeros(0)
    if n_ce:
        scored, which = _ce_scores(model, campaign, inputs.frame, inputs.users[rows],
                                   population.top[rows], inputs, config, score_fn)
        score[rows] = scored
        best_col[rows] = population.top[rows, which]
        if len(v_sample):
            v_known = histories_frame(validation.split.train, validation.frame.iloc[v_sample],
                                      n=model.config.history_len, same_time=True)
            v_score, _ = _ce_scores(model, campaign, v_known, validation.users[v_sample],
                                    validation.top[v_sample], inputs, config, score_fn)
    return _CrossEncoderTier(rows=rows, score=score, best_col=best_col, v_tier=v_tier,
                             v_sample=v_sample, v_score=v_score,
                             weight=len(v_tier) / len(v_sample) if len(v_sample) else 1.0)


def _calibrate(validation: _Validation, ce: _CrossEncoderTier, config: ScoringConfig,
               warnings: list[str]) -> tuple[Calibrator, Calibrator | None, dict[str, object]]:
    """(content calibrator, cross-encoder calibrator or None, the per-tier report)."""
    def calibrator() -> Calibrator:
        return Calibrator(config.calibration, folds=config.folds, bins=config.bins,
                          seed=config.seed)

    content_cal = calibrator().fit(validation.score, validation.label)
    report = {"bins": config.bins, "tiers": {
        TIER_CONTENT: calibration_report(TIER_CONTENT, content_cal, validation.score,
                                         validation.label, config.bins)}}
    ce_cal = None
    if len(ce.v_sample):
        labels = validation.label[ce.v_sample]
        ce_cal = calibrator().fit(ce.v_score, labels)
        report["tiers"][TIER_CE] = calibration_report(TIER_CE, ce_cal, ce.v_score, labels,
                                                      config.bins)
        report["tiers"][TIER_CE]["weight"] = ce.weight
        if ce_cal.positives_ < MIN_TIER_POSITIVES:
            warnings.append(f"only {ce_cal.positives_} validation positives in the "
                            f"cross-encoder tier: calibrated by {ce_cal.method_} scaling; "
                            "its probabilities are uncertain.")
    elif len(ce.rows):
        warnings.append("no validation customer reaches the cross-encoder tier: its "
                        "customers are calibrated on their content score instead.")
    return content_cal, ce_cal, report


def _population_scores(inputs: _Inputs, population: _Content, ce: _CrossEncoderTier,
                       content_cal: Calibrator, ce_cal: Calibrator | None
                       ) -> tuple[pd.DataFrame, float]:
    """(user_pseudonym, tier, best_item, score, probability of every customer, unranked;
    the probability of a customer without history)."""
    has = population.has
    tier = np.full(len(inputs.users), TIER_NONE, dtype=object)
    tier[has] = TIER_CONTENT
    score = population.score.copy()
    probability = np.empty(len(inputs.users))
    probability[has] = content_cal.predict(population.score[has])
    if ce_cal is not None:
        tier[ce.rows] = TIER_CE
        score[ce.rows] = ce.score[ce.rows]
        probability[ce.rows] = ce_cal.predict(ce.score[ce.rows])
    firsts = inputs.frame.groupby(USER, sort=False).head(1)
    no_history_rate = (float(firsts[ITEM].isin(set(inputs.targets)).mean()) if len(firsts)
                       else 0.0)
    probability[~has] = no_history_rate
    best_item = np.where(has, inputs.targets[ce.best_col], None)
    frame = pd.DataFrame({USER: inputs.users, "tier": tier, "best_item": best_item,
                          "score": score, "probability": probability})
    return frame, no_history_rate


def _pooled(validation: _Validation, ce: _CrossEncoderTier, content_cal: Calibrator,
            ce_cal: Calibrator | None) -> dict[str, np.ndarray]:
    """The validation customers as the population is scored: content rows outside the
    cross-encoder tier plus the cross-encoder sample, weighted up to the tier's size.
    Keys: oof (out-of-fold probability), raw (raw probability), labels, weights, score
    (raw score) and tier_key (0: cross-encoder, 1: content)."""
    with_ce = ce_cal is not None
    in_tier = np.zeros(len(validation.label), dtype=bool)
    in_tier[ce.v_tier] = with_ce
    rest = ~in_tier
    n_rest, n_ce = int(rest.sum()), len(ce.v_sample) if with_ce else 0
    return {
        "oof": np.concatenate([content_cal.oof_[rest], ce_cal.oof_ if with_ce else []]),
        "raw": np.concatenate([raw_probability(TIER_CONTENT, validation.score[rest]),
                               raw_probability(TIER_CE, ce.v_score) if with_ce else []]),
        "labels": np.concatenate([validation.label[rest],
                                  validation.label[ce.v_sample] if with_ce else []]),
        "weights": np.concatenate([np.ones(n_rest), np.full(n_ce, ce.weight)]),
        "score": np.concatenate([validation.score[rest], ce.v_score if with_ce else []]),
        "tier_key": np.concatenate([np.ones(n_rest), np.zeros(n_ce)]),
    }


def _overall_calibration(pooled: dict[str, np.ndarray], bins: int) -> dict[str, object]:
    labels, weights = pooled["labels"], pooled["weights"]
    return {
        "ece_before": expected_calibration_error(pooled["raw"], labels, bins=bins,
                                                 weights=weights),
        "ece_after": expected_calibration_error(pooled["oof"], labels, bins=bins,
                                                weights=weights),
        "reliability_before": reliability_table(pooled["raw"], labels, bins=bins,
                                                weights=weights).to_dict("records"),
        "reliability_after": reliability_table(pooled["oof"], labels, bins=bins,
                                               weights=weights).to_dict("records"),
    }


def _validation_report(validation: _Validation, pooled: dict[str, np.ndarray],
                       no_history_rate: float) -> dict[str, object]:
    # Rank validation customers as the population is ranked (rank_scores): by
    # probability, then tier, then raw score; metrics read the rank, not the many ties of
    # a step-wise (isotonic) probability.
    oof, labels, weights = pooled["oof"], pooled["labels"], pooled["weights"]
    position = np.empty(len(oof))
    position[np.lexsort((-pooled["score"], pooled["tier_key"], -oof))] = np.arange(len(oof))
    return {
        "customers": int(len(validation.label)), "positives": int(validation.label.sum()),
        "base_rate": float(validation.label.mean()),
        "auc": auc(-position, labels, weights=weights),
        "top_decile_lift": top_share_lift(-position, labels, weights=weights),
        "lift_by_decile": decile_lift(-position, labels, weights=weights),
        "split": validation.split.name, "no_history_rate": no_history_rate,
    }


def _quality_warnings(validation: dict[str, object], model) -> list[str]:
    warnings = []
    positives = validation["positives"]
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
    return warnings


def propensity(interactions: pd.DataFrame, catalogue: pd.DataFrame, campaign: Campaign, *,
               customers: Sequence[str] | None = None, model=None,
               config: ScoringConfig = DEFAULT_SCORING, score_fn: TextScorer | None = None,
               embeddings: tuple[np.ndarray, np.ndarray] | None = None) -> Propensity:
    """Calibrated propensity of every customer for the campaign's target (pure: data
    frames in, data frames out). `customers` is the population (None: everyone in
    `interactions`); `model` a CrossEncoder (None: content tier only); `embeddings` the
    output of `item_embeddings` for this catalogue (None: computed here)."""
    clock = {"start": time.perf_counter()}
    warnings: list[str] = []
    inputs = _inputs(interactions, catalogue, campaign, customers, model, embeddings)
    clock["embeddings"] = time.perf_counter()
    population = _content_tier(inputs.frame, inputs.users, inputs, config)
    validation = _validation_set(inputs, config)
    clock["content"] = time.perf_counter()
    ce = _cross_encoder_tier(model, campaign, inputs, population, validation, config,
                             score_fn)
    clock["cross_encoder"] = time.perf_counter()
    content_cal, ce_cal, report = _calibrate(validation, ce, config, warnings)
    scores, no_history_rate = _population_scores(inputs, population, ce, content_cal, ce_cal)
    pooled = _pooled(validation, ce, content_cal, ce_cal)
    report["overall"] = _overall_calibration(pooled, config.bins)
    validation_report = _validation_report(validation, pooled, no_history_rate)
    warnings += _quality_warnings(validation_report, model)
    scores = rank_scores(scores)
    clock["end"] = time.perf_counter()
    pairs = (len(ce.rows) + len(ce.v_sample)) * min(config.ce_items, len(inputs.targets))
    timing = {"embeddings_s": clock["embeddings"] - clock["start"],
              "content_s": clock["content"] - clock["embeddings"],
              "cross_encoder_s": clock["cross_encoder"] - clock["content"],
              "calibration_s": clock["end"] - clock["cross_encoder"],
              "total_s": clock["end"] - clock["start"], "cross_encoder_pairs": int(pairs)}
    return Propensity(scores=scores, calibration=report, validation=validation_report,
                      warnings=warnings, timing=timing,
                      tiers={t: int((scores["tier"] == t).sum()) for t in TIERS},
                      targets=[str(t) for t in inputs.targets])
