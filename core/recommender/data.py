"""The data of a training run: the split, the catalogues, the example groups, and which
customers reach the model.

Everything here is deterministic given the warehouse and the configs: every rank of a
distributed run, and an audit after the run, rebuilds exactly what training saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from core.config import Paths
from core.dp.plan import TrainingRefused
from core.recommender.config import TrainConfig
from core.recommender.evaluate import without_items
from core.recommender.examples import ExampleConfig, build_examples
from core.recommender.model_config import ModelConfig
from core.recommender.splits import Split, leave_last_out, time_split
from core.store.interactions import (
    ITEM,
    TS,
    USER,
    collapse_repeats,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)
from privacy.membership import draw_pool, pool_size

SPLITS = ("leave_last_out", "time")


def make_split(interactions: pd.DataFrame, split_name: str) -> Split:
    """leave_last_out, or a time split at the 90% quantile of time (valid window from the
    80% quantile)."""
    if split_name == "leave_last_out":
        return leave_last_out(interactions)
    if split_name == "time":
        stamps = pd.to_datetime(interactions[TS])
        return time_split(interactions, cutoff=stamps.quantile(0.9),
                          valid_cutoff=stamps.quantile(0.8))
    raise ValueError(f"split={split_name!r}: choose one of {SPLITS}.")


def load_training_data(paths: Paths, *, max_customers: int | None = None, seed: int = 0,
                       before: pd.Timestamp | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, ranking catalogue) from the warehouse; with `max_customers` a seeded
    random subset of customers; with `before` only events strictly before that time (a
    backtest's model must not see what happened after its cutoff).

    A funnel on one item (add-to-cart, then purchase) is one interaction
    (`collapse_repeats`): otherwise the next "item" is most often the one just carted,
    which recommendations exclude as already seen."""
    interactions = collapse_repeats(load_interactions(paths, before=before))
    if interactions.empty:
        raise TrainingRefused(f"the warehouse {paths.warehouse} holds no purchases, reviews "
                              "or add-to-cart events: ingest some first (`clearmark "
                              "ingest` or `clearmark demo`).")
    if max_customers is not None:
        users = np.array(sorted(interactions[USER].unique()), dtype=object)
        if max_customers < len(users):
            keep = np.random.default_rng(seed).choice(users, size=max_customers,
                                                      replace=False)
            interactions = interactions[interactions[USER].isin(set(keep))]
            interactions = interactions.reset_index(drop=True)
    catalogue = interacted_catalogue(load_catalogue(paths), interactions)
    return interactions, catalogue


@dataclass(frozen=True)
class TrainingData:
    """What `training_data` builds for a run."""

    split: Split
    catalogue: pd.DataFrame        # ranking catalogue (held-out items included)
    train_catalogue: pd.DataFrame  # what training may see (held-out items removed)
    held: frozenset[str]
    example_config: ExampleConfig
    groups: list


def training_data(paths: Paths, config: TrainConfig, model_config: ModelConfig, *,
                  split_name: str = "leave_last_out", before: pd.Timestamp | None = None
                  ) -> TrainingData:
    """The split, catalogues and example groups of a run: deterministic given the
    warehouse and the configs, so an audit can rebuild what training saw."""
    interactions, catalogue = load_training_data(paths, max_customers=config.max_customers,
                                                 seed=config.seed, before=before)
    split = make_split(interactions, split_name)
    held: frozenset[str] = frozenset()
    if config.held_out_items:
        split, held = without_items(split, share=config.held_out_items, seed=config.seed)
    # Negatives come from the items training may see: held-out items appear nowhere.
    train_catalogue = catalogue[~catalogue[ITEM].astype(str).isin(held)]
    example_config = ExampleConfig(history_len=model_config.history_len,
                                   negatives=model_config.negatives,
                                   same_category_share=config.same_category_share,
                                   negative_weighting=config.negative_weighting,
                                   max_per_customer=config.max_examples_per_customer,
                                   hard_share=config.hard_share, seed=config.seed)
    groups = build_examples(split.train, train_catalogue, example_config)
    return TrainingData(split, catalogue, train_catalogue, held, example_config, groups)


def with_audit_pool(config: TrainConfig, groups: list
                    ) -> tuple[TrainConfig, list, dict[str, bool]]:
    """The one-run membership audit's pool (`core.recommender.membership_audit`): (`config`
    with `audit_pool` sized to the customers with an example, the groups that reach
    training, {customer: in training} for the pool's customers). Each pool customer is
    in training with probability 1/2; the left-out half never reaches the model. Seeded
    by `config.seed`. Raises TrainingRefused for a pool the data cannot hold."""
    candidates = {g.user for g in groups}
    config = replace(config, audit_pool=pool_size(config.audit_pool, len(candidates)))
    if not config.audit_pool:
        return config, groups, {}
    try:
        pool = draw_pool(candidates, config.audit_pool, seed=config.seed)
    except ValueError as exc:
        raise TrainingRefused(f"membership audit pool: {exc}") from exc
    return config, [g for g in groups if pool.get(g.user, True)], pool


def pool_members(frame: pd.DataFrame, pool: dict[str, bool]) -> pd.DataFrame:
    """The rows of `frame` whose customer may reach the model: all but the membership
    audit pool's left-out half."""
    return frame[frame[USER].astype(str).map(lambda u: pool.get(u, True))]


def trained_on(split: Split, pool: dict[str, bool]) -> pd.DataFrame:
    """The training interactions that statistics of a run may read: every training
    customer's (not only those with an example), minus the audit pool's left-out half."""
    return pool_members(split.train, pool)
