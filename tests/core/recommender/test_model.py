"""The cross-encoder: both forward paths agree, only the chosen layers learn, real weights."""

import math

import numpy as np
import pytest
import torch
from transformers import BertConfig

from core.recommender.fields import build_input, encoder_text
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig, mix_input_names

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
TEXT_A = ["purchased: Fixture mug | Kitchen | Brand 1 | under $10 ; season: winter",
          "viewed: Garden hose | Garden ; day: weekend",
          "purchased: A long book title about many things | Books ; promotion: on"]
TEXT_B = ["title: Teapot ; category: Kitchen", "title: Rake ; category: Garden ; price: $10-25",
          "title: Another book ; category: Books"]


def trainable_names(model: CrossEncoder) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("prior_scale,popularity", [(0.0, False), (3.0, False), (3.0, True)])
def test_grouped_forward_equals_independent_pairs(prior_scale, popularity):
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=prior_scale,
                                                       popularity=popularity,
                                                       popularity_scale=1.0,
                                                       popularity_log=False,
                                                       category_share=False)
                                     ).eval()
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    a = TEXT_A * 2
    b = TEXT_B + TEXT_B[::-1]
    hidden, mask = model.pair_states(a, b)  # (6, L, H), (6, L)
    prior = torch.linspace(-0.5, 0.9, 6)
    if popularity:
        prior = torch.stack([prior, torch.linspace(1.2, -1.0, 6)], dim=1)  # (6, 2)
    with torch.no_grad():
        flat = model.score_hidden(hidden, mask, prior)  # (6,)
        grouped = model(hidden.reshape(2, 3, *hidden.shape[1:]), mask.reshape(2, 3, -1),
                        prior.reshape(2, 3, *prior.shape[1:]))  # (2, 3)
    assert torch.allclose(flat, grouped.reshape(-1), atol=1e-5)
    one_by_one = [model.score_hidden(*model.pair_states([x], [y]), prior[i:i + 1])
                  for i, (x, y) in enumerate(zip(a, b, strict=True))]
    assert torch.allclose(flat, torch.cat(one_by_one), atol=1e-5)  # padding changes nothing


def test_without_lower_layers_the_model_is_the_plain_cross_encoder():
    """All layers trainable: side states are the embeddings alone, so the joined pair
    is exactly BERT's own pair input (b's positions restart; its segment is 1)."""
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       trainable_layers=2,
                                                       prior_scale=0.0)).eval()
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    enc_a = model.tokenizer(TEXT_A[0], truncation=True, max_length=32)["input_ids"]
    enc_b = model.tokenizer(TEXT_B[0], truncation=True, max_length=16)["input_ids"]
    ids = torch.tensor([enc_a + enc_b[1:]])
    positions = torch.tensor([list(range(len(enc_a))) + list(range(1, len(enc_b)))])
    types = torch.tensor([[0] * len(enc_a) + [1] * (len(enc_b) - 1)])
    with torch.no_grad():
        reference = model.bert(input_ids=ids, token_type_ids=types,
                               position_ids=positions).logits.reshape(-1)
    assert np.allclose(model.score_pairs(TEXT_A[:1], TEXT_B[:1]), reference.numpy(),
                       atol=1e-5)


def test_only_top_layers_pooler_and_head_learn():
    model = CrossEncoder.from_config(TINY, ModelConfig(trainable_layers=1, prior_scale=0.0,
                                                       popularity=False,
                                                       category_share=False))
    names = trainable_names(model)
    assert names and all(n.startswith(("bert.bert.encoder.layer.1.", "bert.bert.pooler.",
                                       "bert.classifier.")) for n in names)
    assert "bert.classifier.weight" in names and "bert.bert.pooler.dense.weight" in names
    with pytest.raises(ValueError, match="trainable_layers"):
        ModelConfig(trainable_layers=0)  # the sides meet in the first trainable layer
    with pytest.raises(ValueError, match="trainable_layers"):
        CrossEncoder.from_config(TINY, ModelConfig(trainable_layers=3))


def test_prior_model_starts_as_the_prior_and_needs_it():
    model = CrossEncoder.from_config(TINY, ModelConfig(prior_scale=5.0, popularity=False,
                                                       category_share=False)).eval()
    assert "prior_mix.weight" in trainable_names(model)
    hidden, mask = model.pair_states(TEXT_A, TEXT_B)
    prior = torch.tensor([0.1, 0.5, -0.2])
    with torch.no_grad():
        assert torch.allclose(model.score_hidden(hidden, mask, prior), 5.0 * prior)
        with pytest.raises(ValueError, match="prior"):
            model.score_hidden(hidden, mask)


def test_the_popularity_field_moves_the_score_by_its_learnt_weight():
    model = CrossEncoder.from_config(TINY, ModelConfig(prior_scale=5.0, popularity_scale=2.0,
                                                       popularity_log_scale=0.5,
                                                       omit_fields=("item_description",))
                                     ).eval()
    assert mix_input_names(model.config) == ("prior", "popularity", "popularity_log",
                                             "category_share")
    assert model.prior_mix.weight.tolist() == [[5.0, 2.0, 0.5, 0.0]]
    history = [("purchase", {"item_id": "a", "title": "Mug", "category": "Kitchen"})]
    item = {"item_id": "b", "title": "Teapot", "category": "Kitchen"}
    plain = build_input(history, None, None, item)
    top = build_input(history, None, None, {**item, "popularity": 100})
    bottom = build_input(history, None, None, {**item, "popularity": 1})
    assert "popularity: 100 of 100" in model.text_pair(top)[1]
    logits = model.score_inputs([plain, top, bottom])
    masked = model.score_inputs([top], masked=frozenset({"item_popularity"}))
    # the untrained head is zero: logit = 5 cos + 2 x (p - 50.5) / 28.866
    # + 0.5 x (-log((101 - p) / 100) - 1), where the cosine moves a little with the
    # popularity text on side b
    a, b_plain = model.text_pair(plain)
    _, b_top = model.text_pair(top)
    _, b_bottom = model.text_pair(bottom)
    cosine = model.prior_similarity([a, a, a], [b_plain, b_top, b_bottom])[:, 0]
    assert logits[0] == pytest.approx(5.0 * cosine[0], abs=1e-5)
    assert logits[1] == pytest.approx(5.0 * cosine[1] + 2.0 * 49.5 / 28.866
                                      + 0.5 * (math.log(100.0) - 1.0), abs=1e-4)
    assert logits[2] == pytest.approx(5.0 * cosine[2] - 2.0 * 49.5 / 28.866 - 0.5, abs=1e-4)
    assert logits[1] > logits[0] > logits[2]
    assert masked[0] == pytest.approx(logits[0], abs=1e-5)  # the field gone, its number too
    # runs saved before the feature existed load without it
    assert ModelConfig.from_dict({"prior_scale": 10.0}).popularity is False
    assert ModelConfig.from_dict({"popularity": True}).popularity_log is False
    # by default the popularity (and category-share) weights start at 0: the untrained
    # model is the prior
    assert CrossEncoder.from_config(TINY, ModelConfig()).prior_mix.weight.tolist() == \
        [[10.0, 0.0, 0.0, 0.0]]


def test_the_category_share_field_moves_the_score_by_its_learnt_weight():
    model = CrossEncoder.from_config(TINY, ModelConfig(prior_scale=0.0, popularity=False,
                                                       category_share_scale=3.0)).eval()
    assert mix_input_names(model.config) == ("prior", "category_share")
    history = [("purchase", {"item_id": "a", "title": "Tent", "category": "Camping"}),
               ("view", {"item_id": "c", "title": "Mug", "category": "Kitchen"}),
               ("view", {"item_id": "d", "title": "Stove", "category": " camping "})]
    lamp = build_input(history, None, None, {"item_id": "b", "title": "Lamp",
                                             "category": "Camping"}, with_share=True)
    cup = build_input(history, None, None, {"item_id": "e", "title": "Cup",
                                            "category": "Kitchen"}, with_share=True)
    bare = build_input(history, None, None, {"item_id": "f", "title": "Thing"},
                       with_share=True)
    _, b = model.text_pair(lamp)
    assert "recent items in its category: 2 of 3" in b
    assert "recent items" not in encoder_text(b)  # a number only: the encoder never reads it
    assert "recent items" not in model.text_pair(bare)[1]  # no category, no field
    # the untrained head is zero and the prior off: logit = 3 x share
    logits = model.score_inputs([lamp, cup, bare])
    assert logits.tolist() == pytest.approx([2.0, 1.0, 0.0], abs=1e-5)
    masked = model.score_inputs([lamp], masked=frozenset({"item_category_share"}))
    assert masked[0] == pytest.approx(0.0, abs=1e-5)  # the field gone, its number too
    assert "recent items" not in model.text_pair(build_input(history, None, None, {
        "item_id": "b", "category": "Camping"}))[1]  # only where the model reads it
    # runs saved before the feature existed load without it
    assert ModelConfig.from_dict({"prior_scale": 10.0}).category_share is False


def test_masking_a_field_changes_what_the_model_reads():
    model = CrossEncoder.from_config(TINY, ModelConfig(prior_scale=0.0,
                                                       omit_fields=("item_description",)))
    fields = build_input([("purchase", {"item_id": "a", "title": "Mug", "category": "Kitchen"})],
                         None, True, {"item_id": "b", "title": "Teapot", "category": "Kitchen",
                                      "description": "Brews tea."})
    a, b = model.text_pair(fields)
    assert "about" not in b and "promotion: on" in a
    a2, _ = model.text_pair(fields, masked=frozenset({"ctx_promotion"}))
    assert "promotion" not in a2
    full, masked = model.score_inputs([fields, fields], masked=frozenset()), \
        model.score_inputs([fields], masked=frozenset({"h1"}))
    assert full.shape == (2,) and masked.shape == (1,)


def test_real_minilm_loads_scores_and_freezes_all_but_the_top_layer():
    model = CrossEncoder.from_pretrained(ModelConfig(max_length=64, item_length=24,
                                                     trainable_layers=1))
    assert model.bert.config.num_hidden_layers == 6 and model.bert.config.hidden_size == 384
    names = trainable_names(model)
    assert {n.split(".")[4] for n in names if ".encoder.layer." in n} == {"5"}
    assert not any("embeddings" in n for n in names)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trained < 0.1 * frozen
    scores = model.score_pairs(TEXT_A, TEXT_B)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    # Zero head: the untrained model is the zero-shot prior (a cosine times the scale).
    # (3, 3): cosine, popularity and category share (both absent: 0)
    prior = model.prior_similarity(TEXT_A, TEXT_B)
    assert prior.shape == (3, 4) and not prior[:, 1:].any()
    assert np.allclose(scores, model.config.prior_scale * prior[:, 0], atol=1e-4)
    two = CrossEncoder.from_pretrained(ModelConfig(trainable_layers=2))
    assert {n.split(".")[4] for n in trainable_names(two) if ".encoder.layer." in n} == \
        {"4", "5"}


@pytest.mark.parametrize("trainable_layers", [1, 2])
def test_last_layer_cls_only_and_side_scoring_give_the_full_layers_logits(trainable_layers):
    """The fast paths (the last layer for [CLS] alone; with one trainable layer, scoring
    from each side's keys and values without joining pairs) against every token through
    every layer, on pairs that share histories and candidates of different lengths."""
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       trainable_layers=trainable_layers,
                                                       prior_scale=2.0)).eval()
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    a = [x for x in TEXT_A for _ in TEXT_B]
    b = TEXT_B * len(TEXT_A)
    fast = model.score_pairs(a, b, batch_size=4)
    model.all_token_outputs = True
    full = model.score_pairs(a, b, batch_size=4)
    assert np.abs(full).max() > 0.1  # a head that says something
    assert np.allclose(fast, full, atol=1e-5)
    assert not np.allclose(fast[:3], fast[3:6])  # the history matters
