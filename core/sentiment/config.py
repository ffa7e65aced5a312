"""A sentiment run's settings and what they select: the privacy plan over its reviewers
and its data (time split, capped training pool, evaluated test reviews, class weights).

`prepare` is shared by training (`core.sentiment.train`) and by evaluating a saved run
again (`core.sentiment.evaluate.evaluate_run`): the same settings select the same data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.dp import plan as dp_plan
from core.dp.plan import ACCOUNTANTS, PrivacyPlan, TrainingRefused, check_budget
from core.sentiment import data as D


@dataclass(frozen=True)
class SentimentTrainConfig:
    """Training and privacy settings of one run.

    epsilon / delta: the reviewer-level budget; delta None means min(1e-5, 1 / (10 N))
        for N reviewers, and a given delta must not exceed 1 / (10 N).
    batch_size: EXPECTED reviewers per step (Poisson sampling: the sample rate is
        1 / ceil(N / batch_size), as Opacus computes it).
    non_private: train without DP (explicit only); recorded with epsilon = inf.
    max_reviews_per_reviewer: the contribution cap: the pool a reviewer's one review
        per step is drawn from.
    max_reviewers: train on a seeded random subset of reviewers (quick runs).
    test_share: the newest share of reviews held out for the test.
    class_weighting: "balanced", "sqrt" or "none" (see core.sentiment.data).
    max_test_reviews: evaluate on a seeded sample of the test reviews (None: all).
    """

    epsilon: float = 8.0
    delta: float | None = None
    non_private: bool = False
    max_grad_norm: float = 1.0
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    accountant: str = "prv"
    secure_mode: bool = False
    max_reviews_per_reviewer: int = 8
    max_reviewers: int | None = None
    test_share: float = 0.2
    class_weighting: str = "balanced"
    max_test_reviews: int | None = None

    def __post_init__(self) -> None:
        check_budget(self)
        if self.max_grad_norm <= 0 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm}, epochs={self.epochs}, "
                             f"batch_size={self.batch_size}, lr={self.lr}: all must be "
                             "positive.")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant={self.accountant!r}: choose one of {ACCOUNTANTS}.")
        if self.max_reviews_per_reviewer < 1:
            raise ValueError(f"max_reviews_per_reviewer={self.max_reviews_per_reviewer}: "
                             "must be at least 1.")
        if self.max_reviewers is not None and self.max_reviewers < 2:
            raise ValueError(f"max_reviewers={self.max_reviewers}: need at least 2.")
        if not 0.0 < self.test_share < 1.0:
            raise ValueError(f"test_share={self.test_share}: must lie strictly in (0, 1).")
        if self.class_weighting not in D.CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting={self.class_weighting!r}: choose one of "
                             f"{D.CLASS_WEIGHTINGS}.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> SentimentTrainConfig:
        """The config a run recorded (keys this version does not know are left out)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def plan_privacy(config: SentimentTrainConfig, reviewers: int) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `reviewers` reviewers."""
    return dp_plan.plan_privacy(config, reviewers, too_few=(
        "reviewers in the training window; training needs many (ingest more reviews)."))


@dataclass
class Prepared:
    """The data of one run: split, the capped training pool and its reviewer groups."""

    split: D.SentimentSplit
    pool: pd.DataFrame
    groups: list[np.ndarray]
    test: pd.DataFrame  # the evaluated test reviews (all, or a seeded sample)
    class_weights: np.ndarray
    info: dict[str, object] = field(default_factory=dict)


def prepare(reviews: pd.DataFrame, config: SentimentTrainConfig) -> Prepared:
    """Split by time, subset and cap the training reviewers, weigh the classes.

    Raises `TrainingRefused` where the time split leaves a side empty. `info` describes
    the data for metrics.json: cut-off, counts, class shares and weights."""
    try:
        split = D.time_split(reviews, test_share=config.test_share)
    except ValueError as exc:
        raise TrainingRefused(str(exc)) from exc
    train = D.sample_reviewers(split.train, max_reviewers=config.max_reviewers,
                               seed=config.seed)
    pool = D.cap_per_reviewer(train, cap=config.max_reviews_per_reviewer, seed=config.seed)
    groups = D.reviewer_groups(pool)
    test = split.test
    if config.max_test_reviews is not None and config.max_test_reviews < len(test):
        test = test.sample(n=config.max_test_reviews, random_state=config.seed) \
            .sort_values([D.TS, D.REVIEW_ID]).reset_index(drop=True)
    weights = D.class_weights(pool[D.LABEL], scheme=config.class_weighting)
    info = {
        "cutoff": split.cutoff.isoformat(),
        "train_reviews": int(len(split.train)), "train_reviewers":
            int(split.train[D.USER].nunique()),
        "pool_reviews": int(len(pool)), "pool_reviewers": len(groups),
        "test_reviews": int(len(split.test)), "evaluated_test_reviews": int(len(test)),
        "class_shares": {"train_pool": D.class_shares(pool[D.LABEL]),
                         "test": D.class_shares(split.test[D.LABEL])},
        "class_weighting": config.class_weighting,
        "class_weights": dict(zip(D.LABELS, map(float, weights), strict=True)),
        "imbalance_handling": "class-weighted cross-entropy (weights from the training "
                              "pool's class counts; under DP applied to each reviewer's "
                              "gradient after clipping; sampling stays uniform over "
                              "reviewers)",
    }
    return Prepared(split=split, pool=pool, groups=groups, test=test, class_weights=weights,
                    info=info)
