"""The privacy plan of a training run: every mechanism it releases and at what noise.

A private run releases up to three Gaussian mechanisms on the same customers: the item
popularity counts (`core.recommender.popularity_release`), the DP fit of its final
weights (`final_fit_noise`) and DP-SGD. Each of the first two is given its share of
epsilon alone; DP-SGD's noise is then set so that all three, composed by the
accountant, spend `TrainConfig.epsilon`. Decided from public quantities only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import pandas as pd

from core.dp import plan as dp_plan
from core.dp.plan import PrivacyPlan
from core.recommender import mix_fit
from core.recommender.config import TrainConfig
from core.recommender.data import pool_members, trained_on
from core.recommender.model_config import ModelConfig
from core.recommender.popularity_release import CountsNoise, popularity_noise
from core.recommender.splits import Split
from core.store.interactions import USER
from privacy.accounting import Mechanism, epsilon_for


def plan_privacy(config: TrainConfig, customers: int, *,
                 alongside: tuple[Mechanism, ...] = ()) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `customers` customers
    (composed with the `alongside` mechanisms, e.g. the popularity counts)."""
    return dp_plan.plan_privacy(config, customers, alongside=alongside, too_few=(
        "customers with a training example (an interaction with an earlier one); DP "
        "training needs many."))


@dataclass(frozen=True)
class FinalFitNoise:
    """The DP fit of a private run's final weights
    (`core.recommender.mix_fit.fit_on_validation_private`): one Gaussian mechanism on a
    Poisson sample of the customers."""

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


class RunPlan(NamedTuple):
    """What `plan_run` fixes for a run."""

    config: TrainConfig              # its delta fixed
    counted: pd.DataFrame | None     # what the popularity counts read (None: no popularity)
    noise: CountsNoise | None        # the counts' mechanism (None: none, or exact counts)
    fit_noise: FinalFitNoise | None  # the DP fit of the final weights (None: no DP fit)
    plan: PrivacyPlan                # DP-SGD's sample rate, steps and noise


def plan_run(config: TrainConfig, model_config: ModelConfig, split: Split, groups,
             pool: dict[str, bool]) -> RunPlan:
    """Every mechanism of a run and its noise, from public quantities only (customer
    counts), before anything is charged. Deterministic given its inputs: every rank of a
    distributed run computes the same."""
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
    return RunPlan(config, counted, noise, fit_noise, plan)
