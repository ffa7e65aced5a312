"""Training the cross-encoder with user-level DP-SGD (Opacus), and ranking with it.

`train(paths, config)` builds the split and the example groups, fixes the noise for the
privacy budget, charges the budget ledger BEFORE any training work (a refusal means
nothing starts), trains with Opacus (Poisson sampling over customers, one example group
per sampled customer, per-customer clipping), evaluates, saves the run to the registry
and completes the ledger entry; any failure after the charge marks the entry failed.

What the guarantee covers: the privacy unit is the CUSTOMER. The dataset has one row
per customer (`core.examples.CustomerDataset`): a sampled customer contributes one of
their at most `max_examples_per_customer` example groups, through one clipped gradient,
so (epsilon, delta) bound what the model reveals about any one customer's whole
history, not just about one interaction.

Not covered, and recorded as such in the ledger note: the candidate retrieval's
popularity list (the most popular items of the training split) is a plain statistic
of personal data; validation HR@10 shown during training is computed on the
validation targets without noise.

Candidates at inference (`CrossEncoderRecommender`): a cross-encoder reads one text
pair per (customer, item), far too slow for the whole catalogue on a CPU, so it
re-ranks a cheap candidate set: the union of the `content_candidates` (default 50)
items whose MiniLM embedding is closest to the mean embedding of the customer's
history items, and the `popular_candidates` (default 20) most popular items of the
training split, both without the items the customer already has. Items outside the
set score -inf.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.baselines import item_text
from core.config import Paths
from core.encoder import embed_texts
from core.evaluate import evaluate
from core.examples import (
    CustomerDataset,
    ExampleConfig,
    build_examples,
    collate_groups,
    item_records,
    listwise_loss,
    model_input,
)
from core.fields import to_text_pair
from core.interactions import (
    EVENT_TYPE,
    ITEM,
    PROMOTION,
    TS,
    USER,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)
from core.model import TORCH_THREADS, CrossEncoder, ModelConfig
from core.splits import Split, leave_last_out, time_split

ACCOUNTANTS = ("prv", "rdp")
GRAD_SAMPLE_MODES = ("hooks",)
SPLITS = ("leave_last_out", "time")
ARTEFACT_KIND = "ranking_model"


class TrainingRefused(RuntimeError):
    """The configuration cannot be trained (message says why and what to change)."""


@dataclass(frozen=True)
class TrainConfig:
    """Training and privacy settings of one run.

    epsilon / delta: the user-level budget; delta None means min(1e-5, 1 / (10 N)) for
        N customers, and a given delta must not exceed 1 / (10 N).
    batch_size: EXPECTED customers per step (Poisson sampling: the sample rate is
        1 / ceil(N / batch_size), as Opacus computes it).
    lr / head_lr: AdamW learning rates of the trainable encoder layers and of the
        pooler + head (head_lr None: the same as lr).
    non_private: train without DP (explicit only); recorded with epsilon = inf.
    negative_weighting: "uniform" (default; required under DP) or "popularity".
    max_customers: train on a random subset of customers (quick runs).
    val_users: validation users ranked after each epoch for the progress bar (0: none).
    """

    epsilon: float = 3.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    accountant: str = "prv"
    secure_mode: bool = False
    non_private: bool = False
    grad_sample_mode: str = "hooks"
    max_examples_per_customer: int = 8
    negative_weighting: str = "uniform"
    same_category_share: float = 0.5
    max_customers: int | None = None
    val_users: int = 32
    eval_baselines: bool = False

    def __post_init__(self) -> None:
        if not self.non_private and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon={self.epsilon}: give a finite positive budget, or "
                             "train without privacy explicitly with non_private=True.")
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta={self.delta}: must lie in (0, 1).")
        if self.max_grad_norm <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"max_grad_norm={self.max_grad_norm}, epochs={self.epochs}, "
                             f"batch_size={self.batch_size}: all must be positive.")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant={self.accountant!r}: choose one of {ACCOUNTANTS}.")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"grad_sample_mode={self.grad_sample_mode!r}: only "
                             f"{GRAD_SAMPLE_MODES} is supported (the grouped forward keeps "
                             "one row per customer for the hooks).")
        if not self.non_private and self.negative_weighting != "uniform":
            raise ValueError("negative_weighting='popularity' makes one customer's examples "
                             "depend on everyone's data, which the DP-SGD analysis does not "
                             "cover: use 'uniform' for private runs.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# --- privacy plumbing: the accountant and the ledger ---------------------------------


def default_delta(customers: int) -> float:
    """min(1e-5, 1 / (10 N)): well below the 1/N at which releasing one record is DP."""
    return min(1e-5, 1.0 / (10 * max(customers, 1)))


def noise_multiplier_for(*, epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str) -> tuple[float, str]:
    """(sigma, accountant used): PRV where it works, else RDP (recorded)."""
    try:
        from privacy.accounting import noise_for
    except ImportError:  # helper module not there yet: the same computation via Opacus
        noise_for = _noise_for
    order = [accountant] + [a for a in ACCOUNTANTS if a != accountant]
    errors = []
    for name in order:
        try:
            return float(noise_for(target_epsilon=epsilon, delta=delta,
                                   sample_rate=sample_rate, steps=steps,
                                   accountant=name)), name
        except (ValueError, RuntimeError, OverflowError, FloatingPointError) as exc:
            errors.append(f"{name}: {exc}")
    raise TrainingRefused(f"no noise multiplier reaches epsilon={epsilon} at delta={delta}, "
                          f"q={sample_rate:.4g}, {steps} steps ({'; '.join(errors)}): raise "
                          "epsilon, or lower epochs or the batch size.")


def _noise_for(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
               accountant: str = "prv") -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                sample_rate=sample_rate, steps=steps, accountant=accountant,
                                epsilon_tolerance=0.01)


def _ledger():
    """privacy.ledger (charge / complete / fail / BudgetExceeded), or a minimal stand-in
    with the same calls while that module does not exist."""
    try:
        from privacy import ledger
        return ledger
    except ImportError:
        return _StandInLedger


class _StandInLedger:
    """Append-only JSON lines with the same keyword signatures as privacy.ledger."""

    class BudgetExceeded(RuntimeError):
        pass

    @staticmethod
    def _append(path, record: Mapping[str, object]) -> None:
        import json
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"at": pd.Timestamp.now("UTC").isoformat(), **record},
                               default=str) + "\n")

    @classmethod
    def charge(cls, *, ledger_path, budgets_path, run_id, repo_dir=None, note="", **fields):
        cls._append(ledger_path, {"event": "charge", "run_id": run_id, "note": note,
                                  **fields})

    @classmethod
    def complete(cls, *, ledger_path, run_id, epsilon=None, note=""):
        cls._append(ledger_path, {"event": "complete", "run_id": run_id, "epsilon": epsilon,
                                  "note": note})

    @classmethod
    def fail(cls, *, ledger_path, run_id, note=""):
        cls._append(ledger_path, {"event": "fail", "run_id": run_id, "note": note})


def budgets_path(paths: Paths):
    return paths.data_dir / "privacy_budgets.json"


# --- candidates and the recommender ----------------------------------------------------


class CrossEncoderRecommender(BaseEstimator):
    """`core.recommender.Recommender` over a trained CrossEncoder: cheap retrieval
    (content + popular, see the module docstring), re-ranked by the cross-encoder.

    `fit` computes the popularity list of `train` and the catalogue's item embeddings
    (cached per catalogue by `core.encoder`); the CrossEncoder is given, never reloaded.
    `score_items` returns (Q, I) with the cross-encoder logit on each query's candidates
    and -inf elsewhere."""

    def __init__(self, model: CrossEncoder, *, content_candidates: int | None = None,
                 popular_candidates: int | None = None, batch_size: int = 64,
                 name: str = "cross-encoder"):
        self.model = model
        self.content_candidates = content_candidates
        self.popular_candidates = popular_candidates
        self.batch_size = batch_size
        self.name = name

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> CrossEncoderRecommender:
        if ITEM not in catalogue.columns:
            raise ValueError(f"the catalogue has no {ITEM!r} column: pass "
                             "core.interactions.load_catalogue() or interacted_catalogue().")
        self.items_ = np.array(sorted(catalogue[ITEM].astype(str).unique()), dtype=object)
        self.records_ = item_records(catalogue)
        rows = [self.records_[i] for i in self.items_]
        self.embeddings_ = embed_texts([item_text(r) for r in rows])  # (I, H) unit rows
        counts = train[ITEM].astype(str).value_counts()
        counts = counts[counts.index.isin(set(self.items_))]
        # Ties by item id so that every fit gives one order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.popular_ = np.array([i for i, _ in ranked], dtype=object)
        self.column_ = {item: c for c, item in enumerate(self.items_)}
        return self

    @property
    def n_content(self) -> int:
        return (self.model.config.content_candidates if self.content_candidates is None
                else self.content_candidates)

    @property
    def n_popular(self) -> int:
        return (self.model.config.popular_candidates if self.popular_candidates is None
                else self.popular_candidates)

    def candidates(self, history: pd.DataFrame, queries: pd.DataFrame) -> list[np.ndarray]:
        """Per query, the candidate column indices (content first, then popular; no item
        the user has in `history` before the query's ts)."""
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
            out.append(np.array(chosen, dtype=np.int64))
        return out

    def text_pairs(self, history: pd.DataFrame, queries: pd.DataFrame,
                   columns: list[np.ndarray]) -> tuple[list[str], list[str]]:
        """The (text_a, text_b) pairs of every (query, candidate), query by query."""
        known = _known_before(history, queries)
        text_a: list[str] = []
        text_b: list[str] = []
        n = self.model.config.history_len
        for query, cols in zip(queries.to_dict("records"), columns, strict=True):
            rows = known.get(str(query[USER]))
            recent = [] if rows is None else list(zip(rows[EVENT_TYPE], rows[ITEM],
                                                      strict=True))[-n:][::-1]
            ts = pd.Timestamp(query[TS]) if TS in query and not pd.isna(query[TS]) else None
            promotion = query.get(PROMOTION)
            promotion = None if promotion is None or pd.isna(promotion) else bool(promotion)
            for c in cols:
                a, b = to_text_pair(model_input(recent, ts, promotion, self.items_[c],
                                                self.records_))
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
        return scores


def _known_before(history: pd.DataFrame, queries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{user: their history rows strictly before their query's ts, oldest first}."""
    if history.empty:
        return {}
    when = queries[[USER, TS]].astype({USER: str}).rename(columns={TS: "_query_ts"})
    frame = history.astype({USER: str, ITEM: str}).merge(when, on=USER, how="inner")
    query_ts = pd.to_datetime(frame["_query_ts"])
    frame = frame[query_ts.isna() | (pd.to_datetime(frame[TS]) < query_ts)]
    frame = frame.sort_values([USER, TS, ITEM], kind="stable")
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


def load_training_data(paths: Paths, *, max_customers: int | None = None, seed: int = 0
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, ranking catalogue) from the warehouse; with `max_customers` a seeded
    random subset of customers."""
    interactions = load_interactions(paths)
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


@dataclass(frozen=True)
class PrivacyPlan:
    customers: int
    delta: float
    batch_size: int  # expected customers per step
    steps_per_epoch: int
    sample_rate: float
    steps: int
    noise_multiplier: float
    accountant: str


def plan_privacy(config: TrainConfig, customers: int) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `customers` customers."""
    if customers < 2:
        raise TrainingRefused(f"only {customers} customer(s) have a training example (an "
                              "interaction with an earlier one): DP training needs many.")
    limit = 1.0 / (10 * customers)
    delta = default_delta(customers) if config.delta is None else config.delta
    if not config.non_private and delta > limit:
        raise TrainingRefused(f"delta={delta} exceeds 1/(10 N) = {limit:.3g} for N="
                              f"{customers} customers: choose a smaller delta (or leave it "
                              "unset for the default min(1e-5, 1/(10 N))).")
    batch = min(config.batch_size, customers)
    per_epoch = math.ceil(customers / batch)
    sample_rate = 1.0 / per_epoch  # what Opacus' DPDataLoader uses
    steps = per_epoch * config.epochs
    if config.non_private:
        return PrivacyPlan(customers, delta, batch, per_epoch, sample_rate, steps, 0.0, "none")
    sigma, used = noise_multiplier_for(epsilon=config.epsilon, delta=delta,
                                       sample_rate=sample_rate, steps=steps,
                                       accountant=config.accountant)
    return PrivacyPlan(customers, delta, batch, per_epoch, sample_rate, steps, sigma, used)


def _check_secure_mode(config: TrainConfig) -> None:
    if config.secure_mode:
        try:
            import torchcsprng  # noqa: F401
        except ImportError as exc:
            raise TrainingRefused("secure_mode needs the torchcsprng package (a "
                                  "cryptographically secure noise generator), which is not "
                                  "installed: install it, or train without --secure-mode.") \
                from exc


def _optimizer(model: CrossEncoder, config: TrainConfig) -> torch.optim.Optimizer:
    head = [p for n, p in model.named_parameters() if p.requires_grad
            and (n.startswith("bert.bert.pooler") or n.startswith("bert.classifier"))]
    head_ids = {id(p) for p in head}
    body = [p for p in model.trainable_parameters() if id(p) not in head_ids]
    groups = [{"params": head, "lr": config.head_lr or config.lr}]
    if body:
        groups.append({"params": body, "lr": config.lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def validation_hr(model: CrossEncoder, split: Split, catalogue: pd.DataFrame, *,
                  users: int, seed: int, recommender: CrossEncoderRecommender | None = None
                  ) -> float:
    """HR@10 of the model on a seeded sample of `users` validation targets (full
    catalogue with the candidate retrieval): a cheap signal for the progress bar."""
    if users <= 0 or split.valid.empty:
        return float("nan")
    sample = split.valid.sample(n=min(users, len(split.valid)), random_state=seed)
    sub = Split(train=split.train, valid=sample.reset_index(drop=True), test=split.test,
                name=split.name)
    rec = recommender or CrossEncoderRecommender(model).fit(split.train, catalogue)
    return float(evaluate(rec, sub, k=10, on="valid")["hr@10"])


def _ledger_note(config: TrainConfig, plan: PrivacyPlan, split: Split) -> str:
    parts = [f"split {split.name}"]
    if config.non_private:
        parts.append("NON-PRIVATE run (explicit): no DP guarantee, epsilon recorded as inf")
    else:
        parts.append(f"user-level DP-SGD: one example group per sampled customer per step, "
                     f"at most {config.max_examples_per_customer} example groups per "
                     f"customer; Poisson sampling q={plan.sample_rate:.4g}; accountant "
                     f"{plan.accountant}" + (f" (fallback from {config.accountant})"
                                             if plan.accountant != config.accountant else ""))
    parts.append("candidate retrieval ships the popularity order of the training split "
                 "(not noised, not covered by epsilon)")
    return "; ".join(parts)


def train(paths: Paths | None = None, config: TrainConfig = TrainConfig(), *,
          model_config: ModelConfig = ModelConfig(), split_name: str = "leave_last_out",
          progress: bool = True, bert_config=None, run_id: str | None = None) -> str:
    """Train, evaluate and register one cross-encoder; returns its run id.

    `bert_config` (a transformers BertConfig) trains a randomly initialised model of that
    architecture instead of the bundled MiniLM (tests). Raises `TrainingRefused` for
    settings that cannot be trained and the ledger's `BudgetExceeded` when the steward's
    budget would be exceeded; in both cases nothing was trained."""
    from core import registry

    paths = paths or Paths()
    torch.set_num_threads(TORCH_THREADS)
    _check_secure_mode(config)
    interactions, catalogue = load_training_data(paths, max_customers=config.max_customers,
                                                 seed=config.seed)
    split = make_split(interactions, split_name)
    example_config = ExampleConfig(history_len=model_config.history_len,
                                   negatives=model_config.negatives,
                                   same_category_share=config.same_category_share,
                                   negative_weighting=config.negative_weighting,
                                   max_per_customer=config.max_examples_per_customer,
                                   seed=config.seed)
    groups = build_examples(split.train, catalogue, example_config)
    customers = len({g.user for g in groups})
    plan = plan_privacy(config, customers)
    run_id = run_id or registry.new_run_id("ce")
    fingerprint = registry.data_fingerprint(split.train)
    epsilon = float("inf") if config.non_private else config.epsilon
    ledger = _ledger()
    ledger.charge(ledger_path=paths.ledger, budgets_path=budgets_path(paths), run_id=run_id,
                  dataset=str(paths.warehouse.name), dataset_fingerprint=fingerprint,
                  artefact_kind=ARTEFACT_KIND,
                  privacy_unit="none" if config.non_private else "customer",
                  contribution_cap=config.max_examples_per_customer,
                  noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                  steps=plan.steps, max_grad_norm=config.max_grad_norm, delta=plan.delta,
                  epsilon=epsilon, accountant=plan.accountant,
                  secure_mode=config.secure_mode, note=_ledger_note(config, plan, split))
    try:
        model, curve, spent, timing = _fit(groups, catalogue, split, config, model_config,
                                           plan, progress=progress, bert_config=bert_config)
        recommender = CrossEncoderRecommender(model).fit(split.train, catalogue)
        metrics = {"model": evaluate(recommender, split, k=10, on="test"),
                   "timing": timing}
        if config.eval_baselines:
            metrics["baselines"] = evaluate_baselines(split, catalogue)
        privacy = {
            "private": not config.non_private, "epsilon": spent, "target_epsilon": epsilon,
            "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate, "steps": plan.steps,
            "expected_batch_size": plan.batch_size, "customers": plan.customers,
            "max_grad_norm": config.max_grad_norm, "accountant": plan.accountant,
            "privacy_unit": "none" if config.non_private else "customer",
            "contribution_cap": config.max_examples_per_customer,
            "contribution": "one example group per sampled customer per step",
            "secure_mode": config.secure_mode,
            "not_covered": "popularity order of the training split used for candidates",
        }
        registry.save(paths, run_id=run_id, model=model, train_config=config.to_dict(),
                      privacy=privacy,
                      fingerprint={"sha256": fingerprint, "rows": len(split.train),
                                   "customers": plan.customers, "split": split.name,
                                   "dataset": str(paths.warehouse.name)},
                      metrics=metrics, curve=curve,
                      candidates={"popular": recommender.popular_[
                          :model_config.popular_candidates].tolist(),
                          "source": "training split popularity"},
                      extra_config={"split": split.name, "example_config":
                                    example_config.to_dict()})
        ledger.complete(ledger_path=paths.ledger, run_id=run_id,
                        epsilon=None if config.non_private else spent,
                        note=f"saved to {paths.models_dir / run_id}")
    except BaseException as exc:
        ledger.fail(ledger_path=paths.ledger, run_id=run_id,
                    note=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return run_id


def evaluate_baselines(split: Split, catalogue: pd.DataFrame, *, k: int = 10
                       ) -> dict[str, dict[str, object]]:
    """Popularity, item-kNN and zero-shot content on the same split (full catalogue)."""
    from core.baselines import ItemKNN, Popularity, ZeroShotContent

    return {m.name: evaluate(m.fit(split.train, catalogue), split, k=k, on="test")
            for m in (Popularity(), ItemKNN(), ZeroShotContent())}


def _new_model(model_config: ModelConfig, bert_config, seed: int) -> CrossEncoder:
    torch.manual_seed(seed)
    if bert_config is not None:
        return CrossEncoder.from_config(bert_config, model_config, seed=seed)
    return CrossEncoder.from_pretrained(model_config)


def _fit(groups, catalogue: pd.DataFrame, split: Split, config: TrainConfig,
         model_config: ModelConfig, plan: PrivacyPlan, *, progress: bool, bert_config
         ) -> tuple[CrossEncoder, list[dict[str, object]], float, dict[str, float]]:
    """The training loop. Returns (model in eval mode, curve, epsilon spent, timing)."""
    model = _new_model(model_config, bert_config, config.seed)
    dataset = CustomerDataset(groups, item_records(catalogue), model.tokenizer,
                              max_length=model_config.max_length, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True,
                        collate_fn=collate_groups, generator=generator)
    optimizer = _optimizer(model, config)
    engine = None
    module: torch.nn.Module = model
    if not config.non_private:
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        module, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
            poisson_sampling=True, grad_sample_mode=config.grad_sample_mode,
            noise_generator=None if config.secure_mode else generator)
        if abs(loader.sample_rate - plan.sample_rate) > 1e-12:
            raise AssertionError(f"Opacus samples at {loader.sample_rate}, the ledger was "
                                 f"charged for {plan.sample_rate}")
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    trainable = model.trainable_parameters()
    curve: list[dict[str, object]] = []
    step = 0
    step_seconds: list[float] = []
    bar = tqdm(total=plan.steps, disable=not progress, desc="train", unit="step")
    val_hr = float("nan")
    spent = 0.0
    module.train()
    # The frozen layers run without grad, so the first trainable layer's backward hook
    # sees no input gradient; that is intended (Opacus only needs the module outputs).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(config.epochs):
        for input_ids, attention_mask, token_type_ids in loader:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            size = int(input_ids.shape[0])
            if size == 0:
                # An empty Poisson batch: no forward pass; the DP optimizer still adds
                # noise and the accountant counts the step (as the analysis assumes).
                for p in trainable:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                loss_value = float("nan")
            else:
                logits = module(input_ids, attention_mask, token_type_ids)  # (B, G)
                loss = listwise_loss(logits).mean()
                loss.backward()
                loss_value = float(loss.detach())
            if engine is not None or size > 0:
                optimizer.step()
            schedule.step()
            step += 1
            step_seconds.append(time.perf_counter() - started)
            if engine is not None:
                spent = float(engine.accountant.get_epsilon(delta=plan.delta))
            curve.append({"step": step, "epoch": epoch + 1, "batch_size": size,
                          "loss": loss_value, "epsilon": None if engine is None else spent,
                          "seconds": step_seconds[-1]})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", eps=f"{spent:.2f}" if engine else "inf",
                            val_hr10=f"{val_hr:.3f}")
        if config.val_users > 0:
            val_hr = validation_hr(model, split, catalogue, users=config.val_users,
                                   seed=config.seed)
            model.train()
            curve[-1]["val_hr@10"] = val_hr
            bar.set_postfix(loss=f"{curve[-1]['loss']:.3f}",
                            eps=f"{spent:.2f}" if engine else "inf", val_hr10=f"{val_hr:.3f}")
    bar.close()
    if engine is not None:
        from opacus import GradSampleModule

        if isinstance(module, GradSampleModule):
            module.cleanup()  # remove the hooks: the saved model is a plain module
    model.eval()
    timing = {"steps": step, "seconds_per_step": float(np.mean(step_seconds)) if step_seconds
              else 0.0, "train_seconds": float(np.sum(step_seconds)),
              "customers_per_second": (float(sum(c["batch_size"] for c in curve))
                                       / max(float(np.sum(step_seconds)), 1e-9))}
    return model, curve, float("inf") if engine is None else spent, timing


def with_overrides(config: TrainConfig, **changes: object) -> TrainConfig:
    """`config` with the given fields replaced (None values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
