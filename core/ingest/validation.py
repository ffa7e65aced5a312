"""Row validation: typed values out, and every bad row named with its reason.

Works on whole columns at once (a million rows validate in seconds). Each
rejected row gets the first reason that applies, so counts by reason add up
to the rows rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import columns as C
from core.config import PrivacyConfig
from core.ingest.readers import LINE_COLUMN, Reject

TRUE_WORDS = {"1", "true", "t", "yes", "y"}
FALSE_WORDS = {"0", "false", "f", "no", "n"}
EVENT_SYNONYMS = {"add-to-cart": "add_to_cart", "addtocart": "add_to_cart", "cart": "add_to_cart",
                  "add to cart": "add_to_cart", "order": "purchase", "buy": "purchase",
                  "transaction": "purchase", "pageview": "view", "page_view": "view",
                  "detail_view": "view"}


@dataclass
class Validated:
    frame: pd.DataFrame  # typed canonical columns + LINE_COLUMN, good rows only
    rejects: list[Reject]


def _text(values: pd.Series) -> pd.Series:
    """Strings, stripped, with '' and missing as None."""
    def clean(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # ids read as floats (Parquet, JSON) keep their integer form
        text = str(v).strip()
        return text or None
    return values.map(clean).astype(object)


def _number(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Numbers (accepting '$1,234.50' and '1,234'); returns (values, unparseable mask)."""
    text = _text(values)
    cleaned = text.str.replace(r"[$€£,\s]", "", regex=True)
    # A price range '$10.00-$20.00' counts as its lower end.
    cleaned = cleaned.str.replace(r"^(\d+(?:\.\d+)?)-\d+(?:\.\d+)?$", r"\1", regex=True)
    numbers = pd.to_numeric(cleaned, errors="coerce")
    return numbers, text.notna() & numbers.isna()


def _boolean(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = _text(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(TRUE_WORDS)] = True
    out[text.isin(FALSE_WORDS)] = False
    return out, text.notna() & out.isna()


def _timestamp(values: pd.Series, unit: str) -> tuple[pd.Series, pd.Series]:
    """Naive UTC timestamps; epoch seconds, epoch milliseconds or ISO 8601."""
    text = _text(values)
    numbers = pd.to_numeric(text, errors="coerce")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if unit in ("s", "ms", "auto"):
        is_ms = numbers > 1e11 if unit == "auto" else pd.Series(unit == "ms", index=values.index)
        for mask, u in ((numbers.notna() & is_ms, "ms"), (numbers.notna() & ~is_ms, "s")):
            if mask.any():
                out[mask] = pd.to_datetime(numbers[mask], unit=u, errors="coerce")
    if unit in ("iso", "auto"):
        strings = text.notna() & numbers.isna()
        if strings.any():
            parsed = pd.to_datetime(text[strings], errors="coerce", utc=True, format="mixed")
            out[strings] = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    return out, text.notna() & out.isna()


class _Checker:
    """Collects the first reason each row fails."""

    def __init__(self, frame: pd.DataFrame):
        self.reason = pd.Series(None, index=frame.index, dtype=object)

    def fail(self, mask: pd.Series, reason: str) -> None:
        self.reason[mask & self.reason.isna()] = reason


def validate(frame: pd.DataFrame, *, table: str, timestamp_unit: str = "auto",
             default_event_type: str = "purchase",
             privacy: PrivacyConfig | None = None,
             now: pd.Timestamp | None = None) -> Validated:
    """Type and check the canonical columns of one chunk of `table`."""
    privacy = privacy or PrivacyConfig()
    now = now or pd.Timestamp.now("UTC").tz_convert(None)
    check = _Checker(frame)
    out = pd.DataFrame(index=frame.index)
    out[LINE_COLUMN] = frame[LINE_COLUMN]
    present = set(frame.columns)

    for name in C.TABLE_FIELDS[table]:
        # An unmapped field is all-missing: defaults and required checks still apply.
        values = frame[name] if name in present else pd.Series(None, index=frame.index,
                                                                dtype=object)
        if name == C.TIMESTAMP:
            parsed, bad = _timestamp(values, timestamp_unit)
            check.fail(bad, "timestamp not understood")
            check.fail(parsed < pd.Timestamp(f"{privacy.earliest_year}-01-01"),
                       f"timestamp before {privacy.earliest_year}")
            check.fail(parsed > now + pd.Timedelta(days=privacy.max_future_skew_days),
                       "timestamp in the future")
        elif name == C.SIGNUP_DATE:
            parsed, bad = _timestamp(values, "auto")
            check.fail(bad, "signup date not understood")
            check.fail(parsed > now + pd.Timedelta(days=privacy.max_future_skew_days),
                       "signup date in the future")
        elif name == C.RATING:
            parsed, bad = _number(values)
            check.fail(bad, "rating is not a number")
            check.fail((parsed < 1) | (parsed > 5), "rating out of range 1-5")
        elif name == C.PRICE:
            parsed, bad = _number(values)
            check.fail(bad, "price is not a number")
            check.fail(parsed < 0, "price is negative")
        elif name == C.AGE:
            parsed, bad = _number(values)
            check.fail(bad, "age is not a number")
            check.fail((parsed < 0) | (parsed > 120), "age out of range 0-120")
        elif name == C.HELPFUL_VOTES:
            parsed, bad = _number(values)
            check.fail(bad, "helpful votes is not a number")
            parsed = parsed.round().astype("Int64")
        elif name in (C.PROMOTION, C.VERIFIED):
            parsed, bad = _boolean(values)
            check.fail(bad, f"{name} is not true/false")
        elif name == C.EVENT_TYPE:
            text = _text(values).str.lower()
            parsed = text.map(lambda v: EVENT_SYNONYMS.get(v, v) if v is not None else None)
            parsed = parsed.where(parsed.notna(), default_event_type)
            check.fail(~parsed.isin(C.EVENT_TYPES),
                       f"unknown event type (use one of {', '.join(C.EVENT_TYPES)})")
        else:
            parsed = _text(values)
        out[name] = parsed

    for name in C.REQUIRED_FIELDS[table]:
        if name in out.columns:
            check.fail(out[name].isna() & check.reason.isna(), f"missing {name}")

    bad = check.reason.notna()
    raw_rows = frame.loc[bad].drop(columns=[LINE_COLUMN]).to_dict("records")
    rejects = [Reject(int(line), reason, json.dumps(raw, default=str, ensure_ascii=False))
               for line, reason, raw in
               zip(out.loc[bad, LINE_COLUMN], check.reason[bad], raw_rows, strict=True)]
    return Validated(out.loc[~bad].reset_index(drop=True), rejects)
