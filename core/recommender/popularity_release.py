"""The item popularity a run releases: per-item customer counts with Gaussian noise.

The model reads each item's percentile and the candidate retrieval its order. A private
run's release is its own mechanism (`popularity_noise`: the share `popularity_share` of
epsilon alone), charged to the ledger before training and composed with DP-SGD into the
run's epsilon; a non-private run releases exact counts. `release_popularity` may run
only after the charge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from core.dp import plan as dp_plan
from core.recommender import item_popularity
from core.recommender.config import TrainConfig
from core.recommender.model_config import ModelConfig
from core.store.interactions import ITEM, USER
from privacy.accounting import Mechanism, epsilon_for


@dataclass(frozen=True)
class CountsNoise:
    """The Gaussian mechanism of a private run's popularity release."""

    noise_multiplier: float
    epsilon_alone: float  # what the release costs by itself
    accountant: str

    @property
    def mechanism(self) -> Mechanism:
        """As the accountants take it: one step at sample rate 1 (the plain Gaussian)."""
        return (self.noise_multiplier, 1.0, 1)


def popularity_noise(config: TrainConfig, delta: float) -> CountsNoise:
    """The popularity release of a private run: the Gaussian mechanism that costs
    `popularity_share` of epsilon alone."""
    share = config.popularity_share * config.epsilon
    sigma, used = dp_plan.noise_multiplier_for(epsilon=share, delta=delta, sample_rate=1.0,
                                               steps=1, accountant=config.accountant)
    return CountsNoise(sigma, epsilon_for(noise_multiplier=sigma, sample_rate=1.0, steps=1,
                                          delta=delta, accountant=used), used)


@dataclass(frozen=True)
class PopularityRelease:
    """The item popularity a run releases (`core.recommender.item_popularity`): percentiles
    per item and the Gaussian mechanism that noised them (noise_multiplier 0: exact
    counts of a non-private run)."""

    percentiles: dict[str, int]
    noise_multiplier: float
    cap: int
    customers: int
    epsilon_alone: float  # what the release costs by itself (inf: not private)
    accountant: str
    reliability: float  # share of the released spread that is signal (1: exact)


def release_popularity(train: pd.DataFrame, catalogue: pd.DataFrame, config: TrainConfig,
                       noise: CountsNoise | None) -> PopularityRelease:
    """Count, noise (None: exact) and rank the catalogue's items: call only after the
    release was charged to the ledger."""
    counts = item_popularity.capped_counts(train, catalogue[ITEM].astype(str),
                                           cap=config.popularity_cap)
    noise = noise or CountsNoise(0.0, math.inf, "none")
    sigma = noise.noise_multiplier
    released = item_popularity.noisy(counts, noise_multiplier=sigma, cap=config.popularity_cap)
    trust = item_popularity.reliability(released, noise_multiplier=sigma,
                                        cap=config.popularity_cap)
    return PopularityRelease(item_popularity.percentiles(released), sigma,
                             config.popularity_cap, int(train[USER].nunique()),
                             noise.epsilon_alone, noise.accountant, trust)


LOG_FORM_MIN_RELIABILITY = 0.9  # share of the released spread that must be signal


def model_config_for_release(model_config: ModelConfig,
                             release: PopularityRelease | None) -> ModelConfig:
    """The model a run trains once its popularity is released: the percentile's log form
    only where at least `LOG_FORM_MIN_RELIABILITY` of the released spread is signal.
    The log separates the top percentiles, which a noisy release fills partly with
    noise, so a learnt weight on it would reshuffle the prior's ranking. Reliability is
    post-processing of the release: deciding on it costs no budget."""
    if (model_config.popularity_log and release is not None
            and release.reliability < LOG_FORM_MIN_RELIABILITY):
        return replace(model_config, popularity_log=False)
    return model_config
