"""Token SHAP of one field: finds the planted word, adds up, is cached."""

from __future__ import annotations

import numpy as np

from explain.result import Subject
from explain.token_shap import TokenShapConfig, explain_tokens, split_label
from tests.explain.conftest import make_fields


def word_decides(text_a, text_b) -> np.ndarray:
    """The word "windproof" in the candidate decides; everything else barely matters."""
    return np.array([3.0 * ("windproof" in b) + 0.01 * len(b.split()) for a, b in
                     zip(text_a, text_b, strict=True)])


def test_split_label():
    assert split_label("title: Summit: Gloves") == ("title: ", "Summit: Gloves")
    assert split_label("no label") == ("", "no label")


def test_planted_word_ranks_first_and_values_add_up(tmp_path):
    fields = make_fields()
    e = explain_tokens(word_decides, fields, "item_description",
                       subject=Subject("r", "u", "i", 1), cache_dir=tmp_path)
    assert e.method == "shap-token"
    assert set(e.fields) == {"item_description"}
    # WordPiece splits it: "wind" + "proof" share the credit
    assert e.features[int(np.argmax(e.attributions))] in ("wind", "proof")
    planted = sum(a for f, a in zip(e.features, e.attributions, strict=True)
                  if f in ("wind", "proof"))
    assert planted > 0.9 * e.attributions.sum()
    # Owen values add up; what the budget leaves on the fixed [CLS]/[SEP] slots is
    # reported, not hidden
    assert e.additivity_error < 1e-3
    assert abs(e.additivity_error - abs(e.notes["unassigned"])) < 1e-9
    assert "about" not in e.features  # the label stays fixed, only its value's words play
    assert list(tmp_path.glob("*.json"))  # on-disk cache written


def test_cached_in_memory_and_on_disk(tmp_path):
    fields = make_fields()
    calls = []

    def counting(a, b):
        calls.append(len(a))
        return word_decides(a, b)

    config = TokenShapConfig(max_evals=60)
    first = explain_tokens(counting, fields, "item_title", subject=Subject("r", "u", "i", 1),
                           config=config, cache_dir=tmp_path)
    n = len(calls)
    again = explain_tokens(counting, fields, "item_title", subject=Subject("r", "u", "i", 3),
                           config=config, cache_dir=tmp_path)
    assert len(calls) == n and again.rank == 3
    np.testing.assert_array_equal(first.attributions, again.attributions)
    from explain import token_shap

    token_shap._MEMORY.clear()
    from_disk = explain_tokens(counting, fields, "item_title",
                               subject=Subject("r", "u", "i", 1), config=config,
                               cache_dir=tmp_path)
    assert len(calls) == n
    np.testing.assert_allclose(first.attributions, from_disk.attributions)
    # a different input (another history) is a different entry
    changed = make_fields(n_history=2)
    explain_tokens(counting, changed, "item_title", subject=Subject("r", "u", "i", 1),
                   config=config, cache_dir=tmp_path)
    assert len(calls) > n
