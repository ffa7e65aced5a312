"""ERASER curves, the per-run summary and the preferred method."""

from __future__ import annotations

import numpy as np

from explain.faithfulness import (
    DEFAULT_METHOD,
    aopc,
    erasure_curves,
    evaluate,
    preferred_method,
    read_summary,
    summarize,
    write_summary,
)
from explain.inputs import HeldOut
from explain.result import Subject
from explain.scoring import FieldGame, as_scorer, sigmoid
from tests.explain.conftest import make_fields, tiny_model


def decided_by_h3(text_a, text_b) -> np.ndarray:
    return np.array([3.0 * ("Alpine Tent" in a) + 0.2 * ("winter" in a) for a, b in
                     zip(text_a, text_b, strict=True)])


def test_curves_by_hand():
    fields = make_fields()
    game = FieldGame(as_scorer(decided_by_h3), fields)
    names = list(game.names)
    order = [names.index("h3"), names.index("ctx_season")] + [
        i for i, n in enumerate(names) if n not in ("h3", "ctx_season")]
    comp, suff = erasure_curves(game, order, k_max=3)
    full = sigmoid(3.2)
    assert np.allclose(comp, [full - sigmoid(0.2), full - sigmoid(0.0), full - sigmoid(0.0)])
    assert np.allclose(suff, [full - sigmoid(3.0), 0.0, 0.0])
    assert aopc(comp) == np.mean(comp)
    reverse = list(reversed(order))
    worse, _ = erasure_curves(game, reverse, k_max=3)
    assert aopc(worse) < aopc(comp)


def test_evaluate_on_a_tiny_model_and_the_stored_preference(warehouse_paths):
    model = tiny_model(max_length=64)
    held = [HeldOut(subject=Subject("tiny", f"u_{i}", "i_1", 1),
                    fields=make_fields(n_history=1 + i % 5, promotion=bool(i % 2)),
                    target_item="i_2", score=0.0) for i in range(6)]
    summary, rows = evaluate(model, held, k_max=3)
    assert summary["recommendations"] == 6 == len(rows)
    for method in ("shap-field", "leave-one-out", "attention-rollout", "attention-cls",
                   "random"):
        m = summary["methods"][method]
        assert len(m["comprehensiveness_curve"]) == 3
        assert np.isfinite(m["comprehensiveness_aopc"]["mean"])
    assert 0.0 <= summary["shap_above_random_share"] <= 1.0
    assert -1.0 <= summary["kendall_shap_vs_leave_one_out"]["mean"] <= 1.0
    assert summary["shap_additivity_error_max"] < 1e-6
    assert summary["preferred_method"] in summary["methods"]

    assert preferred_method("tiny", warehouse_paths) == DEFAULT_METHOD  # not measured
    summary["preferred_method"] = "leave-one-out"
    write_summary(warehouse_paths, "tiny", summary)
    assert read_summary("tiny", warehouse_paths)["recommendations"] == 6
    assert preferred_method("tiny", warehouse_paths) == "leave-one-out"


def test_the_more_faithful_method_is_preferred():
    def row(comp_shap, comp_rollout):
        from explain.faithfulness import RecommendationFaithfulness

        curves = {"shap-field": [comp_shap], "leave-one-out": [0.0],
                  "attention-rollout": [comp_rollout], "attention-cls": [0.0],
                  "random": [0.0]}
        return RecommendationFaithfulness("u", "i", 4, curves, curves, 1.0, 0.5, 0.5)

    assert summarize([row(0.3, 0.1)])["preferred_method"] == "shap-field"
    assert summarize([row(0.1, 0.3)])["preferred_method"] == "attention-rollout"
