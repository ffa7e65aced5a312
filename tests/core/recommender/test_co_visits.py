import math

import numpy as np
import pandas as pd
import pytest

from core.recommender.baselines import ItemKNN
from core.recommender.co_visits import CoVisits, own_items
from core.recommender.examples import model_input
from core.recommender.fields import co_visit_feature, encoder_text, to_text_pair
from core.store.interactions import ITEM, TS, USER


def _interactions(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({USER: [u for u, _ in rows], ITEM: [i for _, i in rows],
                         TS: pd.date_range("2024-01-01", periods=len(rows), freq="h")})


TRAIN = _interactions([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"),
                       ("u3", "a"), ("u3", "c"), ("u4", "d"), ("u4", "a"), ("u4", "a")])


def test_scores_are_the_item_knn_cosines_summed_over_the_history():
    table = CoVisits.fit(TRAIN)
    # a: u1 u2 u3 u4 (4); b: u1 u2 (2); c: u2 u3 (2); d: u4 (1)
    assert table.score(["a"], "b") == pytest.approx(2 / math.sqrt(4 * 2))
    assert table.score(["a", "c"], "b") == pytest.approx(2 / math.sqrt(8) + 1 / math.sqrt(4))
    assert table.score(["b"], "d") == 0.0
    assert table.score(["a"], "a") == 0.0  # an item is not its own neighbour
    assert table.score(["a"], "unknown") == 0.0 and table.score([], "a") == 0.0
    knn = ItemKNN(popularity_tiebreak=False).fit(TRAIN, pd.DataFrame({ITEM: list("abcd")}))
    history = _interactions([("q", "a"), ("q", "c")])
    expected = knn.score_items(history, pd.DataFrame({USER: ["q"]}))[0]
    assert np.allclose(table.scores(["a", "c"]), expected)
    assert [table.score(["a", "c"], i) for i in "bd"] == pytest.approx(expected[[1, 3]])


def test_a_customers_own_visits_are_left_out_of_its_examples():
    table = CoVisits.fit(TRAIN)
    own = own_items(TRAIN)
    assert own["u1"] == frozenset("ab")
    # Without u1, a has 3 customers, b has 1 (u2), and both share u2 only.
    assert table.score(["a"], "b", own=own["u1"]) == pytest.approx(1 / math.sqrt(4 * 1))
    # An item u1 never had keeps its counts.
    assert table.score(["a"], "c", own=own["u1"]) == table.score(["a"], "c")
    alone = CoVisits.fit(_interactions([("u1", "x"), ("u1", "y")]))
    assert alone.score(["x"], "y") == pytest.approx(1.0)
    assert alone.score(["x"], "y", own=frozenset("xy")) == 0.0  # no one else: no signal


def test_the_field_is_read_as_a_number_and_never_by_the_encoder():
    table = CoVisits.fit(TRAIN)
    items = {i: {ITEM: i, "title": f"item {i}", "category": "cards"} for i in "abcd"}
    fields = model_input([("purchase", "a"), ("purchase", "c")], None, None, "b", items,
                         co_visits=table)
    names = [f.name for f in fields]
    assert names[-1] == "item_co_visits"
    text_a, text_b = to_text_pair(fields)
    assert "bought with history" not in text_a
    assert co_visit_feature(text_b) == pytest.approx(table.score(["a", "c"], "b"), abs=5e-4)
    assert encoder_text(text_b) == to_text_pair(fields, masked=frozenset({"item_co_visits"}))[1]
    _, masked_b = to_text_pair(fields, masked=frozenset({"item_co_visits"}))
    assert co_visit_feature(masked_b) == 0.0
    plain = model_input([("purchase", "a")], None, None, "b", items)
    assert "item_co_visits" not in [f.name for f in plain]


def test_save_and_load_round_trip(tmp_path):
    table = CoVisits.fit(TRAIN)
    table.save(tmp_path)
    loaded = CoVisits.load(tmp_path)
    assert list(loaded.items) == list(table.items)
    assert np.array_equal(loaded.degree, table.degree)
    assert (loaded.counts != table.counts).nnz == 0
    assert CoVisits.load(tmp_path / "nothing-here") is None
