"""Attention aggregated to fields and tokens, rollout, rank agreement."""

from __future__ import annotations

import numpy as np
import pytest

from explain.attention import (
    attention_maps,
    attention_tokens,
    explain_attention,
    rank_agreement,
    rollout,
)
from explain.result import Explanation, Subject
from explain.scoring import sigmoid
from tests.explain.conftest import make_fields, tiny_model


def test_rollout_of_uniform_and_identity_maps():
    length = 4
    identity = np.tile(np.eye(length), (3, 2, 1, 1))  # (layers, heads, L, L)
    np.testing.assert_allclose(rollout(identity), np.eye(length))
    uniform = np.full((2, 2, length, length), 1 / length)
    joint = rollout(uniform)
    np.testing.assert_allclose(joint.sum(axis=1), 1.0)  # rows stay distributions
    one = (uniform[0].mean(0) + np.eye(length)) / 2
    np.testing.assert_allclose(joint, one @ one)


@pytest.mark.parametrize("method", ["attention-cls", "attention-rollout"])
def test_field_attention_is_a_share_of_the_cls_row(method):
    model = tiny_model(max_length=64)
    fields = make_fields()
    e = explain_attention(model, fields, method=method, subject=Subject("r", "u", "i", 2))
    assert e.method == method and e.rank == 2
    assert np.isnan(e.base_value) and np.isnan(e.additivity_error)
    assert (e.attributions >= 0).all() and e.attributions.sum() <= 1 + 1e-6
    assert abs(e.attributions.sum() + e.notes["special_tokens_share"] - 1) < 1e-5
    # truncated away at 64 tokens: those fields get nothing and are named
    for name in e.notes["truncated_fields"]:
        assert e.attributions[e.features.index(name)] == 0
    # the attention forward runs the model's own scoring path
    a, b = model.text_pair(fields)
    logit = float(model.score_pairs([a], [b])[0])
    assert abs(e.prediction - float(sigmoid(logit))) < 1e-5
    tokens = attention_tokens(model, fields, method=method)
    assert abs(tokens.attributions.sum() - e.attributions.sum()) < 1e-5
    assert set(tokens.fields) <= set(e.features)


def test_real_minilm_attention_with_prior(minilm, fields):
    maps = attention_maps(minilm, fields)
    a, b = minilm.text_pair(fields)
    assert abs(maps.logit - float(minilm.score_pairs([a], [b])[0])) < 1e-4
    assert maps.cls_last.shape == maps.cls_rollout.shape == (len(maps.layout.ids),)
    assert abs(maps.cls_rollout.sum() - 1) < 1e-5


def _explanation(values) -> Explanation:
    names = [f"f{i}" for i in range(len(values))]
    return Explanation.build(subject=Subject(), method="shap-field", features=names,
                             fields=names, values=names, attributions=values, base_value=0.0,
                             prediction=float(np.sum(values)), evaluations=0, latency_s=0.0)


def test_rank_agreement_identity_and_reversal():
    a = _explanation([0.3, 0.1, -0.2, 0.05])
    assert rank_agreement(a, a)["kendall"] == pytest.approx(1.0)
    b = _explanation([-0.3, -0.1, 0.2, -0.05])
    assert rank_agreement(a, b)["spearman"] == pytest.approx(-1.0)
    assert np.isnan(rank_agreement(a, _explanation([0, 0, 0, 0]))["kendall"])


def test_hooked_probabilities_equal_eager_attention():
    """softmax(q k^T / sqrt d) from the hooks is what HF's eager attention returns."""
    import copy

    import torch

    from explain.attention import _HookedModel

    model = tiny_model(max_length=64)
    hooked = _HookedModel(model)
    text = "purchased: Trail Bottle | Outdoor ; season: winter"
    with torch.inference_mode():
        hooked.model.clear_cache()
        hooked.model.side_states([text], segment=0)
    ours = hooked.take()
    bert = copy.deepcopy(model.bert.bert)
    bert.config._attn_implementation = "eager"
    batch = model.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        out = bert(**batch, output_attentions=True)
    for mine, theirs in zip(ours, out.attentions, strict=False):  # the lower layers
        np.testing.assert_allclose(mine, theirs[0].numpy(), atol=1e-5)
    assert len(ours) == model.first_trainable


def test_a_number_only_field_gets_no_attention_and_is_named_as_such():
    from core.recommender.fields import Field
    from core.recommender.model import CrossEncoder
    from core.recommender.model_config import ModelConfig
    from tests.explain.conftest import TINY

    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=96, prior_scale=0.0,
                                                       co_visits=True, co_visit_scale=1.5))
    model.eval()
    fields = (*make_fields(2), Field("item_co_visits", "b", "bought with history: 0.400"))
    e = explain_attention(model, fields)
    assert e.attributions[e.features.index("item_co_visits")] == 0
    assert e.notes["not_read_by_attention"] == ["item_co_visits"]
    assert "item_co_visits" not in e.notes["truncated_fields"]
    a, b = model.text_pair(fields)
    assert abs(e.prediction - float(sigmoid(float(model.score_pairs([a], [b])[0])))) < 1e-5
