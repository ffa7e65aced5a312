"""What a source file means: which table it feeds and which of its columns
are which canonical field.

Three kinds of source: Amazon review data (2018 and 2023 formats, detected
from the record keys), and any CSV/JSON/Parquet export described by a small
mapping file (TOML). Columns that no mapping names are never read further:
whatever a customer export carries beyond what the product needs is dropped
at the door and reported.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core import columns as C
from core.ingest.readers import LINE_COLUMN, SourceError

Transform = Callable[[pd.DataFrame], pd.Series]  # whole source frame -> canonical column
TIMESTAMP_UNITS = ("auto", "iso", "s", "ms")


@dataclass(frozen=True)
class SourceSpec:
    """How one source file maps onto one warehouse table."""

    name: str  # 'amazon-2018-reviews', 'mapped', ...
    table: str
    columns: dict[str, str]  # canonical field -> source column
    transforms: dict[str, Transform] = field(default_factory=dict)
    timestamp_unit: str = "auto"
    default_event_type: str = "purchase"
    review_is_event: bool = False  # a review also counts as an interaction (Amazon)
    regions: dict[str, str] = field(default_factory=dict)  # city (lower case) -> region
    also_reads: tuple[str, ...] = ()  # source columns read by transforms


    def to_canonical(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """The canonical columns of `frame`, and the source columns dropped."""
        out = pd.DataFrame(index=frame.index)
        for canonical, source in self.columns.items():
            transform = self.transforms.get(canonical)
            out[canonical] = transform(frame) if transform else _column(frame, source)
        out[LINE_COLUMN] = frame[LINE_COLUMN]
        used = set(self.columns.values()) | set(self.also_reads) | {LINE_COLUMN}
        dropped = sorted(c for c in frame.columns if c not in used)
        return out, dropped


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series(None, index=frame.index, dtype=object)


# --- Amazon review data ----------------------------------------------------------

def _last_specific(values: pd.Series) -> pd.Series:
    """The most specific entry of a category path list (['A', 'A > B'] -> last)."""
    def pick(v: object) -> object:
        if isinstance(v, list | tuple):
            items = [str(x).strip() for x in v if str(x).strip()]
            return items[-1] if items else None
        return v
    return values.map(pick)


def _joined(values: pd.Series) -> pd.Series:
    def join(v: object) -> object:
        if isinstance(v, list | tuple):
            text = " ".join(str(x).strip() for x in v if str(x).strip())
            return text or None
        return v
    return values.map(join)


def _first_present(first: pd.Series, second: pd.Series) -> pd.Series:
    present = first.notna() & (first.astype(str).str.strip() != "")
    return first.where(present, second)


def _category_then(fallback: str, source: str) -> Transform:
    return lambda f: _first_present(_last_specific(_column(f, source)), _column(f, fallback))


def _text_then(fallback: str) -> Transform:
    return lambda f: _first_present(_joined(_column(f, "description")),
                                    _joined(_column(f, fallback)))


AMAZON_2018_REVIEWS = SourceSpec(
    name="amazon-2018-reviews", table="reviews", timestamp_unit="s", review_is_event=True,
    columns={C.CUSTOMER_ID: "reviewerID", C.ITEM_ID: "asin", C.RATING: "overall",
             C.TEXT: "reviewText", C.SUMMARY: "summary", C.TIMESTAMP: "unixReviewTime",
             C.NAME: "reviewerName", C.VERIFIED: "verified", C.HELPFUL_VOTES: "vote"},
)
AMAZON_2018_META = SourceSpec(
    name="amazon-2018-meta", table="items",
    columns={C.ITEM_ID: "asin", C.TITLE: "title", C.BRAND: "brand", C.CATEGORY: "category",
             C.PRICE: "price", C.DESCRIPTION: "description"},
    transforms={C.CATEGORY: _category_then("main_cat", "category"),
                C.DESCRIPTION: _text_then("feature")},
    also_reads=("main_cat", "feature"),
)
AMAZON_2023_REVIEWS = SourceSpec(
    name="amazon-2023-reviews", table="reviews", timestamp_unit="ms", review_is_event=True,
    columns={C.CUSTOMER_ID: "user_id", C.ITEM_ID: "parent_asin", C.RATING: "rating",
             C.SUMMARY: "title", C.TEXT: "text", C.TIMESTAMP: "timestamp",
             C.VERIFIED: "verified_purchase", C.HELPFUL_VOTES: "helpful_vote"},
)
AMAZON_2023_META = SourceSpec(
    name="amazon-2023-meta", table="items",
    columns={C.ITEM_ID: "parent_asin", C.TITLE: "title", C.BRAND: "store",
             C.CATEGORY: "categories", C.PRICE: "price", C.DESCRIPTION: "description"},
    transforms={C.CATEGORY: _category_then("main_category", "categories"),
                C.DESCRIPTION: _text_then("features")},
    also_reads=("main_category", "features"),
)
AMAZON_SPECS = {s.name: s for s in
                (AMAZON_2018_REVIEWS, AMAZON_2018_META, AMAZON_2023_REVIEWS, AMAZON_2023_META)}


def detect_amazon(frame: pd.DataFrame) -> SourceSpec | None:
    """Recognise Amazon review data from its keys."""
    keys = set(frame.columns)
    if {"reviewerID", "asin", "overall"} <= keys:
        return AMAZON_2018_REVIEWS
    if {"user_id", "parent_asin", "rating"} <= keys:
        return AMAZON_2023_REVIEWS
    if {"parent_asin", "main_category"} <= keys or {"parent_asin", "categories"} <= keys:
        return AMAZON_2023_META
    if {"asin", "title"} <= keys and "reviewerID" not in keys:
        return AMAZON_2018_META
    return None


# --- Mapping files ------------------------------------------------------------------

MAPPING_SUFFIX = ".mapping.toml"


def mapping_path_for(path: Path) -> Path:
    """`events.csv` -> `events.mapping.toml` beside it (the default mapping file)."""
    stem = path.name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".jsonl", ".json", ".ndjson", ".parquet"):
        stem = stem.removesuffix(suffix)
    return path.with_name(stem + MAPPING_SUFFIX)


def load_mapping(path: Path) -> SourceSpec:
    """Read a mapping file; every mistake is reported with the fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SourceError(f"{path}: mapping file not found.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{path}: not valid TOML ({exc}).") from exc
    table = raw.get("table")
    if table not in C.TABLE_FIELDS:
        raise SourceError(f"{path}: `table` must be one of {sorted(C.TABLE_FIELDS)}, "
                          f"not {table!r}.")
    mapped = raw.get("columns", {})
    unknown = sorted(set(mapped) - set(C.TABLE_FIELDS[table]))
    if unknown:
        raise SourceError(f"{path}: unknown field(s) {unknown} for table {table!r}; "
                          f"the fields are {list(C.TABLE_FIELDS[table])}.")
    missing = [f for f in C.REQUIRED_FIELDS[table] if f not in mapped]
    if missing:
        raise SourceError(f"{path}: table {table!r} needs a column for {missing}: add "
                          f"e.g. `{missing[0]} = \"<your column>\"` under [columns].")
    options = raw.get("options", {})
    unit = options.get("timestamp_unit", "auto")
    if unit not in TIMESTAMP_UNITS:
        raise SourceError(f"{path}: options.timestamp_unit must be one of {TIMESTAMP_UNITS}.")
    event_type = options.get("default_event_type", "purchase")
    if event_type not in C.EVENT_TYPES:
        raise SourceError(f"{path}: options.default_event_type must be one of {C.EVENT_TYPES}.")
    regions = {str(k).strip().lower(): str(v) for k, v in raw.get("regions", {}).items()}
    return SourceSpec(name="mapped", table=table, columns=dict(mapped), timestamp_unit=unit,
                      default_event_type=event_type,
                      review_is_event=bool(options.get("review_is_event", False)),
                      regions=regions)

