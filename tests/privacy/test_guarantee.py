"""The one definition of a private run."""

import math

import pytest

from privacy.guarantee import is_private, record_is_private


@pytest.mark.parametrize("epsilon,unit,expected", [
    (3.0, "customer", True), (0.0, "example", True), ("2.5", "reviewer", True),
    (math.inf, "customer", False), ("inf", "customer", False), (None, "customer", False),
    (float("nan"), "customer", False), (-1.0, "customer", False), (True, "customer", False),
    ("not a number", "customer", False),
    (3.0, "none", False), (3.0, None, False), (3.0, "", False), (3.0, float("nan"), False),
])
def test_a_finite_epsilon_for_a_privacy_unit(epsilon, unit, expected):
    assert is_private(epsilon, unit) is expected


def test_a_privacy_record():
    assert record_is_private({"private": True, "epsilon": 3.0, "privacy_unit": "customer"})
    assert record_is_private({"epsilon": 3.0, "privacy_unit": "reviewer"})
    assert not record_is_private({"private": False, "epsilon": 3.0, "privacy_unit": "customer"})
    assert not record_is_private({"private": True, "epsilon": 3.0})  # no unit: no guarantee
    assert not record_is_private({"private": False, "epsilon": "inf", "privacy_unit": "none"})
    assert not record_is_private({})
