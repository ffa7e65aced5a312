"""Training the cross-encoder with user-level DP-SGD (Opacus), and ranking with it.

`train(paths, config)` builds the split and the example groups, fixes the noise for the
privacy budget, charges the budget ledger BEFORE any training work (a refusal means
nothing starts), trains with Opacus (Poisson sampling over customers, one example group
per sampled customer, per-customer clipping), evaluates, saves the run to the registry
and completes the ledger entry; any failure after the charge marks the entry failed.

What the guarantee covers: the privacy unit is the CUSTOMER. The dataset has one row
per customer (`core.recommender.examples.CustomerDataset`): a sampled customer contributes one of
their at most `max_examples_per_customer` example groups, through one clipped gradient,
so (epsilon, delta) bound what the model reveals about any one customer's whole
history, not just about one interaction.

The item popularity the model reads and the candidate retrieval's popularity list come
from one release of per-item customer counts with Gaussian noise
(`core.recommender.item_popularity`), charged to the ledger as its own entry (`<run>-counts`) and
composed with DP-SGD: the run's epsilon covers both (`plan_run`, `account_alongside`).
The log form of the percentile (`ModelConfig.popularity_log`) is read only where the
release is reliable (`model_config_for_release`): the log stretches the head of the
catalogue, exactly where a noisy release's top places are partly noise.
Not covered, and recorded as such in the ledger note: validation HR@10 shown on the
progress bar during training is computed on the validation targets without noise (it
is shown, never used to choose the model under DP).

A NON-PRIVATE run's model also reads co-visits (`core.recommender.co_visits`: the item-kNN
statistic of its training customers, exact) and retrieves the items most often bought
with the history shown; no DP release of pair counts pays at these scales, so DP runs
never read them (`model_config_for`). After training, a non-private run fits its final
logit's weights (the head's scale and the mix's) on the validation targets ranked among
their candidates (`core.recommender.mix_fit.fit_on_validation`): what the model is used for, where
the training groups' negatives are uniform and same-category ones. A DP run on enough
customers makes the same fit with DP (`core.recommender.mix_fit.fit_on_validation_private`, on a
Poisson sample, `final_fit_noise`): one more Gaussian mechanism, charged to the ledger
as `<run>-fit` and composed with DP-SGD and the counts into the run's epsilon.

Candidates at inference (`CrossEncoderRecommender`): a cross-encoder reads one text
pair per (customer, item), far too slow for the whole catalogue on a CPU, so it
re-ranks a cheap candidate set: the union of the `content_candidates` (default 50)
items whose MiniLM embedding is closest to the mean embedding of the customer's
history items, and the `popular_candidates` (default 20) most popular items by the
released counts, the `category_candidates` (default 10) most popular items of each
category among the history items shown (a customer of the generator, like many
shoppers, buys mostly within their categories: on the 50k generator these lift the
validation targets found among the candidates from 48% to 60% for 13 more candidates
on average), and for a model with co-visits the `co_visit_candidates` (default 20)
items most often bought with the history shown, all without the items the customer
already has. Items outside the set score -inf.

New items (`ModelConfig.new_item_slots`, default 1): an item outside the model's
training data (no released popularity, no co-visits: held out, or added to the
catalogue since) can only be judged by its text, while the bought items it competes
with carry purchase evidence; so the model's own order never puts one in a top 10
(measured on Gift Cards and the generator: recall@10 of such items 0). The last
`new_item_slots` places of each top `NEW_ITEM_DEPTH` go to the best-ranked new
candidates when fewer new items are there already; a promoted item's score is set
between its new neighbours' so that every consumer of the scores (evaluation, the
warehouse's ranks, pages) sees the same order.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.config import PROJECT_ROOT, Paths
from core.dp import plan as dp_plan
from core.dp.clipping import BookkeepingClipping
from core.dp.plan import ACCOUNTANTS, PrivacyPlan, TrainingRefused
from core.minilm import embed_texts
from core.recommender import item_popularity, mix_fit
from core.recommender.baselines import item_text
from core.recommender.co_visits import CoVisits, own_items
from core.recommender.evaluate import evaluate, without_items
from core.recommender.examples import (
    CustomerDataset,
    ExampleConfig,
    build_examples,
    collate_groups,
    item_records,
    listwise_loss,
    model_input,
)
from core.recommender.fields import category_key
from core.recommender.model import NEW_ITEM_DEPTH, TORCH_THREADS, CrossEncoder, ModelConfig
from core.recommender.splits import Split, leave_last_out, time_split
from core.store.interactions import (
    EVENT_TYPE,
    ITEM,
    PROMOTION,
    TS,
    USER,
    collapse_repeats,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)
from privacy import ledger
from privacy.accounting import Mechanism, epsilon_for
from privacy.membership import draw_pool, pool_size

# Per-customer clipping, three modes with the same clipped, noised update (tested):
# "bookkeeping" (core.dp.clipping, the default) takes each customer's norm and the clipped
# sum from one backward pass in which autograd computes no parameter gradient; Opacus'
# "hooks" materialises each customer's gradient of every trainable parameter; its
# "ghost" (Li et al. 2022) computes the norms first and sums the clipped gradients in a
# second backward pass. bench/dp_step.py: 1.21x, 3.3x and 4.1x the non-private step.
GRAD_SAMPLE_MODES = ("bookkeeping", "hooks", "ghost")
SPLITS = ("leave_last_out", "time")
ARTEFACT_KIND = "ranking_model"
COUNTS_KIND = "item_popularity"  # the ledger kind of a run's released item counts
COUNTS_SUFFIX = "-counts"  # its ledger run id: the run's id with this suffix
FIT_KIND = "final_weights"  # the ledger kind of a DP run's fit of its final weights
FIT_SUFFIX = "-fit"


@dataclass(frozen=True)
class TrainConfig:
    """Training and privacy settings of one run.

    epsilon / delta: the user-level budget; delta None means min(1e-5, 1 / (10 N)) for
        N customers, and a given delta must not exceed 1 / (10 N).
    batch_size: EXPECTED customers per step (Poisson sampling: the sample rate is
        1 / ceil(N / batch_size), as Opacus computes it).
    lr / head_lr / mix_lr: AdamW learning rates of the trainable encoder layers, of the
        pooler + head (head_lr None: the same as lr) and of the mix weights of the
        zero-shot prior and popularity. The mix weights are two scalars at a logit scale
        of 1-10: Adam moves a weight by about its lr per step, so at 1e-3 they could
        not move more than 0.2 in 200 steps, and a DP run stayed at its initial mix.
        The defaults suit DP on a few hundred customers: the 1.8M encoder-layer weights
        get far more noise than signal per coordinate, so they barely move; the head
        learns. head_lr 5e-3 rather than 1e-3: on 50,000 generated customers a DP run's
        head at 1e-3 was too small by about 5x (the validation fit of the final weights,
        read as a diagnosis, scaled it by 5.4) and NDCG@10 rose from 0.102 to 0.124 at
        5e-3; on Gift Cards the three seeds were no worse.
    non_private: train without DP (explicit only); recorded with epsilon = inf.
    grad_sample_mode: how each customer's gradient is clipped, one of GRAD_SAMPLE_MODES
        (the same guarantee; they differ in speed and memory).
    negative_weighting: "uniform" (default; required under DP) or "popularity".
    hard_share: share of negatives from the history's content neighbours (see
        core.recommender.examples; DP-safe: they depend on the customer's own data only).
    max_customers: train on a random subset of customers (quick runs).
    dataset: the ledger dataset the run is charged to (None: `paths.dataset`).
    val_users: validation users ranked after each epoch for the progress bar (0: none).
    keep_best: keep the epoch (0: the untrained model, i.e. the zero-shot prior) with
        the best validation NDCG@10. Non-private runs only: choosing on validation
        targets is a use of personal data that no epsilon accounts for.
    audit_pool: customers drawn for the one-run membership audit, each left out of
        training with probability 1/2 (0: no audit possible; "auto": sized to the data by
        `privacy.membership.pool_size`; see core.recommender.membership_audit).
    max_steps: stop after this many steps (None: `epochs` full epochs). With many
        customers a run can stop within its first epoch; the accountant counts the steps
        actually planned, at the same sample rate.
    held_out_items: share of the items removed from training entirely (not in any
        history, target or negative), to measure cold-start items: the evaluation then
        reports the test targets that are such items apart ("cold_items").
    eval_users: test users of the final evaluation (a seeded sample; None: all).
    eval_baselines: also evaluate popularity, item-kNN and zero-shot content on the split.
    popularity_cap: distinct items each customer counts for in the released item
        popularity (`core.recommender.item_popularity`; the counts' L2 sensitivity is its root).
    popularity_share: the share of epsilon that the popularity counts would cost ALONE
        (for a model that reads popularity); DP-SGD's noise is then set so that both,
        composed by the accountant, spend `epsilon`.
    final_mix_users: validation targets on which a NON-PRIVATE run fits its final
        logit's weights after training (`core.recommender.mix_fit.fit_on_validation`; 0: none); for
        a DP run, the EXPECTED number of customers its DP fit samples
        (`core.recommender.mix_fit.fit_on_validation_private`).
    final_fit_share: the share of epsilon that a DP run's fit of its final weights costs
        ALONE (DP-SGD's noise is then set so that all, composed, spend `epsilon`).
    final_fit_steps / final_fit_lr: the DP fit's noisy Adam steps and learning rate.
    final_fit_max_noise: the DP fit is made only where the noise on its mean gradient
        (noise per step / expected sampled customers, at clip norm 1) is at most this:
        on a few hundred customers the noise would swamp the fit, so such a run makes
        none and spends nothing on it. Decided from public quantities only (the
        customer count, as the sample rate of DP-SGD is).
    """

    epsilon: float = 3.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-5
    head_lr: float | None = 5e-3
    mix_lr: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    accountant: str = "prv"
    secure_mode: bool = False
    non_private: bool = False
    grad_sample_mode: str = "bookkeeping"
    max_examples_per_customer: int = 8
    negative_weighting: str = "uniform"
    same_category_share: float = 0.5
    hard_share: float = 0.0
    max_customers: int | None = None
    dataset: str | None = None
    val_users: int = 32
    keep_best: bool = False
    audit_pool: int | str = 0
    max_steps: int | None = None
    held_out_items: float = 0.0
    eval_users: int | None = None
    eval_baselines: bool = False
    popularity_cap: int = item_popularity.DEFAULT_CAP
    popularity_share: float = 0.25
    final_mix_users: int = mix_fit.VALIDATION_CUSTOMERS
    final_fit_share: float = 0.1
    final_fit_steps: int = 100
    final_fit_lr: float = 0.3
    final_fit_max_noise: float = 0.05

    def __post_init__(self) -> None:
        if not self.non_private and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon={self.epsilon}: give a finite positive budget, or "
                             "train without privacy explicitly with non_private=True.")
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta={self.delta}: must lie in (0, 1).")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}: must be positive (or None).")
        if not 0.0 <= self.held_out_items < 1.0:
            raise ValueError(f"held_out_items={self.held_out_items}: a share in [0, 1).")
        if self.max_grad_norm <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"max_grad_norm={self.max_grad_norm}, epochs={self.epochs}, "
                             f"batch_size={self.batch_size}: all must be positive.")
        if self.popularity_cap < 1 or not 0.0 < self.popularity_share < 1.0:
            raise ValueError(f"popularity_cap={self.popularity_cap}, popularity_share="
                             f"{self.popularity_share}: a cap of at least 1 and a share of "
                             "epsilon in (0, 1).")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant={self.accountant!r}: choose one of {ACCOUNTANTS}.")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode={self.grad_sample_mode!r}: choose one of "
                             f"{GRAD_SAMPLE_MODES} (each clips one gradient per customer).")
        if self.keep_best and (not self.non_private or self.val_users <= 0):
            raise ValueError("keep_best chooses an epoch on validation customers: only for "
                             "non-private runs (no epsilon covers the choice), with "
                             "val_users > 0.")
        if not self.non_private and self.negative_weighting != "uniform":
            raise ValueError("negative_weighting='popularity' makes one customer's examples "
                             "depend on everyone's data, which the DP-SGD analysis does not "
                             "cover: use 'uniform' for private runs.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# --- privacy plumbing: the accountant and the ledger ---------------------------------


# --- candidates and the recommender ----------------------------------------------------


class CrossEncoderRecommender(BaseEstimator):
    """`core.recommender.protocol.Recommender` over a trained CrossEncoder: cheap retrieval
    (content + popular, see the module docstring), re-ranked by the cross-encoder.

    `fit` takes the popularity list from the model's released counts (the exact counts
    of `train` for a model without them) and computes the catalogue's item embeddings
    (cached per catalogue by `core.minilm`); the CrossEncoder is given, never reloaded.
    `score_items` returns (Q, I) with the cross-encoder logit on each query's candidates
    and -inf elsewhere."""

    def __init__(self, model: CrossEncoder, *, content_candidates: int | None = None,
                 popular_candidates: int | None = None,
                 category_candidates: int | None = None, new_item_slots: int | None = None,
                 batch_size: int = 64, name: str = "cross-encoder"):
        self.model = model
        self.content_candidates = content_candidates
        self.popular_candidates = popular_candidates
        self.category_candidates = category_candidates
        self.new_item_slots = new_item_slots
        self.batch_size = batch_size
        self.name = name

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> CrossEncoderRecommender:
        if ITEM not in catalogue.columns:
            raise ValueError(f"the catalogue has no {ITEM!r} column: pass "
                             "core.store.interactions.load_catalogue() or interacted_catalogue().")
        self.items_ = np.array(sorted(catalogue[ITEM].astype(str).unique()), dtype=object)
        self.records_ = item_records(self.model.with_popularity(catalogue))
        rows = [self.records_[i] for i in self.items_]
        self.embeddings_ = embed_texts([item_text(r) for r in rows])  # (I, H) unit rows
        known = set(self.items_)
        if self.model.item_popularity:
            # the run's DP-released counts (core.recommender.item_popularity): covered by
            # its epsilon
            ranked = [i for i in item_popularity.ranked(self.model.item_popularity)
                      if i in known]
        else:  # a model without released counts: the exact order of `train`
            counts = train[ITEM].astype(str).value_counts()
            counts = counts[counts.index.isin(known)]
            # Ties by item id so that every fit gives one order.
            ranked = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        self.popular_ = np.array(ranked, dtype=object)
        trained = trained_items(self.model, train)
        self.new_ = np.array([i not in trained for i in self.items_], dtype=bool)
        self.column_ = {item: c for c, item in enumerate(self.items_)}
        self.popular_by_category_: dict[str, list[int]] = {}
        for item in self.popular_:  # most popular first
            category = category_key(self.records_[item])
            if category is not None:
                self.popular_by_category_.setdefault(category, []).append(self.column_[item])
        return self

    @property
    def n_content(self) -> int:
        return (self.model.config.content_candidates if self.content_candidates is None
                else self.content_candidates)

    @property
    def n_popular(self) -> int:
        return (self.model.config.popular_candidates if self.popular_candidates is None
                else self.popular_candidates)

    @property
    def n_category(self) -> int:
        return (self.model.config.category_candidates if self.category_candidates is None
                else self.category_candidates)

    @property
    def n_new_slots(self) -> int:
        return (self.model.config.new_item_slots if self.new_item_slots is None
                else self.new_item_slots)

    @property
    def n_co_visits(self) -> int:
        return self.model.config.co_visit_candidates if self.model.co_visits is not None else 0

    def candidates(self, history: pd.DataFrame, queries: pd.DataFrame) -> list[np.ndarray]:
        """Per query, the candidate column indices (content first, then popular, then the
        most popular of the shown history's categories, then the items most often bought
        with the history shown, for a model with co-visits; no item the user has in
        `history` before the query's ts)."""
        known = _known_before(history, queries)
        popular_cols = np.array([self.column_[i] for i in self.popular_], dtype=np.int64)
        out = []
        for user in queries[USER].astype(str):
            rows = known.get(user)
            seen = set() if rows is None else {self.column_[i] for i in rows[ITEM]
                                                 if i in self.column_}
            chosen: list[int] = []
            if rows is not None and seen and self.n_content > 0:
                profile = self.embeddings_[sorted(seen)].mean(axis=0)  # (H,)
                sims = self.embeddings_ @ profile  # (I,)
                for c in np.argsort(-sims, kind="stable"):
                    if len(chosen) == self.n_content:
                        break
                    if c not in seen:
                        chosen.append(int(c))
            taken = set(chosen)
            extra = [int(c) for c in popular_cols if c not in seen and c not in taken]
            chosen += extra[:self.n_popular]
            if self.n_category and rows is not None:
                chosen += self._category_popular(rows, seen | set(chosen))
            if self.n_co_visits and rows is not None:
                chosen += self._co_visited(rows, seen | set(chosen))
            out.append(np.array(chosen, dtype=np.int64))
        return out

    def _category_popular(self, rows: pd.DataFrame, taken: set[int]) -> list[int]:
        """Columns of the `n_category` most popular items (the popularity list's order)
        of each category among the history shown, its most frequent category first, none
        of `taken`."""
        shown = list(rows[ITEM])[-self.model.config.history_len:]
        categories = pd.Series([category_key(self.records_[i]) for i in shown
                                if i in self.records_], dtype=object).dropna()
        out: list[int] = []
        for category in categories.value_counts(sort=True).index:
            fresh = [c for c in self.popular_by_category_.get(category, ())
                     if c not in taken][:self.n_category]
            out += fresh
            taken = taken | set(fresh)
        return out

    def _co_visited(self, rows: pd.DataFrame, taken: set[int]) -> list[int]:
        """Columns of the items with the highest co-visit score against the history
        shown (the model's `history_len` most recent items), none of `taken`."""
        table = self.model.co_visits
        shown = list(rows[ITEM])[-self.model.config.history_len:]
        scores = table.scores(shown)  # (items of the table,)
        out: list[int] = []
        for t in np.argsort(-scores, kind="stable"):
            if len(out) == self.n_co_visits or scores[t] <= 0:
                break
            c = self.column_.get(table.items[t])
            if c is not None and c not in taken:
                out.append(c)
        return out

    def text_pairs(self, history: pd.DataFrame, queries: pd.DataFrame,
                   columns: list[np.ndarray]) -> tuple[list[str], list[str]]:
        """The (text_a, text_b) pairs of every (query, candidate), query by query."""
        known = _known_before(history, queries)
        text_a: list[str] = []
        text_b: list[str] = []
        n = self.model.config.history_len
        share = self.model.config.category_share
        for query, cols in zip(queries.to_dict("records"), columns, strict=True):
            rows = known.get(str(query[USER]))
            recent = [] if rows is None else list(zip(rows[EVENT_TYPE], rows[ITEM],
                                                      strict=True))[-n:][::-1]
            ts = pd.Timestamp(query[TS]) if TS in query and not pd.isna(query[TS]) else None
            promotion = query.get(PROMOTION)
            promotion = None if promotion is None or pd.isna(promotion) else bool(promotion)
            for c in cols:
                a, b = self.model.text_pair(model_input(recent, ts, promotion,
                                                        self.items_[c], self.records_,
                                                        co_visits=self.model.co_visits,
                                                        with_share=share))
                text_a.append(a)
                text_b.append(b)
        return text_a, text_b

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        columns = self.candidates(history, queries)
        text_a, text_b = self.text_pairs(history, queries, columns)
        logits = self.model.score_pairs(text_a, text_b, batch_size=self.batch_size)
        scores = np.full((len(queries), len(self.items_)), -np.inf)  # (Q, I)
        start = 0
        for q, cols in enumerate(columns):
            scores[q, cols] = logits[start:start + len(cols)]
            start += len(cols)
            if self.n_new_slots:
                scores[q, cols] = with_new_item_slots(scores[q, cols], self.new_[cols],
                                                      self.n_new_slots)
        return scores


def trained_items(model: CrossEncoder, train: pd.DataFrame) -> set[str]:
    """The items `model` was trained on: those of its popularity release (DP or exact
    counts), else those of `train`. Any other item is new to it (`with_new_item_slots`)."""
    return set(model.item_popularity) or set(train[ITEM].astype(str))


def with_new_item_slots(scores: np.ndarray, new: np.ndarray, slots: int, *,
                        depth: int = NEW_ITEM_DEPTH) -> np.ndarray:
    """`scores` (n,) of one query's candidates with the best-scored `new` items moved
    into the last `slots` places of the top `depth` where fewer new items are there; the
    relative order of all other candidates is kept (module docstring)."""
    order = np.argsort(-scores, kind="stable")
    if len(order) <= depth:
        return scores
    wanted = slots - int(new[order[:depth]].sum())
    promoted = [c for c in order[depth:] if new[c]][:max(wanted, 0)]
    if not promoted:
        return scores
    moved = set(promoted)
    kept = [c for c in order[:depth + len(promoted)] if c not in moved]
    above, below = scores[kept[depth - len(promoted) - 1]], scores[kept[depth - len(promoted)]]
    out = scores.copy()
    for j, c in enumerate(promoted):  # evenly between the two neighbours, in order
        out[c] = above - (above - below) * (j + 1) / (len(promoted) + 1)
    return out


def _known_before(history: pd.DataFrame, queries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{user: their `history` rows, oldest first}. The history is taken as given: the
    caller decides what is known at query time (core.recommender.evaluate passes the interactions
    that precede the target in the user's sequence; scoring passes everything)."""
    if history.empty:
        return {}
    users = set(queries[USER].astype(str))
    frame = history.astype({USER: str, ITEM: str})
    frame = frame[frame[USER].isin(users)].sort_values([USER, TS, ITEM], kind="stable")
    return {u: rows for u, rows in frame.groupby(USER, sort=False)}


# --- data ------------------------------------------------------------------------------


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


# --- the run -----------------------------------------------------------------------------


def plan_privacy(config: TrainConfig, customers: int, *,
                 alongside: tuple[Mechanism, ...] = ()) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `customers` customers
    (composed with the `alongside` mechanisms, e.g. the popularity counts)."""
    return dp_plan.plan_privacy(config, customers, alongside=alongside, too_few=(
        "customers with a training example (an interaction with an earlier one); DP "
        "training needs many."))


@dataclass(frozen=True)
class PopularityRelease:
    """The item popularity a run releases (`core.recommender.item_popularity`): percentiles per item
    and the Gaussian mechanism that noised them (noise_multiplier 0: exact counts of a
    non-private run)."""

    percentiles: dict[str, int]
    noise_multiplier: float
    cap: int
    customers: int
    epsilon_alone: float  # what the release costs by itself (inf: not private)
    accountant: str
    reliability: float  # share of the released spread that is signal (1: exact)


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
class FinalFitNoise:
    """The DP fit of a private run's final weights (`core.recommender.mix_fit.fit_on_validation_
    private`): one Gaussian mechanism on a Poisson sample of the customers."""

    noise_multiplier: float  # of the one mechanism (per step: times sqrt(steps))
    sample_rate: float
    population: int  # customers with a validation target the sample is drawn from
    epsilon_alone: float
    accountant: str

    @property
    def mechanism(self) -> Mechanism:
        return (self.noise_multiplier, self.sample_rate, 1)


def final_fit_noise(config: TrainConfig, split: Split, pool: dict[str, bool],
                    delta: float) -> FinalFitNoise | None:
    """The DP final fit's mechanism for a private run, or None where it makes none
    (non-private runs, no fit asked for, or noise above `final_fit_max_noise`)."""
    if config.non_private or config.final_mix_users <= 0 or config.final_fit_share <= 0:
        return None
    population = int(pool_members(split.valid, pool)[USER].nunique())
    if population == 0:
        return None
    rate = min(1.0, config.final_mix_users / population)
    share = config.final_fit_share * config.epsilon
    sigma, used = dp_plan.noise_multiplier_for(epsilon=share, delta=delta, sample_rate=rate,
                                               steps=1, accountant=config.accountant)
    per_step = mix_fit.private_noise_per_step(sigma, config.final_fit_steps)
    if per_step / (rate * population) > config.final_fit_max_noise:
        return None
    return FinalFitNoise(sigma, rate, population, epsilon_for(
        noise_multiplier=sigma, sample_rate=rate, steps=1, delta=delta, accountant=used),
        used)


def model_config_for(config: TrainConfig, model_config: ModelConfig) -> ModelConfig:
    """The model a run trains: co-visits (exact counts of the training customers) only
    in a non-private run."""
    if model_config.co_visits and not config.non_private:
        return replace(model_config, co_visits=False)
    return model_config


LOG_FORM_MIN_RELIABILITY = 0.9  # Gift Cards' DP releases: 0.01-0.85; the 50k generator's: 0.99


def model_config_for_release(model_config: ModelConfig,
                             release: PopularityRelease | None) -> ModelConfig:
    """The model a run trains once its popularity is released: the percentile's log form
    only where at least `LOG_FORM_MIN_RELIABILITY` of the released spread is signal.
    The log separates the top percentiles (99 -> 2.9, 100 -> 3.6), which a noisy release
    fills partly with noise; a DP-SGD-learnt weight on it then reshuffles the prior's
    ranking (Gift Cards, DP eps = 3, reliability about 0.5: NDCG@10 0.110 / 0.145 / 0.114
    with it, 0.142 / 0.134 / 0.109 without, seeds 0-2). Reliability is post-processing of
    the release: deciding on it costs no budget."""
    if (model_config.popularity_log and release is not None
            and release.reliability < LOG_FORM_MIN_RELIABILITY):
        return replace(model_config, popularity_log=False)
    return model_config


def pool_members(frame: pd.DataFrame, pool: dict[str, bool]) -> pd.DataFrame:
    """The rows of `frame` whose customer may reach the model: all but the membership
    audit pool's left-out half."""
    return frame[frame[USER].astype(str).map(lambda u: pool.get(u, True))]


def trained_on(split: Split, pool: dict[str, bool]) -> pd.DataFrame:
    """The training interactions that statistics of a run may read: every training
    customer's (not only those with an example), minus the audit pool's left-out half."""
    return pool_members(split.train, pool)


def plan_run(config: TrainConfig, model_config: ModelConfig, split: Split, groups,
             pool: dict[str, bool]):
    """(config with its delta fixed, the interactions the popularity counts read (None:
    the model reads no popularity), the counts' noise (None: none or exact), the DP
    final fit's noise (None: no DP fit), the plan). Deterministic given its inputs:
    every rank of a distributed run computes the same."""
    customers = len({g.user for g in groups})
    counted = trained_on(split, pool) if model_config.popularity else None
    if config.delta is None:  # below 1/(10 N) for both releases' N
        config = dp_plan.with_overrides(config, delta=dp_plan.default_delta(
            max(customers, 0 if counted is None else int(counted[USER].nunique()))))
    noise = None
    if counted is not None and not config.non_private:
        noise = popularity_noise(config, config.delta)
    fit_noise = final_fit_noise(config, split, pool, config.delta)
    alongside = tuple(m.mechanism for m in (noise, fit_noise) if m is not None)
    plan = plan_privacy(config, customers, alongside=alongside)
    return config, counted, noise, fit_noise, plan


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


def _optimizer(model: CrossEncoder, config: TrainConfig) -> torch.optim.Optimizer:
    mix = [p for n, p in model.named_parameters() if p.requires_grad
           and n.startswith("prior_mix")]
    head = [p for n, p in model.named_parameters() if p.requires_grad
            and n.startswith(("bert.bert.pooler", "bert.classifier"))]
    taken = {id(p) for p in (*mix, *head)}
    body = [p for p in model.trainable_parameters() if id(p) not in taken]
    groups = [{"params": head, "lr": config.head_lr or config.lr}]
    if mix:
        groups.append({"params": mix, "lr": config.mix_lr})
    if body:
        groups.append({"params": body, "lr": config.lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def validation_metrics(model: CrossEncoder, split: Split, catalogue: pd.DataFrame, *,
                       users: int, seed: int) -> dict[str, float]:
    """HR@10 and NDCG@10 of the model on a seeded sample of `users` validation targets
    (full catalogue, candidate retrieval): the progress bar's signal, and what
    `keep_best` selects on."""
    if users <= 0 or split.valid.empty:
        return {"hr@10": float("nan"), "ndcg@10": float("nan")}
    sample = split.valid.sample(n=min(users, len(split.valid)), random_state=seed)
    sub = Split(train=split.train, valid=sample.reset_index(drop=True), test=split.test,
                name=split.name)
    result = evaluate(CrossEncoderRecommender(model).fit(split.train, catalogue), sub, k=10,
                      on="valid")
    return {"hr@10": float(result["hr@10"]), "ndcg@10": float(result["ndcg@10"])}


def _ledger_note(config: TrainConfig, plan: PrivacyPlan, split: Split, run_id: str) -> str:
    parts = [f"split {split.name}"]
    if config.non_private:
        parts.append("NON-PRIVATE run (explicit): no DP guarantee, epsilon recorded as inf")
    else:
        parts.append(f"user-level DP-SGD: one example group per sampled customer per step, "
                     f"at most {config.max_examples_per_customer} example groups per "
                     f"customer; Poisson sampling q={plan.sample_rate:.4g}; accountant "
                     f"{plan.accountant}" + (f" (fallback from {config.accountant})"
                                             if plan.accountant != config.accountant else ""))
    if config.val_users > 0 and not config.non_private:
        parts.append("not covered: the validation HR@10 shown on the progress bar (no "
                     "noise; shown, never used to choose the model)")
    if plan.alongside:
        parts.append(f"released with the item popularity counts charged as {run_id}"
                     f"{COUNTS_SUFFIX}; epsilon {config.epsilon} covers both, composed")
    if config.audit_pool:
        parts.append(f"membership audit pool of {config.audit_pool} customers, each left out "
                     "of training with probability 1/2")
    return "; ".join(parts)


@dataclass(frozen=True)
class TrainingData:
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


def train(paths: Paths | None = None, config: TrainConfig | None = None, *,
          model_config: ModelConfig | None = None, split_name: str = "leave_last_out",
          progress: bool = True, bert_config=None, run_id: str | None = None,
          before: pd.Timestamp | None = None, fit=None) -> str:
    """Train, evaluate and register one cross-encoder; returns its run id.

    `bert_config` (a transformers BertConfig) trains a randomly initialised model of that
    architecture instead of the bundled MiniLM (tests). Raises `TrainingRefused` for
    settings that cannot be trained and the ledger's `BudgetExceeded` when the steward's
    budget would be exceeded; in both cases nothing was trained.

    `fit` replaces the training loop (`_fit`'s signature and result): the distributed
    trainer (`core.recommender.train_distributed`) passes its loop across workers, and the charge,
    evaluation, registry and ledger completion stay this function's."""
    from core.registry import store as registry

    paths = paths or Paths()
    config = config or TrainConfig()
    model_config = model_config_for(config, model_config or ModelConfig())
    torch.set_num_threads(TORCH_THREADS)
    dp_plan.check_secure_mode(config)
    data = training_data(paths, config, model_config, split_name=split_name, before=before)
    split, catalogue, train_catalogue, held = (data.split, data.catalogue,
                                               data.train_catalogue, data.held)
    example_config, groups = data.example_config, data.groups
    pool: dict[str, bool] = {}
    candidates = {g.user for g in groups}
    config = replace(config, audit_pool=pool_size(config.audit_pool, len(candidates)))
    if config.audit_pool:
        # The one-run membership audit (`core.recommender.membership_audit`): pool customers are in
        # training with probability 1/2; the left-out half never reaches the model.
        try:
            pool = draw_pool(candidates, config.audit_pool, seed=config.seed)
        except ValueError as exc:
            raise TrainingRefused(f"membership audit pool: {exc}") from exc
        groups = [g for g in groups if pool.get(g.user, True)]
    config, counted, noise, fit_noise, plan = plan_run(config, model_config, split, groups,
                                                       pool)
    count_model = counted is not None
    run_id = run_id or registry.new_run_id("ce")
    fingerprint = registry.data_fingerprint(split.train)
    epsilon = float("inf") if config.non_private else config.epsilon
    charged = []
    common = dict(ledger_path=paths.ledger, budgets_path=paths.budgets,
                  dataset=config.dataset or paths.dataset, dataset_fingerprint=fingerprint,
                  delta=plan.delta, secure_mode=config.secure_mode, repo_dir=PROJECT_ROOT)
    try:
        if noise is not None:
            ledger.charge(run_id=run_id + COUNTS_SUFFIX, artefact_kind=COUNTS_KIND,
                          privacy_unit="customer", contribution_cap=config.popularity_cap,
                          noise_multiplier=noise.noise_multiplier, sample_rate=1.0, steps=1,
                          max_grad_norm=math.sqrt(config.popularity_cap),
                          epsilon=noise.epsilon_alone, accountant=noise.accountant,
                          mechanism=ledger.MECHANISM_GAUSSIAN_COUNTS,
                          to_follow=[*([] if fit_noise is None else [fit_noise.mechanism]),
                                     (plan.noise_multiplier, plan.sample_rate, plan.steps)],
                          note=f"customers per item, at most {config.popularity_cap} distinct "
                               f"items per customer (L2 sensitivity sqrt(cap)), Gaussian "
                               f"noise, released once for run {run_id}", **common)
            charged.append(run_id + COUNTS_SUFFIX)
        if fit_noise is not None:
            ledger.charge(run_id=run_id + FIT_SUFFIX, artefact_kind=FIT_KIND,
                          privacy_unit="customer", contribution_cap=1,
                          noise_multiplier=fit_noise.noise_multiplier,
                          sample_rate=fit_noise.sample_rate, steps=1, max_grad_norm=1.0,
                          epsilon=fit_noise.epsilon_alone, accountant=fit_noise.accountant,
                          mechanism=ledger.MECHANISM_GAUSSIAN_FIT,
                          to_follow=[(plan.noise_multiplier, plan.sample_rate, plan.steps)],
                          note=f"final weights of run {run_id} fitted on the validation "
                               f"targets of a Poisson sample of customers (rate "
                               f"{fit_noise.sample_rate:.4g}), one clipped gradient per "
                               f"customer per step, {config.final_fit_steps} noisy steps "
                               f"composed into this one Gaussian mechanism", **common)
            charged.append(run_id + FIT_SUFFIX)
        # each entry holds its own mechanism's epsilon; the run's is their composition
        training_epsilon = epsilon if config.non_private else epsilon_for(
            noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
            steps=plan.steps, delta=plan.delta, accountant=plan.accountant)
        ledger.charge(run_id=run_id, artefact_kind=ARTEFACT_KIND,
                      privacy_unit="none" if config.non_private else "customer",
                      contribution_cap=config.max_examples_per_customer,
                      noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                      steps=plan.steps, max_grad_norm=config.max_grad_norm,
                      epsilon=training_epsilon, accountant=plan.accountant,
                      note=_ledger_note(config, plan, split, run_id), **common)
        charged.append(run_id)
        release = (release_popularity(counted, train_catalogue, config, noise)
                   if count_model else None)
        if release is not None:
            train_catalogue = item_popularity.attach(train_catalogue, release.percentiles)
        asked_log = model_config.popularity and model_config.popularity_log
        model_config = model_config_for_release(model_config, release)
        # co-visits: non-private runs only (model_config_for)
        seen = trained_on(split, pool) if model_config.co_visits else None
        visits = {} if seen is None else {"co_visits": CoVisits.fit(seen),
                                          "own": own_items(seen)}
        model, curve, spent, timing = (fit or _fit)(groups, train_catalogue, split, config,
                                                    model_config, plan, progress=progress,
                                                    bert_config=bert_config, **visits)
        recommender = CrossEncoderRecommender(model).fit(split.train, catalogue)
        if config.non_private and model.mixes and config.final_mix_users > 0:
            started = time.perf_counter()
            fit_split = replace(split, valid=pool_members(split.valid, pool))
            timing["final_mix"] = mix_fit.fit_on_validation(
                recommender, fit_split, customers=config.final_mix_users, seed=config.seed)
            timing["final_mix"]["seconds"] = time.perf_counter() - started
        if fit_noise is not None and model.mixes:
            started = time.perf_counter()
            timing["final_mix"] = mix_fit.fit_on_validation_private(
                recommender, replace(split, valid=pool_members(split.valid, pool)),
                sample_rate=fit_noise.sample_rate, noise_multiplier=fit_noise.noise_multiplier,
                steps=config.final_fit_steps, lr=config.final_fit_lr,
                population=fit_noise.population)
            timing["final_mix"]["seconds"] = time.perf_counter() - started
        eval_split = sample_test_users(split, config.eval_users, seed=config.seed)
        started = time.perf_counter()
        segments = evaluate_segments(recommender, eval_split, held)
        metrics = {"model": segments.pop("all"), "segments": segments, "timing": timing,
                   "held_out_items": sorted(held)}
        timing["eval_seconds"] = time.perf_counter() - started
        if config.eval_baselines:
            metrics["baselines"] = evaluate_baselines(eval_split, catalogue, held=held)
        privacy = {
            "private": not config.non_private, "epsilon": spent, "target_epsilon": epsilon,
            "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate, "steps": plan.steps,
            "expected_batch_size": plan.batch_size, "customers": plan.people,
            "max_grad_norm": config.max_grad_norm, "accountant": plan.accountant,
            "privacy_unit": "none" if config.non_private else "customer",
            "contribution_cap": config.max_examples_per_customer,
            "contribution": "one example group per sampled customer per step",
            "secure_mode": config.secure_mode,
        }
        if release is not None:
            privacy["popularity_release"] = {
                "what": "customers per item (each counting at most `cap` distinct items), "
                        "Gaussian noise, released once; the model reads each item's "
                        "percentile, the candidate retrieval its order",
                "noise_multiplier": release.noise_multiplier, "cap": release.cap,
                "l2_sensitivity": math.sqrt(release.cap), "customers": release.customers,
                "epsilon_alone": release.epsilon_alone, "accountant": release.accountant,
                "reliability": release.reliability,
                "log_form": "read" if model.config.popularity_log else (
                    f"not read: reliability {release.reliability:.2f} below "
                    f"{LOG_FORM_MIN_RELIABILITY}" if asked_log else "off"),
                "ledger_run_id":
                    run_id + COUNTS_SUFFIX if noise is not None else None,
                "composed": "epsilon above covers training and this release (the "
                            "accountant composes both)" if noise is not None else
                            "exact counts (not private)"}
        else:
            privacy["not_covered"] = "popularity order of the training split used for candidates"
        if fit_noise is not None:
            privacy["final_fit"] = {
                "what": "the final logit's weights (head scale, mix) fitted on the "
                        "validation targets of a Poisson sample of customers, one clipped "
                        "gradient per customer per step, Gaussian noise",
                "noise_multiplier": fit_noise.noise_multiplier,
                "sample_rate": fit_noise.sample_rate, "steps": config.final_fit_steps,
                "epsilon_alone": fit_noise.epsilon_alone, "accountant": fit_noise.accountant,
                "ledger_run_id": run_id + FIT_SUFFIX,
                "composed": "epsilon above covers training, the counts and this fit"}
        if model.co_visits is not None:
            privacy["co_visits"] = {
                "what": "customers who interacted with both items, per item pair, exact (not "
                        "private); the model reads each candidate's item-kNN score against "
                        "the history shown, the candidate retrieval its top items",
                "customers": int(seen[USER].nunique()),
                "pairs": int(model.co_visits.counts.nnz // 2)}
        registry.save(paths, run_id=run_id, model=model, train_config=config.to_dict(),
                      privacy=privacy,
                      fingerprint={"sha256": fingerprint, "rows": len(split.train),
                                   "customers": plan.people, "split": split.name,
                                   "dataset": config.dataset or paths.dataset},
                      metrics=metrics, curve=curve,
                      candidates={"popular": recommender.popular_[
                          :model_config.popular_candidates].tolist(),
                          "source": "training split popularity" if release is None else
                          "released item popularity (core.recommender.item_popularity)",
                          "item_popularity": {} if release is None else release.percentiles},
                      extra_config={"split": split.name, "membership_pool": pool,
                                    "split_kind": split_name,
                                    "data_before": None if before is None else str(before),
                                    "example_config":
                                    example_config.to_dict()})
        if noise is not None:
            ledger.complete(ledger_path=paths.ledger, run_id=run_id + COUNTS_SUFFIX,
                            epsilon=noise.epsilon_alone, note=f"released with run {run_id}")
        if fit_noise is not None:
            ledger.complete(ledger_path=paths.ledger, run_id=run_id + FIT_SUFFIX,
                            epsilon=fit_noise.epsilon_alone, note=f"folded into run {run_id}")
        ledger.complete(ledger_path=paths.ledger, run_id=run_id,
                        epsilon=None if config.non_private else training_epsilon,
                        note=f"saved to {paths.models_dir / run_id}")
    except BaseException as exc:
        for charged_id in charged:
            ledger.fail(ledger_path=paths.ledger, run_id=charged_id,
                        note=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return run_id


def sample_test_users(split: Split, users: int | None, *, seed: int = 0) -> Split:
    """`split` with a seeded sample of `users` test targets (all with None)."""
    if users is None or users >= len(split.test):
        return split
    test = split.test.sample(n=users, random_state=seed).reset_index(drop=True)
    return Split(train=split.train, valid=split.valid, test=test,
                 name=f"{split.name}+sample({users} test users, seed {seed})")


def evaluate_baselines(split: Split, catalogue: pd.DataFrame, *, k: int = 10,
                       held: frozenset[str] = frozenset()) -> dict[str, dict[str, object]]:
    """Popularity, item-kNN and zero-shot content on the same split (full catalogue);
    with `held` items, each also carries its "segments" (`evaluate_segments`)."""
    from core.recommender.baselines import ItemKNN, Popularity, ZeroShotContent

    out = {}
    for model in (Popularity(), ItemKNN(), ZeroShotContent()):
        segments = evaluate_segments(model.fit(split.train, catalogue), split, held, k=k)
        out[model.name] = {**segments.pop("all"), "segments": segments}
    return out


def evaluate_segments(model, split: Split, held: frozenset[str] = frozenset(), *,
                      k: int = 10, max_history: int = 2) -> dict[str, dict[str, object]]:
    """Full-catalogue metrics on the test targets: "all"; with `held` items, "warm_items"
    (targets the training data contains) and "cold_items" (targets never seen in
    training: hr@k is their recall@k); "cold_users" (at most `max_history` earlier
    interactions) where there are such customers. Segments with no target are left out."""
    out = {"all": evaluate(model, split, k=k, on="test")}
    test = split.test
    masks = {}
    if held:
        cold = test[ITEM].astype(str).isin(held).to_numpy()
        masks["warm_items"], masks["cold_items"] = ~cold, cold
    earlier = (pd.concat([split.train, split.valid]).groupby(USER).size()
               .reindex(test[USER], fill_value=0).to_numpy())
    masks["cold_users"] = earlier <= max_history
    for name, mask in masks.items():
        if mask.any():
            sub = Split(train=split.train, valid=split.valid,
                        test=test[mask].reset_index(drop=True), name=f"{split.name}+{name}")
            out[name] = evaluate(model, sub, k=k, on="test")
    return out


def _new_model(model_config: ModelConfig, bert_config, seed: int) -> CrossEncoder:
    torch.manual_seed(seed)
    if bert_config is not None:
        return CrossEncoder.from_config(bert_config, model_config, seed=seed)
    return CrossEncoder.from_pretrained(model_config)


def build_dataset(groups, catalogue: pd.DataFrame, model: CrossEncoder, *,
                  seed: int = 0, co_visits: CoVisits | None = None,
                  own: dict[str, frozenset[str]] | None = None) -> CustomerDataset:
    """The per-customer dataset of `groups`, tokenized for `model` (with its prior).
    The model takes the released popularity percentiles of `catalogue` (its column
    `core.recommender.item_popularity.POPULARITY`, where present) and the `co_visits` table (a model
    that reads co-visits) as its own: they travel with it to the registry and to every
    catalogue it scores. `own`: each customer's items, left out of its examples'
    co-visit scores."""
    if item_popularity.POPULARITY in catalogue.columns:
        model.item_popularity = item_popularity.of(catalogue)
    if model.config.co_visits and co_visits is not None:
        model.co_visits = co_visits  # without: no example shows co-visits (feature 0)
    return CustomerDataset(groups, item_records(catalogue), pair_states=model.pair_states,
                           prior=model.prior_similarity,
                           omit=frozenset(model.config.omit_fields), seed=seed,
                           co_visits=model.co_visits, own=own,
                           with_share=model.config.category_share)


def _store_grad_sample(*, param: torch.Tensor, grad_sample: torch.Tensor,
                       max_batch_len: int) -> None:
    """Opacus' `create_or_accumulate_grad_sample` without a copy it makes for nothing.

    Opacus keeps a layer's per-sample gradient in a zero-filled (max batch, *shape)
    buffer and copies the layer's result into it, so that a layer called twice in one
    forward can add to it. Every layer here is called once per forward and its result
    already covers the whole batch: that buffer was a second copy of every per-customer
    gradient (about 1 GB a step for a batch of 128 customers), filled with zeros and
    then overwritten. The result itself is kept instead (same values); a view, a partial
    batch or a second call takes Opacus' own path."""
    if (param.requires_grad and not hasattr(param, "_current_grad_sample")
            and grad_sample.shape[0] == max_batch_len and grad_sample._base is None):
        param._current_grad_sample = grad_sample
        return
    _OPACUS_STORE(param=param, grad_sample=grad_sample, max_batch_len=max_batch_len)


def _keep_opacus_grad_samples() -> None:
    """Install `_store_grad_sample` in Opacus' hooks (once per process)."""
    global _OPACUS_STORE
    from opacus.grad_sample import grad_sample_module as gsm

    if gsm.create_or_accumulate_grad_sample is not _store_grad_sample:
        _OPACUS_STORE = gsm.create_or_accumulate_grad_sample
        gsm.create_or_accumulate_grad_sample = _store_grad_sample


_OPACUS_STORE = None  # Opacus' own function, set by _keep_opacus_grad_samples


def prepare_training(model: CrossEncoder, dataset: CustomerDataset, config: TrainConfig,
                     plan: PrivacyPlan):
    """(module, optimizer, loader, engine): with DP, Opacus' GradSampleModule, DPOptimizer
    and Poisson-sampling DPDataLoader (engine: the PrivacyEngine, None without DP)."""
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True,
                        collate_fn=collate_groups, generator=generator)
    optimizer = _optimizer(model, config)
    if config.non_private:
        return model, optimizer, loader, None
    from opacus import PrivacyEngine

    _keep_opacus_grad_samples()
    noise_generator = None if config.secure_mode else generator
    with warnings.catch_warnings():
        # secure_mode is a recorded choice (TrainConfig, ledger): no need to nag about it
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        if config.grad_sample_mode == "bookkeeping":
            module, optimizer, loader = make_bookkeeping_private(
                engine, model, optimizer, loader, config, plan,
                noise_generator=noise_generator)
        else:
            private = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader,
                noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
                poisson_sampling=True, grad_sample_mode=config.grad_sample_mode,
                criterion=ListwiseLoss(), noise_generator=noise_generator)
            # ghost mode also returns its loss wrapper; `batch_loss` builds one per batch
            module, optimizer, loader = private[0], private[1], private[-1]
    if abs(loader.sample_rate - plan.sample_rate) > 1e-12:
        raise AssertionError(f"Opacus samples at {loader.sample_rate}, the ledger was "
                             f"charged for {plan.sample_rate}")
    # Opacus sizes its Poisson loader as int(1 / (1 / n)) batches per epoch, which float
    # rounding makes n - 1 for some n (93, 391, ...), and then tells the accountant
    # q = 1 / (n - 1) and the optimizer an expected batch of N / (n - 1). Align all three
    # with the plan the ledger was charged for.
    loader.batch_sampler.steps = plan.steps_per_epoch
    optimizer.expected_batch_size = int(len(dataset) * plan.sample_rate)
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(
        sample_rate=plan.sample_rate))
    account_alongside(engine, plan)
    return module, optimizer, loader, engine


def account_alongside(engine, plan: PrivacyPlan) -> None:
    """Put the mechanisms released with the run (the popularity counts) in the
    accountant's history before its first step: every epsilon it reports, on the
    progress bar and at the end, is then the composition the ledger was charged for."""
    engine.accountant.history.extend(plan.alongside)


def make_bookkeeping_private(engine, model: CrossEncoder, optimizer: torch.optim.Optimizer,
                             loader: DataLoader, config: TrainConfig, plan: PrivacyPlan, *,
                             noise_generator, world_size: int | None = None):
    """Opacus' `make_private` with book-keeping clipping: (module, optimizer, loader).

    Clipping is ours (core.dp.clipping); the Poisson loader, the noise, the scaling and the
    accountant are Opacus': the parts make_private puts together for its ghost clipping,
    whose optimizer takes p.grad as the clipped sum. `world_size` (distributed): each
    rank's expected share of the batch, as make_private computes it, and Opacus'
    distributed optimizer and sampler."""
    distributed = world_size is not None
    module = BookkeepingClipping(model, config.max_grad_norm)
    loader = engine._prepare_data_loader(loader, poisson_sampling=True,
                                         distributed=distributed)
    expected = int(len(loader.dataset) * plan.sample_rate)
    optimizer = engine._prepare_optimizer(
        optimizer=optimizer, noise_multiplier=plan.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected / world_size if distributed else expected,
        loss_reduction="mean", distributed=distributed, grad_sample_mode="ghost",
        noise_generator=noise_generator)
    return module, optimizer, loader


class ListwiseLoss(torch.nn.Module):
    """`listwise_loss` as a criterion with a `reduction` ("mean", "sum" or "none"): the
    form Opacus' ghost clipping wraps to get one loss per customer."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        losses = listwise_loss(logits)  # (B,)
        if self.reduction == "none":
            return losses
        return losses.mean() if self.reduction == "mean" else losses.sum()


def batch_loss(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               logits: torch.Tensor):
    """The mean listwise loss over the batch's customers, ready for `.backward()`. Under
    book-keeping clipping its backward also leaves the clipped sum in p.grad; under
    ghost clipping it is Opacus' wrapper, whose backward runs the norm pass, computes
    each customer's clipping factor and runs the clipped pass."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    if isinstance(module, BookkeepingClipping):
        return module.loss(listwise_loss(logits))  # backward() also clips
    if isinstance(module, GradSampleModuleFastGradientClipping):
        return DPLossFastGradientClipping(module, optimizer, ListwiseLoss(), "mean")(logits)
    return listwise_loss(logits).mean()  # mean over customers; Opacus rescales per sample


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               batch: tuple[torch.Tensor, ...], trainable: list[torch.nn.Parameter], *,
               private: bool) -> float:
    """One optimisation step on a batch of customer groups; returns the mean loss (nan
    for an empty batch).

    An empty Poisson batch (possible with small sample rates) gets no forward pass, but
    under DP the optimizer still steps: the noise is added to a zero gradient and the
    accountant counts the step, as the privacy analysis assumes."""
    hidden, mask, prior = batch
    optimizer.zero_grad(set_to_none=True)
    if hidden.shape[0] == 0:
        if not private:
            return float("nan")
        for p in trainable:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)  # hooks mode reads these
            p.grad = torch.zeros_like(p)  # ghost and book-keeping modes sum p.grad
        optimizer.step()
        return float("nan")
    loss = batch_loss(module, optimizer, module(hidden, mask, prior))  # logits (B, G)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def check_accounted(engine, plan: PrivacyPlan) -> None:
    """The accountant counted exactly the steps and sample rate the ledger was charged
    for (its history merges equal consecutive steps: [(sigma, q, steps)])."""
    history = engine.accountant.history
    expected = [*plan.alongside, (plan.noise_multiplier, plan.sample_rate, plan.steps)]
    if [(q, n) for _, q, n in history] != [(q, n) for _, q, n in expected]:
        raise AssertionError(f"the accountant saw {history}, the ledger was charged for "
                             f"{plan.steps} steps at q = {plan.sample_rate}")


def _trainable_state(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _fit(groups, catalogue: pd.DataFrame, split: Split, config: TrainConfig,
         model_config: ModelConfig, plan: PrivacyPlan, *, progress: bool, bert_config,
         co_visits: CoVisits | None = None, own: dict[str, frozenset[str]] | None = None
         ) -> tuple[CrossEncoder, list[dict[str, object]], float, dict[str, float]]:
    """The training loop. Returns (model in eval mode, curve, epsilon spent, timing)."""
    model = _new_model(model_config, bert_config, config.seed)
    dataset = build_dataset(groups, catalogue, model, seed=config.seed, co_visits=co_visits,
                            own=own)
    mix_start = None
    if config.non_private and model.mixes:
        mix_start = mix_fit.fit_mix(model, dataset, seed=config.seed)
    module, optimizer, loader, engine = prepare_training(model, dataset, config, plan)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    trainable = model.trainable_parameters()
    curve: list[dict[str, object]] = []
    step_seconds: list[float] = []
    bar = tqdm(total=plan.steps, disable=not progress, desc="train", unit="step")
    val_hr = float("nan")
    spent = 0.0
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    if config.keep_best:
        score = validation_metrics(model, split, catalogue, users=config.val_users,
                                   seed=config.seed)["ndcg@10"]
        best = (score, 0, _trainable_state(model))
    module.train()
    # The frozen layers run without grad, so the first trainable layer's backward hook
    # sees no input gradient; that is intended (Opacus only needs the module outputs).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(math.ceil(plan.steps / plan.steps_per_epoch)):
        for batch in loader:
            if len(curve) >= plan.steps:
                break
            started = time.perf_counter()
            loss = train_step(module, optimizer, batch, trainable, private=engine is not None)
            schedule.step()
            step_seconds.append(time.perf_counter() - started)
            if engine is not None:
                with warnings.catch_warnings():  # PRV at q = 1 takes log(0) harmlessly
                    warnings.simplefilter("ignore", RuntimeWarning)
                    spent = float(engine.accountant.get_epsilon(delta=plan.delta))
            curve.append({"step": len(curve) + 1, "epoch": epoch + 1,
                          "batch_size": int(batch[0].shape[0]), "loss": loss,
                          "epsilon": None if engine is None else spent,
                          "seconds": step_seconds[-1]})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{spent:.2f}" if engine else "inf",
                            val_hr10=f"{val_hr:.3f}")
        if config.val_users > 0:
            val = validation_metrics(model, split, catalogue, users=config.val_users,
                                     seed=config.seed)
            val_hr = val["hr@10"]
            model.train()
            curve[-1]["val_hr@10"] = val_hr
            curve[-1]["val_ndcg@10"] = val["ndcg@10"]
            if best is not None and val["ndcg@10"] > best[0]:
                best = (val["ndcg@10"], epoch + 1, _trainable_state(model))
            bar.set_postfix(loss=f"{curve[-1]['loss']:.3f}",
                            eps=f"{spent:.2f}" if engine else "inf", val_hr10=f"{val_hr:.3f}")
    bar.close()
    if engine is not None:
        check_accounted(engine, plan)
        module.cleanup()  # remove the clipping hooks and attributes: the saved model is plain
    if best is not None:
        model.load_state_dict(best[2], strict=False)
    model.eval()
    total = float(np.sum(step_seconds)) if step_seconds else 0.0
    timing = {"kept_epoch": best[1] if best is not None else (curve[-1]["epoch"] if curve
                                                               else 0),
              "steps": len(curve), "seconds_per_step": total / max(len(curve), 1),
              "train_seconds": total,
              "customers_per_second": sum(c["batch_size"] for c in curve) / max(total, 1e-9)}
    if mix_start is not None:
        timing["mix_start"] = [float(w) for w in mix_start]  # fit_mix's weights
    return model, curve, float("inf") if engine is None else spent, timing
