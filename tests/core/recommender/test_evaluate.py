"""The evaluation harness: an oracle scores 1, cold-start splits keep items out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.recommender.baselines import ItemKNN, Popularity
from core.recommender.evaluate import (
    cold_item_split,
    cold_start_report,
    evaluate,
    hold_out_items,
    repeat_share,
)
from core.recommender.splits import Split, leave_last_out

ITEMS = [f"i{j:02d}" for j in range(12)]
CATALOGUE = pd.DataFrame({"item_id": ITEMS, "title": ITEMS, "brand": None,
                          "category": None, "price": None, "description": None})


@pytest.fixture
def interactions() -> pd.DataFrame:
    """30 users, 4-6 distinct items each, a day apart."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        picks = rng.choice(ITEMS, size=4 + u % 3, replace=False)
        for d, item in enumerate(picks):
            rows.append({"user_pseudonym": f"u{u:02d}", "item_id": item,
                         "event_type": "purchase", "promotion": pd.NA,
                         "ts": pd.Timestamp("2024-01-01") + pd.Timedelta(days=d)})
    return pd.DataFrame(rows)


class Oracle:
    """Knows every user's answer: scores 1 for it and 0 elsewhere."""

    name = "oracle"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def fit(self, train: pd.DataFrame, catalogue: pd.DataFrame) -> Oracle:
        self.items_ = np.array(sorted(catalogue["item_id"]), dtype=object)
        return self

    def score_items(self, history: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
        scores = np.zeros((len(queries), len(self.items_)))
        column = {item: j for j, item in enumerate(self.items_)}
        for row, user in enumerate(queries["user_pseudonym"]):
            scores[row, column[self.answers[user]]] = 1.0
        return scores


def test_perfect_oracle_scores_one(interactions) -> None:
    split = leave_last_out(interactions)
    for on in ("test", "valid"):
        targets = split.targets(on)
        oracle = Oracle(dict(zip(targets["user_pseudonym"], targets["item_id"], strict=True)))
        result = evaluate(oracle.fit(split.train, CATALOGUE), split, on=on, k=10)
        assert result["users"] == 30
        assert result["hr@10"] == 1.0
        assert result["ndcg@10"] == 1.0
        assert result["mrr"] == 1.0
        assert 0.0 < result["coverage@10"] <= 1.0


def test_evaluate_ranks_the_full_catalogue(interactions) -> None:
    """An anti-oracle puts the answer last: found only by MRR, at 1 / catalogue size."""
    split = leave_last_out(interactions)
    answers = dict(zip(split.test["user_pseudonym"], split.test["item_id"], strict=True))

    class Last(Oracle):
        def score_items(self, history, queries):
            return -super().score_items(history, queries)

    result = evaluate(Last(answers).fit(split.train, CATALOGUE), split, k=10,
                      exclude_seen=False)
    assert result["hr@10"] == 0.0 and result["ndcg@10"] == 0.0
    assert result["mrr"] == pytest.approx(1 / len(ITEMS))


def test_hold_out_items_removes_them_entirely(interactions) -> None:
    kept, held = hold_out_items(interactions, share=0.25, seed=1)
    assert len(held) == 3
    assert not kept["item_id"].isin(held).any()
    assert len(kept) + interactions["item_id"].isin(held).sum() == len(interactions)
    assert hold_out_items(interactions, share=0.25, seed=1)[1] == held  # seeded


def test_cold_item_split_keeps_held_out_items_out_of_train(interactions) -> None:
    split = leave_last_out(interactions)
    cold, held = cold_item_split(split, share=0.25, seed=0)
    assert not cold.train["item_id"].isin(held).any()
    assert not cold.valid["item_id"].isin(held).any()  # valid is history for test
    assert cold.test["item_id"].isin(held).all() and len(cold.test) > 0
    # Interaction-only models cannot recommend an item nobody trained on (k=3 leaves
    # enough trained, unseen items of this 12-item catalogue to fill every top k).
    report = cold_start_report(Popularity(), split, CATALOGUE, k=3, share=0.25, seed=0,
                               max_history=3)
    assert report["cold_items"]["recall@3"] == 0.0
    assert report["cold_items"]["users"] == len(cold.test)
    assert report["cold_users"]["users"] == 10  # the users with 4 interactions
    knn = cold_start_report(ItemKNN(), split, CATALOGUE, k=3, share=0.25, seed=0)
    assert knn["cold_items"]["recall@3"] == 0.0


def test_sequence_and_strict_histories_differ_only_on_ties() -> None:
    """Same-day items are history in the sequence protocol, not in the strict one."""
    day = pd.Timestamp("2024-01-01")
    rows = pd.DataFrame({"user_pseudonym": ["u"] * 4, "item_id": ["i00", "i01", "i02", "i03"],
                         "ts": [day, day + pd.Timedelta(days=1), day + pd.Timedelta(days=2),
                                day + pd.Timedelta(days=2)]})
    split = leave_last_out(rows)
    assert split.test["item_id"].tolist() == ["i03"]
    assert split.valid["item_id"].tolist() == ["i02"]  # the same day as the target

    class Spy(Oracle):  # records the history it is given
        def score_items(self, history, queries):
            self.seen = history["item_id"].tolist()
            return np.zeros((len(queries), len(self.items_)))

    model = Spy({}).fit(split.train, CATALOGUE)
    assert evaluate(model, split)["history"] == "sequence"
    assert model.seen == ["i00", "i01", "i02"]
    assert evaluate(model, split, history="strict")["history"] == "strict"
    assert model.seen == ["i00", "i01"]
    with pytest.raises(ValueError, match="history="):
        evaluate(model, split, history="future")


def test_repeat_share(interactions) -> None:
    split = leave_last_out(interactions)
    assert repeat_share(split) == 0.0  # the fixture has distinct items per user
    repeat = split.test.assign(item_id=split.valid["item_id"].to_numpy())
    assert repeat_share(Split(split.train, split.valid, repeat, "r")) == 1.0
