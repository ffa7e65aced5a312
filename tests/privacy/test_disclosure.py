import pandas as pd
import pytest

from core.config import PrivacyConfig
from privacy.disclosure import hide_small_cells


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
    assert hidden == 3
    assert kept["event_type"].tolist() == ["view", "click"]
    assert kept["customers"].tolist() == [40, 10]  # exactly the floor is shown
    assert kept.index.tolist() == [0, 1]


def test_default_floor_is_ten_customers():
    assert PrivacyConfig().min_cell_size == 10
    _, hidden = hide_small_cells(_cells(), min_cell=PrivacyConfig().min_cell_size)
    assert hidden == 3


def test_floor_of_one_hides_only_empty_cells():
    kept, hidden = hide_small_cells(_cells(), "customers", min_cell=1)
    assert (hidden, len(kept)) == (1, 4)


def test_everything_hidden_and_empty_input():
    kept, hidden = hide_small_cells(_cells(), "customers", min_cell=1000)
    assert (hidden, len(kept)) == (5, 0)
    assert list(kept.columns) == ["event_type", "events", "customers"]
    kept, hidden = hide_small_cells(_cells().iloc[:0], "customers", min_cell=10)
    assert (hidden, len(kept)) == (0, 0)


def test_missing_count_is_hidden():
    df = pd.DataFrame({"customers": [12.0, float("nan"), None]})
    kept, hidden = hide_small_cells(df, "customers", min_cell=10)
    assert (hidden, kept["customers"].tolist()) == (2, [12.0])


def test_input_is_not_modified():
    df = _cells()
    hide_small_cells(df, "customers", min_cell=10)
    pd.testing.assert_frame_equal(df, _cells())


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="at least 1"):
        hide_small_cells(_cells(), "customers", min_cell=0)
    with pytest.raises(KeyError, match="distinct customers"):
        hide_small_cells(_cells(), "users", min_cell=10)
    with pytest.raises(TypeError):
        hide_small_cells(_cells(), "customers", 10)  # the floor is keyword-only
