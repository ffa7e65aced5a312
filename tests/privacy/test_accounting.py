import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest

from privacy.accounting import (
    compare,
    compose_epsilon,
    compose_with_fallback,
    epsilon_for,
    epsilon_with_fallback,
    gdp_epsilon,
    gdp_mu,
    noise_for,
    pld_epsilon,
    rdp_epsilon,
    sum_epsilon,
)

ROOT = Path(__file__).resolve().parents[2]

# The fixed input every accountant is pinned on.
FIXED = dict(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
DELTA = 1e-5
# Computed once with opacus 1.6.0 and dp-accounting 0.6.0, pinned to 3 decimals.
PINNED_PRV = 1.838  # opacus PRVAccountant (upper end of its estimate)
PINNED_RDP = 2.101  # opacus RDPAccountant
PINNED_PLD = 1.828  # dp_accounting PLDAccountant (pessimistic, interval 1e-4)
PINNED_DPA_RDP = 2.101  # dp_accounting RdpAccountant
PINNED_MU = 0.415  # Gaussian DP, central-limit approximation


def test_pinned_values_on_the_fixed_input():
    eps, used = epsilon_with_fallback(**FIXED, delta=DELTA)
    assert used == "prv"
    assert eps == pytest.approx(PINNED_PRV, abs=5e-4)
    assert epsilon_for(**FIXED, delta=DELTA, accountant="rdp") == pytest.approx(PINNED_RDP,
                                                                               abs=5e-4)
    assert pld_epsilon(**FIXED, delta=DELTA) == pytest.approx(PINNED_PLD, abs=5e-4)
    assert rdp_epsilon(**FIXED, delta=DELTA) == pytest.approx(PINNED_DPA_RDP, abs=5e-4)
    assert gdp_mu(**FIXED) == pytest.approx(PINNED_MU, abs=5e-4)


def test_independent_libraries_agree():
    prv = epsilon_for(**FIXED, delta=DELTA)
    pld = pld_epsilon(**FIXED, delta=DELTA)
    assert abs(prv - pld) < 0.05
    agrees, reason = compare(claimed_epsilon=prv, recomputed_epsilon=pld)
    assert agrees, reason
    # the two RDP implementations (opacus, dp_accounting) are the same method
    assert epsilon_for(**FIXED, delta=DELTA, accountant="rdp") == pytest.approx(
        rdp_epsilon(**FIXED, delta=DELTA), rel=1e-4)
    # RDP is a looser bound than PRV / PLD
    assert epsilon_for(**FIXED, delta=DELTA, accountant="rdp") > prv


def test_epsilon_grows_with_steps_and_shrinks_with_noise_and_delta():
    base = epsilon_for(**FIXED, delta=DELTA)
    assert epsilon_for(**{**FIXED, "steps": 2000}, delta=DELTA) > base
    assert epsilon_for(**{**FIXED, "noise_multiplier": 2.0}, delta=DELTA) < base
    assert epsilon_for(**FIXED, delta=1e-6) > base


def test_identity_cases():
    assert epsilon_for(**{**FIXED, "steps": 0}, delta=DELTA) == 0.0
    assert math.isinf(epsilon_for(**{**FIXED, "noise_multiplier": 0.0}, delta=DELTA))
    assert pld_epsilon(**{**FIXED, "steps": 0}, delta=DELTA) == 0.0
    assert math.isinf(pld_epsilon(**{**FIXED, "noise_multiplier": 0.0}, delta=DELTA))
    assert gdp_mu(**{**FIXED, "steps": 0}) == 0.0
    assert gdp_epsilon(mu=0.0, delta=DELTA) == 0.0


def test_composition_between_largest_run_and_sum():
    runs = [(1.0, 0.01, 1000), (2.0, 0.01, 500), (0.9, 0.005, 2000)]
    singles = [epsilon_for(noise_multiplier=s, sample_rate=q, steps=t, delta=DELTA)
               for s, q, t in runs]
    composed = compose_epsilon(runs, delta=DELTA)
    assert max(singles) <= composed <= sum_epsilon(singles)
    assert composed < 0.9 * sum_epsilon(singles)  # composition is much tighter than the sum
    # one run composed is that run
    assert compose_epsilon(runs[:1], delta=DELTA) == pytest.approx(singles[0], rel=1e-9)
    # the same run twice is the same as twice the steps
    assert compose_epsilon([runs[0], runs[0]], delta=DELTA) == pytest.approx(
        epsilon_for(**{**FIXED, "steps": 2000}, delta=DELTA), abs=0.02)


def test_composition_ignores_empty_runs_and_is_infinite_with_a_non_private_one():
    assert compose_epsilon([(1.0, 0.01, 1000), (1.0, 0.01, 0)], delta=DELTA) == pytest.approx(
        epsilon_for(**FIXED, delta=DELTA))
    assert math.isinf(compose_epsilon([(1.0, 0.01, 1000), (0.0, 0.01, 10)], delta=DELTA))
    assert compose_epsilon([], delta=DELTA) == 0.0


def test_prv_falls_back_to_rdp_where_its_grid_would_not_fit_in_memory():
    # PRV would allocate ~5e8 grid points here (the process is killed for memory)
    eps, used = epsilon_with_fallback(noise_multiplier=0.5, sample_rate=0.5, steps=10_000,
                                      delta=DELTA)
    assert used == "rdp"
    assert eps == pytest.approx(8038.096, rel=1e-4)
    eps, used = compose_with_fallback([(0.5, 0.5, 10_000)], delta=DELTA)
    assert used == "rdp" and math.isfinite(eps)


def test_noise_for_reaches_the_target():
    sigma = noise_for(target_epsilon=2.0, delta=DELTA, sample_rate=0.01, steps=1000)
    eps = epsilon_for(noise_multiplier=sigma, sample_rate=0.01, steps=1000, delta=DELTA)
    assert 2.0 - 0.02 <= eps <= 2.0


def test_noise_for_a_run_released_with_another_mechanism_reaches_the_composed_target():
    counts = (5.0, 1.0, 1)  # a one-off Gaussian release (the item popularity counts)
    alone = noise_for(target_epsilon=2.0, delta=DELTA, sample_rate=0.01, steps=1000)
    sigma = noise_for(target_epsilon=2.0, delta=DELTA, sample_rate=0.01, steps=1000,
                      alongside=[counts])
    assert sigma > alone  # the release takes part of the budget
    eps = compose_epsilon([counts, (sigma, 0.01, 1000)], delta=DELTA)
    assert 2.0 - 0.02 <= eps <= 2.0
    with pytest.raises(ValueError, match="nothing is left"):
        noise_for(target_epsilon=0.1, delta=DELTA, sample_rate=0.01, steps=1000,
                  alongside=[counts])


def test_gdp_is_the_clt_formula_and_says_it_is_an_approximation():
    mu = gdp_mu(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    assert mu == pytest.approx(0.01 * math.sqrt(1000 * (math.e - 1)), rel=1e-12)
    assert gdp_mu(noise_multiplier=1.0, sample_rate=0.01, steps=4000) == pytest.approx(2 * mu)
    assert "approximation" in inspect.getdoc(gdp_mu).lower()
    assert 0 < gdp_epsilon(mu=mu, delta=DELTA) < epsilon_for(**FIXED, delta=DELTA)


def test_compare_flags_disagreement_and_the_unsafe_direction():
    assert compare(claimed_epsilon=1.84, recomputed_epsilon=1.83)[0]
    # claim more than 5% above the recomputation: loose, flagged
    agrees, reason = compare(claimed_epsilon=2.10, recomputed_epsilon=1.83)
    assert not agrees and "loose" in reason
    # recomputed larger than claimed: flagged even within the 5% tolerance
    agrees, reason = compare(claimed_epsilon=1.00, recomputed_epsilon=1.002)
    assert not agrees and reason.startswith("UNSAFE")
    assert compare(claimed_epsilon=1.0, recomputed_epsilon=1.0005)[0]  # within 1e-3 relative
    assert compare(claimed_epsilon=math.inf, recomputed_epsilon=math.inf)[0]
    agrees, reason = compare(claimed_epsilon=2.0, recomputed_epsilon=math.inf)
    assert not agrees and reason.startswith("UNSAFE")
    assert not compare(claimed_epsilon=math.nan, recomputed_epsilon=1.0)[0]


def test_bad_parameters_name_the_value():
    with pytest.raises(ValueError, match="sample_rate"):
        epsilon_for(noise_multiplier=1.0, sample_rate=1.5, steps=10, delta=DELTA)
    with pytest.raises(ValueError, match="delta"):
        epsilon_for(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=0.0)
    with pytest.raises(ValueError, match="accountant"):
        epsilon_for(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=DELTA,
                    accountant="gdp")
    with pytest.raises(TypeError):  # privacy parameters are keyword-only
        epsilon_for(1.0, 0.01, 1000, DELTA)  # type: ignore[misc]


def test_importing_the_privacy_modules_does_not_load_torch():
    # opacus (and with it torch) is imported inside the functions only
    code = ("import sys, privacy.accounting, privacy.ledger, privacy.budget, privacy.audit; "
            "assert 'torch' not in sys.modules and 'opacus' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_accountant_results_are_memoized_on_disk(tmp_path, monkeypatch):
    from privacy import accounting

    monkeypatch.setenv("CLEARMARK_CACHE_DIR", str(tmp_path))
    params = dict(noise_multiplier=1.1, sample_rate=0.01, steps=100, delta=1e-5)
    first = accounting.pld_epsilon(**params)
    assert accounting.memo_path().exists()
    assert accounting.pld_epsilon(**params) == first
    composed = accounting.compose_with_fallback([(1.1, 0.01, 100)], delta=1e-5)
    assert accounting.compose_with_fallback([(1.1, 0.01, 100)], delta=1e-5) == composed
    assert isinstance(composed, tuple)
    # a damaged memo is recomputed, not trusted
    accounting.memo_path().write_text("{not json")
    assert accounting.pld_epsilon(**params) == first
