"""Empirical lower bound on epsilon from a membership-inference audit in one training run.

The one-run audit of Steinke, Nasr and Jagielski ("Privacy Auditing with One (1)
Training Run", NeurIPS 2023): a pool of m people (here: customers) is drawn before
training and each is included in the training data independently with probability
1/2. After training, an attacker scores every pool member (higher = "was in
training"), guesses IN for its k/2 highest scores and OUT for its k/2 lowest, and
abstains on the rest. If training is epsilon-DP, the number of correct guesses among
the k is stochastically dominated by Binomial(k, e^eps / (1 + e^eps)) (their
Theorem 3.1). So any epsilon at which `correct` or more would have probability below
beta is ruled out: the largest such epsilon is a lower bound that holds with
confidence 1 - beta. Several k are tried; beta is split between them (Bonferroni), so
picking the best k does not inflate the confidence.

What it proves and what not: a bound well ABOVE the claimed epsilon means the
implementation leaks more than it claims (a bug). A bound below the claim is the
expected outcome and says nothing more: the attacker may be weak. delta is ignored in
the bound (it changes the count by at most k * delta, below one guess for delta <= 1e-5
and k <= 1000).

Pure statistics: imports nothing from the rest of the project.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom

METHOD = ("one-run membership audit (Steinke, Nasr, Jagielski 2023): pool customers "
          "included with p = 1/2; attack score = the drop in the customer's loss from the "
          "starting model to the trained one")
DEFAULT_CONFIDENCE = 0.95
GUESS_SHARES = (0.1, 0.2, 0.5, 1.0)  # share of the pool the attacker guesses on


@dataclass(frozen=True)
class AuditBound:
    epsilon_lower_bound: float
    confidence: float
    guesses: int
    correct: int
    pool: int
    included: int
    tried: tuple[tuple[int, int, float], ...]  # (guesses, correct, bound) for each k
    method: str = METHOD

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def tail_probability(guesses: int, correct: int, epsilon: float) -> float:
    """P[Binomial(guesses, e^eps / (1 + e^eps)) >= correct]."""
    p = 1.0 / (1.0 + math.exp(-epsilon))
    return float(binom.sf(correct - 1, guesses, p))


def epsilon_lower_bound(guesses: int, correct: int, beta: float) -> float:
    """The largest epsilon at which `correct` of `guesses` has probability < beta (0 when
    even epsilon = 0 explains it)."""
    if guesses <= 0 or tail_probability(guesses, correct, 0.0) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while tail_probability(guesses, correct, high) < beta:  # the tail grows with epsilon
        low, high = high, high * 2
        if high > 64:
            return low
    for _ in range(60):
        mid = (low + high) / 2
        if tail_probability(guesses, correct, mid) < beta:
            low = mid
        else:
            high = mid
    return low


def one_run_bound(scores: Sequence[float], included: Sequence[bool], *,
                  confidence: float = DEFAULT_CONFIDENCE,
                  shares: Sequence[float] = GUESS_SHARES) -> AuditBound:
    """The audit's lower bound for attack `scores` (higher: guessed IN) of the pool
    members, whose true inclusion is `included`."""
    scores_ = np.asarray(scores, dtype=float)
    truth = np.asarray(included, dtype=bool)
    if scores_.shape != truth.shape or scores_.ndim != 1:
        raise ValueError("scores and included must be 1-d and of the same length")
    if len(truth) < 4 or truth.all() or not truth.any():
        raise ValueError(f"the pool needs members of both kinds (got {int(truth.sum())} "
                         f"included of {len(truth)}): draw a larger pool")
    if not np.isfinite(scores_).all():
        raise ValueError("attack scores must be finite")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence={confidence}: choose a value in [0.5, 1)")
    # Ties broken by a fixed random order, not by position (position may carry the truth).
    order = np.lexsort((np.random.default_rng(0).random(len(scores_)), -scores_))
    ks = sorted({max(2, 2 * (int(share * len(truth)) // 2)) for share in shares})
    beta = (1 - confidence) / len(ks)
    tried, best = [], (0.0, 0, 0)
    for k in ks:
        top, bottom = order[:k // 2], order[len(order) - k // 2:]
        correct = int(truth[top].sum() + (~truth[bottom]).sum())
        bound = epsilon_lower_bound(k, correct, beta)
        tried.append((k, correct, bound))
        if bound > best[0] or not best[1]:
            best = (bound, k, correct)
    return AuditBound(epsilon_lower_bound=best[0], confidence=confidence, guesses=best[1],
                      correct=best[2], pool=len(truth), included=int(truth.sum()),
                      tried=tuple(tried))


AUTO_POOL = "auto"
AUTO_POOL_MAX = 200
AUTO_POOL_MIN = 20  # below this a pool's bound says nothing; no pool is drawn


def pool_size(requested: int | str, candidates: int) -> int:
    """The pool to draw: `requested` as given, or for "auto" a third of the candidates
    (even, at most AUTO_POOL_MAX), and 0 (no pool) when that would be under AUTO_POOL_MIN."""
    if requested != AUTO_POOL:
        return int(requested)
    size = min(AUTO_POOL_MAX, 2 * (candidates // 6))
    return size if size >= AUTO_POOL_MIN else 0


def draw_pool(candidates: Sequence[str], size: int, *, seed: int) -> dict[str, bool]:
    """{member: included} for `size` members drawn from `candidates`, each included with
    probability 1/2, independently (seeded)."""
    if size < 4:
        raise ValueError(f"audit pool of {size}: needs at least 4 members")
    ordered = sorted(candidates)
    if size > len(ordered):
        raise ValueError(f"audit pool of {size} from {len(ordered)} candidates: choose a "
                         "smaller pool")
    rng = np.random.default_rng([seed, 0xA0D1])
    chosen = rng.choice(len(ordered), size=size, replace=False)
    coins = rng.random(size) < 0.5
    return {ordered[i]: bool(c) for i, c in zip(chosen, coins, strict=True)}
