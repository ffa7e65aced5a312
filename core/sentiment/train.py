"""Training the review sentiment model with reviewer-level DP.

`train(paths, config)` splits the reviews by time (`core.sentiment.config.prepare`), fixes
the noise for the privacy budget, charges the budget ledger BEFORE any training work (a
refusal means nothing starts), trains with Opacus (`fit`), evaluates next to VADER on
the same test split (`core.sentiment.evaluate`), saves the run to
`data/models/sentiment/<run_id>/` (`core.sentiment.registry`) and completes the ledger
entry; any failure after the charge marks the entry failed.

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

Every step runs only the trainable top layers, on frozen features computed once per
review (`core.sentiment.features.FeatureStore`). Poisson batches vary in size and can be
empty: an empty batch runs no forward pass, but the optimizer still adds the noise and
the accountant still counts the step, as the analysis assumes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from core.config import PROJECT_ROOT, Paths
from core.dp import plan as dp_plan
from core.dp.plan import PrivacyPlan
from core.registry.store import SENTIMENT
from core.sentiment import data as D
from core.sentiment import registry
from core.sentiment.config import Prepared, SentimentTrainConfig, plan_privacy, prepare
from core.sentiment.evaluate import evaluate_model_proba, evaluate_vader
from core.sentiment.features import FeatureStore, pad_features, predict_features
from core.sentiment.model import SentimentClassifier, SentimentModelConfig

ARTEFACT_KIND = "sentiment"
PRIVACY_UNIT = "customer"  # the reviewer: the ledger's name for a person in the data
NOT_COVERED = "the training pool's class counts (class weights, class shares) and the test " \
              "metrics"


# --- one row per reviewer ----------------------------------------------------------------


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
    """Batches of review rows -> padded features (B, L, H), mask (B, L), labels (B,) and
    class weights (B,)."""
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
    """What `fit` reports: the per-step curve, the epsilon spent and the timing."""

    curve: list[dict[str, object]]  # per step: step, epoch, batch_size, loss, epsilon, seconds
    epsilon: float  # spent (inf without DP)
    timing: dict[str, float]


def _make_private(model: SentimentClassifier, optimizer: torch.optim.Optimizer,
                  loader: DataLoader, config: SentimentTrainConfig, plan: PrivacyPlan,
                  generator: torch.Generator):
    """(module, optimizer, loader, engine): Opacus' wrappers with Poisson sampling at
    `plan`'s noise, or the plain ones and engine None for a non-private run."""
    if config.non_private:
        return model, optimizer, loader, None
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
    return module, optimizer, loader, engine


def _step(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
          batch: tuple[torch.Tensor, ...], trainable: Sequence[torch.nn.Parameter], *,
          private: bool, weight_scale: float, max_grad_norm: float) -> tuple[int, float]:
    """One optimizer step on `batch`: (reviewers in it, mean loss; NaN when empty)."""
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
        if private:
            loss = losses.mean()
            loss.backward()
            clip_and_weight(trainable, w / weight_scale, max_grad_norm=max_grad_norm)
        else:
            loss = (w * losses).mean()
            loss.backward()
        loss_value = float(loss.detach())
    if private or size > 0:
        optimizer.step()
    return size, loss_value


def _plain_module(module: torch.nn.Module, trainable: Sequence[torch.nn.Parameter]) -> None:
    """Remove Opacus' hooks and per-sample gradients: the saved model is a plain module."""
    from opacus import GradSampleModule

    if isinstance(module, GradSampleModule):
        module.cleanup()
    for p in trainable:
        for name in ("grad_sample", "summed_grad"):
            if hasattr(p, name):
                setattr(p, name, None)


def _timing(curve: list[dict[str, object]]) -> dict[str, float]:
    """Steps, seconds (per step and in all) and reviewers per second of a fit's curve."""
    total = float(np.sum([c["seconds"] for c in curve])) if curve else 0.0
    return {"steps": float(len(curve)), "seconds_per_step": total / max(len(curve), 1),
            "train_seconds": total,
            "reviewers_per_second": float(sum(c["batch_size"] for c in curve))
            / max(total, 1e-9)}


def fit(model: SentimentClassifier, features: Sequence[torch.Tensor], labels: np.ndarray,
        groups: Sequence[np.ndarray], config: SentimentTrainConfig, plan: PrivacyPlan, *,
        class_weights: np.ndarray, progress: bool = True) -> FitResult:
    """Train `model` in place (eval mode at the end) on the reviewer-grouped pool.

    features / labels: the pool's frozen features (`FeatureStore.get`) and classes 0..2,
    by row; groups: each reviewer's rows (`core.sentiment.data.reviewer_groups`);
    class_weights: (3,) loss weights. Runs `config.epochs` epochs of `plan` (DP-SGD
    unless `config.non_private`) with a linearly decaying learning rate; the curve's
    epsilon is filled at the end of each epoch."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(ReviewerDataset(groups, seed=config.seed), batch_size=plan.batch_size,
                        shuffle=True, generator=generator,
                        collate_fn=_collate(features, labels, class_weights,
                                            model.bert.config.hidden_size))
    trainable = model.trainable_parameters()
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(trainable, lr=config.lr,
                                                         weight_decay=config.weight_decay)
    module, optimizer, loader, engine = _make_private(model, optimizer, loader, config, plan,
                                                      generator)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    weight_scale = float(class_weights.max())
    curve: list[dict[str, object]] = []
    spent = 0.0
    bar = tqdm(total=plan.steps, disable=not progress, desc="train sentiment", unit="step")
    module.train()
    # The frozen layers run without grad, so the first trainable layer's backward hook
    # sees no input gradient; that is intended (Opacus only needs the module outputs).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(config.epochs):
        for batch in loader:
            started = time.perf_counter()
            size, loss = _step(module, optimizer, batch, trainable, private=engine is not None,
                               weight_scale=weight_scale,
                               max_grad_norm=config.max_grad_norm)
            schedule.step()
            curve.append({"step": len(curve) + 1, "epoch": epoch + 1, "batch_size": size,
                          "loss": loss, "epsilon": None,
                          "seconds": time.perf_counter() - started})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{spent:.2f}" if engine else "inf")
        if engine is not None and curve:
            # once per epoch: the PRV accountant takes seconds per call
            spent = float(engine.accountant.get_epsilon(delta=plan.delta))
            curve[-1]["epsilon"] = spent
    bar.close()
    if engine is not None:
        _plain_module(module, trainable)
    model.eval()
    return FitResult(curve=curve, epsilon=float("inf") if engine is None else spent,
                     timing=_timing(curve))


# --- the run -------------------------------------------------------------------------------


def new_model(model_config: SentimentModelConfig, *, bert_config=None, seed: int = 0
              ) -> SentimentClassifier:
    """The bundled MiniLM (or, given `bert_config`, a random BERT of that architecture)
    with the head `model_config.head_init` asks for."""
    if bert_config is not None:
        model = SentimentClassifier.from_config(bert_config, model_config, seed=seed)
    else:
        model = SentimentClassifier.from_pretrained(model_config, seed=seed)
    if model_config.head_init == "anchors":
        model.init_head_from_anchors()
    return model


def _ledger_note(config: SentimentTrainConfig, plan: PrivacyPlan, cutoff: pd.Timestamp) -> str:
    """The ledger entry's note: the split, how the guarantee is reached, what it omits."""
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


def _charge(paths: Paths, run_id: str, config: SentimentTrainConfig, plan: PrivacyPlan,
            fingerprint: str, cutoff: pd.Timestamp) -> None:
    """Enter the run in the ledger; raises BudgetExceeded (and records nothing) where
    it would take the dataset over the steward's budget."""
    from privacy import budget

    budget.charge(ledger_path=paths.ledger, budgets_path=paths.budgets, run_id=run_id,
                  dataset=paths.dataset, dataset_fingerprint=fingerprint,
                  artefact_kind=ARTEFACT_KIND,
                  privacy_unit="none" if config.non_private else PRIVACY_UNIT,
                  contribution_cap=config.max_reviews_per_reviewer,
                  noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                  steps=plan.steps, max_grad_norm=config.max_grad_norm, delta=plan.delta,
                  epsilon=float("inf") if config.non_private else config.epsilon,
                  accountant=plan.accountant, secure_mode=config.secure_mode,
                  repo_dir=PROJECT_ROOT, note=_ledger_note(config, plan, cutoff))


def _train_and_evaluate(prepared: Prepared, config: SentimentTrainConfig, plan: PrivacyPlan,
                        model: SentimentClassifier, store: FeatureStore, *, progress: bool,
                        with_vader: bool) -> tuple[FitResult, dict[str, object]]:
    """Fit `model` on the pool, then its metrics.json: the model (and VADER) on the
    test reviews, the data description and the timing in seconds."""
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
    return result, metrics


def _privacy_record(config: SentimentTrainConfig, plan: PrivacyPlan, spent: float
                    ) -> dict[str, object]:
    """privacy.json of the run: the guarantee, how it was reached and what it covers."""
    return {
        "private": not config.non_private, "epsilon": spent,
        "target_epsilon": float("inf") if config.non_private else config.epsilon,
        "delta": plan.delta,
        "noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate,
        "steps": plan.steps, "expected_batch_size": plan.batch_size,
        "reviewers": plan.people, "max_grad_norm": config.max_grad_norm,
        "accountant": plan.accountant,
        "privacy_unit": "none" if config.non_private else "reviewer",
        "ledger_privacy_unit": "none" if config.non_private else PRIVACY_UNIT,
        "contribution_cap": config.max_reviews_per_reviewer,
        "contribution": "one review per sampled reviewer per step",
        "secure_mode": config.secure_mode,
        "not_covered": NOT_COVERED,
    }


def train(paths: Paths | None = None, config: SentimentTrainConfig | None = None,
          *, model_config: SentimentModelConfig | None = None, bert_config=None,
          run_id: str | None = None, progress: bool = True,
          feature_store: FeatureStore | None = None, with_vader: bool = True) -> str:
    """Train, evaluate and register one sentiment model; returns its run id.

    `config` None: the defaults. `bert_config` (a transformers BertConfig) trains a
    randomly initialised model of that architecture instead of the bundled MiniLM
    (tests). `feature_store` reuses frozen features across runs on the same base.
    Raises `TrainingRefused` for settings that cannot be trained and the ledger's
    `BudgetExceeded` when the steward's budget would be exceeded; in both cases nothing
    was trained."""
    from privacy import ledger

    paths = paths or Paths()
    config = config or SentimentTrainConfig()
    dp_plan.check_secure_mode(config)
    prepared = prepare(D.load_reviews(paths), config)
    plan = plan_privacy(config, len(prepared.groups))
    run_id = run_id or SENTIMENT.new_run_id()
    fingerprint = D.data_fingerprint(prepared.pool)
    _charge(paths, run_id, config, plan, fingerprint, prepared.split.cutoff)
    try:
        model = new_model(model_config or SentimentModelConfig(), bert_config=bert_config,
                          seed=config.seed)
        result, metrics = _train_and_evaluate(prepared, config, plan, model,
                                              feature_store or FeatureStore(),
                                              progress=progress, with_vader=with_vader)
        registry.save(paths, run_id=run_id, model=model, train_config=config.to_dict(),
                      privacy=_privacy_record(config, plan, result.epsilon),
                      fingerprint={"sha256": fingerprint, "reviews": int(len(prepared.pool)),
                                   "reviewers": plan.people, "dataset": paths.dataset,
                                   "cutoff": prepared.split.cutoff.isoformat()},
                      metrics=metrics, curve=result.curve,
                      code_version=ledger.code_version(PROJECT_ROOT))
        ledger.complete(ledger_path=paths.ledger, run_id=run_id,
                        epsilon=None if config.non_private else result.epsilon,
                        note=f"saved to {SENTIMENT.root(paths) / run_id}")
    except BaseException as exc:
        ledger.fail(ledger_path=paths.ledger, run_id=run_id,
                    note=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return run_id
