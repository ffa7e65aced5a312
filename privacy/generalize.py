"""Generalization of quasi-identifiers and k-anonymity.

Age, place and signup date together can single a person out even without a
name. They are stored only generalized (age band, region, signup month) and,
across the whole customer table, coarsened step by step until every
combination is shared by at least k customers; the few customers still in
smaller groups have their attributes suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

AGE_BAND = "age_band"
REGION = "region"
SIGNUP_MONTH = "signup_month"
QUASI_IDENTIFIERS = (AGE_BAND, REGION, SIGNUP_MONTH)

AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64))
WIDE_AGE_BANDS = {"<18": "<18", "18-24": "18-34", "25-34": "18-34", "35-44": "35-54",
                  "45-54": "35-54", "55-64": "55+", "65+": "55+"}
MAX_SUPPRESSED_SHARE = 0.01  # suppress at most 1% of customers before coarsening further


def age_band(age: float | None) -> str | None:
    """'25-34' style band; None for a missing age."""
    if age is None or pd.isna(age):
        return None
    if age < 18:
        return "<18"
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}"
    return "65+"


def region_of(city: str | None, postcode: str | None, regions: dict[str, str]) -> str | None:
    """Region from the city (via `regions`, case-insensitive), else the postcode's
    first two characters (a postal district wide enough to hold many people)."""
    if city and not pd.isna(city):
        return regions.get(city.strip().lower(), "Other")
    if postcode and not pd.isna(postcode):
        return "PC-" + str(postcode).strip().upper()[:2]
    return None


def signup_month(ts: pd.Timestamp | None) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return f"{ts.year:04d}-{ts.month:02d}"


def _to_quarter(value: str | None) -> str | None:
    if value is None or pd.isna(value) or len(value) != 7 or value[4] != "-":
        return value  # already a quarter, a year, or missing
    return f"{value[:4]}-Q{(int(value[5:]) - 1) // 3 + 1}"


def _to_year(value: str | None) -> str | None:
    return value if value is None or pd.isna(value) else value[:4]


def _wide_age(value: str | None) -> str | None:
    return value if value is None or pd.isna(value) else WIDE_AGE_BANDS.get(value, value)


def _country(value: str | None) -> str | None:
    return value if value is None or pd.isna(value) else value.split("-")[0]


# Each step coarsens one attribute further; they apply cumulatively.
LADDER = (
    ("none", None, None),
    ("signup: quarter", SIGNUP_MONTH, _to_quarter),
    ("signup: year", SIGNUP_MONTH, _to_year),
    ("age: wide bands", AGE_BAND, _wide_age),
    ("region: country", REGION, _country),
    # Last resort before suppressing whole customers: drop the signup date for everyone.
    ("signup: removed", SIGNUP_MONTH, lambda value: None),
)


@dataclass(frozen=True)
class AnonymityReport:
    k_target: int
    k_reached: int | None  # smallest group among customers with attributes; None if none
    generalization: str
    suppressed: int


def smallest_group(frame: pd.DataFrame) -> int | None:
    """Size of the smallest group of identical quasi-identifier values, ignoring
    customers with no attributes at all (nothing to link them by)."""
    known = frame[list(QUASI_IDENTIFIERS)].dropna(how="all")
    if known.empty:
        return None
    return int(known.astype(object).where(known.notna(), "∅").value_counts().min())


def enforce_k_anonymity(frame: pd.DataFrame, *, k: int) -> tuple[pd.DataFrame, AnonymityReport]:
    """Coarsen along LADDER until at most 1% of customers sit in groups smaller
    than k, then suppress (set to missing) the attributes of those few.

    `frame` has the QUASI_IDENTIFIERS columns (and any others, kept as they are)."""
    out = frame.copy()
    qi = list(QUASI_IDENTIFIERS)
    applied = "none"
    for name, column, coarsen in LADDER:
        if column is not None:
            out[column] = out[column].map(coarsen)
            applied = name
        has_any = out[qi].notna().any(axis=1)
        filled = out[qi].astype(object).where(out[qi].notna(), "∅").astype(str)
        group_key = filled[qi[0]] + "|" + filled[qi[1]] + "|" + filled[qi[2]]
        sizes = group_key.map(group_key.value_counts())
        small = has_any & (sizes < k)
        if small.sum() <= MAX_SUPPRESSED_SHARE * len(out):
            break
    out.loc[small, qi] = None
    report = AnonymityReport(k_target=k, k_reached=smallest_group(out),
                             generalization=applied, suppressed=int(small.sum()))
    return out, report
