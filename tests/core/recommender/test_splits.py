"""Interactions from the warehouse, splits, and leak-free histories."""

from __future__ import annotations

import pandas as pd
import pytest

from core.config import Paths
from core.recommender.splits import (
    histories,
    histories_frame,
    history_before,
    leave_last_out,
    time_split,
)
from core.store.interactions import (
    INTERACTION_COLUMNS,
    STRONG_EVENT_TYPES,
    as_interactions,
    collapse_repeats,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)

T = pd.Timestamp


def _rows(user: str, items: str, start: str, *, same_day_last: bool = False) -> list[dict]:
    """One interaction per letter of `items`, a day apart from `start`."""
    rows = [{"user_pseudonym": user, "item_id": item, "event_type": "purchase",
             "ts": T(start) + pd.Timedelta(days=i), "promotion": i % 2 == 0}
            for i, item in enumerate(items)]
    if same_day_last:  # the last two share a timestamp (Amazon stamps reviews by the day)
        rows[-1]["ts"] = rows[-2]["ts"]
    return rows


@pytest.fixture
def interactions() -> pd.DataFrame:
    rows = (_rows("u1", "abcde", "2024-01-01") + _rows("u2", "ab", "2024-01-03")
            + _rows("u3", "fzc", "2024-01-02", same_day_last=True)
            + _rows("u4", "cdef", "2024-02-01"))
    return as_interactions(pd.DataFrame(rows).sample(frac=1.0, random_state=0))


def test_as_interactions_sorts_by_user_then_time_then_item(interactions) -> None:
    assert list(interactions.columns) == list(INTERACTION_COLUMNS)
    u3 = interactions[interactions["user_pseudonym"] == "u3"]
    assert u3["item_id"].tolist() == ["f", "c", "z"]  # c and z share a day: by item id


def test_leave_last_out_last_is_test_second_to_last_is_valid(interactions) -> None:
    split = leave_last_out(interactions)
    test = split.test.set_index("user_pseudonym")["item_id"].to_dict()
    valid = split.valid.set_index("user_pseudonym")["item_id"].to_dict()
    assert test == {"u1": "e", "u3": "z", "u4": "f"}
    assert valid == {"u1": "d", "u3": "c", "u4": "e"}
    assert "u2" not in test and "u2" not in valid  # fewer than 3 interactions
    u1_train = split.train[split.train["user_pseudonym"] == "u1"]["item_id"].tolist()
    assert u1_train == ["a", "b", "c"]
    assert split.train["user_pseudonym"].value_counts()["u2"] == 2
    # Every interaction lands in exactly one frame.
    together = pd.concat([split.train, split.valid, split.test])
    assert len(together) == len(interactions)
    assert not together.duplicated().any()


def test_leave_last_out_min_interactions(interactions) -> None:
    split = leave_last_out(interactions, min_interactions=5)
    assert split.test["user_pseudonym"].tolist() == ["u1"]
    with pytest.raises(ValueError, match="min_interactions=1"):
        leave_last_out(interactions, min_interactions=1)


def test_time_split_has_no_overlap(interactions) -> None:
    split = time_split(interactions, cutoff=T("2024-01-05"), valid_cutoff=T("2024-01-04"))
    assert split.train["ts"].max() < T("2024-01-04")
    assert split.valid["ts"].min() >= T("2024-01-04")
    assert split.valid["ts"].max() < T("2024-01-05")
    assert split.test["ts"].min() >= T("2024-01-05")
    keys = ["user_pseudonym", "item_id", "ts"]
    for a, b in [("train", "valid"), ("train", "test"), ("valid", "test")]:
        left, right = getattr(split, a), getattr(split, b)
        assert left.merge(right, on=keys).empty, f"{a} and {b} share rows"
    # One target per user (their first in the window), only for users with history.
    assert split.valid.set_index("user_pseudonym")["item_id"].to_dict() == {"u1": "d",
                                                                            "u2": "b"}
    assert split.test.set_index("user_pseudonym")["item_id"].to_dict() == {"u1": "e"}
    # u4 starts after the cutoff: no history, no target.
    only_test = time_split(interactions, cutoff=T("2024-01-04"))
    assert only_test.valid.empty
    assert only_test.test.set_index("user_pseudonym")["item_id"].to_dict() == {
        "u1": "d", "u2": "b"}
    with pytest.raises(ValueError, match="valid_cutoff"):
        time_split(interactions, cutoff=T("2024-01-04"), valid_cutoff=T("2024-01-05"))


def test_histories_never_hold_the_target_time_or_later(interactions) -> None:
    split = leave_last_out(interactions)
    known = split.known_for("test")
    targets = split.test.set_index("user_pseudonym")["ts"]
    found = histories(known, split.test, n=10)
    assert set(found) == set(targets.index)
    for user, frame in found.items():
        assert (frame["ts"] < targets[user]).all(), user
    # u3's valid item shares the target's day: it is not history ...
    assert found["u3"]["item_id"].tolist() == ["f"]
    # ... unless asked for the in-sequence history used by the evaluation.
    seq = histories_frame(known, split.test, same_time=True)
    assert seq[seq["user_pseudonym"] == "u3"]["item_id"].tolist() == ["f", "c"]
    # n keeps the most recent ones, oldest first.
    assert histories(known, split.test, n=2)["u1"]["item_id"].tolist() == ["c", "d"]
    assert histories(known, split.test, n=0)["u1"].empty


def test_histories_give_empty_frames_without_earlier_interactions(interactions) -> None:
    targets = pd.DataFrame({"user_pseudonym": ["u1", "nobody"],
                            "ts": [T("2024-01-01"), T("2030-01-01")]})
    found = histories(interactions, targets, n=3)
    assert found["u1"].empty and found["nobody"].empty
    with pytest.raises(ValueError, match="one target row per user"):
        histories(interactions, pd.concat([targets, targets]), n=3)


def test_history_before(interactions) -> None:
    rows = history_before(interactions, "u1", T("2024-01-04"), 2)
    assert [r["item_id"] for r in rows] == ["b", "c"]
    assert all(r["ts"] < T("2024-01-04") for r in rows)
    assert history_before(interactions, "u1", T("2024-01-01"), 5) == []


def test_collapse_repeats_keeps_the_last_of_a_run() -> None:
    frame = as_interactions(pd.DataFrame({
        "user_pseudonym": ["u"] * 4, "item_id": ["a", "a", "b", "a"],
        "event_type": ["add_to_cart", "purchase", "purchase", "purchase"],
        "ts": pd.date_range("2024-01-01", periods=4, freq="h")}))
    out = collapse_repeats(frame)
    assert out["item_id"].tolist() == ["a", "b", "a"]  # a repeat later on stays
    assert out["event_type"].tolist() == ["purchase"] * 3


def test_load_interactions_reads_strong_events_before_a_time(small_warehouse: Paths) -> None:
    frame = load_interactions(small_warehouse)
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert set(frame["event_type"]) == set(STRONG_EVENT_TYPES)
    assert frame.equals(as_interactions(frame))  # already in the canonical order
    views = load_interactions(small_warehouse, event_types=("view",),
                              before=T("2025-03-01"))
    assert set(views["event_type"]) == {"view"}
    assert views["ts"].max() < T("2025-03-01")
    catalogue = load_catalogue(small_warehouse)
    assert len(catalogue) == 30 and catalogue["item_id"].is_unique
    ranked = interacted_catalogue(catalogue, frame)
    assert set(ranked["item_id"]) == set(frame["item_id"])
