import pandas as pd

from privacy.generalize import (
    age_band,
    enforce_k_anonymity,
    region_of,
    signup_month,
    smallest_group,
)


def test_age_bands():
    assert [age_band(a) for a in (15, 18, 24, 25, 44, 64, 65, 90)] == [
        "<18", "18-24", "18-24", "25-34", "35-44", "55-64", "65+", "65+"]
    assert age_band(None) is None


def test_region_from_city_then_postcode():
    regions = {"berlin": "DE"}
    assert region_of("Berlin", None, regions) == "DE"
    assert region_of("Smallville", None, regions) == "Other"
    assert region_of(None, "sw1a 1aa", regions) == "PC-SW"
    assert region_of(None, None, regions) is None


def test_signup_month():
    assert signup_month(pd.Timestamp("2024-03-17 10:00")) == "2024-03"
    assert signup_month(None) is None


def _frame(rows):
    return pd.DataFrame(rows, columns=["user_pseudonym", "age_band", "region", "signup_month"])


def test_k_reached_without_generalizing_when_groups_are_big():
    rows = [(f"u{i}", "25-34", "DE", "2024-01") for i in range(5)]
    out, report = enforce_k_anonymity(_frame(rows), k=5)
    assert report.k_reached == 5 and report.generalization == "none" and report.suppressed == 0
    assert out["signup_month"].tolist() == ["2024-01"] * 5


def test_generalizes_signup_until_k_holds():
    # Five customers, each signed up in another month of Q1 2024: only the
    # quarter makes them indistinguishable.
    rows = [(f"u{i}", "25-34", "DE", f"2024-0{1 + i % 3}") for i in range(6)]
    out, report = enforce_k_anonymity(_frame(rows), k=5)
    assert report.k_reached >= 5
    assert set(out["signup_month"]) == {"2024-Q1"}


def test_suppresses_the_last_outliers_and_never_leaves_a_small_group():
    rows = [(f"u{i}", "25-34", "DE", "2024-01") for i in range(200)]
    rows.append(("odd", "65+", "UK", "2019-07"))
    out, report = enforce_k_anonymity(_frame(rows), k=5)
    assert report.suppressed == 1
    assert out.loc[out.user_pseudonym == "odd", ["age_band", "region", "signup_month"]
                   ].isna().all(axis=None)
    assert smallest_group(out) >= 5
