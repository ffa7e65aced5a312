"""Reasons in words never claim more than the numbers show."""

from __future__ import annotations

import numpy as np
import pytest

from core.recommender.fields import Field
from explain.reasons import ALSO, LITTLE, MAINLY, reason, reason_parts
from explain.result import Explanation, Subject
from tests.explain.conftest import make_fields

FIELDS = make_fields()  # h1..h5, ctx_season, ctx_day, ctx_promotion, 5 item fields
NAMES = [f.name for f in FIELDS]


def explanation(values: dict[str, float] | np.ndarray, method: str = "shap-field"
                ) -> Explanation:
    phi = (np.array([values.get(n, 0.0) for n in NAMES]) if isinstance(values, dict)
           else np.asarray(values))
    return Explanation.build(subject=Subject(), method=method, features=NAMES, fields=NAMES,
                             values=[f.text for f in FIELDS], attributions=phi,
                             base_value=0.3, prediction=0.3 + float(phi.sum()),
                             evaluations=0, latency_s=0.0)


def test_the_example_sentence():
    e = explanation({"h1": 0.20, "h2": 0.15, "ctx_promotion": 0.04, "item_price": -0.06,
                     "item_title": 0.005})
    text = reason(e)
    assert text.startswith("Mainly because of recent purchases of Trail Bottle and "
                           "Northwind Socks")
    assert "the promotion (on) adds a little" in text
    assert "the price band ($25-50) counts against" in text
    assert "name" not in text  # 1% of the total: not mentioned


def test_no_mainly_below_half():
    e = explanation({"h1": 0.10, "ctx_season": 0.09, "item_price": -0.08, "item_brand": 0.07})
    shares = {p.label: p.share for p in reason_parts(e)}
    assert max(shares.values()) < MAINLY
    text = reason(e)
    assert "mainly" not in text.lower() and text.startswith("Partly because of")


@pytest.mark.parametrize("seed", range(200))
def test_phrases_follow_the_shares(seed):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=len(NAMES)) * rng.exponential(size=len(NAMES))
    phi[rng.random(len(NAMES)) < 0.3] = 0.0
    e = explanation(phi)
    parts = reason_parts(e)
    text = reason(e).lower()
    assert abs(sum(p.share for p in parts) - 1) < 1e-9
    for p in parts:
        if "mainly" in p.phrase:
            assert p.share >= MAINLY and p.contribution > 0
        if "partly" in p.phrase:
            assert ALSO <= p.share < MAINLY and p.contribution > 0
        if "also helps" in p.phrase:
            assert ALSO <= p.share and p.contribution > 0
        if "adds a little" in p.phrase:
            assert LITTLE <= p.share < ALSO and p.contribution > 0
        if "against" in p.phrase:
            assert p.contribution < 0 and p.share >= LITTLE
        if "strongly" in p.phrase:
            assert p.share >= MAINLY
        if not p.phrase:
            assert p.share < LITTLE
    if "mainly" in text:
        assert max(p.share for p in parts if p.contribution > 0) >= MAINLY
    else:
        assert all(p.share < MAINLY for p in parts if p.contribution > 0)


def test_nothing_raises_the_score():
    e = explanation({"h1": -0.2, "item_price": -0.1})
    text = reason(e)
    assert text.startswith("Nothing in this profile raises the score")
    assert "recent purchases of Trail Bottle count strongly against" in text  # h1: 67%


def test_zero_attributions_and_attention_give_no_reason():
    assert reason(explanation({})).startswith("No single field moved this score")
    with pytest.raises(ValueError, match="not contributions"):
        reason(explanation({"h1": 0.5}, method="attention-rollout"))


def test_the_category_share_reads_as_a_count_of_recent_items():
    fields = [*FIELDS, Field("item_category_share", "b", "recent items in its category: 3 of 5")]
    names = [f.name for f in fields]
    phi = np.array([0.3 if n == "item_category_share" else 0.0 for n in names])
    e = Explanation.build(subject=Subject(), method="shap-field", features=names,
                          fields=names, values=[f.text for f in fields], attributions=phi,
                          base_value=0.3, prediction=0.6, evaluations=0, latency_s=0.0)
    assert reason(e) == ("Mainly because of how many recent items share its category "
                         "(3 of 5).")
