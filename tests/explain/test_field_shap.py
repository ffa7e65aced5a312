"""Field SHAP: additive on the real MiniLM, exact where it says so, finds a planted
signal; leave-one-out."""

from __future__ import annotations

import numpy as np
import pytest

from core.recommender.fields import Field
from explain.field_shap import FieldShapConfig, exact_shapley, explain_fields, leave_one_out
from explain.result import Subject
from explain.scoring import FieldGame, as_scorer
from tests.explain.conftest import make_fields

FEW = (Field("h1", "a", "purchased: Trail Bottle | Outdoor | Northwind | $10-25"),
       Field("ctx_season", "a", "season: winter"),
       Field("item_title", "b", "title: Summit Gloves"),
       Field("item_price", "b", "price: $25-50"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_additive_on_real_minilm_with_exact(minilm, precision):
    config = FieldShapConfig(exact_max_fields=4, precision=precision)
    e = explain_fields(minilm, FEW, subject=Subject("run", "u_x", "i_1", 1), config=config)
    assert e.method == "shap-field" and e.notes["algorithm"].startswith("exact")
    assert e.additivity_error < 1e-4
    assert abs(e.base_value + e.attributions.sum() - e.prediction) < 1e-4
    assert e.features == ("h1", "ctx_season", "item_title", "item_price")
    assert (e.run_id, e.pseudonym, e.item_id, e.rank) == ("run", "u_x", "i_1", 1)
    # the same numbers as Shapley values by enumeration
    phi, base, full = exact_shapley(FieldGame(as_scorer(minilm, precision=precision), FEW))
    np.testing.assert_allclose(e.attributions, phi, atol=1e-6)
    assert abs(e.base_value - base) < 1e-6 and abs(e.prediction - full) < 1e-6
    if precision == "fp32":  # the model as it ranks
        a, b = minilm.text_pair(FEW)
        logit = float(minilm.score_pairs([a], [b])[0])
        assert abs(e.prediction - 1 / (1 + np.exp(-logit))) < 1e-6
    else:  # a bf16 copy, reported next to the float32 score
        assert e.notes["precision"] == "bf16"
        assert e.notes["precision_error"] < 5e-3
        assert e.approximation_error < 5e-3


def planted(text_a, text_b) -> np.ndarray:
    """One field decides: the history item "Alpine Tent"; the rest is small noise."""
    return np.array([4.0 * ("Alpine Tent" in a) + 0.1 * ("winter" in a)
                     - 0.05 * ("$25-50" in b) + 0.01 * len(b) / 100 for a, b in
                     zip(text_a, text_b, strict=True)])


@pytest.mark.parametrize("exact_max_fields", [0, 16])
def test_planted_field_ranks_first(exact_max_fields):
    fields = make_fields()  # 13 fields; h3 holds "Alpine Tent"
    config = FieldShapConfig(exact_max_fields=exact_max_fields, permutations=1)
    e = explain_fields(planted, fields, config=config)
    assert e.top(1) == ["h3"]
    assert e.attributions[e.features.index("h3")] > 10 * np.abs(
        np.delete(e.attributions, e.features.index("h3"))).max()
    assert e.additivity_error < 1e-9


def test_permutation_is_additive_and_counts_rows(fields):
    def fresh(a, b):  # a new callable: nothing cached for it yet
        return planted(a, b)

    e = explain_fields(fresh, fields, config=FieldShapConfig(exact_max_fields=4,
                                                             permutations=2, seed=3))
    assert e.notes["algorithm"].startswith("permutation (2 antithetic")
    assert e.additivity_error < 1e-9
    assert 0 < e.evaluations <= 2 * (2 * len(fields) + 1)


def test_leave_one_out_is_the_drop_of_each_field(fields):
    e = leave_one_out(planted, fields)
    game = FieldGame(as_scorer(planted), fields)
    full = game.value(np.ones(len(fields), dtype=bool))
    for i, name in enumerate(e.features):
        keep = np.ones(len(fields), dtype=bool)
        keep[i] = False
        assert abs(e.attributions[i] - (full - game.value(keep))) < 1e-12, name
    assert e.top(1) == ["h3"]
    assert np.isfinite(e.additivity_error)


def test_no_fields_gives_an_empty_explanation():
    e = explain_fields(planted, ())
    assert e.features == () and e.prediction == e.base_value and e.additivity_error == 0


def test_masking_the_co_visit_field_removes_its_number_and_nothing_else():
    """A model that reads co-visits: the field is a player like any other, and masking
    it takes exactly its learnt weight times its value off the logit."""
    import torch
    from transformers import BertConfig

    from core.recommender.model import CrossEncoder
    from core.recommender.model_config import ModelConfig
    from explain.scoring import sigmoid

    tiny = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=256)
    model = CrossEncoder.from_config(tiny, ModelConfig(max_length=96, prior_scale=0.0,
                                                       co_visits=True, co_visit_scale=2.0))
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    model.eval()
    fields = (*FEW, Field("item_co_visits", "b", "bought with history: 0.750"))
    e = leave_one_out(model, fields)
    a, b = model.text_pair(fields)
    a_masked, b_masked = model.text_pair(fields, masked=frozenset({"item_co_visits"}))
    full, without = model.score_pairs([a, a_masked], [b, b_masked])
    assert without == pytest.approx(full - 2.0 * 0.75, abs=1e-5)
    drop = float(sigmoid(full)) - float(sigmoid(without))
    assert e.attributions[e.features.index("item_co_visits")] == pytest.approx(drop, abs=1e-6)
