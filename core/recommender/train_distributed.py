"""User-level DP training of the cross-encoder on several processes (torchrun, gloo).

    torchrun --nproc_per_node 2 -m core.cli.train_distributed --epsilon 3 --epochs 2
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 \\
        --nproc_per_node 8 -m core.cli.train_distributed ...      # several machines

The flags are `clearmark train`'s. Every rank builds the same data and privacy plan
(`core.recommender.data`, `core.recommender.planning`: deterministic given the warehouse
and the configs; checked across ranks) and the same seeded model. Rank 0 runs
`core.recommender.train.train`, which charges, evaluates, saves and completes the run
exactly as for one process, with `fit_distributed` as its loop; every rank runs it.

The guarantee is the single-process one for the same settings: Poisson sampling over
ALL customers at q = 1 / ceil(N / batch_size) (each rank keeps each customer of its
fixed share with probability q), each rank clips its own customers' gradients, rank 0
alone adds the noise (Opacus' DPDDP and distributed DP optimizer), and the accountant is
told q itself (Opacus would derive 1 / int(1 / q)). Empty local batches are steps too
(`EveryStepSampler`), so every rank takes every step and rank 0's accountant counts
them all. CPU only (gloo: the training keeps every tensor on the CPU); DP only
(non-private runs are refused); per-customer clipping "bookkeeping" (the default) or
"hooks"; no per-epoch validation (`val_users` recorded as 0).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.distributed as dist
from opacus import PrivacyEngine
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from opacus.optimizers import (
    DistributedDPOptimizer,
    DistributedDPOptimizerFastGradientClipping,
)
from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from core.config import Paths
from core.dp.opacus_glue import (
    account_alongside,
    check_accounted,
    epsilon_spent,
    keep_opacus_grad_samples,
    make_bookkeeping_private,
)
from core.dp.plan import PrivacyPlan, TrainingRefused
from core.recommender import item_popularity
from core.recommender.config import TrainConfig
from core.recommender.data import training_data, with_audit_pool
from core.recommender.examples import collate_groups
from core.recommender.model_config import ModelConfig
from core.recommender.planning import model_config_for, plan_run
from core.recommender.train import build_dataset, new_model, optimizer_for, train, train_step

BACKEND = "gloo"


class EveryStepSampler(DistributedUniformWithReplacementSampler):
    """Opacus' distributed Poisson sampler (fixed shard per rank, each customer of the
    shard kept with probability `sample_rate`), except that empty batches are yielded
    too: every rank then takes exactly `num_batches` steps per epoch, and an empty
    step is still a noised, accounted step (see `core.recommender.train.train_step`)."""

    def __iter__(self):
        order = torch.randperm(self.total_size,
                               generator=torch.Generator().manual_seed(self.shuffle_seed
                                                                        + self.epoch))
        mine = order[self.rank:self.total_size:self.num_replicas]  # (num_samples,)
        for _ in range(self.num_batches):
            keep = torch.rand(len(mine), generator=self.generator) < self.sample_rate
            yield mine[keep].tolist()


def _rank_generator(seed: int, rank: int) -> torch.Generator:
    """Sampling randomness per rank: ranks drawing the same mask would include their
    i-th customers together, and Poisson sampling needs independent inclusions."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank])
                                             .generate_state(1)[0]))


def _digest(values) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(v.detach().contiguous().numpy().tobytes() if torch.is_tensor(v)
                 else str(v).encode())
    return h.hexdigest()


def _same_on_every_rank(what: str, value: object) -> None:
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"the ranks disagree on {what}: {values}; every rank must read "
                           "the same warehouse with the same settings.")


def fit_distributed(groups, catalogue, split, config: TrainConfig, model_config: ModelConfig,
                    plan: PrivacyPlan, *, progress: bool, bert_config):
    """`core.recommender.train.fit_model` across the ranks of the process group (every rank
    calls it with the same arguments). Returns what `fit_model` returns: (model in eval
    mode, curve, epsilon spent, timing); the timing holds each rank's steps, customers
    and a digest of its trained weights."""
    rank, world = dist.get_rank(), dist.get_world_size()
    _share_cores(world)
    catalogue, model_config = _rank_zero_release(catalogue, model_config, rank)
    model = new_model(model_config, bert_config, config.seed)
    dataset = build_dataset(groups, catalogue, model, seed=config.seed)
    _same_on_every_rank("the example groups and the privacy plan", (_digest(groups), plan))
    module, optimizer, engine, loader = _make_private(model, dataset, config, plan,
                                                      rank=rank, world=world)
    trainable = model.trainable_parameters()
    curve, spent, local = _train_steps(module, optimizer, engine, loader, trainable, plan,
                                       rank=rank, progress=progress)
    module.cleanup()  # remove the clipping hooks and attributes: the saved model is plain
    model.eval()
    check_accounted(engine, plan)
    return model, curve, spent, _timing(curve, {"rank": rank, **local,
                                                "trainable_sha256": _digest(trainable)})


def _share_cores(world: int) -> None:
    """One share of this machine's cores per local worker (train() asked for all)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))


def _rank_zero_release(catalogue, model_config: ModelConfig, rank: int):
    """(catalogue, model config) as rank 0 has them. Rank 0's train() released the item
    popularity into its catalogue and fixed the model to the release
    (`model_config_for_release`): every rank reads the same percentiles and builds the
    same model."""
    released = [item_popularity.of(catalogue) if rank == 0 and item_popularity.POPULARITY
                in catalogue.columns else None, model_config]
    dist.broadcast_object_list(released, src=0)
    if released[0] is not None and rank != 0:
        catalogue = item_popularity.attach(catalogue, released[0])
    return catalogue, released[1]


def _make_private(model, dataset, config: TrainConfig, plan: PrivacyPlan, *, rank: int,
                  world: int):
    """(module, optimizer, engine, loader): Opacus' distributed DP optimizer, and a loader
    that samples each rank's customers at `plan.sample_rate`, empty batches included."""
    # DPDDP broadcasts rank 0's weights: every rank starts from the same model even if
    # seeding did not make them equal.
    ddp = DPDDP(model)
    optimizer = optimizer_for(model, config)
    # The GLOBAL batch size over ALL customers: Opacus takes q = 1 / len(loader) =
    # 1 / ceil(N / batch_size) from it, the single-process rate.
    loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True,
                        collate_fn=collate_groups)
    keep_opacus_grad_samples()
    noise_generator = None if config.secure_mode else torch.Generator().manual_seed(
        config.seed)  # used on rank 0 only
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        if config.grad_sample_mode == "bookkeeping":
            module, optimizer, dp_loader = make_bookkeeping_private(
                engine, model, optimizer, loader, plan, max_grad_norm=config.max_grad_norm,
                noise_generator=noise_generator, world_size=world)
        else:
            module, optimizer, dp_loader = engine.make_private(
                module=ddp, optimizer=optimizer, data_loader=loader,
                noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
                poisson_sampling=True, grad_sample_mode=config.grad_sample_mode,
                noise_generator=noise_generator)
    distributed = (DistributedDPOptimizer, DistributedDPOptimizerFastGradientClipping)
    if not (isinstance(optimizer, distributed) and dp_loader.distributed):
        raise AssertionError("Opacus did not take the distributed path (DPDDP not seen)")
    if abs(dp_loader.sample_rate - plan.sample_rate) > 1e-12:
        raise AssertionError(f"Opacus samples at {dp_loader.sample_rate}, the ledger was "
                             f"charged for {plan.sample_rate}")
    # The accountant counts every step at the rate actually sampled: plan.sample_rate.
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(
        sample_rate=plan.sample_rate))
    account_alongside(engine, plan)
    sampler = EveryStepSampler(total_size=len(dataset), sample_rate=plan.sample_rate,
                               steps=plan.steps_per_epoch, generator=engine.secure_rng
                               if config.secure_mode else _rank_generator(config.seed, rank))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=dp_loader.collate_fn)
    return module, optimizer, engine, loader


def _train_steps(module, optimizer, engine, loader, trainable, plan: PrivacyPlan, *,
                 rank: int, progress: bool):
    """The distributed loop: (curve of global batches and losses, epsilon spent (rank 0's
    accountant), this rank's steps, customers and empty steps)."""
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    curve: list[dict[str, object]] = []
    local_customers = empty_steps = 0
    spent = 0.0
    bar = tqdm(total=plan.steps, disable=not progress or rank != 0, desc="train",
               unit="step")
    module.train()
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for epoch in range(math.ceil(plan.steps / plan.steps_per_epoch)):
        for batch in loader:
            if len(curve) >= plan.steps:
                break
            started = time.perf_counter()
            loss = train_step(module, optimizer, batch, trainable, private=True)
            schedule.step()
            seconds = time.perf_counter() - started
            n = int(batch[0].shape[0])  # this rank's share of the step's customers
            local_customers += n
            empty_steps += n == 0
            customers, loss = _global_batch(n, loss)
            if rank == 0:  # the only accountant that matters: the noise is added here
                spent = epsilon_spent(engine, plan.delta)
            curve.append({"step": len(curve) + 1, "epoch": epoch + 1,
                          "batch_size": customers, "loss": loss,
                          "epsilon": spent, "seconds": seconds})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{spent:.2f}")
    bar.close()
    return curve, spent, {"steps": len(curve), "customers": local_customers,
                          "empty_steps": empty_steps}


def _global_batch(n: int, loss: float) -> tuple[int, float]:
    """(customers of the step over all ranks, their mean loss): the curve shows the
    global batch, as for one process."""
    step = torch.tensor([n, loss * n if n else 0.0], dtype=torch.float64)
    dist.all_reduce(step)
    customers = int(step[0])
    return customers, float(step[1] / customers) if customers else float("nan")


def _timing(curve: list[dict[str, object]], mine: dict[str, object]) -> dict[str, object]:
    """`fit_model`'s timing, with every rank's `mine` (gathered from all ranks)."""
    ranks: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, mine)
    total = float(np.sum([c["seconds"] for c in curve]))
    return {"kept_epoch": curve[-1]["epoch"] if curve else 0, "steps": len(curve),
            "seconds_per_step": total / max(len(curve), 1), "train_seconds": total,
            "customers_per_second": sum(c["batch_size"] for c in curve) / max(total, 1e-9),
            "distributed": {"backend": BACKEND, "world_size": len(ranks), "ranks": ranks}}


# --- the run: rank 0 through core.recommender.train.train, the other ranks alongside ---


def _start_signal(refusal: str | None = None) -> None:
    """Rank 0 -> all: None once the ledger entry exists (training starts), else why not."""
    dist.broadcast_object_list([refusal], src=0)


def _await_start() -> None:
    box: list[object] = [None]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise TrainingRefused(f"rank 0 did not start training: {box[0]}")


def train_distributed(paths: Paths | None = None, config: TrainConfig | None = None, *,
                      model_config: ModelConfig | None = None,
                      split_name: str = "leave_last_out", progress: bool = True,
                      bert_config=None, run_id: str | None = None) -> str | None:
    """Call on every rank of an initialised process group. Rank 0 returns the run id
    (charged, trained, evaluated, saved and completed like `core.recommender.train.train`); the
    other ranks train alongside and return None."""
    paths = paths or Paths()
    config = replace(config or TrainConfig(), val_users=0)
    model_config = model_config_for(config, model_config or ModelConfig())
    if config.non_private:
        raise TrainingRefused("distributed training is the DP path (DPDDP): train a "
                              "non-private model with `clearmark train --non-private`.")
    if config.grad_sample_mode == "ghost":  # not checked with DPDDP here
        raise TrainingRefused("grad_sample_mode='ghost': distributed training clips per "
                              "customer in the 'bookkeeping' (default) or 'hooks' mode.")
    if dist.get_rank() != 0:
        data = training_data(paths, config, model_config, split_name=split_name)
        # as train() does: the same seeded pool and plan on every rank
        config, groups, pool = with_audit_pool(config, data.groups)
        plan = plan_run(config, model_config, data.split, groups, pool).plan
        _await_start()
        fit_distributed(groups, data.train_catalogue, data.split, config, model_config, plan,
                        progress=False, bert_config=bert_config)
        return None

    started = False

    def fit(*args, **kwargs):
        nonlocal started
        _start_signal(None)  # train() has charged the ledger: the other ranks may start
        started = True
        return fit_distributed(*args, **kwargs)

    try:
        # train() is the one place that charges, evaluates, saves and completes a run;
        # it gets the distributed loop in place of its single-process one.
        return train(paths, config, model_config=model_config, split_name=split_name,
                     progress=progress, bert_config=bert_config, run_id=run_id, fit=fit)
    except BaseException as exc:
        if not started:  # refused before training (budget, delta...): release the others
            _start_signal(f"{type(exc).__name__}: {exc}")
        raise
