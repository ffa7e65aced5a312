"""Privacy accounting for DP-SGD (Poisson-sampled Gaussian mechanism): pure functions.

Every function takes the privacy parameters keyword-only so they cannot be
swapped: `noise_multiplier` (σ, noise std over the clipping norm),
`sample_rate` (q, Poisson sampling probability), `steps` (T) and `delta`.

- `epsilon_for` / `epsilon_with_fallback`: opacus' PRV accountant (Gopi et al.
  2021, tight numerical composition), falling back to opacus' RDP accountant
  (a looser but always valid upper bound) where PRV fails or would need a grid
  too large for memory.
- `compose_epsilon`: several DP-SGD runs on the same data, composed by giving
  the accountant the whole history. Composition is much tighter than the sum
  of the runs' epsilons (`sum_epsilon`, basic composition).
- Second opinions from an independent library (Google's `dp_accounting`):
  `pld_epsilon` (privacy loss distributions) and `rdp_epsilon`; and `gdp_mu`,
  the Gaussian-DP central-limit approximation (not a bound).
- `compare`: does a claimed epsilon agree with a recomputed one?

The accountants take seconds per call on 2 cores and are pure functions of their
numbers, so `compose_with_fallback`, `pld_epsilon` and `rdp_epsilon` are memoized in a
small JSON file (`CLEARMARK_CACHE_DIR`, default ~/.cache/clearmark): the Privacy page
and `clearmark audit report` then reuse what training or an earlier report computed.

Imports of opacus (which loads torch) and dp_accounting happen inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

PRV = "prv"
RDP = "rdp"
PLD = "pld"
ACCOUNTANTS = (PRV, RDP)

# The PRV accountant discretizes the privacy loss on a grid whose size it picks
# from the inputs; for very weak privacy (small σ, large q, many steps) it asks
# for hundreds of millions of points and the process is killed for memory
# (measured here: σ=0.5, q=0.5, 10k steps wants 5e8 points). Above this many
# points we use RDP instead.
MAX_PRV_GRID_POINTS = 10_000_000
PRV_EPS_ERROR = 0.01  # opacus' default; get_epsilon returns the upper end of the estimate

Mechanism = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)

MEMO_MAX_ENTRIES = 5000  # the oldest go first; a noise search adds about 30
_MEMO_LOCK = threading.Lock()


def memo_path() -> Path:
    """Where the accountants' results are memoized (no personal data: numbers only)."""
    base = os.environ.get("CLEARMARK_CACHE_DIR") or Path.home() / ".cache" / "clearmark"
    return Path(base) / "accounting.json"


def _read_memo(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: recompute


def _memoized(fn: Callable) -> Callable:
    """`fn` with its results kept in `memo_path()`, keyed by its name and arguments."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = json.dumps([fn.__name__, [list(a) if isinstance(a, Sequence) else a
                                        for a in args], sorted(kwargs.items())])
        path = memo_path()
        with _MEMO_LOCK:
            memo = _read_memo(path)
        if key in memo:
            hit = memo[key]
            return tuple(hit) if isinstance(hit, list) else float(hit)
        result = fn(*args, **kwargs)
        with _MEMO_LOCK:
            memo = _read_memo(path)
            memo[key] = result  # JSON keeps inf as Infinity
            memo = dict(list(memo.items())[-MEMO_MAX_ENTRIES:])
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(memo))
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only home: the result stands, only uncached
        return result

    return wrapper


def _check(noise_multiplier: float, sample_rate: float, steps: int, delta: float | None) -> None:
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
    if steps < 0 or int(steps) != steps:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _active(mechanisms: Sequence[Mechanism]) -> list[Mechanism] | None:
    """Drop mechanisms that spend nothing; None when one of them is not private."""
    active = []
    for sigma, q, steps in mechanisms:
        _check(sigma, q, steps, None)
        if steps == 0 or q == 0:
            continue
        if sigma == 0:
            return None  # no noise: epsilon is infinite
        active.append((float(sigma), float(q), int(steps)))
    return active


def _prv_grid_points(history: list[Mechanism], delta: float) -> float:
    """Grid size PRVAccountant.get_epsilon(delta) would allocate (same formula as opacus)."""
    import numpy as np
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    delta_error = delta / 1000
    prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in history]
    steps = [t for _, _, t in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_width = compute_safe_domain_size(prvs=prvs, max_self_compositions=steps,
                                              eps_error=PRV_EPS_ERROR, delta_error=delta_error)
    mesh = PRV_EPS_ERROR / np.sqrt(sum(steps) * np.log(12 / delta_error) / 2)
    return 2 * half_width / mesh


def _opacus_epsilon(history: list[Mechanism], delta: float, accountant: str) -> float:
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = PRVAccountant() if accountant == PRV else RDPAccountant()
    acc.history = list(history)
    with warnings.catch_warnings():
        # overflow warnings from the PRV density tails and RDP's "optimal order
        # is the smallest alpha" are expected for weak privacy; the result stands.
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


@_memoized
def compose_with_fallback(mechanisms: Sequence[Mechanism], *, delta: float,
                          accountant: str = PRV) -> tuple[float, str]:
    """Epsilon at `delta` of all `(noise_multiplier, sample_rate, steps)` runs
    composed, and the accountant that gave it ("prv" or "rdp").

    Range [0, inf]; inf when any run has no noise. With accountant "prv",
    falls back to "rdp" when PRV raises, returns a non-finite value, or would
    need more than MAX_PRV_GRID_POINTS grid points.
    """
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    _check(0, 0, 0, delta)
    history = _active(mechanisms)
    if history is None:
        return math.inf, accountant
    if not history:
        return 0.0, accountant
    if accountant == PRV:
        try:
            if _prv_grid_points(history, delta) <= MAX_PRV_GRID_POINTS:
                eps = _opacus_epsilon(history, delta, PRV)
                if math.isfinite(eps) and eps >= 0:
                    return eps, PRV
        except (ValueError, RuntimeError, ArithmeticError, MemoryError):
            pass  # RDP below is a valid (looser) upper bound
    return _opacus_epsilon(history, delta, RDP), RDP


def epsilon_with_fallback(*, noise_multiplier: float, sample_rate: float, steps: int,
                          delta: float, accountant: str = PRV) -> tuple[float, str]:
    """Epsilon of one DP-SGD run, and which accountant gave it ("prv" or "rdp")."""
    _check(noise_multiplier, sample_rate, steps, delta)
    return compose_with_fallback([(noise_multiplier, sample_rate, steps)], delta=delta,
                                 accountant=accountant)


def epsilon_for(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = PRV) -> float:
    """Epsilon of one DP-SGD run (opacus; PRV falls back to RDP). Range [0, inf]."""
    return epsilon_with_fallback(noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                                 steps=steps, delta=delta, accountant=accountant)[0]


def compose_epsilon(mechanisms: Sequence[Mechanism], *, delta: float) -> float:
    """Epsilon of several DP-SGD runs on one dataset, composed by the accountant
    over the whole history (PRV, RDP fallback). Never below the largest single
    run; in practice well below `sum_epsilon`."""
    return compose_with_fallback(mechanisms, delta=delta)[0]


def sum_epsilon(epsilons: Sequence[float]) -> float:
    """Basic composition: the sum of the runs' epsilons (their deltas add up too).
    A loose upper bound, shown next to the composed value."""
    return float(math.fsum(epsilons)) if all(math.isfinite(e) for e in epsilons) else math.inf


def noise_for(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
              accountant: str = PRV, alongside: Sequence[Mechanism] = ()) -> float:
    """Smallest noise multiplier (within opacus' 0.01 epsilon tolerance) that keeps
    one run of `steps` at or below `target_epsilon` (wraps opacus'
    get_noise_multiplier).

    `alongside`: mechanisms already fixed that the run is released with (e.g. the DP
    item counts of a recommender run): the run's noise is then the smallest that keeps
    all of them COMPOSED by `accountant` at or below `target_epsilon` (bisection, to
    0.01 in epsilon)."""
    from opacus.accountants.utils import get_noise_multiplier

    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    _check(1.0, sample_rate, steps, delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                           sample_rate=sample_rate, steps=steps,
                                           accountant=accountant))
    if not alongside:
        return alone
    others = list(alongside)
    if _opacus_epsilon(others, delta, accountant) >= target_epsilon:
        raise ValueError(f"the mechanisms released alongside already spend epsilon >= "
                         f"{target_epsilon}: nothing is left for this run.")

    def spent(sigma: float) -> float:
        return _opacus_epsilon([*others, (sigma, sample_rate, steps)], delta, accountant)

    low, high = alone, 2 * alone  # composing never costs less than the run alone
    while spent(high) > target_epsilon:
        low, high = high, 2 * high
    while spent(low) - spent(high) > 0.01 and high - low > 1e-3 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if spent(middle) > target_epsilon else (low, middle)
    return high


def _dp_event(noise_multiplier: float, sample_rate: float, steps: int):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sample_rate,
                                            dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps)


@_memoized
def pld_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                value_discretization_interval: float = 1e-4) -> float:
    """Second opinion from Google's dp_accounting: privacy loss distributions
    (pessimistic discretization, so an upper bound up to the interval). Range [0, inf]."""
    from dp_accounting.pld import PLDAccountant

    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0 or sample_rate == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = PLDAccountant(value_discretization_interval=value_discretization_interval)
    acc.compose(_dp_event(noise_multiplier, sample_rate, steps))
    return float(acc.get_epsilon(delta))


@_memoized
def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int,
                delta: float) -> float:
    """Rényi-DP epsilon from Google's dp_accounting (independent of opacus'
    RDP code; same method, so the two should match closely). Range [0, inf]."""
    from dp_accounting.rdp import RdpAccountant

    _check(noise_multiplier, sample_rate, steps, delta)
    if steps == 0 or sample_rate == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    # dp_accounting logs (through absl) each RDP order whose series does not converge;
    # it leaves that order out, and the bound from the others still holds.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        acc = RdpAccountant()
        acc.compose(_dp_event(noise_multiplier, sample_rate, steps))
        return float(acc.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)


def gdp_mu(*, noise_multiplier: float, sample_rate: float, steps: int) -> float:
    """Gaussian-DP μ of DP-SGD by the central-limit approximation of Bu et al.
    (2020): μ = q·sqrt(T·(exp(1/σ²) − 1)).

    An APPROXIMATION, not a bound: it is accurate for small q and many steps
    and can understate the privacy loss otherwise. Shown for reading, never
    used to charge a budget. Range [0, inf]; smaller is more private.
    """
    _check(noise_multiplier, sample_rate, steps, None)
    if steps == 0 or sample_rate == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            growth = math.expm1(1.0 / noise_multiplier**2)
        except OverflowError:
            return math.inf
    return sample_rate * math.sqrt(steps * growth)


def gdp_epsilon(*, mu: float, delta: float) -> float:
    """Epsilon at `delta` of a μ-GDP mechanism (Dong, Roth and Su 2019):
    the ε solving δ = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2). Inherits the
    approximation of `gdp_mu` when fed from it."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    _check(0, 0, 0, delta)
    if mu == 0:
        return 0.0
    if not math.isfinite(mu):
        return math.inf

    def gap(eps: float) -> float:
        # e^ε Φ(·) computed in log space so it does not overflow for large ε
        tail = math.exp(eps + norm.logcdf(-eps / mu - mu / 2))
        return norm.cdf(-eps / mu + mu / 2) - tail - delta

    if gap(0.0) <= 0:
        return 0.0
    high = 1.0
    while gap(high) > 0:
        high *= 2
        if high > 1e6:
            return math.inf
    return float(brentq(gap, 0.0, high, xtol=1e-9))


def compare(*, claimed_epsilon: float, recomputed_epsilon: float,
            tolerance: float = 0.05) -> tuple[bool, str]:
    """Does a claimed epsilon agree with an independently recomputed one?

    Disagrees when the relative gap |recomputed − claimed| / claimed exceeds
    `tolerance`, and in any case when the recomputed epsilon is larger than
    the claim by more than 1e-3 relative: the claim then understates the
    privacy loss (the unsafe direction). Returns (agrees, reason).
    """
    claimed, recomputed = float(claimed_epsilon), float(recomputed_epsilon)
    if math.isnan(claimed) or math.isnan(recomputed):
        return False, "an epsilon is NaN"
    if math.isinf(claimed) or math.isinf(recomputed):
        if claimed == recomputed:
            return True, "both infinite (not private)"
        if math.isinf(recomputed):
            return False, f"UNSAFE: recomputed epsilon is infinite, claimed {claimed:.4g}"
        return False, f"claimed epsilon is infinite, recomputed {recomputed:.4g}"
    scale = max(abs(claimed), 1e-12)
    gap = (recomputed - claimed) / scale
    if gap > 1e-3:
        return False, (f"UNSAFE: recomputed epsilon {recomputed:.4f} exceeds the claimed "
                       f"{claimed:.4f} by {gap:.2%}")
    if abs(gap) > tolerance:
        return False, (f"claimed epsilon {claimed:.4f} is {-gap:.2%} above the recomputed "
                       f"{recomputed:.4f} (more than {tolerance:.0%}): conservative but loose")
    return True, f"within {tolerance:.0%} (claimed {claimed:.4f}, recomputed {recomputed:.4f})"
