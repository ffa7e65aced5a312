"""Training, evaluating and scoring the review sentiment model, with reviewer-level DP.

`train(paths, config)` splits the reviews by time, fixes the noise for the privacy
budget, charges the budget ledger BEFORE any training work (a refusal means nothing
starts), trains with Opacus, evaluates next to VADER on the same test split, saves the
run to `data/models/sentiment/<run_id>/` and completes the ledger entry; any failure
after the charge marks the entry failed.

What the guarantee covers: the privacy unit is the REVIEWER. The dataset handed to
Opacus has one row per reviewer (`ReviewerDataset`); Poisson sampling picks reviewers,
and a sampled reviewer contributes ONE of their at most `max_reviews_per_reviewer`
reviews (drawn at random each time), through one clipped gradient. So (epsilon, delta)
bound what the model reveals about everything one reviewer wrote in the training
window, not just about one review.

Not covered by epsilon, and recorded as such in the ledger note: the three class
counts of the training pool (they set the class weights of the loss and are reported
as class shares), and the test metrics (computed on the newer reviews without noise).

Class imbalance: a class-weighted loss (`core.sentiment.data.class_weights`). Without
DP the weights multiply the loss; under DP-SGD they multiply each reviewer's gradient
AFTER it is clipped (`clip_and_weight`, weights scaled to at most 1), because a weight
applied before the clip is undone by it.

Speed: the embeddings and the frozen layers do not change during training, so their
output is computed once per review (`FeatureStore`) and every step runs only the
trainable top layers. Poisson batches vary in size and can be empty: an empty batch
runs no forward pass, but the optimizer still adds the noise and the accountant still
counts the step, as the analysis assumes.

Scoring (`score`) gives every review in the warehouse a label, the class
probabilities and the model's run id (`review_sentiment`), word attributions
(`core.sentiment.model`, gradient x activation) aggregated into aspects with the
reviewer floor (`review_aspects`), and the attributions of example reviews for the
page (`review_token_weights`), all replaced in one write transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from core.config import PROJECT_ROOT, Paths, PrivacyConfig
from core.dp import plan as dp_plan
from core.dp.plan import ACCOUNTANTS, PrivacyPlan, TrainingRefused
from core.sentiment import data as D
from core.sentiment import model as M
from core.sentiment.model import TORCH_THREADS, SentimentClassifier, SentimentModelConfig

ARTEFACT_KIND = "sentiment"
PRIVACY_UNIT = "customer"  # the reviewer: the ledger's name for a person in the data
VADER_THRESHOLD = 0.05  # compound score: >= +0.05 positive, <= -0.05 negative


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
        if not self.non_private and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon={self.epsilon}: give a finite positive budget, or "
                             "train without privacy explicitly with non_private=True.")
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta={self.delta}: must lie in (0, 1).")
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


# --- privacy plumbing: the accountant and the ledger -----------------------------------


def plan_privacy(config: SentimentTrainConfig, reviewers: int) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `reviewers` reviewers."""
    return dp_plan.plan_privacy(config, reviewers, too_few=(
        "reviewers in the training window; training needs many (ingest more reviews)."))


def _ledger_note(config: SentimentTrainConfig, plan: PrivacyPlan, cutoff: pd.Timestamp) -> str:
    parts = [f"review sentiment; time split at {cutoff.isoformat()} (train before)"]
    if config.non_private:
        parts.append("NON-PRIVATE comparison run (explicit --non-private): no DP guarantee, "
                     "epsilon recorded as inf")
    else:
        parts.append(f"reviewer-level DP-SGD: one review per sampled reviewer per step, "
                     f"drawn from at most {config.max_reviews_per_reviewer} reviews per "
                     f"reviewer; Poisson sampling q={plan.sample_rate:.4g}; accountant "
                     f"{plan.accountant}" + (f" (fallback from {config.accountant})"
                                             if plan.accountant != config.accountant else ""))
    parts.append("not covered by epsilon: the training pool's 3 class counts (class weights "
                 f"'{config.class_weighting}', reported class shares) and the test metrics")
    return "; ".join(parts)


# --- features of the frozen part, computed once per review -----------------------------


class FeatureStore:
    """Outputs of a model's frozen part (`SentimentClassifier.features`), per review text.

    They depend only on the frozen pretrained weights, so one store serves every run on
    the same base (the benchmark trains several models on one split). A store refuses a
    model whose frozen part differs from the first one it served."""

    def __init__(self) -> None:
        self._signature: str | None = None
        self._features: dict[str, torch.Tensor] = {}  # text -> (L, H) float16

    @staticmethod
    def signature(model: SentimentClassifier) -> str:
        digest = hashlib.sha256(json.dumps(
            [model.bert.config.to_dict().get(k) for k in ("hidden_size", "num_hidden_layers",
                                                          "vocab_size")]
            + [model.first_trainable, model.config.max_length], default=str).encode())
        frozen = model.bert.bert.embeddings.word_embeddings.weight
        digest.update(f"{float(frozen[:64].double().sum()):.10e}".encode())
        for layer in model.bert.bert.encoder.layer[:model.first_trainable]:
            weight = layer.attention.self.query.weight
            digest.update(f"{float(weight.double().sum()):.10e}".encode())
        return digest.hexdigest()

    def get(self, model: SentimentClassifier, texts: Sequence[str], *, batch_size: int = 64,
            progress: bool = False, desc: str = "features") -> list[torch.Tensor]:
        """(L_i, H) float16 features of each text (computing the missing ones)."""
        signature = self.signature(model)
        if self._signature is None:
            self._signature = signature
        elif signature != self._signature:
            raise ValueError("this FeatureStore holds features of another model's frozen "
                             "part: use a new store for a different base or trainable_layers.")
        missing = sorted({t for t in texts if t not in self._features}, key=len)
        torch.set_num_threads(TORCH_THREADS)
        bar = tqdm(total=len(missing), disable=not progress, desc=desc, unit="review")
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            batch = model.tokenize(chunk)
            hidden = model.features(batch["input_ids"], batch["attention_mask"])  # (B, L, H)
            lengths = batch["attention_mask"].sum(1).tolist()
            for text, h, n in zip(chunk, hidden, lengths, strict=True):
                self._features[text] = h[:int(n)].to(torch.float16).clone()
            bar.update(len(chunk))
        bar.close()
        return [self._features[t] for t in texts]


def pad_features(features: Sequence[torch.Tensor], hidden: int) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """(B, L, H) float32 features and (B, L) mask, L = the longest (at least 1)."""
    length = max([int(f.shape[0]) for f in features] + [1])
    out = torch.zeros((len(features), length, hidden), dtype=torch.float32)
    mask = torch.zeros((len(features), length), dtype=torch.long)
    for i, f in enumerate(features):
        out[i, :f.shape[0]] = f.float()
        mask[i, :f.shape[0]] = 1
    return out, mask


class ReviewerDataset(Dataset):
    """One row per reviewer; item i is ONE review of reviewer i, drawn at random from
    their capped pool each time it is read."""

    def __init__(self, groups: Sequence[np.ndarray], *, seed: int = 0):
        self.groups = list(groups)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        group = self.groups[index]
        # a tuple of tensors: what Opacus' DPDataLoader inspects for empty-batch shapes
        return (torch.tensor(int(group[self.rng.integers(len(group))])),)


def _collate(features: Sequence[torch.Tensor], labels: np.ndarray, weights: np.ndarray,
             hidden: int) -> Callable[[list[int]], tuple[torch.Tensor, ...]]:
    def collate(items: list[tuple[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        rows = np.array([int(item[0]) for item in items], dtype=np.int64)
        x, mask = pad_features([features[r] for r in rows], hidden)  # (B, L, H), (B, L)
        y = torch.as_tensor(labels[rows], dtype=torch.long).reshape(-1)  # (B,)
        w = torch.as_tensor(weights[labels[rows]], dtype=torch.float32).reshape(-1)  # (B,)
        return x, mask, y, w
    return collate


# --- the training loop -------------------------------------------------------------------


def clip_and_weight(params: Sequence[torch.nn.Parameter], weights: torch.Tensor, *,
                    max_grad_norm: float) -> None:
    """Clip each example's gradient (Opacus' `grad_sample`, over all `params`) to
    `max_grad_norm`, THEN scale it by its class weight in (0, 1].

    Why after clipping: under DP-SGD nearly every per-example gradient is clipped, so a
    weight applied to the loss (before clipping) is undone by the clip and the rare
    classes drown. Scaled after, every contribution still has norm <= max_grad_norm
    (weights <= 1): the sensitivity, hence the noise and the accounting, are unchanged.
    Opacus' own clip that follows finds nothing above the norm."""
    samples = [p.grad_sample for p in params]
    norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=-1) for g in samples],
                        dim=1).norm(2, dim=1)  # (B,)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * weights.clamp(0.0, 1.0)
    for g in samples:
        g.mul_(factor.reshape(-1, *([1] * (g.dim() - 1))).to(g.dtype))


@dataclass
class FitResult:
    curve: list[dict[str, object]]
    epsilon: float  # spent (inf without DP)
    timing: dict[str, float]


def fit(model: SentimentClassifier, features: Sequence[torch.Tensor], labels: np.ndarray,
        groups: Sequence[np.ndarray], config: SentimentTrainConfig, plan: PrivacyPlan, *,
        class_weights: np.ndarray, progress: bool = True) -> FitResult:
    """Train `model` in place (eval mode at the end) on the reviewer-grouped pool."""
    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(config.seed)
    hidden = model.bert.config.hidden_size
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(ReviewerDataset(groups, seed=config.seed), batch_size=plan.batch_size,
                        shuffle=True, generator=generator,
                        collate_fn=_collate(features, labels, class_weights, hidden))
    trainable = model.trainable_parameters()
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(trainable, lr=config.lr,
                                                         weight_decay=config.weight_decay)
    engine = None
    module: torch.nn.Module = model
    if not config.non_private:
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        module, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
            poisson_sampling=True, grad_sample_mode="hooks",
            noise_generator=None if config.secure_mode else generator)
        if abs(loader.sample_rate - plan.sample_rate) > 1e-12:
            raise AssertionError(f"Opacus samples at {loader.sample_rate}, the ledger was "
                                 f"charged for {plan.sample_rate}")
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    curve: list[dict[str, object]] = []
    seconds: list[float] = []
    spent = 0.0
    step = 0
    bar = tqdm(total=plan.steps, disable=not progress, desc="train sentiment", unit="step")
    module.train()
    # The frozen layers run without grad, so the first trainable layer's backward hook
    # sees no input gradient; that is intended (Opacus only needs the module outputs).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(config.epochs):
        for batch in loader:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            size = int(batch[0].shape[0]) if len(batch) else 0
            if size == 0:
                # An empty Poisson batch: no forward pass; the DP optimizer still adds
                # noise and the accountant counts the step (as the analysis assumes).
                for p in trainable:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                loss_value = float("nan")
            else:
                x, mask, y, w = batch
                logits = module(x, mask)  # (B, 3)
                losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")  # (B,)
                if engine is None:
                    loss = (w * losses).mean()
                    loss.backward()
                else:
                    loss = losses.mean()
                    loss.backward()
                    clip_and_weight(trainable, w / float(class_weights.max()),
                                    max_grad_norm=config.max_grad_norm)
                loss_value = float(loss.detach())
            if engine is not None or size > 0:
                optimizer.step()
            schedule.step()
            step += 1
            seconds.append(time.perf_counter() - started)
            curve.append({"step": step, "epoch": epoch + 1, "batch_size": size,
                          "loss": loss_value, "epsilon": None, "seconds": seconds[-1]})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", eps=f"{spent:.2f}" if engine else "inf")
        if engine is not None and curve:
            # once per epoch: the PRV accountant takes seconds per call
            spent = float(engine.accountant.get_epsilon(delta=plan.delta))
            curve[-1]["epsilon"] = spent
    bar.close()
    if engine is not None:
        from opacus import GradSampleModule

        if isinstance(module, GradSampleModule):
            module.cleanup()  # remove the hooks: the saved model is a plain module
        for p in trainable:
            for name in ("grad_sample", "summed_grad"):
                if hasattr(p, name):
                    setattr(p, name, None)
    model.eval()
    total = float(np.sum(seconds)) if seconds else 0.0
    timing = {"steps": float(step), "seconds_per_step": total / max(step, 1),
              "train_seconds": total,
              "reviewers_per_second": float(sum(c["batch_size"] for c in curve))
              / max(total, 1e-9)}
    return FitResult(curve=curve, epsilon=float("inf") if engine is None else spent,
                     timing=timing)


def predict_features(model: SentimentClassifier, features: Sequence[torch.Tensor], *,
                     batch_size: int = 128) -> np.ndarray:
    """Class probabilities (N, 3) from precomputed frozen features (eval, no grad)."""
    hidden = model.bert.config.hidden_size
    out = np.zeros((len(features), len(D.LABELS)), dtype=np.float32)
    order = sorted(range(len(features)), key=lambda i: int(features[i].shape[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                x, mask = pad_features([features[i] for i in rows], hidden)
                out[rows] = torch.softmax(model(x, mask), dim=-1).numpy()
    finally:
        model.train(was_training)
    return out


# --- evaluation: metrics and the VADER baseline ------------------------------------------


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of exact matches, in [0, 1] (NaN when empty)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of the three classes' F1, in [0, 1]; a class absent from both
    truth and prediction counts 0 (scikit-learn's zero_division=0). NaN when empty."""
    from sklearn.metrics import f1_score

    if not len(y_true):
        return float("nan")
    return float(f1_score(y_true, y_pred, labels=list(range(len(D.LABELS))), average="macro",
                          zero_division=0))


def binary_accuracy(y_true: Sequence[int], positive_score: Sequence[float], *,
                    threshold: float = 0.0) -> float:
    """Accuracy of `positive_score > threshold` against y_true in {NEGATIVE, POSITIVE},
    in [0, 1]; meant for a balanced subset (`core.sentiment.data.balanced_binary`)."""
    y_true = np.asarray(y_true)
    if not len(y_true):
        return float("nan")
    predicted = np.where(np.asarray(positive_score) > threshold, D.POSITIVE, D.NEGATIVE)
    return float((predicted == y_true).mean())


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score of each text, in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=float)


def vader_labels(compound: np.ndarray, *, threshold: float = VADER_THRESHOLD) -> np.ndarray:
    """Compound >= +threshold positive, <= -threshold negative, else neutral."""
    return np.where(compound >= threshold, D.POSITIVE,
                    np.where(compound <= -threshold, D.NEGATIVE, D.NEUTRAL))


def evaluate_predictions(test: pd.DataFrame, predicted: np.ndarray,
                         positive_score: np.ndarray, *, seed: int = 0) -> dict[str, object]:
    """3-class accuracy and macro-F1 on `test`, per-class F1 and the confusion matrix,
    and the binary accuracy on a balanced negative/positive subset (`positive_score` >
    0 means positive: p_positive - p_negative for the model, compound for VADER)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = test[D.LABEL].to_numpy()
    labels = list(range(len(D.LABELS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0)
    balanced = D.balanced_binary(test.assign(_row=np.arange(len(test))), seed=seed)
    rows = balanced["_row"].to_numpy(dtype=np.int64)
    return {
        "accuracy": accuracy(y, predicted),
        "macro_f1": macro_f1(y, predicted),
        "binary_accuracy_balanced": binary_accuracy(balanced[D.LABEL].to_numpy(),
                                                    positive_score[rows]),
        "binary_reviews": int(len(rows)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(s)}
                      for name, p, r, f, s in zip(D.LABELS, precision, recall, f1, support,
                                                  strict=True)},
        "confusion": confusion_matrix(y, predicted, labels=labels).tolist(),
        "test_reviews": int(len(test)),
    }


def evaluate_model_proba(test: pd.DataFrame, proba: np.ndarray, *, seed: int = 0
                         ) -> dict[str, object]:
    return evaluate_predictions(test, proba.argmax(axis=1),
                                proba[:, D.POSITIVE] - proba[:, D.NEGATIVE], seed=seed)


def evaluate_vader(test: pd.DataFrame, *, seed: int = 0) -> dict[str, object]:
    compound = vader_compound(D.review_texts(test))
    return evaluate_predictions(test, vader_labels(compound), compound, seed=seed)


# --- the run -------------------------------------------------------------------------------


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
    """Split by time, subset and cap the training reviewers, weigh the classes."""
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


def new_model(model_config: SentimentModelConfig, *, bert_config=None, seed: int = 0
              ) -> SentimentClassifier:
    if bert_config is not None:
        model = SentimentClassifier.from_config(bert_config, model_config, seed=seed)
    else:
        model = SentimentClassifier.from_pretrained(model_config, seed=seed)
    if model_config.head_init == "anchors":
        model.init_head_from_anchors()
    return model


def train(paths: Paths | None = None, config: SentimentTrainConfig = SentimentTrainConfig(),
          *, model_config: SentimentModelConfig | None = None, bert_config=None,
          run_id: str | None = None, progress: bool = True,
          feature_store: FeatureStore | None = None, with_vader: bool = True) -> str:
    """Train, evaluate and register one sentiment model; returns its run id.

    `bert_config` (a transformers BertConfig) trains a randomly initialised model of that
    architecture instead of the bundled MiniLM (tests). `feature_store` reuses frozen
    features across runs on the same base. Raises `TrainingRefused` for settings that
    cannot be trained and the ledger's `BudgetExceeded` when the steward's budget would
    be exceeded; in both cases nothing was trained."""
    from privacy import ledger

    paths = paths or Paths()
    model_config = model_config or SentimentModelConfig()
    torch.set_num_threads(TORCH_THREADS)
    dp_plan.check_secure_mode(config)
    reviews = D.load_reviews(paths)
    prepared = prepare(reviews, config)
    plan = plan_privacy(config, len(prepared.groups))
    run_id = run_id or M.new_run_id()
    fingerprint = D.data_fingerprint(prepared.pool)
    epsilon = float("inf") if config.non_private else config.epsilon
    ledger.charge(ledger_path=paths.ledger, budgets_path=paths.budgets, run_id=run_id,
                  dataset=paths.dataset, dataset_fingerprint=fingerprint,
                  artefact_kind=ARTEFACT_KIND,
                  privacy_unit="none" if config.non_private else PRIVACY_UNIT,
                  contribution_cap=config.max_reviews_per_reviewer,
                  noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                  steps=plan.steps, max_grad_norm=config.max_grad_norm, delta=plan.delta,
                  epsilon=epsilon, accountant=plan.accountant, secure_mode=config.secure_mode,
                  repo_dir=PROJECT_ROOT, note=_ledger_note(config, plan, prepared.split.cutoff))
    try:
        store = feature_store or FeatureStore()
        model = new_model(model_config, bert_config=bert_config, seed=config.seed)
        started = time.perf_counter()
        features = store.get(model, D.review_texts(prepared.pool), progress=progress,
                             desc="frozen features (train)")
        feature_seconds = time.perf_counter() - started
        result = fit(model, features, prepared.pool[D.LABEL].to_numpy(), prepared.groups,
                     config, plan, class_weights=prepared.class_weights, progress=progress)
        started = time.perf_counter()
        test_features = store.get(model, D.review_texts(prepared.test), progress=progress,
                                  desc="frozen features (test)")
        proba = predict_features(model, test_features)
        metrics: dict[str, object] = {
            "model": evaluate_model_proba(prepared.test, proba, seed=config.seed),
            "data": prepared.info,
        }
        if with_vader:
            metrics["baselines"] = {"vader": evaluate_vader(prepared.test, seed=config.seed)}
        result.timing["feature_seconds"] = feature_seconds
        result.timing["eval_seconds"] = time.perf_counter() - started
        metrics["timing"] = result.timing
        privacy = {
            "private": not config.non_private, "epsilon": result.epsilon,
            "target_epsilon": epsilon, "delta": plan.delta,
            "noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate,
            "steps": plan.steps, "expected_batch_size": plan.batch_size,
            "reviewers": plan.people, "max_grad_norm": config.max_grad_norm,
            "accountant": plan.accountant,
            "privacy_unit": "none" if config.non_private else "reviewer",
            "ledger_privacy_unit": "none" if config.non_private else PRIVACY_UNIT,
            "contribution_cap": config.max_reviews_per_reviewer,
            "contribution": "one review per sampled reviewer per step",
            "secure_mode": config.secure_mode,
            "not_covered": "the training pool's class counts (class weights, class shares) "
                           "and the test metrics",
        }
        M.save(paths, run_id=run_id, model=model, train_config=config.to_dict(),
               privacy=privacy,
               fingerprint={"sha256": fingerprint, "reviews": int(len(prepared.pool)),
                            "reviewers": plan.people, "dataset": paths.dataset,
                            "cutoff": prepared.split.cutoff.isoformat()},
               metrics=metrics, curve=result.curve,
               code_version=ledger.code_version(PROJECT_ROOT))
        ledger.complete(ledger_path=paths.ledger, run_id=run_id,
                        epsilon=None if config.non_private else result.epsilon,
                        note=f"saved to {M.registry_dir(paths) / run_id}")
    except BaseException as exc:
        ledger.fail(ledger_path=paths.ledger, run_id=run_id,
                    note=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return run_id


def evaluate_run(paths: Paths | None = None, run_id: str | None = None, *,
                 progress: bool = True) -> dict[str, object]:
    """Evaluate a saved run again on the warehouse's current time split (the run's own
    test share and seed), next to VADER; rewrites its metrics.json. `fingerprint_match`
    says whether the training pool is still the one the model was trained on."""
    paths = paths or Paths()
    run_id = run_id or _latest(paths)
    loaded = M.load(run_id, paths)
    known = set(SentimentTrainConfig.__dataclass_fields__)
    config = SentimentTrainConfig(**{k: v for k, v in loaded.config.get("train_config", {})
                                     .items() if k in known})
    prepared = prepare(D.load_reviews(paths), config)
    features = FeatureStore().get(loaded.model, D.review_texts(prepared.test),
                                  progress=progress, desc="frozen features (test)")
    proba = predict_features(loaded.model, features)
    metrics = dict(loaded.metrics)
    metrics.update({
        "model": evaluate_model_proba(prepared.test, proba, seed=config.seed),
        "baselines": {"vader": evaluate_vader(prepared.test, seed=config.seed)},
        "data": prepared.info,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint_match": D.data_fingerprint(prepared.pool)
        == loaded.fingerprint.get("sha256"),
    })
    M.write_metrics(paths, run_id, metrics)
    return metrics


def _latest(paths: Paths) -> str:
    run_id = M.latest_run(paths)
    if run_id is None:
        raise M.RegistryError(f"no sentiment model in {M.registry_dir(paths)}: train one with "
                              "`clearmark sentiment train`.")
    return run_id


# --- scoring: every review, aspects, example attributions ------------------------------------


@dataclass(frozen=True)
class ScoreConfig:
    """batch_size: reviews per forward pass. min_reviewers: the aspect floor (distinct
    reviewers; None: PrivacyConfig().min_cell_size). top_aspects: per scope and
    polarity. examples_per_label / disagreements: reviews whose word attributions are
    stored for the page."""

    batch_size: int = 64
    min_reviewers: int | None = None
    top_aspects: int = 15
    examples_per_label: int = 25
    disagreements: int = 100


@dataclass
class ScoreResult:
    run_id: str
    reviews: int
    labels: dict[str, int]
    aspects: int
    examples: int
    seconds: float

    @property
    def reviews_per_second(self) -> float:
        return self.reviews / max(self.seconds, 1e-9)


def attribute_all(model: SentimentClassifier, texts: Sequence[str], *, batch_size: int = 64,
                  chunk: int = 512, progress: bool = False) -> list[M.Attribution]:
    """`model.attribute` over many texts in length-sorted chunks (with a progress bar)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[M.Attribution | None] = [None] * len(texts)
    bar = tqdm(total=len(texts), disable=not progress, desc="score reviews", unit="review")
    for start in range(0, len(order), chunk):
        rows = order[start:start + chunk]
        for i, attribution in zip(rows, model.attribute([texts[i] for i in rows],
                                                        batch_size=batch_size), strict=True):
            out[i] = attribution
        bar.update(len(rows))
    bar.close()
    return out  # type: ignore[return-value]


def _example_rows(frame: pd.DataFrame, config: ScoreConfig) -> np.ndarray:
    """Rows whose attributions the page shows: the most confident reviews of each label,
    and the strongest star/text disagreements."""
    confidence = frame[list(D.PROBABILITY_COLUMNS)].max(axis=1)
    picks = []
    for label in range(len(D.LABELS)):
        rows = frame.index[frame["predicted"] == label]
        picks.append(confidence.loc[rows].sort_values(ascending=False, kind="stable")
                     .index[:config.examples_per_label])
    stars = frame[D.RATING].round()
    disagree = frame.index[((stars >= 4) & (frame["predicted"] == D.NEGATIVE))
                           | ((stars <= 2) & (frame["predicted"] == D.POSITIVE))]
    picks.append(confidence.loc[disagree].sort_values(ascending=False, kind="stable")
                 .index[:config.disagreements])
    return np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in picks]))


def score(paths: Paths | None = None, run_id: str | None = None,
          config: ScoreConfig = ScoreConfig(), *, progress: bool = True) -> ScoreResult:
    """Score every review with run `run_id` (None: the newest) and replace the
    review_sentiment, review_aspects and review_token_weights rows in one write."""
    from core.store.warehouse import write_transaction

    paths = paths or Paths()
    run_id = run_id or _latest(paths)
    model = M.load(run_id, paths).model
    min_reviewers = config.min_reviewers or PrivacyConfig().min_cell_size
    started = time.perf_counter()
    reviews = D.load_reviews(paths)
    texts = D.review_texts(reviews)
    attributions = attribute_all(model, texts, batch_size=config.batch_size,
                                 progress=progress)
    seconds = time.perf_counter() - started
    proba = np.stack([a.probabilities for a in attributions]) if attributions \
        else np.zeros((0, len(D.LABELS)))
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    frame = reviews.assign(predicted=proba.argmax(axis=1) if len(proba) else [],
                           **{c: proba[:, i] for i, c in enumerate(D.PROBABILITY_COLUMNS)})
    sentiment = pd.DataFrame({
        "review_id": frame[D.REVIEW_ID].astype(str), "run_id": run_id,
        "label": D.label_names(frame["predicted"]),
        **{c: frame[c].astype(float) for c in D.PROBABILITY_COLUMNS},
        "scored_at": scored_at,
    })
    rows = D.aspect_rows(frame, [a.words for a in attributions],
                         [a.weights for a in attributions])
    aspects = D.aggregate_aspects(rows, frame, min_reviewers=min_reviewers,
                                  top_k=config.top_aspects)
    aspects.insert(0, "run_id", run_id)
    examples = _example_rows(frame, config) if len(frame) else np.zeros(0, np.int64)
    weights = pd.DataFrame({
        "run_id": run_id,
        "review_id": frame[D.REVIEW_ID].to_numpy()[examples].astype(str),
        "spans": [json.dumps([[s, e, round(float(w), 5)] for (s, e), w in
                              zip(attributions[i].spans, attributions[i].weights,
                                  strict=True)]) for i in examples],
    })
    with write_transaction(paths) as con:
        for table, data, columns in (
                ("review_sentiment", sentiment, ("review_id", "run_id", "label", "p_negative",
                                                 "p_neutral", "p_positive", "scored_at")),
                ("review_aspects", aspects, ("run_id",) + D.ASPECT_COLUMNS),
                ("review_token_weights", weights, ("run_id", "review_id", "spans"))):
            con.execute(f"DELETE FROM {table}")  # the newest model's rows only
            if len(data):
                con.register("new_rows", data[list(columns)])
                try:
                    con.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                                f"SELECT {', '.join(columns)} FROM new_rows")
                finally:
                    con.unregister("new_rows")
    counts = sentiment["label"].value_counts()
    return ScoreResult(run_id=run_id, reviews=len(sentiment),
                       labels={name: int(counts.get(name, 0)) for name in D.LABELS},
                       aspects=len(aspects), examples=len(weights), seconds=seconds)
