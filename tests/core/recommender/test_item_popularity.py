"""Item popularity released with DP: capped counts, noise, percentiles, the field."""

import math

import numpy as np
import pandas as pd
import pytest

from core.recommender import item_popularity
from core.recommender.fields import item_fields, popularity_feature, to_text_pair


def interactions() -> pd.DataFrame:
    ts = pd.Timestamp("2024-01-01")
    rows = [("u1", item, ts + pd.Timedelta(days=d)) for d, item in
            enumerate(["a", "b", "c", "d", "a"])]  # u1: a twice, most recent a, d, c, b
    rows += [("u2", "a", ts), ("u2", "b", ts + pd.Timedelta(days=1))]
    rows += [("u3", "z", ts)]  # z is not in the catalogue
    return pd.DataFrame(rows, columns=["user_pseudonym", "item_id", "ts"])


def test_each_customer_counts_at_most_cap_distinct_items_their_most_recent():
    counts = item_popularity.capped_counts(interactions(), ["a", "b", "c", "d", "e"], cap=3)
    # u1 counts a, d, c (not b: its 4th most recent distinct item; a once, not twice)
    assert counts.to_dict() == {"a": 2.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0}
    # removing one customer moves the vector by at most sqrt(cap) (the L2 sensitivity)
    without = item_popularity.capped_counts(
        interactions().query("user_pseudonym != 'u1'"), ["a", "b", "c", "d", "e"], cap=3)
    assert np.linalg.norm(counts - without) <= math.sqrt(3) + 1e-12
    with pytest.raises(ValueError, match="cap"):
        item_popularity.capped_counts(interactions(), ["a"], cap=0)


def test_noise_has_the_mechanisms_scale_and_none_means_exact():
    counts = pd.Series(np.zeros(20_000), index=[f"i{k}" for k in range(20_000)])
    assert item_popularity.noisy(counts, noise_multiplier=0.0, cap=4).equals(counts)
    released = item_popularity.noisy(counts, noise_multiplier=1.5, cap=4,
                                     rng=np.random.default_rng(0))
    assert released.std() == pytest.approx(1.5 * 2.0, rel=0.03)
    # the default generator is not a fixed seed: two releases differ
    assert not item_popularity.noisy(counts[:5], noise_multiplier=1.0, cap=1).equals(
        item_popularity.noisy(counts[:5], noise_multiplier=1.0, cap=1))


def test_percentiles_rank_items_and_the_model_reads_them_from_the_field():
    values = pd.Series([5.0, 1.0, 3.0, 3.0], index=["a", "b", "c", "d"])
    ranks = item_popularity.percentiles(values)
    assert ranks == {"b": 1, "c": 34, "d": 67, "a": 100}  # ties by item id
    assert item_popularity.ranked(ranks) == ["a", "d", "c", "b"]
    catalogue = pd.DataFrame({"item_id": ["a", "b", "new"], "title": ["A", "B", "N"]})
    shown = item_popularity.attach(catalogue, ranks)
    assert item_popularity.of(shown) == {"a": 100, "b": 1}  # "new" was not released
    records = shown.to_dict("records")
    _, text_a = to_text_pair(tuple(item_fields(records[0])))
    _, text_new = to_text_pair(tuple(item_fields(records[2])))
    assert "popularity: 100 of 100" in text_a and "popularity" not in text_new
    assert popularity_feature(text_a) == pytest.approx((100 - 50.5) / 28.866)
    assert popularity_feature(text_new) == 0.0  # outside the release: neutral


def test_reliability_is_the_share_of_the_released_spread_that_is_signal():
    rng = np.random.default_rng(1)
    signal = pd.Series(rng.normal(0, 30.0, size=5_000))
    assert item_popularity.reliability(signal, noise_multiplier=0.0, cap=10) == 1.0
    released = item_popularity.noisy(signal, noise_multiplier=3.0, cap=4, rng=rng)  # std 6
    assert item_popularity.reliability(released, noise_multiplier=3.0, cap=4) == \
        pytest.approx(900 / (900 + 36), abs=0.01)
    noise_only = item_popularity.noisy(signal * 0, noise_multiplier=3.0, cap=4, rng=rng)
    assert item_popularity.reliability(noise_only, noise_multiplier=3.0, cap=4) < 0.02
