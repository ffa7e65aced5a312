import numpy as np
import pandas as pd
import pytest

from core.config import PrivacyConfig
from privacy.disclosure import hide_small_cells, hide_until_floor, suppress_small_cells


def _cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_type": ["view", "click", "purchase", "review", "view"],
            "events": [81, 54, 14, 9, 3],
            "customers": [40, 10, 9, 1, 0],
        }
    )


def test_hides_cells_below_the_floor_and_counts_them():
    kept, hidden = hide_small_cells(_cells(), "customers", min_cell=10)
    assert hidden == 3  # 9 + 1 + 0 = 10 customers hidden together: no fourth cell
    assert kept["event_type"].tolist() == ["view", "click"]
    assert kept["customers"].tolist() == [40, 10]  # exactly the floor is shown
    assert kept.index.tolist() == [0, 1]


def test_default_floor_is_ten_customers():
    assert PrivacyConfig().min_cell_size == 10
    _, hidden = hide_small_cells(_cells(), min_cell=PrivacyConfig().min_cell_size)
    assert hidden == 3


def test_one_hidden_cell_takes_the_next_smallest_with_it():
    # floor 1: only the empty cell is under it; alone it could be worked out from the
    # total, so the next smallest (1 customer) is hidden too
    kept, hidden = hide_small_cells(_cells(), "customers", min_cell=1)
    assert (hidden, kept["customers"].tolist()) == (2, [40, 10, 9])


def test_complementary_cells_are_hidden_group_by_group():
    months = pd.DataFrame({
        "month": ["2025-01"] * 3 + ["2025-02"] * 3,
        "event_type": ["view", "click", "review"] * 2,
        "customers": [40, 25, 5, 40, 6, 5],
    })
    result = suppress_small_cells(months, min_cell=10, by=["month"])
    # January hides its review cell and the next smallest (click, 25) with it; February
    # hides two small cells (6 + 5 = 11 customers together): nothing more
    assert result.shown[["month", "event_type"]].values.tolist() == [
        ["2025-01", "view"], ["2025-02", "view"]]
    assert (result.hidden, result.dropped) == (4, 0)
    assert result.mask.tolist() == [False, True, True, False, True, True]
    kept, hidden = hide_small_cells(months, min_cell=10, by=["month"])
    assert hidden == 4 and kept.equals(result.shown)
    # as one group the three small cells are hidden together (16 customers): enough
    assert hide_small_cells(months, min_cell=10)[1] == 3


def test_groups_that_cannot_be_shown_safely_are_dropped_whole():
    frame = pd.DataFrame({
        "month": ["2025-01"] * 3 + ["2025-02"] * 3 + ["2025-03"] * 3 + ["2025-04"] * 2,
        "customers": [25, 30, 80, 3, 35, 90, 2, 3, 4, 3, 4],
    })
    result = suppress_small_cells(frame, min_cell=10, by=["month"])
    # March: 9 customers in all; April: every cell small
    assert sorted(set(result.shown["month"])) == ["2025-01", "2025-02"]
    assert result.shown["customers"].tolist() == [25, 30, 80, 90]
    assert (result.hidden, result.dropped) == (2, 2)
    assert int(result.mask.sum()) == 7


def test_small_cells_whose_sum_stays_under_the_floor_drop_the_group():
    frame = pd.DataFrame({"g": ["a"] * 4, "customers": [50, 40, 3, 4]})
    result = suppress_small_cells(frame, min_cell=10, by=["g"])
    assert result.shown.empty and (result.hidden, result.dropped) == (0, 1)


def test_several_count_columns_must_each_reach_the_floor():
    counts = pd.DataFrame({"audience": [50, 40, 3], "population": [80, 70, 12]})
    result = suppress_small_cells(counts, ["audience", "population"], min_cell=10)
    assert result.mask.tolist() == [False, True, True]  # 3 alone is recoverable
    assert not suppress_small_cells(pd.DataFrame({"a": [50, 40]}), ["a"], min_cell=10).mask.any()
    two_small = pd.DataFrame({"audience": [40, 30, 5, 6], "population": [40, 30, 5, 25]})
    assert suppress_small_cells(two_small, ["audience", "population"],
                                min_cell=10).mask.tolist() == [False, False, True, True]


def test_everything_hidden_and_empty_input():
    kept, hidden = hide_small_cells(_cells(), "customers", min_cell=1000)
    assert (hidden, len(kept)) == (5, 0)
    assert list(kept.columns) == ["event_type", "events", "customers"]
    kept, hidden = hide_small_cells(_cells().iloc[:0], "customers", min_cell=10)
    assert (hidden, len(kept)) == (0, 0)
    result = suppress_small_cells(_cells().iloc[:0], min_cell=10, by=["event_type"])
    assert (result.hidden, result.dropped, len(result.mask)) == (0, 0, 0)


def test_missing_count_is_hidden():
    df = pd.DataFrame({"customers": [12.0, 30.0, float("nan"), 15.0]})
    kept, hidden = hide_small_cells(df, "customers", min_cell=10)
    # the unknown cell counts as nothing: hidden with the next smallest (12)
    assert (hidden, kept["customers"].tolist()) == (2, [30.0, 15.0])
    # two unknown counts cannot be shown to hold the floor together: all hidden
    df = pd.DataFrame({"customers": pd.array([12, None, None], dtype="Int64")})
    assert hide_small_cells(df, "customers", min_cell=10)[1] == 3


def test_missing_group_keys_form_a_group():
    frame = pd.DataFrame({"segment": ["a", "a", None, None],
                          "customers": [30, 40, 20, 2]})
    result = suppress_small_cells(frame, min_cell=10, by=["segment"])
    assert result.mask.tolist() == [False, False, True, True]  # 22 in all, 2 alone: dropped
    assert (result.hidden, result.dropped) == (0, 1)


def test_input_is_not_modified():
    df = _cells()
    hide_small_cells(df, "customers", min_cell=10)
    suppress_small_cells(df, min_cell=10, by=["event_type"])
    pd.testing.assert_frame_equal(df, _cells())


def test_mask_lines_up_with_the_input_rows():
    df = _cells().set_index(np.array([10, 20, 30, 40, 50]))
    result = suppress_small_cells(df, min_cell=10)
    assert result.mask.tolist() == [False, False, True, True, True]
    assert result.shown.index.tolist() == [0, 1]


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="at least 1"):
        hide_small_cells(_cells(), "customers", min_cell=0)
    with pytest.raises(KeyError, match="distinct customers"):
        hide_small_cells(_cells(), "users", min_cell=10)
    with pytest.raises(KeyError, match="distinct customers"):
        suppress_small_cells(_cells(), ["customers", "users"], min_cell=10)
    with pytest.raises(TypeError):
        hide_small_cells(_cells(), "customers", 10)  # the floor is keyword-only


def test_one_hidden_cell_takes_another_with_it():
    counts = pd.DataFrame({"a": [50, 40, 3], "p": [80, 70, 12]})
    hidden = hide_until_floor(counts, ["a", "p"], min_cell=10)
    assert hidden.tolist() == [False, True, True]  # 3 alone is recoverable from the total
    assert not hide_until_floor(pd.DataFrame({"a": [50, 40]}), ["a"], min_cell=10).any()
