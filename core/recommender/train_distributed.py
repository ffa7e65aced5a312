"""User-level DP training of the cross-encoder on several processes (torchrun, gloo).

    torchrun --nproc_per_node 2 -m core.recommender.train_distributed --epsilon 3 --epochs 2
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 \\
        --nproc_per_node 8 -m core.recommender.train_distributed ...      # several machines

The flags are `clearmark train`'s. Every rank builds the same split, example groups and
privacy plan (`core.recommender.train.training_data` and `plan_privacy`: deterministic given the
warehouse and the configs; checked across ranks before training) and the same seeded
model. Rank 0 runs `core.recommender.train.train` itself, so the ledger is charged before any
training work, the entry is marked failed on any error and completed after the run is
evaluated and saved, exactly as for one process; only its training loop is replaced
by the distributed one below, which every rank runs.

The distributed loop: the model is wrapped in Opacus' DPDDP before `make_private`, so
Opacus builds a DistributedDPOptimizer: each rank clips its own customers' gradients,
rank 0 alone adds the noise, and the ranks' sums are averaged. The sampling is Poisson
over ALL customers at the single-process rate q = 1 / ceil(N / batch_size) (each rank
owns a fixed 1/world share of the customers and keeps each with probability q), so
the expected global batch, sigma, the steps and hence epsilon are those of the
single-process plan for the same settings; adding workers makes steps faster, not
the guarantee different.

Two departures from Opacus' defaults, both asserted or explained where they are made:
the batch sampler also yields EMPTY local batches (Opacus' distributed sampler skips
them, which would leave the ranks at different steps and rank 0's accountant short of
steps), and the accountant is told `plan.sample_rate` itself (Opacus derives 1 / int(1
/ q), which is not q for some batch counts, e.g. 93).

CPU only (gloo): the project's training keeps every tensor on the CPU, so NCCL, which
needs CUDA tensors, would not run it. Per-epoch validation is not run (`val_users` is
recorded as 0); non-private runs are refused (DPDDP is the DP path; use `clearmark
train --non-private`), and so is ghost clipping (`grad_sample_mode` "bookkeeping", the
default, or "hooks"). With book-keeping clipping each rank leaves its customers' clipped
sum in p.grad and Opacus' distributed optimizer adds the noise on rank 0 and sums the
ranks' gradients, as it does for its own ghost clipping.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

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
from core.dp.plan import PrivacyPlan, TrainingRefused, with_overrides
from core.recommender import item_popularity
from core.recommender import train as train_mod
from core.recommender.examples import collate_groups
from core.recommender.model import ModelConfig
from core.recommender.train import (
    TrainConfig,
    _keep_opacus_grad_samples,
    _optimizer,
    account_alongside,
    build_dataset,
    check_accounted,
    make_bookkeeping_private,
    plan_run,
    train_step,
    training_data,
)
from privacy.membership import draw_pool, pool_size

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
    """`core.recommender.train._fit` across the ranks of the process group (every rank calls it
    with the same arguments). Returns what `_fit` returns: (model in eval mode, curve,
    epsilon spent, timing); the timing holds each rank's steps, customers and a digest
    of its trained weights."""
    rank, world = dist.get_rank(), dist.get_world_size()
    # One share of this machine's cores per local worker (train() asked for all of them).
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))
    # Rank 0's train() released the item popularity into its catalogue and fixed the
    # model to the release (`model_config_for_release`): every rank reads the same
    # percentiles and builds the same model.
    released = [item_popularity.of(catalogue) if rank == 0 and item_popularity.POPULARITY
                in catalogue.columns else None, model_config]
    dist.broadcast_object_list(released, src=0)
    if released[0] is not None and rank != 0:
        catalogue = item_popularity.attach(catalogue, released[0])
    model_config = released[1]
    model = train_mod._new_model(model_config, bert_config, config.seed)
    dataset = build_dataset(groups, catalogue, model, seed=config.seed)
    _same_on_every_rank("the example groups and the privacy plan", (_digest(groups), plan))
    # DPDDP broadcasts rank 0's weights: every rank starts from the same model even if
    # seeding did not make them equal.
    ddp = DPDDP(model)
    optimizer = _optimizer(model, config)
    # The GLOBAL batch size over ALL customers: Opacus takes q = 1 / len(loader) =
    # 1 / ceil(N / batch_size) from it, the single-process rate.
    loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True,
                        collate_fn=collate_groups)
    _keep_opacus_grad_samples()
    noise_generator = None if config.secure_mode else torch.Generator().manual_seed(
        config.seed)  # used on rank 0 only
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=plan.accountant, secure_mode=config.secure_mode)
        if config.grad_sample_mode == "bookkeeping":
            module, optimizer, dp_loader = make_bookkeeping_private(
                engine, model, optimizer, loader, config, plan,
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

    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(plan.steps, 1)))
    trainable = model.trainable_parameters()
    curve: list[dict[str, object]] = []
    seconds: list[float] = []
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
            seconds.append(time.perf_counter() - started)
            n = int(batch[0].shape[0])  # this rank's share of the step's customers
            local_customers += n
            empty_steps += n == 0
            # The curve shows the global batch and its mean loss, as for one process.
            step = torch.tensor([n, loss * n if n else 0.0], dtype=torch.float64)
            dist.all_reduce(step)
            customers = int(step[0])
            loss = float(step[1] / customers) if customers else float("nan")
            if rank == 0:  # the only accountant that matters: the noise is added here
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    spent = float(engine.accountant.get_epsilon(delta=plan.delta))
            curve.append({"step": len(curve) + 1, "epoch": epoch + 1,
                          "batch_size": customers, "loss": loss,
                          "epsilon": spent, "seconds": seconds[-1]})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", eps=f"{spent:.2f}")
    bar.close()
    module.cleanup()  # remove the clipping hooks and attributes: the saved model is plain
    model.eval()
    check_accounted(engine, plan)
    mine = {"rank": rank, "steps": len(curve), "customers": local_customers,
            "empty_steps": empty_steps, "trainable_sha256": _digest(trainable)}
    ranks: list[object] = [None] * world
    dist.all_gather_object(ranks, mine)
    total = float(np.sum(seconds))
    timing = {"kept_epoch": curve[-1]["epoch"] if curve else 0, "steps": len(curve),
              "seconds_per_step": total / max(len(curve), 1), "train_seconds": total,
              "customers_per_second": sum(c["batch_size"] for c in curve) / max(total, 1e-9),
              "distributed": {"backend": BACKEND, "world_size": world, "ranks": ranks}}
    return model, curve, spent, timing


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
    model_config = train_mod.model_config_for(config, model_config or ModelConfig())
    if config.non_private:
        raise TrainingRefused("distributed training is the DP path (DPDDP): train a "
                              "non-private model with `clearmark train --non-private`.")
    if config.grad_sample_mode == "ghost":  # not checked with DPDDP here
        raise TrainingRefused("grad_sample_mode='ghost': distributed training clips per "
                              "customer in the 'bookkeeping' (default) or 'hooks' mode.")
    if dist.get_rank() != 0:
        data = training_data(paths, config, model_config, split_name=split_name)
        groups = data.groups
        candidates = {g.user for g in groups}
        config = replace(config, audit_pool=pool_size(config.audit_pool, len(candidates)))
        if config.audit_pool:  # as train() does: the same seeded pool on every rank
            pool = draw_pool(candidates, config.audit_pool, seed=config.seed)
            groups = [g for g in groups if pool.get(g.user, True)]
        else:
            pool = {}
        _, _, _, _, plan = plan_run(config, model_config, data.split, groups, pool)
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
        return train_mod.train(paths, config, model_config=model_config,
                               split_name=split_name, progress=progress,
                               bert_config=bert_config, run_id=run_id, fit=fit)
    except BaseException as exc:
        if not started:  # refused before training (budget, delta...): release the others
            _start_signal(f"{type(exc).__name__}: {exc}")
        raise


def build_parser() -> argparse.ArgumentParser:
    """`clearmark train`'s parser (the same flags, defined once in core.cli.models),
    plus what only a distributed run needs."""
    from core.cli import models as cli_models

    commands = argparse.ArgumentParser().add_subparsers()
    cli_models.register(commands)
    train_parser = commands.choices["train"]
    train_parser.prog = "torchrun --nproc_per_node N -m core.recommender.train_distributed"
    train_parser.add_argument("--run-id", help="default: a new ce_... id")
    train_parser.add_argument("--model-config-json", type=Path,
                              help="ModelConfig fields as JSON (replaces --trainable-layers "
                                   "and --max-length)")
    # Tests only: a randomly initialised BERT of this BertConfig (JSON) instead of the
    # bundled MiniLM weights, as `core.recommender.train.train(bert_config=...)`.
    train_parser.add_argument("--random-bert-json", type=Path, help=argparse.SUPPRESS)
    return train_parser


def main(argv: list[str] | None = None) -> int:
    from core.cli.models import SPLIT_NAMES, _print_run, _user_errors

    args = build_parser().parse_args(argv)
    # torchrun stops the other workers with SIGTERM when one fails: raising turns that
    # into an exception, so that rank 0's train() marks the ledger entry failed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.model_config_json:
        model_config = ModelConfig.from_dict(json.loads(args.model_config_json.read_text()))
    else:
        model_config = ModelConfig(trainable_layers=args.trainable_layers,
                                   **({"max_length": args.max_length} if args.max_length
                                      else {}))
    bert_config = None
    if args.random_bert_json:
        from transformers import BertConfig

        bert_config = BertConfig.from_json_file(str(args.random_bert_json))
    config = with_overrides(
        TrainConfig(), epsilon=args.epsilon, delta=args.delta,
        max_grad_norm=args.max_grad_norm, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, head_lr=args.head_lr, seed=args.seed,
        secure_mode=args.secure_mode or None, max_customers=args.max_customers,
        eval_baselines=args.baselines or None, eval_users=args.eval_users,
        dataset=args.dataset, max_steps=args.max_steps, held_out_items=args.held_out_items,
        audit_pool=args.audit_pool, non_private=args.non_private or None,
        grad_sample_mode=args.clipping)
    dist.init_process_group(BACKEND)
    try:
        run_id = train_distributed(Paths(), config, model_config=model_config,
                                   split_name=SPLIT_NAMES[args.split],
                                   progress=not args.quiet, bert_config=bert_config,
                                   run_id=args.run_id)
    except _user_errors() as exc:  # refusals, budget exceeded: nothing was trained
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    if run_id is not None:
        _print_run(run_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
