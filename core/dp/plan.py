"""The privacy plan shared by every DP trainer (recommender, sentiment): how many people,
which delta, the Poisson sample rate, the steps and the noise multiplier that reaches
the budget, with the accountant actually used.

A trainer's config supplies `epsilon`, `delta`, `batch_size`, `epochs`, `non_private`,
`accountant` and optionally `max_steps`; the plan is computed before the ledger is
charged, so a refusal (`TrainingRefused`) means nothing was charged or trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from privacy.accounting import Mechanism, noise_for

ACCOUNTANTS = ("prv", "rdp")
Config = TypeVar("Config")


class TrainingRefused(RuntimeError):
    """The configuration cannot be trained (message says why and what to change)."""


@dataclass(frozen=True)
class PrivacyPlan:
    people: int  # customers (or reviewers) with something to train on: the privacy units
    delta: float
    batch_size: int  # expected people per step
    steps_per_epoch: int
    sample_rate: float
    steps: int
    noise_multiplier: float
    accountant: str
    # mechanisms released with the run on the same people, composed with its steps by
    # the accountant (e.g. the recommender's DP item counts)
    alongside: tuple[Mechanism, ...] = ()


def default_delta(people: int) -> float:
    """min(1e-5, 1 / (10 N)): well below the 1/N at which releasing one record is DP."""
    return min(1e-5, 1.0 / (10 * max(people, 1)))


def noise_multiplier_for(*, epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str, alongside: Sequence[Mechanism] = ()
                         ) -> tuple[float, str]:
    """(sigma, accountant used): `privacy.accounting.noise_for` with the requested
    accountant, falling back to the other one (PRV <-> RDP) where it fails; composed
    with the `alongside` mechanisms where given."""
    order = [accountant] + [a for a in ACCOUNTANTS if a != accountant]
    errors = []
    for name in order:
        try:
            sigma = noise_for(target_epsilon=epsilon, delta=delta, sample_rate=sample_rate,
                              steps=steps, accountant=name, alongside=alongside)
        except (ValueError, RuntimeError, ArithmeticError, MemoryError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        if math.isfinite(sigma) and sigma > 0:
            return sigma, name
        errors.append(f"{name}: noise multiplier {sigma}")
    raise TrainingRefused(f"no noise multiplier reaches epsilon={epsilon} at delta={delta}, "
                          f"q={sample_rate:.4g}, {steps} steps ({'; '.join(errors)}): raise "
                          "epsilon, or lower epochs or the batch size.")


def plan_privacy(config: Any, people: int, *, too_few: str,
                 alongside: Sequence[Mechanism] = ()) -> PrivacyPlan:
    """Sample rate, steps and noise multiplier for `config` over `people` privacy units;
    `too_few` says what to do when there are fewer than 2. `alongside`: mechanisms
    released with the run on the same people (their noise is fixed); the run's noise
    then keeps everything composed within `config.epsilon`."""
    if people < 2:
        raise TrainingRefused(f"only {people} to train on: {too_few}")
    limit = 1.0 / (10 * people)
    delta = default_delta(people) if config.delta is None else config.delta
    if not config.non_private and delta > limit:
        raise TrainingRefused(f"delta={delta} exceeds 1/(10 N) = {limit:.3g} for N={people}: "
                              "choose a smaller delta (or leave it unset for the default "
                              "min(1e-5, 1/(10 N))).")
    batch = min(config.batch_size, people)
    per_epoch = math.ceil(people / batch)
    sample_rate = 1.0 / per_epoch  # what Opacus' DPDataLoader uses
    steps = per_epoch * config.epochs
    if getattr(config, "max_steps", None) is not None:
        steps = min(steps, config.max_steps)
    if config.non_private:
        return PrivacyPlan(people, delta, batch, per_epoch, sample_rate, steps, 0.0, "none")
    sigma, used = noise_multiplier_for(epsilon=config.epsilon, delta=delta,
                                       sample_rate=sample_rate, steps=steps,
                                       accountant=config.accountant, alongside=alongside)
    return PrivacyPlan(people, delta, batch, per_epoch, sample_rate, steps, sigma, used,
                       tuple(alongside))


def check_budget(config: Any) -> None:
    """A trainer config's (epsilon, delta): raises ValueError unless a DP run has a finite
    positive epsilon (or says `non_private=True`) and delta, when set, lies in (0, 1)."""
    if not config.non_private and not (config.epsilon > 0 and math.isfinite(config.epsilon)):
        raise ValueError(f"epsilon={config.epsilon}: give a finite positive budget, or "
                         "train without privacy explicitly with non_private=True.")
    if config.delta is not None and not 0.0 < config.delta < 1.0:
        raise ValueError(f"delta={config.delta}: must lie in (0, 1).")


def check_secure_mode(config: Any) -> None:
    """Refuse `secure_mode` where its noise generator is missing (before any charge)."""
    if config.secure_mode:
        try:
            import torchcsprng  # noqa: F401
        except ImportError as exc:
            raise TrainingRefused("secure_mode needs the torchcsprng package (a "
                                  "cryptographically secure noise generator), which is not "
                                  "installed: install it, or train without --secure-mode.") \
                from exc


def with_overrides(config: Config, **changes: object) -> Config:
    """`config` (a dataclass) with the given fields replaced (None values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
