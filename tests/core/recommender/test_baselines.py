"""Baselines on tiny planted fixtures, and the shared `recommend`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.recommender.baselines import ItemKNN, Popularity, ZeroShotContent, item_text
from core.recommender.protocol import Recommender, recommend

T = pd.Timestamp


def _interactions(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """(user, item) pairs, an hour apart in the order given."""
    return pd.DataFrame({
        "user_pseudonym": [u for u, _ in pairs], "item_id": [i for _, i in pairs],
        "event_type": "purchase", "promotion": pd.NA,
        "ts": pd.date_range("2024-01-01", periods=len(pairs), freq="h"),
    })


def _queries(*users: str) -> pd.DataFrame:
    return pd.DataFrame({"user_pseudonym": list(users), "ts": T("2025-01-01"),
                         "promotion": pd.NA})


CATALOGUE = pd.DataFrame({
    "item_id": ["a", "b", "c", "d", "e"],
    "title": ["A", "B", "C", "D", "E"], "brand": None, "category": None, "price": None,
    "description": None,
})


def test_popularity_ranks_the_most_frequent_first() -> None:
    train = _interactions([("u1", "c"), ("u2", "c"), ("u3", "c"), ("u1", "a"), ("u2", "a"),
                           ("u3", "e")])
    model = Popularity().fit(train, CATALOGUE)
    assert isinstance(model, Recommender)
    assert model.items_.tolist() == ["a", "b", "c", "d", "e"]
    top = recommend(model, train.iloc[0:0], _queries("new"), k=3, exclude_seen=False)
    assert top["item_id"].tolist() == ["c", "a", "e"]
    assert top["rank"].tolist() == [1, 2, 3]
    assert list(top.columns) == ["user_pseudonym", "item_id", "rank", "score"]
    # Already-seen items are left out when asked.
    seen = _interactions([("u9", "c")])
    top = recommend(model, seen, _queries("u9"), k=2, exclude_seen=True)
    assert top["item_id"].tolist() == ["a", "e"]


def test_item_knn_recommends_the_co_bought_item() -> None:
    # a and b are bought together by four people; c is the best seller, never with a.
    pairs = [(f"p{i}", x) for i in range(4) for x in ("a", "b")]
    pairs += [(f"q{i}", x) for i in range(6) for x in ("c", "d")]
    train = _interactions(pairs)
    model = ItemKNN().fit(train, CATALOGUE)
    assert model.similarity_[0, 1] == pytest.approx(1.0)  # cosine of identical columns
    assert model.similarity_[0, 0] == 0.0
    history = _interactions([("me", "a")])
    top = recommend(model, history, _queries("me"), k=2, exclude_seen=True)
    assert top["item_id"].tolist()[0] == "b"
    # Items that co-occur with nothing the user had fall back to popularity order.
    assert top["item_id"].tolist()[1] in {"c", "d"}


def test_item_knn_recency_decay_prefers_the_latest_history_item() -> None:
    pairs = [(f"p{i}", x) for i in range(3) for x in ("a", "b")]
    pairs += [(f"q{i}", x) for i in range(3) for x in ("c", "d")]
    model = ItemKNN(recency_decay=0.5).fit(_interactions(pairs), CATALOGUE)
    history = _interactions([("me", "a"), ("me", "c")])  # c is the most recent
    scores = model.score_items(history, _queries("me"))
    assert scores.shape == (1, 5)
    assert scores[0, 3] > scores[0, 1]  # d (with c) over b (with a)


def test_fit_rejects_items_missing_from_the_catalogue() -> None:
    with pytest.raises(ValueError, match="not in the catalogue"):
        Popularity().fit(_interactions([("u", "zzz")]), CATALOGUE)


def test_item_text_leaves_out_missing_parts() -> None:
    assert item_text({"item_id": "x", "title": "Mug", "category": "Kitchen", "brand": None,
                      "description": "A big mug. " + "word " * 100}, description_words=3) == (
        "Mug | Kitchen | A big mug.")
    assert item_text({"item_id": "x", "title": np.nan}) == "x"


def test_zero_shot_content_ranks_the_textually_similar_item_first() -> None:
    """On the real MiniLM weights (about 3 s: loading and encoding six items)."""
    catalogue = pd.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
        "title": ["Stainless steel chef's knife", "Children's picture book about dragons",
                  "Non-slip yoga mat", "Whetstone knife sharpener", "Trail running shoes",
                  "Bluetooth headphones"],
        "brand": ["Kitchenco", "Storyhouse", "Flexi", "Kitchenco", "Stride", "Sonic"],
        "category": ["Kitchen", "Books", "Sports", "Kitchen", "Sports", "Electronics"],
        "price": [40.0, 12.0, 25.0, 30.0, 90.0, 60.0], "description": None,
    })
    train = _interactions([("u", "i1")])
    model = ZeroShotContent().fit(train, catalogue)
    assert model.embeddings_.shape == (6, 384)
    assert np.allclose(np.linalg.norm(model.embeddings_, axis=1), 1.0, atol=1e-5)
    top = recommend(model, train, _queries("u", "nobody"), k=5, exclude_seen=True)
    assert top[top["user_pseudonym"] == "u"]["item_id"].iloc[0] == "i4"
    # Without history there is nothing to compare with: every item scores 0.
    assert (top[top["user_pseudonym"] == "nobody"]["score"] == 0.0).all()
