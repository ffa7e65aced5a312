"""Opacus, fitted to per-customer DP-SGD: the optimizer, book-keeping clipping, the
accountant checks and one patch of Opacus' per-sample gradient storage.

Nothing here changes the guarantee: the Poisson sampling, the noise, the scaling and the
accountant stay Opacus'. `check_accounted` asserts after training that the accountant
counted exactly the steps and sample rate the ledger was charged for.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from core.dp.clipping import BookkeepingClipping
from core.dp.plan import PrivacyPlan

_OPACUS_STORE = None  # Opacus' own function, set by keep_opacus_grad_samples


def store_grad_sample(*, param: torch.Tensor, grad_sample: torch.Tensor,
                      max_batch_len: int) -> None:
    """Opacus' `create_or_accumulate_grad_sample` without a copy it makes for nothing.

    Opacus keeps a layer's per-sample gradient in a zero-filled (max batch, *shape)
    buffer and copies the layer's result into it, so that a layer called twice in one
    forward can add to it. A layer called once per forward whose result covers the whole
    batch has its result kept instead (same values, one copy of every per-customer
    gradient fewer); a view, a partial batch or a second call takes Opacus' own path."""
    if (param.requires_grad and not hasattr(param, "_current_grad_sample")
            and grad_sample.shape[0] == max_batch_len and grad_sample._base is None):
        param._current_grad_sample = grad_sample
        return
    _OPACUS_STORE(param=param, grad_sample=grad_sample, max_batch_len=max_batch_len)


def keep_opacus_grad_samples() -> None:
    """Install `store_grad_sample` in Opacus' hooks (once per process; idempotent)."""
    global _OPACUS_STORE
    from opacus.grad_sample import grad_sample_module as gsm

    if gsm.create_or_accumulate_grad_sample is not store_grad_sample:
        _OPACUS_STORE = gsm.create_or_accumulate_grad_sample
        gsm.create_or_accumulate_grad_sample = store_grad_sample


def build_optimizer(model: torch.nn.Module, groups: Sequence[tuple[tuple[str, ...], float]],
                    *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `model`. `groups`: (name prefixes, learning
    rate) pairs, in order; a parameter whose name starts with one of a group's prefixes
    learns at that group's rate, every other at `lr` (a last group). Groups without a
    parameter are left out."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    taken: set[int] = set()
    param_groups = []
    for prefixes, rate in groups:
        params = [p for n, p in named if n.startswith(prefixes) and id(p) not in taken]
        taken.update(id(p) for p in params)
        param_groups.append({"params": params, "lr": rate})
    param_groups.append({"params": [p for _, p in named if id(p) not in taken], "lr": lr})
    return torch.optim.AdamW([g for g in param_groups if g["params"]],
                             weight_decay=weight_decay)


def make_bookkeeping_private(engine, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             loader: DataLoader, plan: PrivacyPlan, *, max_grad_norm: float,
                             noise_generator, world_size: int | None = None):
    """Opacus' `make_private` with book-keeping clipping: (module, optimizer, loader).

    Clipping is `core.dp.clipping`'s; the Poisson loader, the noise, the scaling and the
    accountant are Opacus': the parts make_private puts together for its ghost clipping,
    whose optimizer takes p.grad as the clipped sum. `world_size` (distributed): each
    rank's expected share of the batch, as make_private computes it, and Opacus'
    distributed optimizer and sampler."""
    distributed = world_size is not None
    module = BookkeepingClipping(model, max_grad_norm)
    loader = engine._prepare_data_loader(loader, poisson_sampling=True,
                                         distributed=distributed)
    expected = int(len(loader.dataset) * plan.sample_rate)
    optimizer = engine._prepare_optimizer(
        optimizer=optimizer, noise_multiplier=plan.noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected / world_size if distributed else expected,
        loss_reduction="mean", distributed=distributed, grad_sample_mode="ghost",
        noise_generator=noise_generator)
    return module, optimizer, loader


def account_alongside(engine, plan: PrivacyPlan) -> None:
    """Put the mechanisms released with the run (`plan.alongside`) in the accountant's
    history before its first step: every epsilon it reports is then the composition the
    ledger was charged for."""
    engine.accountant.history.extend(plan.alongside)


def epsilon_spent(engine, delta: float) -> float:
    """The epsilon the accountant reports so far at `delta`."""
    with warnings.catch_warnings():  # PRV at q = 1 takes log(0) harmlessly
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(engine.accountant.get_epsilon(delta=delta))


def check_accounted(engine, plan: PrivacyPlan) -> None:
    """Raise AssertionError unless the accountant counted exactly the steps and sample
    rate the ledger was charged for (its history merges equal consecutive steps:
    [(sigma, q, steps)])."""
    history = engine.accountant.history
    expected = [*plan.alongside, (plan.noise_multiplier, plan.sample_rate, plan.steps)]
    if [(q, n) for _, q, n in history] != [(q, n) for _, q, n in expected]:
        raise AssertionError(f"the accountant saw {history}, the ledger was charged for "
                             f"{plan.steps} steps at q = {plan.sample_rate}")
