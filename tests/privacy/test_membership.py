"""The one-run membership audit's statistics (privacy.membership)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from privacy.membership import (
    draw_pool,
    epsilon_lower_bound,
    one_run_bound,
    tail_probability,
)


def test_tail_at_epsilon_zero_is_a_fair_coin():
    assert tail_probability(20, 15, 0.0) == pytest.approx(binom.sf(14, 20, 0.5))


def test_all_correct_gives_the_closed_form_bound():
    # P[Bin(k, p) >= k] = p^k = beta  =>  eps = log(p / (1 - p)), p = beta^(1/k)
    p = 0.05 ** (1 / 20)
    assert epsilon_lower_bound(20, 20, 0.05) == pytest.approx(math.log(p / (1 - p)), abs=1e-6)


def test_chance_level_guessing_bounds_nothing():
    assert epsilon_lower_bound(100, 50, 0.05) == 0.0
    assert epsilon_lower_bound(100, 58, 0.05) == 0.0  # P[Bin(100, .5) >= 58] = 0.067


def test_perfect_attack_on_a_large_pool_gives_a_large_bound():
    truth = np.arange(400) % 2 == 0
    bound = one_run_bound(truth.astype(float), truth)
    assert bound.correct == bound.guesses
    assert bound.epsilon_lower_bound > 3.0
    assert bound.pool == 400 and bound.included == 200


def test_the_bound_is_valid_for_an_attack_with_no_information():
    # Scores independent of membership: the bound may exceed 0 in at most ~5% of audits.
    rng = np.random.default_rng(7)
    positive = sum(one_run_bound(rng.normal(size=200), rng.random(200) < 0.5)
                   .epsilon_lower_bound > 0 for _ in range(300))
    assert positive / 300 <= 0.08


def test_ties_do_not_leak_the_order_of_the_pool():
    truth = np.array([True] * 50 + [False] * 50)
    assert one_run_bound(np.zeros(100), truth).epsilon_lower_bound == 0.0


def test_pool_draw_is_seeded_and_about_half_included():
    people = [f"u{i}" for i in range(1000)]
    pool = draw_pool(people, 400, seed=3)
    assert pool == draw_pool(list(reversed(people)), 400, seed=3)
    assert pool != draw_pool(people, 400, seed=4)
    assert len(pool) == 400 and 160 < sum(pool.values()) < 240


def test_bad_pools_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="smaller pool"):
        draw_pool(["a", "b", "c", "d"], 10, seed=0)
    with pytest.raises(ValueError, match="both kinds"):
        one_run_bound([0.1, 0.2, 0.3, 0.4], [True] * 4)


def test_auto_pool_is_a_third_of_the_candidates_and_none_when_too_few():
    from privacy.membership import AUTO_POOL, AUTO_POOL_MAX, pool_size

    assert pool_size(AUTO_POOL, 163) == 54  # the demo's 163 training customers
    assert pool_size(AUTO_POOL, 10_000) == AUTO_POOL_MAX
    assert pool_size(AUTO_POOL, 50) == 0  # 16 would say nothing
    assert pool_size(120, 50) == 120  # an explicit size stays (and fails clearly later)
