"""Training the cross-encoder with user-level DP-SGD (Opacus): `train` and its loop.

`train(paths, config)` plans the run's privacy, charges the ledger BEFORE any training
work (a refusal means nothing starts), fits, evaluates, saves the run to the registry
and completes its ledger entries; any failure after the charge marks them failed.

The privacy unit is the CUSTOMER: one dataset row per customer
(`core.recommender.examples.CustomerDataset`), Poisson sampling over customers, one
example group and one clipped gradient per sampled customer per step, so (epsilon,
delta) bound what the model reveals about any one customer's whole history. The run's
epsilon also covers what is released with the model (`core.recommender.planning`).
Not covered, and recorded as such in the ledger: the validation HR@10 on the progress
bar (no noise; shown, never used to choose a DP model).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.config import Paths
from core.dp import plan as dp_plan
from core.dp.clipping import BookkeepingClipping
from core.dp.opacus_glue import (
    account_alongside,
    build_optimizer,
    check_accounted,
    epsilon_spent,
    keep_opacus_grad_samples,
    make_bookkeeping_private,
)
from core.dp.plan import PrivacyPlan
from core.recommender import item_popularity, mix_fit, spend
from core.recommender.co_visits import CoVisits, own_items
from core.recommender.config import TrainConfig
from core.recommender.data import (
    TrainingData,
    pool_members,
    trained_on,
    training_data,
    with_audit_pool,
)
from core.recommender.evaluate import (
    evaluate_baselines,
    evaluate_segments,
    sample_test_users,
    validation_metrics,
)
from core.recommender.examples import CustomerDataset, collate_groups, item_records, listwise_loss
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.recommender.planning import RunPlan, model_config_for, plan_run
from core.recommender.popularity_release import (
    PopularityRelease,
    model_config_for_release,
    release_popularity,
)
from core.recommender.retrieval import CrossEncoderRecommender
from core.recommender.splits import Split

HEAD = ("bert.bert.pooler", "bert.classifier")  # parameters learning at `head_lr`
MIX = ("prior_mix",)  # the mix weights, learning at `mix_lr`


# --- the model and its data ------------------------------------------------------------


def new_model(model_config: ModelConfig, bert_config, seed: int) -> CrossEncoder:
    """A seeded fresh model: the bundled MiniLM, or random weights of `bert_config`
    (a transformers BertConfig; tests)."""
    torch.manual_seed(seed)
    if bert_config is not None:
        return CrossEncoder.from_config(bert_config, model_config, seed=seed)
    return CrossEncoder.from_pretrained(model_config)


def build_dataset(groups, catalogue: pd.DataFrame, model: CrossEncoder, *,
                  seed: int = 0, co_visits: CoVisits | None = None,
                  own: dict[str, frozenset[str]] | None = None) -> CustomerDataset:
    """The per-customer dataset of `groups`, tokenized for `model` (with its prior).
    The model takes the released popularity percentiles of `catalogue` (its column
    `core.recommender.item_popularity.POPULARITY`, where present) and the `co_visits`
    table (a model that reads co-visits) as its own: they travel with it to the registry
    and to every catalogue it scores. `own`: each customer's items, left out of its
    examples' co-visit scores."""
    if item_popularity.POPULARITY in catalogue.columns:
        model.item_popularity = item_popularity.of(catalogue)
    if model.config.co_visits and co_visits is not None:
        model.co_visits = co_visits  # without: no example shows co-visits (feature 0)
    return CustomerDataset(groups, item_records(catalogue), pair_states=model.pair_states,
                           prior=model.prior_similarity,
                           omit=frozenset(model.config.omit_fields), seed=seed,
                           co_visits=model.co_visits, own=own,
                           with_share=model.config.category_share)


def optimizer_for(model: CrossEncoder, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW: the pooler and head at `head_lr` (None: `lr`), the mix weights at `mix_lr`,
    the trainable encoder layers at `lr`."""
    return build_optimizer(model, [(HEAD, config.head_lr or config.lr), (MIX, config.mix_lr)],
                           lr=config.lr, weight_decay=config.weight_decay)


# --- one step ------------------------------------------------------------------------


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


# --- the loop ----------------------------------------------------------------------------


def prepare_training(model: CrossEncoder, dataset: CustomerDataset, config: TrainConfig,
                     plan: PrivacyPlan):
    """(module, optimizer, loader, engine): with DP, Opacus' GradSampleModule, DPOptimizer
    and Poisson-sampling DPDataLoader (engine: the PrivacyEngine, None without DP)."""
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True,
                        collate_fn=collate_groups, generator=generator)
    optimizer = optimizer_for(model, config)
    if config.non_private:
        return model, optimizer, loader, None
    from opacus import PrivacyEngine

    keep_opacus_grad_samples()
    noise_generator = None if config.secure_mode else generator
    with warnings.catch_warnings():
        # secure_mode is a recorded choice (TrainConfig, ledger): no need to nag about it
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        if config.grad_sample_mode == "bookkeeping":
            module, optimizer, loader = make_bookkeeping_private(
                engine, model, optimizer, loader, plan, max_grad_norm=config.max_grad_norm,
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
    # rounding makes n - 1 for some n, and then tells the accountant q = 1 / (n - 1) and
    # the optimizer an expected batch of N / (n - 1). Align all three with the plan the
    # ledger was charged for.
    loader.batch_sampler.steps = plan.steps_per_epoch
    optimizer.expected_batch_size = int(len(dataset) * plan.sample_rate)
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(
        sample_rate=plan.sample_rate))
    account_alongside(engine, plan)
    return module, optimizer, loader, engine


def _trainable_state(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def fit_model(groups, catalogue: pd.DataFrame, split: Split, config: TrainConfig,
              model_config: ModelConfig, plan: PrivacyPlan, *, progress: bool, bert_config,
              co_visits: CoVisits | None = None, own: dict[str, frozenset[str]] | None = None
              ) -> tuple[CrossEncoder, list[dict[str, object]], float, dict[str, object]]:
    """The training loop: `plan.steps` steps over the customer groups `groups`. Returns
    (model in eval mode, curve (one dict per step), epsilon spent (inf without DP),
    timing). `train(fit=...)` takes a replacement with this signature and result."""
    model = new_model(model_config, bert_config, config.seed)
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
    bar = tqdm(total=plan.steps, disable=not progress, desc="train", unit="step")
    val_hr, spent = float("nan"), 0.0
    best = _Best.of(model, split, catalogue, config, epoch=0) if config.keep_best else None
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
            seconds = time.perf_counter() - started
            if engine is not None:
                spent = epsilon_spent(engine, plan.delta)
            curve.append({"step": len(curve) + 1, "epoch": epoch + 1,
                          "batch_size": int(batch[0].shape[0]), "loss": loss,
                          "epsilon": None if engine is None else spent, "seconds": seconds})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{spent:.2f}" if engine else "inf",
                            val_hr10=f"{val_hr:.3f}")
        if config.val_users > 0:
            val_hr, best = _validate_epoch(model, split, catalogue, config, curve, best,
                                           epoch + 1)
            bar.set_postfix(loss=f"{curve[-1]['loss']:.3f}",
                            eps=f"{spent:.2f}" if engine else "inf", val_hr10=f"{val_hr:.3f}")
    bar.close()
    if engine is not None:
        check_accounted(engine, plan)
        module.cleanup()  # remove the clipping hooks and attributes: the saved model is plain
    if best is not None:
        model.load_state_dict(best.state, strict=False)
    model.eval()
    return model, curve, math.inf if engine is None else spent, _timing(curve, best, mix_start)


@dataclass(frozen=True)
class _Best:
    """The epoch with the best validation NDCG@10 so far (`TrainConfig.keep_best`)."""

    ndcg: float
    epoch: int
    state: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: CrossEncoder, split: Split, catalogue: pd.DataFrame, config: TrainConfig, *,
           epoch: int, ndcg: float | None = None) -> _Best:
        if ndcg is None:
            ndcg = validation_metrics(model, split, catalogue, users=config.val_users,
                                      seed=config.seed)["ndcg@10"]
        return cls(ndcg, epoch, _trainable_state(model))


def _validate_epoch(model: CrossEncoder, split: Split, catalogue: pd.DataFrame, config: TrainConfig,
                    curve: list[dict[str, object]], best: _Best | None, epoch: int
                    ) -> tuple[float, _Best | None]:
    """Validation metrics after `epoch`, recorded on its last step: (HR@10, best epoch)."""
    val = validation_metrics(model, split, catalogue, users=config.val_users,
                             seed=config.seed)
    model.train()
    curve[-1]["val_hr@10"] = val["hr@10"]
    curve[-1]["val_ndcg@10"] = val["ndcg@10"]
    if best is not None and val["ndcg@10"] > best.ndcg:
        best = _Best.of(model, split, catalogue, config, epoch=epoch, ndcg=val["ndcg@10"])
    return val["hr@10"], best


def _timing(curve: list[dict[str, object]], best: _Best | None,
            mix_start: np.ndarray | None) -> dict[str, object]:
    total = float(np.sum([c["seconds"] for c in curve])) if curve else 0.0
    timing: dict[str, object] = {
        "kept_epoch": best.epoch if best is not None else (curve[-1]["epoch"] if curve else 0),
        "steps": len(curve), "seconds_per_step": total / max(len(curve), 1),
        "train_seconds": total,
        "customers_per_second": sum(c["batch_size"] for c in curve) / max(total, 1e-9)}
    if mix_start is not None:
        timing["mix_start"] = [float(w) for w in mix_start]  # fit_mix's weights
    return timing


# --- the run: plan, charge, fit, evaluate, save, complete --------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """A run once planned: its data and every mechanism's noise; nothing charged yet."""

    data: TrainingData
    groups: list                 # the example groups that reach training
    pool: dict[str, bool]        # the membership audit pool ({}: no audit)
    model_config: ModelConfig    # as asked for, before the popularity release
    privacy: RunPlan
    fingerprint: str             # of the training split (`registry.data_fingerprint`)
    split_kind: str
    before: pd.Timestamp | None

    @property
    def config(self) -> TrainConfig:
        return self.privacy.config


@dataclass(frozen=True)
class FittedRun:
    """A run once trained: its model and what was released with it."""

    model: CrossEncoder
    curve: list[dict[str, object]]
    spent: float
    timing: dict[str, object]
    recommender: CrossEncoderRecommender
    release: PopularityRelease | None
    asked_log: bool                     # the model config asked for the log form
    co_visited: pd.DataFrame | None     # what the model's co-visits count


def train(paths: Paths | None = None, config: TrainConfig | None = None, *,
          model_config: ModelConfig | None = None, split_name: str = "leave_last_out",
          progress: bool = True, bert_config=None, run_id: str | None = None,
          before: pd.Timestamp | None = None, fit=None) -> str:
    """Train, evaluate and register one cross-encoder; returns its run id.

    `bert_config` (a transformers BertConfig) trains a randomly initialised model of that
    architecture instead of the bundled MiniLM (tests). `before`: train on the events
    strictly before that time. Raises `TrainingRefused` for settings that cannot be
    trained and the ledger's `BudgetExceeded` when the steward's budget would be
    exceeded; in both cases nothing was trained. `fit` replaces the training loop
    (`fit_model`'s signature and result; `core.recommender.train_distributed`)."""
    from core.recommender import registry

    paths = paths or Paths()
    run = _plan(paths, config or TrainConfig(), model_config or ModelConfig(),
                split_name=split_name, before=before)
    run_id = run_id or registry.new_run_id("ce")
    entries = _charge(paths, run, run_id)
    try:
        fitted = _fit(run, fit or fit_model, progress=progress, bert_config=bert_config)
        metrics = _evaluate(run, fitted)
        _save(paths, run_id, run, fitted, metrics)
        spend.complete(paths, entries)
    except BaseException as exc:
        spend.fail(paths, entries, exc)
        raise
    return run_id


def _plan(paths: Paths, config: TrainConfig, model_config: ModelConfig, *, split_name: str,
          before: pd.Timestamp | None) -> PlannedRun:
    """Build the run's data and fix every mechanism's noise (`plan_run`)."""
    from core.recommender import registry

    model_config = model_config_for(config, model_config)
    dp_plan.check_secure_mode(config)
    data = training_data(paths, config, model_config, split_name=split_name, before=before)
    config, groups, pool = with_audit_pool(config, data.groups)
    privacy = plan_run(config, model_config, data.split, groups, pool)
    return PlannedRun(data, groups, pool, model_config, privacy,
                      registry.data_fingerprint(data.split.train), split_name, before)


def _charge(paths: Paths, run: PlannedRun, run_id: str) -> list[spend.Entry]:
    """Charge every mechanism of the run to the ledger; returns the entries charged."""
    entries = spend.run_entries(run_id, run.privacy, split_name=run.data.split.name,
                                saved_to=paths.models_dir / run_id)
    spend.charge(paths, entries, dataset=run.config.dataset or paths.dataset,
                 fingerprint=run.fingerprint, delta=run.privacy.plan.delta,
                 secure_mode=run.config.secure_mode)
    return entries


def _fit(run: PlannedRun, fit, *, progress: bool, bert_config) -> FittedRun:
    """Release the popularity (charged), train with `fit`, fit the final weights."""
    config, split, privacy = run.config, run.data.split, run.privacy
    catalogue = run.data.train_catalogue
    release = None
    if privacy.counted is not None:
        release = release_popularity(privacy.counted, catalogue, config, privacy.noise)
        catalogue = item_popularity.attach(catalogue, release.percentiles)
    model_config = model_config_for_release(run.model_config, release)
    # co-visits: non-private runs only (model_config_for)
    seen = trained_on(split, run.pool) if model_config.co_visits else None
    visits = {} if seen is None else {"co_visits": CoVisits.fit(seen), "own": own_items(seen)}
    model, curve, spent, timing = fit(run.groups, catalogue, split, config, model_config,
                                      privacy.plan, progress=progress,
                                      bert_config=bert_config, **visits)
    recommender = CrossEncoderRecommender(model).fit(split.train, run.data.catalogue)
    _fit_final_weights(run, model, recommender, timing)
    asked_log = run.model_config.popularity and run.model_config.popularity_log
    return FittedRun(model, curve, spent, timing, recommender, release, asked_log, seen)


def _fit_final_weights(run: PlannedRun, model: CrossEncoder,
                       recommender: CrossEncoderRecommender, timing: dict[str, object]
                       ) -> None:
    """Fit the final logit's weights on the validation targets among their candidates:
    exactly for a non-private run, with DP for a private one with a planned DP fit."""
    config, fit_noise = run.config, run.privacy.fit_noise
    valid = replace(run.data.split, valid=pool_members(run.data.split.valid, run.pool))
    if config.non_private and model.mixes and config.final_mix_users > 0:
        started = time.perf_counter()
        timing["final_mix"] = mix_fit.fit_on_validation(
            recommender, valid, customers=config.final_mix_users, seed=config.seed)
        timing["final_mix"]["seconds"] = time.perf_counter() - started
    if fit_noise is not None and model.mixes:
        started = time.perf_counter()
        timing["final_mix"] = mix_fit.fit_on_validation_private(
            recommender, valid, sample_rate=fit_noise.sample_rate,
            noise_multiplier=fit_noise.noise_multiplier, steps=config.final_fit_steps,
            lr=config.final_fit_lr, population=fit_noise.population)
        timing["final_mix"]["seconds"] = time.perf_counter() - started


def _evaluate(run: PlannedRun, fitted: FittedRun) -> dict[str, object]:
    """The run's metrics on (a sample of) its test targets, by segment."""
    config, held = run.config, run.data.held
    split = sample_test_users(run.data.split, config.eval_users, seed=config.seed)
    started = time.perf_counter()
    segments = evaluate_segments(fitted.recommender, split, held)
    metrics = {"model": segments.pop("all"), "segments": segments, "timing": fitted.timing,
               "held_out_items": sorted(held)}
    fitted.timing["eval_seconds"] = time.perf_counter() - started
    if config.eval_baselines:
        metrics["baselines"] = evaluate_baselines(split, run.data.catalogue, held=held)
    return metrics


def _save(paths: Paths, run_id: str, run: PlannedRun, fitted: FittedRun,
          metrics: dict[str, object]) -> None:
    """Write the run to the model registry (`core.recommender.registry.save`)."""
    from core.recommender import registry

    config, split, release = run.config, run.data.split, fitted.release
    privacy = spend.privacy_record(run_id, run.privacy, spent=fitted.spent,
                                   model=fitted.model, release=release,
                                   asked_log=fitted.asked_log, co_visited=fitted.co_visited)
    registry.save(
        paths, run_id=run_id, model=fitted.model, train_config=config.to_dict(),
        privacy=privacy,
        fingerprint={"sha256": run.fingerprint, "rows": len(split.train),
                     "customers": run.privacy.plan.people, "split": split.name,
                     "dataset": config.dataset or paths.dataset},
        metrics=metrics, curve=fitted.curve,
        candidates={"popular": fitted.recommender.popular_[
            :run.model_config.popular_candidates].tolist(),
            "source": "training split popularity" if release is None else
            "released item popularity (core.recommender.item_popularity)",
            "item_popularity": {} if release is None else release.percentiles},
        extra_config={"split": split.name, "membership_pool": run.pool,
                      "split_kind": run.split_kind,
                      "data_before": None if run.before is None else str(run.before),
                      "example_config": run.data.example_config.to_dict()})
