"""The model's input as named fields, and its serialization to text.

A recommendation input is a customer's recent history, the context of the
moment and one candidate item. Each piece is a `Field` with a stable name,
so that an explanation can remove whole fields (`mask`) and attribute the
score to them. The cross-encoder reads a text pair: side "a" is history and
context, side "b" is the candidate.

Field names:
  h1..hN            history items, most recent first
                    ("purchased: <title> | <category> | <brand> | <price band>")
  ctx_season        "season: winter"
  ctx_day           "day: weekend" / "day: weekday"
  ctx_promotion     "promotion: on" / "promotion: off" (absent where unknown)
  item_title, item_category, item_brand, item_price, item_description
  item_popularity   "popularity: 73 of 100": the item's percentile among the items of
                    the run's DP-released counts (`core.recommender.item_popularity`); absent for
                    items outside the release. The model reads it as text and as
                    numbers (`popularity_feature`, `popularity_log_feature`), so
                    masking the field removes all of them.
  item_co_visits    "bought with history: 0.412": how often customers bought the candidate
                    together with the history items shown (`core.recommender.co_visits`; non-private
                    models only). A number only: `encoder_text` removes it from what the
                    encoder reads, `co_visit_feature` parses it; masking removes it.
  item_category_share
                    "recent items in its category: 3 of 5": how many of the history items
                    shown share the candidate's category (models that read it). Built
                    from the customer's own history and the catalogue only, so DP and
                    non-private models alike read it. A number only, like the co-visits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

SEPARATOR = " ; "
HISTORY_PREFIX = "h"
CONTEXT_FIELDS = ("ctx_season", "ctx_day", "ctx_promotion")
ITEM_FIELDS = ("item_title", "item_category", "item_brand", "item_price", "item_description",
               "item_popularity", "item_category_share", "item_co_visits")
POPULARITY_TEXT = re.compile(r"^popularity: (\d{1,3}) of 100$")
# Read as numbers only; the encoder never sees them.
NUMBER_ONLY_FIELDS = ("item_category_share", "item_co_visits")
CO_VISITS_LABEL = "bought with history"
CO_VISITS_TEXT = re.compile(rf"^{CO_VISITS_LABEL}: (\d+(?:\.\d+)?)$")
CATEGORY_SHARE_LABEL = "recent items in its category"
CATEGORY_SHARE_TEXT = re.compile(rf"^{CATEGORY_SHARE_LABEL}: (\d+) of (\d+)$")
_NUMBER_ONLY_TEXT = (CO_VISITS_TEXT, CATEGORY_SHARE_TEXT)
DESCRIPTION_WORDS = 24  # a snippet: enough to say what the item is, cheap to encode
EVENT_VERBS = {"view": "viewed", "click": "clicked", "add_to_cart": "added to cart",
               "purchase": "purchased", "review": "reviewed"}
SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
           6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}


@dataclass(frozen=True)
class Field:
    name: str
    side: str  # "a" (history and context) or "b" (candidate)
    text: str


ModelInput = tuple[Field, ...]


def price_band(price: float | None) -> str:
    """Coarse bands read better than numbers for a text model."""
    if price is None or pd.isna(price):
        return "price unknown"
    for limit, band in ((10, "under $10"), (25, "$10-25"), (50, "$25-50"), (100, "$50-100"),
                        (250, "$100-250")):
        if price < limit:
            return band
    return "over $250"


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def item_summary(item: Mapping[str, object]) -> str:
    """One line per history item: title | category | brand | price band."""
    parts = [_clean(item.get("title")) or str(item.get("item_id")),
             _clean(item.get("category")), _clean(item.get("brand")),
             price_band(item.get("price"))]
    return " | ".join(p for p in parts if p)


def history_fields(history: Iterable[tuple[str, Mapping[str, object]]]) -> list[Field]:
    """`history` is (event_type, item) pairs, most recent first."""
    return [Field(f"{HISTORY_PREFIX}{i}", "a", f"{EVENT_VERBS.get(kind, kind)}: "
                  f"{item_summary(item)}")
            for i, (kind, item) in enumerate(history, start=1)]


def context_fields(ts: pd.Timestamp | None, promotion: bool | None) -> list[Field]:
    fields = []
    if ts is not None and not pd.isna(ts):
        fields.append(Field("ctx_season", "a", f"season: {SEASONS[ts.month]}"))
        fields.append(Field("ctx_day", "a", "day: weekend" if ts.day_of_week >= 5
                            else "day: weekday"))
    if promotion is not None and not pd.isna(promotion):
        fields.append(Field("ctx_promotion", "a",
                            f"promotion: {'on' if promotion else 'off'}"))
    return fields


def category_key(item: Mapping[str, object]) -> str | None:
    """The item's category as categories compare: without case and surrounding space;
    None where it has none."""
    category = _clean(item.get("category"))
    return None if category is None else category.casefold()


def category_share(history: Iterable[tuple[str, Mapping[str, object]]],
                   candidate: Mapping[str, object]) -> tuple[int, int] | None:
    """(history items in the candidate's category, history items) of the history shown;
    None where there is no history or the candidate has no category (`category_key`); a
    history item without one counts as another."""
    key = category_key(candidate)
    items = [item for _, item in history]
    if key is None or not items:
        return None
    return sum(category_key(item) == key for item in items), len(items)


def item_fields(item: Mapping[str, object], *, co_visits: float | None = None,
                share: tuple[int, int] | None = None) -> list[Field]:
    """The candidate's fields; `co_visits` (None: the model reads none) is its
    `core.recommender.co_visits` score against the history shown, `share` its `category_share`
    (None: no field)."""
    description = _clean(item.get("description"))
    if description:
        description = " ".join(description.split()[:DESCRIPTION_WORDS])
    values = {
        "item_title": _clean(item.get("title")) or str(item.get("item_id")),
        "item_category": _clean(item.get("category")),
        "item_brand": _clean(item.get("brand")),
        "item_price": price_band(item.get("price")),
        "item_description": description,
        "item_popularity": _percentile(item.get("popularity")),
    }
    labels = {"item_title": "title", "item_category": "category", "item_brand": "brand",
              "item_price": "price", "item_description": "about",
              "item_popularity": "popularity"}
    fields = [Field(name, "b", f"{labels[name]}: {value}") for name, value in values.items()
              if value]
    if share is not None:
        fields.append(Field("item_category_share", "b",
                            f"{CATEGORY_SHARE_LABEL}: {share[0]} of {share[1]}"))
    if co_visits is not None:
        fields.append(Field("item_co_visits", "b", f"{CO_VISITS_LABEL}: {co_visits:.3f}"))
    return fields


def _percentile(value: object) -> str | None:
    if value is None or pd.isna(value):
        return None
    return f"{int(value)} of 100"


def _number(text_b: str, pattern: re.Pattern) -> float | None:
    """The number of the candidate side's field that `pattern` matches (None: absent);
    a pattern with two groups reads "k of n" as k / n."""
    for part in text_b.split(SEPARATOR):
        match = pattern.match(part)
        if match:
            if pattern.groups == 2:
                return float(match.group(1)) / max(float(match.group(2)), 1.0)
            return float(match.group(1))
    return None


def popularity_feature(text_b: str) -> float:
    """The candidate side's popularity percentile as a centred, unit-variance number
    ((p - 50.5) / 28.87 for p uniform on 1..100); 0 where the field is absent."""
    percentile = _number(text_b, POPULARITY_TEXT)
    return 0.0 if percentile is None else (percentile - 50.5) / 28.866


def popularity_log_feature(text_b: str) -> float:
    """The candidate side's popularity percentile p as -log((101 - p) / 100) - 1: about
    the log of the item's count where popularity falls off like a power of the rank
    (as shop catalogues' does), so it separates the head of the catalogue, where the
    percentile barely moves (p 100 -> 3.6, 99 -> 2.9, 90 -> 1.3, 50 -> -0.3, 1 -> -1);
    centred on 0 for p uniform; 0 where the field is absent."""
    percentile = _number(text_b, POPULARITY_TEXT)
    return 0.0 if percentile is None else -math.log((101.0 - percentile) / 100.0) - 1.0


def co_visit_feature(text_b: str) -> float:
    """The candidate side's co-visit score (0 where the field is absent)."""
    return _number(text_b, CO_VISITS_TEXT) or 0.0


def category_share_feature(text_b: str) -> float:
    """The candidate side's category share k / n in [0, 1] (0 where the field is absent)."""
    return _number(text_b, CATEGORY_SHARE_TEXT) or 0.0


def encoder_text(text_b: str) -> str:
    """The candidate side as the encoder reads it: without the number-only fields (co-
    visits, category share), which the model reads as numbers only (so the encoder's
    states stay one per item, cached)."""
    if CO_VISITS_LABEL not in text_b and CATEGORY_SHARE_LABEL not in text_b:
        return text_b
    return SEPARATOR.join(p for p in text_b.split(SEPARATOR)
                          if not any(t.match(p) for t in _NUMBER_ONLY_TEXT))


def build_input(history: Sequence[tuple[str, Mapping[str, object]]],
                ts: pd.Timestamp | None, promotion: bool | None,
                candidate: Mapping[str, object], *, co_visits: float | None = None,
                with_share: bool = False) -> ModelInput:
    """`with_share`: add the candidate's `category_share` field (models that read it)."""
    share = category_share(history, candidate) if with_share else None
    return (*history_fields(history), *context_fields(ts, promotion),
            *item_fields(candidate, co_visits=co_visits, share=share))


def to_text_pair(fields: ModelInput, *, masked: frozenset[str] = frozenset()) -> tuple[str, str]:
    """The (history + context, candidate) text pair with the `masked` fields removed."""
    a = SEPARATOR.join(f.text for f in fields if f.side == "a" and f.name not in masked)
    b = SEPARATOR.join(f.text for f in fields if f.side == "b" and f.name not in masked)
    return a, b


def field_kind(name: str) -> str:
    """'history', 'context' or 'item': the group a field belongs to."""
    if name.startswith("ctx_"):
        return "context"
    if name.startswith("item_"):
        return "item"
    return "history"
