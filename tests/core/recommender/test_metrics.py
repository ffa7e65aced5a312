"""Ranking metrics: pinned values and identity cases."""

from __future__ import annotations

import math

import pytest

from core.recommender.metrics import catalogue_coverage, hit_rate_at_k, mrr, ndcg_at_k, recall_at_k

RANKED = [["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"]]
TARGETS = ["a", "b", "c", "z"]  # ranks 1, 2, 3 and missing


def test_perfect_prediction_scores_one() -> None:
    ranked = [["x", "y"], ["y", "x"], ["q"]]
    targets = ["x", "y", "q"]
    assert hit_rate_at_k(ranked, targets, 1) == 1.0
    assert recall_at_k(ranked, targets, 1) == 1.0
    assert ndcg_at_k(ranked, targets, 1) == 1.0
    assert mrr(ranked, targets) == 1.0


@pytest.mark.parametrize("metric", [hit_rate_at_k, recall_at_k, ndcg_at_k])
def test_no_users_scores_zero(metric) -> None:
    assert metric([], [], 10) == 0.0


def test_empty_inputs_score_zero() -> None:
    assert mrr([], []) == 0.0
    assert catalogue_coverage([], 5, 10) == 0.0
    assert hit_rate_at_k([[]], ["a"], 10) == 0.0  # an empty ranking finds nothing


def test_hit_rate_pinned() -> None:
    assert hit_rate_at_k(RANKED, TARGETS, 1) == 0.25
    assert hit_rate_at_k(RANKED, TARGETS, 2) == 0.5
    assert hit_rate_at_k(RANKED, TARGETS, 10) == 0.75
    assert recall_at_k(RANKED, TARGETS, 2) == hit_rate_at_k(RANKED, TARGETS, 2)


def test_ndcg_pinned() -> None:
    # 1/log2(2) = 1, 1/log2(3) = 0.6309, rank 3 is beyond k=2, the last is missing.
    assert ndcg_at_k(RANKED, TARGETS, 2) == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert ndcg_at_k(RANKED, TARGETS, 3) == pytest.approx(
        (1 + 1 / math.log2(3) + 0.5) / 4)
    assert ndcg_at_k([["b", "a"]], ["a"], 10) == pytest.approx(0.6309297535714575)


def test_mrr_uses_the_full_ranking() -> None:
    assert mrr(RANKED, TARGETS) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    long = [[str(i) for i in range(100)]]
    assert mrr(long, ["49"]) == pytest.approx(1 / 50)  # far beyond any cut-off


def test_catalogue_coverage_pinned() -> None:
    ranked = [["a", "b"], ["a", "c"]]
    assert catalogue_coverage(ranked, 4, 1) == 0.25
    assert catalogue_coverage(ranked, 4, 2) == 0.75
    assert catalogue_coverage([["a", "b", "c", "d"]], 4, 4) == 1.0


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="one ranking per target"):
        hit_rate_at_k([["a"]], ["a", "b"], 1)
    with pytest.raises(ValueError, match="k=0"):
        ndcg_at_k([["a"]], ["a"], 0)
    with pytest.raises(ValueError, match="catalogue_size"):
        catalogue_coverage([["a"]], 0, 1)
