"""Who the audience is: its segments against the population, and what drives each.

Segment tables hide every cell under `PrivacyConfig.min_cell_size` customers (on the
audience and the population side), and keep hiding the next smallest cells of a
dimension until the hidden cells together hold at least that many, so that totals minus
the shown cells give no small cell away (`suppress`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from core.campaigns.reasons import FIELD_GROUPS
from core.config import Paths, PrivacyConfig
from core.store.interactions import STRONG_EVENT_TYPES, USER
from core.store.warehouse import query
from privacy.disclosure import hide_until_floor

RECENCY_BUCKETS = ((30, "0-30 days"), (90, "31-90 days"), (365, "91-365 days"))
RECENCY_OLDEST, NO_INTERACTIONS = ">365 days", "no interactions"
FREQUENCY_BUCKETS = ((1, "1"), (3, "2-3"), (9, "4-9"))
FREQUENCY_MOST = "10+"
SEGMENT_DIMENSIONS = (("age_band", "age band"), ("region", "region"),
                      ("recency", "recency"), ("frequency", "frequency"),
                      ("top_category", "top category"))
UNKNOWN = "unknown"


def customer_features(paths: Paths, *, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per customer (known before `before`): age_band, region, interactions (strong),
    last_ts, top_category (query `campaign_customer_features`)."""
    stamp = None if before is None else pd.Timestamp(before).to_pydatetime()
    return query("campaign_customer_features", paths,
                 event_types=list(STRONG_EVENT_TYPES), before=stamp)


def _bucket(value: float, buckets: tuple[tuple[int, str], ...], last: str) -> str:
    for limit, label in buckets:
        if value <= limit:
            return label
    return last


def segment_features(raw: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """user_pseudonym and one label per `SEGMENT_DIMENSIONS`: age band, region, recency
    (days from the last strong interaction to `as_of`: 0-30, 31-90, 91-365, >365),
    frequency (strong interactions: 1, 2-3, 4-9, 10+) and top category."""
    as_of = pd.Timestamp(as_of)
    days = (as_of - pd.to_datetime(raw["last_ts"])).dt.total_seconds() / 86400.0
    count = pd.to_numeric(raw["interactions"], errors="coerce").fillna(0)

    def text(column: str) -> pd.Series:
        return raw[column].astype("string").fillna(UNKNOWN).astype(object)

    return pd.DataFrame({
        USER: raw[USER].astype(str),
        "age_band": text("age_band"), "region": text("region"),
        "recency": [NO_INTERACTIONS if c == 0 or pd.isna(d) else
                    _bucket(math.floor(max(d, 0.0)), RECENCY_BUCKETS, RECENCY_OLDEST)
                    for d, c in zip(days, count, strict=True)],
        "frequency": [NO_INTERACTIONS if c == 0 else
                      _bucket(c, FREQUENCY_BUCKETS, FREQUENCY_MOST) for c in count],
        "top_category": [NO_INTERACTIONS if c == 0 else t
                         for t, c in zip(text("top_category"), count, strict=True)],
    })


def segments(features: pd.DataFrame, audience: Iterable[str], *,
             min_cell: int = PrivacyConfig().min_cell_size
             ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The audience vs the whole population per segment of each dimension.

    Returns (rows, hidden cells per dimension). Rows: dimension, segment, audience,
    population (customers), audience_share and population_share (of the dimension's
    totals, [0, 1]) and lift (audience share / population share; 1 = as common as in
    the population). Cells under `min_cell` customers on either side are hidden (see
    `privacy.disclosure.hide_until_floor`)."""
    members = set(map(str, audience))
    in_audience = features[USER].astype(str).isin(members)
    total_a, total_p = int(in_audience.sum()), len(features)
    rows, hidden = [], {}
    for column, label in SEGMENT_DIMENSIONS:
        counts = pd.DataFrame({"segment": features[column], "a": in_audience}) \
            .groupby("segment", sort=True)["a"].agg(audience="sum", population="size") \
            .reset_index()
        drop = hide_until_floor(counts, ["audience", "population"], min_cell=min_cell)
        hidden[label] = int(drop.sum())
        for row in counts[~drop].itertuples(index=False):
            a_share = row.audience / total_a if total_a else float("nan")
            p_share = row.population / total_p if total_p else float("nan")
            rows.append({"dimension": label, "segment": str(row.segment),
                         "audience": int(row.audience), "population": int(row.population),
                         "audience_share": a_share, "population_share": p_share,
                         "lift": a_share / p_share if p_share else float("nan")})
    columns = ["dimension", "segment", "audience", "population", "audience_share",
               "population_share", "lift"]
    return pd.DataFrame(rows, columns=columns), hidden


def segment_drivers(features: pd.DataFrame, reasons: pd.DataFrame, *,
                    min_cell: int = PrivacyConfig().min_cell_size
                    ) -> tuple[pd.DataFrame, dict[str, int]]:
    """What drives the scores of the explained audience members of each segment: the
    mean SHAP attribution of the history, context and item fields (probability units).
    Rows: dimension, segment, members, history, context, item; segments with fewer than
    `min_cell` explained members are hidden (see `suppress`)."""
    joined = features.merge(reasons[[USER, *FIELD_GROUPS]], on=USER, how="inner")
    rows, hidden = [], {}
    for column, label in SEGMENT_DIMENSIONS:
        grouped = joined.groupby(column, sort=True)
        means = grouped[list(FIELD_GROUPS)].mean()
        means["members"] = grouped.size()
        means = means.reset_index().rename(columns={column: "segment"})
        drop = hide_until_floor(means, ["members"], min_cell=min_cell)
        hidden[label] = int(drop.sum())
        for row in means[~drop].to_dict("records"):
            rows.append({"dimension": label, "segment": str(row["segment"]),
                         "members": int(row["members"]),
                         **{g: float(row[g]) for g in FIELD_GROUPS}})
    return pd.DataFrame(rows, columns=["dimension", "segment", "members", *FIELD_GROUPS]), \
        hidden
