"""The settings of one training run of the cross-encoder: `TrainConfig`.

Validated on construction: ValueError for settings no run may use (an infinite epsilon
without `non_private=True`, a choice of epoch or of negatives that no epsilon covers,
...). Recorded with the run in the registry (`to_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.dp.plan import ACCOUNTANTS, check_budget
from core.recommender import item_popularity, mix_fit

# Per-customer clipping, three modes with the same clipped, noised update (tested):
# "bookkeeping" (core.dp.clipping, the default) takes each customer's norm and the clipped
# sum from one backward pass in which autograd computes no parameter gradient; Opacus'
# "hooks" materialises each customer's gradient of every trainable parameter; its
# "ghost" (Li et al. 2022) computes the norms first and sums the clipped gradients in a
# second backward pass. Their speed and memory: bench/dp_step.py.
GRAD_SAMPLE_MODES = ("bookkeeping", "hooks", "ghost")


@dataclass(frozen=True)
class TrainConfig:
    """Training and privacy settings of one run.

    epsilon / delta: the user-level budget; delta None means min(1e-5, 1 / (10 N)) for
        N customers, and a given delta must not exceed 1 / (10 N).
    batch_size: EXPECTED customers per step (Poisson sampling: the sample rate is
        1 / ceil(N / batch_size), as Opacus computes it).
    lr / head_lr / mix_lr: AdamW learning rates of the trainable encoder layers, of the
        pooler + head (head_lr None: the same as lr) and of the mix weights (the zero-shot
        prior and the numeric features). The mix weights are scalars at a logit scale of
        1-10 and Adam moves a weight by about its lr per step, so mix_lr is large enough
        for them to move within a few hundred steps. Under DP the encoder-layer weights
        get far more noise than signal per coordinate and barely move; the head learns.
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
        check_budget(self)
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
