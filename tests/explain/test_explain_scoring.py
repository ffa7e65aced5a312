"""The value function of field explanations: masking removes a field's text, the fast
token path reads exactly what the tokenizer would, and scores what `score_pairs`
scores."""

from __future__ import annotations

import numpy as np
import pytest

from core.recommender.fields import to_text_pair
from explain.field_shap import FieldMasker
from explain.scoring import (
    CrossEncoderScorer,
    FieldGame,
    PairTokenizer,
    TextPairScorer,
    as_scorer,
)
from tests.explain.conftest import make_fields, tiny_model


def test_masked_field_text_is_gone_from_the_serialized_pair(fields):
    game = FieldGame(TextPairScorer(lambda a, b: np.zeros(len(a))), fields)
    masker = FieldMasker(game)
    for i, f in enumerate(game.players):
        keep = np.ones(len(game), dtype=bool)
        keep[i] = False
        text_a, text_b = masker.text_pair(keep)
        assert f.text not in text_a and f.text not in text_b
        for other in game.players:
            if other.name != f.name:
                assert other.text in (text_a if other.side == "a" else text_b)
    # shap's masker hands the coalition itself to the value function
    out = masker(np.array([True, False] + [True] * (len(game) - 2)), np.ones(len(game)))
    assert out[0].shape == (1, len(game)) and not out[0][0, 1]


@pytest.mark.parametrize("lengths", [(128, 48), (40, 16), (24, 8)])
def test_token_layout_matches_what_the_model_reads(minilm, lengths):
    """Side a and side b are tokenized alone, each cut at its end, and joined without b's
    [CLS]: the field-by-field layout gives the same ids for every coalition."""
    max_length, item_length = lengths
    tokenizer = minilm.tokenizer
    pairs = PairTokenizer(tokenizer, history_length=max_length - item_length,
                          item_length=item_length)
    fields = make_fields()
    rng = np.random.default_rng(0)
    names = [f.name for f in fields]
    masks = rng.random((60, len(fields))) < 0.5
    masks[0] = True
    masks[1] = False  # the empty coalition: "[CLS] [SEP] [SEP]"
    masks[2, :10] = False  # no side "a" at all
    masks[3, 10:] = False  # no side "b" at all
    for keep in masks:
        masked = frozenset(n for n, k in zip(names, keep, strict=True) if not k)
        a, b = to_text_pair(fields, masked=masked)
        ids_a = tokenizer(a, truncation=True, max_length=max_length - item_length)["input_ids"]
        ids_b = tokenizer(b, truncation=True, max_length=item_length)["input_ids"]
        layout = pairs.layout(fields, masked)
        assert list(layout.ids) == ids_a + ids_b[1:]
        assert layout.split == len(ids_a)
        for name, (lo, hi) in layout.spans.items():  # spans hold the field's own tokens
            own = pairs.ids(next(f.text for f in fields if f.name == name))
            assert list(layout.ids[lo:hi]) == list(own[:hi - lo])
        assert not set(layout.spans) & masked


def test_the_game_scores_what_score_pairs_scores():
    model = tiny_model(max_length=64)
    fields = make_fields()
    game = FieldGame(CrossEncoderScorer(model, precision="fp32"), fields)
    rng = np.random.default_rng(1)
    masks = rng.random((40, len(game))) < 0.5
    fast = game.logits(masks)
    pairs = [game.text_pair(row) for row in masks]
    slow = model.score_pairs([a for a, _ in pairs], [b for _, b in pairs])
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert game.evaluations == len({tuple(p) for p in pairs})  # deduplicated, one call
    before = game.evaluations
    game.logits(masks)  # cached
    assert game.evaluations == before


def test_omitted_fields_are_never_players():
    model = tiny_model(omit=("item_description",))
    game = FieldGame(as_scorer(model, precision="fp32"), make_fields())
    assert "item_description" not in game.names
    a, b = game.text_pair(np.ones(len(game), dtype=bool))
    assert "about:" not in b


def test_bf16_copy_stays_close_to_float32():
    model = tiny_model(max_length=64)
    fields = make_fields()
    masks = np.random.default_rng(2).random((16, len(fields))) < 0.5
    fp32 = FieldGame(CrossEncoderScorer(model, precision="fp32"), fields).logits(masks)
    bf16 = FieldGame(CrossEncoderScorer(model, precision="bf16"), fields).logits(masks)
    assert np.abs(fp32 - bf16).max() < 0.05


def test_bf16_copy_of_real_minilm_with_prior(minilm):
    fields = make_fields()
    masks = np.random.default_rng(3).random((12, len(fields))) < 0.6
    fp32 = FieldGame(CrossEncoderScorer(minilm, precision="fp32"), fields).logits(masks)
    bf16 = FieldGame(CrossEncoderScorer(minilm, precision="bf16"), fields).logits(masks)
    assert np.abs(fp32 - bf16).max() < 0.1  # logits of about 0-10 (10 x cosine)
