"""The built-in generator: files, determinism, and the planted behaviour that makes
the data learnable."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pytest

from core import columns as C
from core.synthetic.generator import (
    GeneratedFiles,
    GeneratorConfig,
    generate,
    promotion_windows,
)
from core.synthetic.vocabulary import (
    CATEGORIES,
    CITIES,
    CITY_REGIONS,
    FIRST_NAMES,
    LAST_NAMES,
    NEGATIVE_ASPECT,
    NEGATIVE_GENERAL,
    NEUTRAL_ASPECT,
    POSITIVE_ASPECT,
    POSITIVE_GENERAL,
)

SMALL = GeneratorConfig(customers=200, items=60, seed=7)
# Larger and with more reviews, for the statistical checks.
STATS = GeneratorConfig(customers=1500, items=200, review_rate=0.6, pii_in_review_rate=0.2,
                        seed=11)
COLUMNS = {
    "customers": [C.CUSTOMER_ID, C.NAME, C.EMAIL, C.PHONE, C.AGE, C.CITY, C.SIGNUP_DATE],
    "items": [C.ITEM_ID, C.TITLE, C.BRAND, C.CATEGORY, C.PRICE, C.DESCRIPTION],
    "events": [C.CUSTOMER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP, C.PROMOTION],
    "reviews": [C.CUSTOMER_ID, "customer_name", C.ITEM_ID, C.RATING, C.TIMESTAMP, C.SUMMARY,
                C.TEXT],
}
PHONE_REGIONS = {"US": "US", "CA": "CA", "UK": "GB", "DE": "DE", "FR": "FR", "ES": "ES",
                 "IT": "IT", "NL": "NL", "IE": "IE", "AU": "AU"}


def _read(files: GeneratedFiles) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(p, dtype={C.CUSTOMER_ID: str, C.ITEM_ID: str},
                           keep_default_na=False)
            for t, p in files.tables.items()}


def _bank_regex(templates: tuple[str, ...]) -> re.Pattern[str]:
    """A regex matching any sentence of a phrase bank, placeholders filled."""
    parts = [re.escape(t).replace(re.escape("{aspect}"), "[^.]+?")
             .replace(re.escape("{noun}"), "[^.]+?") for t in templates]
    return re.compile("|".join(f"(?:{p})" for p in parts))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GeneratedFiles:
    return generate(SMALL, tmp_path_factory.mktemp("small"), progress=False)


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedFiles,
                                                             dict[str, pd.DataFrame]]:
    files = generate(STATS, tmp_path_factory.mktemp("stats"), progress=False)
    return files, _read(files)


# --- files ---------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
        small: GeneratedFiles, tmp_path: Path) -> None:
    again = generate(SMALL, tmp_path / "again", progress=False)
    written = sorted(p.relative_to(small.out_dir) for p in small.out_dir.rglob("*")
                     if p.is_file())
    assert written == sorted(p.relative_to(again.out_dir) for p in again.out_dir.rglob("*")
                             if p.is_file())
    for rel in written:
        assert (small.out_dir / rel).read_bytes() == (again.out_dir / rel).read_bytes(), rel

    other = generate(GeneratorConfig(customers=200, items=60, seed=8), tmp_path / "other",
                     progress=False)
    for table in ("customers", "items", "events", "reviews"):
        assert other.tables[table].read_bytes() != small.tables[table].read_bytes(), table


def test_files_rows_and_columns(small: GeneratedFiles) -> None:
    frames = _read(small)
    assert set(frames) == {"customers", "items", "events", "reviews"}
    for table, frame in frames.items():
        assert list(frame.columns) == COLUMNS[table], table
        assert len(frame) == small.rows[table], table
        assert small.tables[table] == small.out_dir / f"{table}.csv"
    assert small.rows["customers"] == 200
    assert small.rows["items"] == 60
    # About 10 events per customer on average.
    assert 6 * 200 < small.rows["events"] < 15 * 200
    assert small.rows["reviews"] > 0
    assert "200 customers" in str(small)


def test_mapping_files_name_canonical_fields_and_existing_columns(
        small: GeneratedFiles) -> None:
    for table, path in small.mappings.items():
        assert path == small.out_dir / f"{table}.mapping.toml"
        mapping = tomllib.loads(path.read_text(encoding="utf-8"))
        assert mapping["table"] == table
        columns = mapping["columns"]
        assert set(columns) <= set(C.TABLE_FIELDS[table])
        assert set(C.REQUIRED_FIELDS[table]) <= set(columns)
        header = small.tables[table].read_text(encoding="utf-8").splitlines()[0].split(",")
        assert set(columns.values()) <= set(header), table
    reviews = tomllib.loads(small.mappings["reviews"].read_text(encoding="utf-8"))
    assert reviews["columns"][C.NAME] == "customer_name"


def test_truth_lies_outside_the_ingested_files(small: GeneratedFiles) -> None:
    truth = small.truth_dir
    assert truth == small.out_dir / "truth"
    assert not list(truth.glob("*.mapping.toml"))
    assert not list(small.out_dir.glob("*.parquet")) and not list(small.out_dir.glob("*.json"))
    meta = json.loads((truth / "truth.json").read_text(encoding="utf-8"))
    assert meta["config"]["seed"] == 7 and meta["config"]["customers"] == 200
    assert "never ingest" in meta["note"].lower()
    customers = pd.read_parquet(truth / "customers.parquet")
    prefs = customers[[f"pref_{c.name}" for c in CATEGORIES]].to_numpy()
    assert len(customers) == 200
    np.testing.assert_allclose(prefs.sum(axis=1), 1.0)
    assert {"price_sensitivity", "promo_sensitivity", "price_level"} <= set(customers.columns)
    items = pd.read_parquet(truth / "items.parquet")
    assert len(items) == 60 and "quality" in items.columns


def test_customers_look_like_a_real_export(small: GeneratedFiles) -> None:
    customers = _read(small)["customers"]
    assert customers[C.CUSTOMER_ID].is_unique
    assert customers[C.CUSTOMER_ID].str.fullmatch(r"C\d{6}").all()
    assert customers[C.EMAIL].is_unique
    assert customers[C.EMAIL].str.fullmatch(r"[a-z0-9._]+@([a-z]+\.)?example\.(com|org|net)").all()
    assert customers[C.AGE].between(18, 85).all()
    assert customers[C.CITY].isin(list(CITY_REGIONS)).all()
    country = {c.name: c.country for c in CITIES}
    for phone, city in zip(customers[C.PHONE], customers[C.CITY], strict=True):
        number = phonenumbers.parse(phone, PHONE_REGIONS[country[city]])
        assert phonenumbers.is_valid_number(number), (phone, city)
    assert customers[C.PHONE].str.startswith("+").any()
    assert (~customers[C.PHONE].str.startswith("+")).any()  # national formats too


def test_embedded_vocabulary_is_big_enough() -> None:
    assert len(set(FIRST_NAMES)) >= 100 and len(set(LAST_NAMES)) >= 100
    assert len(CITIES) >= 40 and set(CITY_REGIONS) == {c.name for c in CITIES}
    assert len(CATEGORIES) >= 8
    for spec in CATEGORIES:
        assert len(spec.aspects) >= 5 and len(spec.brands) >= 5, spec.name
    for bank in (POSITIVE_ASPECT, NEUTRAL_ASPECT, NEGATIVE_ASPECT, POSITIVE_GENERAL,
                 NEGATIVE_GENERAL):
        assert len(set(bank)) >= 20


def test_items_have_informative_text(small: GeneratedFiles) -> None:
    items = _read(small)["items"]
    assert items[C.ITEM_ID].str.fullmatch(r"P\d{5}").all() and items[C.TITLE].is_unique
    by_name = {c.name: c for c in CATEGORIES}
    for row in items.itertuples(index=False):
        spec = by_name[row.category]
        assert row.brand in spec.brands and row.title.startswith(row.brand)
        assert any(noun in row.title for noun in spec.nouns)
        assert row.description and row.price > 0


# --- time and funnel -------------------------------------------------------------------


def test_timestamps_increase_per_customer_and_lie_in_range(small: GeneratedFiles) -> None:
    frames = _read(small)
    events = frames["events"]
    ts = pd.to_datetime(events[C.TIMESTAMP], format="%Y-%m-%dT%H:%M:%S")
    assert ts.min() >= pd.Timestamp(SMALL.start)
    assert ts.max() < pd.Timestamp(SMALL.end + timedelta(days=1))
    same = events[C.CUSTOMER_ID].to_numpy()[1:] == events[C.CUSTOMER_ID].to_numpy()[:-1]
    assert (np.diff(ts.to_numpy().astype("int64"))[same] > 0).all()
    counts = events.groupby(C.CUSTOMER_ID).size()
    assert counts.min() >= 2 and len(counts) == SMALL.customers
    # Signed up before the first event.
    customers = frames["customers"].set_index(C.CUSTOMER_ID)
    first = ts.groupby(events[C.CUSTOMER_ID]).min().dt.normalize()
    signup = pd.to_datetime(customers[C.SIGNUP_DATE], format="%Y-%m-%d")
    assert (signup.loc[first.index] < first).all()
    reviews = frames["reviews"]
    review_ts = pd.to_datetime(reviews[C.TIMESTAMP], format="%Y-%m-%dT%H:%M:%S")
    assert review_ts.max() < pd.Timestamp(SMALL.end + timedelta(days=1))


def test_purchase_follows_view_click_and_cart_of_the_same_item(small: GeneratedFiles) -> None:
    events = _read(small)["events"]
    kinds = events[C.EVENT_TYPE].to_numpy()
    assert set(kinds) == {"view", "click", "add_to_cart", "purchase"}
    customer, item = events[C.CUSTOMER_ID].to_numpy(), events[C.ITEM_ID].to_numpy()
    ts = pd.to_datetime(events[C.TIMESTAMP]).to_numpy()
    for i in np.flatnonzero(kinds == "purchase"):
        assert list(kinds[i - 3:i]) == ["view", "click", "add_to_cart"]
        assert (customer[i - 3:i + 1] == customer[i]).all()
        assert (item[i - 3:i + 1] == item[i]).all()
        assert ts[i] - ts[i - 3] < np.timedelta64(1, "h")  # one session
    # Each step of the funnel is rarer than the one before.
    counts = pd.Series(kinds).value_counts()
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"]


def test_promotion_flag_matches_the_windows(stats) -> None:
    _, frames = stats
    events = frames["events"]
    day = pd.to_datetime(events[C.TIMESTAMP]).dt.date
    windows = promotion_windows(STATS.start, STATS.end)
    inside = day.map(lambda d: any(first <= d <= last for _, first, last in windows))
    assert (events[C.PROMOTION].astype(bool) == inside).all()
    assert 0.05 < events[C.PROMOTION].mean() < 0.6
    names = {(name, first.year) for name, first, _ in windows}
    assert ("Black Friday week", 2024) in names and len(windows) == 4 * 3
    black_friday = next(w for w in windows if w[0] == "Black Friday week" and w[1].year == 2024)
    assert black_friday[1] <= date(2024, 11, 29) <= black_friday[2]  # Black Friday 2024


def test_promotions_raise_the_purchase_rate(stats) -> None:
    _, frames = stats
    events = frames["events"]
    rate = (events[C.EVENT_TYPE] == "purchase").groupby(events[C.PROMOTION]).sum() / (
        events[C.EVENT_TYPE] == "view").groupby(events[C.PROMOTION]).sum()
    assert rate[1] > 1.15 * rate[0]


# --- learnable behaviour -------------------------------------------------------------


def test_purchases_follow_the_latent_category_preference(stats) -> None:
    files, frames = stats
    truth = pd.read_parquet(files.truth_dir / "customers.parquet").set_index("customer_id")
    items = frames["items"].set_index(C.ITEM_ID)
    purchases = frames["events"][frames["events"][C.EVENT_TYPE] == "purchase"]
    category = items.loc[purchases[C.ITEM_ID], C.CATEGORY].to_numpy()
    top = truth.loc[purchases[C.CUSTOMER_ID], "top_category"].to_numpy()
    share = pd.Series(category == top).groupby(purchases[C.CUSTOMER_ID].to_numpy()).mean()
    assert share.mean() > 2.5 / len(CATEGORIES)


def test_stars_follow_planted_quality(stats) -> None:
    files, frames = stats
    quality = pd.read_parquet(files.truth_dir / "items.parquet").set_index("item_id")["quality"]
    reviews = frames["reviews"]
    rho = pd.Series(reviews[C.RATING].to_numpy()).corr(
        pd.Series(quality.loc[reviews[C.ITEM_ID]].to_numpy()), method="spearman")
    assert rho > 0.3
    assert set(reviews[C.RATING]) == {1, 2, 3, 4, 5}


def test_text_agrees_with_stars(stats) -> None:
    _, frames = stats
    reviews = frames["reviews"]
    stars = reviews[C.RATING]
    positive = reviews[C.TEXT].str.contains(_bank_regex(POSITIVE_GENERAL))
    negative = reviews[C.TEXT].str.contains(_bank_regex(NEGATIVE_GENERAL))
    positive_aspect = reviews[C.TEXT].str.contains(_bank_regex(POSITIVE_ASPECT))
    assert positive.sum() > 50 and negative.sum() > 20
    assert (stars[positive] >= 4).mean() > 0.95
    assert (stars[negative] <= 2).mean() > 0.95
    assert (stars[positive_aspect] >= 4).mean() > 0.8
    assert reviews[C.SUMMARY].str.len().between(2, 40).all()


def test_some_reviews_carry_the_reviewers_personal_data(stats) -> None:
    files, frames = stats
    reviews = frames["reviews"]
    customers = frames["customers"].set_index(C.CUSTOMER_ID)
    pii = pd.read_parquet(files.truth_dir / "review_pii.parquet")
    assert set(pii["kind"]) == {"name", "email", "phone"}
    assert 0.1 < len(pii) / len(reviews) < 0.3  # rate 0.2
    for row in pii.itertuples(index=False):
        review = reviews.iloc[row.review_row]
        assert review[C.CUSTOMER_ID] == row.customer_id
        assert row.value in review[C.TEXT]
        person = customers.loc[row.customer_id]
        if row.kind == "name":
            assert row.value in person[C.NAME]
        else:
            assert row.value == person[C.EMAIL if row.kind == "email" else C.PHONE]
    # And no review that the truth does not list mentions an e-mail address.
    listed = set(pii["review_row"])
    others = reviews.drop(index=list(listed))
    assert not others[C.TEXT].str.contains("@").any()


def test_default_pii_rate_still_mentions_someone(tmp_path: Path) -> None:
    files = generate(GeneratorConfig(customers=1000, items=100, seed=3), tmp_path,
                     progress=False)
    pii = pd.read_parquet(files.truth_dir / "review_pii.parquet")
    assert 0 < len(pii) < 0.15 * files.rows["reviews"]


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"customers": 0}, "customers=0"),
    ({"items": 5}, "items=5"),
    ({"review_rate": 1.5}, "review_rate=1.5"),
    ({"events_per_customer": 1.0}, "events_per_customer=1.0"),
    ({"start": date(2025, 1, 1), "end": date(2024, 1, 1)}, "swap"),
])
def test_bad_configuration_is_refused_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        GeneratorConfig(**kwargs)


def test_short_range_and_tiny_sizes_still_work(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=50, items=20, events_per_customer=30,
                             start=date(2024, 3, 1), end=date(2024, 3, 3), seed=1)
    files = generate(config, tmp_path, progress=False)
    events = _read(files)["events"]
    ts = pd.to_datetime(events[C.TIMESTAMP])
    assert ts.min() >= pd.Timestamp("2024-03-01") and ts.max() < pd.Timestamp("2024-03-04")
    assert (events[C.PROMOTION] == 0).all()  # no promotion window in those days
