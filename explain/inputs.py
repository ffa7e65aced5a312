"""The model inputs behind recommendations: what an explanation explains.

A recommendation for a customer at a moment reads the customer's last `history_len`
interactions (most recent first), the context of the moment (season and weekday of
`ts`, the promotion flag when known) and the candidate item, exactly as
`core.recommender.retrieval.CrossEncoderRecommender.text_pairs` builds them (through
`core.recommender.examples.model_input`). For recommendations shown now, `ts` is now and the
promotion is unknown (no promotion field) unless the recommendation says otherwise
(columns `ts` / `promotion` of the recommendations frame).

`held_out_inputs` gives the held-out moments that faithfulness is measured on: the
validation or test target of each customer of `core.recommender.splits.leave_last_out`, with the
history known strictly before it and the model's top recommendation at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.recommender.co_visits import CoVisits
from core.recommender.examples import item_records, model_input
from core.recommender.fields import ModelInput
from core.recommender.model import CrossEncoder
from core.recommender.protocol import recommend
from core.recommender.splits import Split, histories_frame
from core.store.interactions import EVENT_TYPE, ITEM, PROMOTION, TS, USER
from explain.result import Subject


def now() -> pd.Timestamp:
    """The moment recommendations shown now are made for (naive, like the warehouse)."""
    return pd.Timestamp.now().floor("s")


def recent_history(interactions: pd.DataFrame, pseudonym: str, n: int, *,
                   before: pd.Timestamp | None = None) -> list[tuple[str, str]]:
    """The customer's last `n` (event_type, item_id) interactions, most recent first
    (only those strictly before `before` when given)."""
    rows = interactions[interactions[USER].astype(str) == str(pseudonym)]
    if before is not None:
        rows = rows[pd.to_datetime(rows[TS]) < pd.Timestamp(before)]
    rows = rows.sort_values([TS, ITEM], kind="stable")
    pairs = list(zip(rows[EVENT_TYPE].astype(str), rows[ITEM].astype(str), strict=True))
    return pairs[-n:][::-1] if n > 0 else []


def _promotion(value: object) -> bool | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return bool(value)


def input_for(interactions: pd.DataFrame, records: Mapping[str, Mapping[str, object]],
              pseudonym: str, item_id: str, *, history_len: int,
              ts: pd.Timestamp | None = None, promotion: bool | None = None,
              co_visits: CoVisits | None = None, with_share: bool = False) -> ModelInput:
    """The fields of one (customer, moment, candidate) recommendation (`co_visits`: the
    model's, for a model that reads them; `with_share`: the model reads the category
    share)."""
    history = recent_history(interactions, pseudonym, history_len)
    return model_input(history, None if ts is None else pd.Timestamp(ts),
                       _promotion(promotion), str(item_id), records, co_visits=co_visits,
                       with_share=with_share)


def item_title(records: Mapping[str, Mapping[str, object]], item_id: str) -> str:
    record = records.get(str(item_id)) or {}
    title = record.get("title")
    return str(title) if title is not None and not pd.isna(title) else str(item_id)


@dataclass(frozen=True)
class HeldOut:
    """One held-out recommendation: who, the model input and the target it hides."""

    subject: Subject
    fields: ModelInput
    target_item: str
    score: float


def queries_frame(pseudonyms: Sequence[str], *, ts: pd.Timestamp | None = None,
                  promotion: bool | None = None) -> pd.DataFrame:
    stamp = now() if ts is None else pd.Timestamp(ts)
    return pd.DataFrame({USER: [str(p) for p in pseudonyms], TS: [stamp] * len(pseudonyms),
                         PROMOTION: pd.array([promotion] * len(pseudonyms), dtype="boolean")})


def recommend_now(recommender, interactions: pd.DataFrame, pseudonyms: Sequence[str], *,
                  k: int = 10, ts: pd.Timestamp | None = None,
                  promotion: bool | None = None) -> pd.DataFrame:
    """Top-`k` recommendations (user_pseudonym, item_id, rank, score, ts, promotion) of a
    fitted recommender for customers at `ts` (now), from everything they did before."""
    queries = queries_frame(pseudonyms, ts=ts, promotion=promotion)
    users = set(queries[USER])
    history = interactions[interactions[USER].astype(str).isin(users)]
    recs = recommend(recommender, history, queries, k=k, exclude_seen=True)
    return recs.merge(queries[[USER, TS, PROMOTION]], on=USER, how="left")


def held_out_inputs(model: CrossEncoder, recommender, split: Split, *, on: str = "test",
                    users: int | None = 200, seed: int = 0, run_id: str = ""
                    ) -> list[HeldOut]:
    """Held-out recommendations: for (a seeded sample of `users`) `on` targets, the
    model input at the target's moment with the recommender's top item."""
    targets = split.targets(on).reset_index(drop=True)
    if users is not None and users < len(targets):
        targets = targets.sample(n=users, random_state=seed).reset_index(drop=True)
    known = histories_frame(split.known_for(on), targets)  # everything before, oldest 1st
    n = model.config.history_len
    queries = targets[[USER, TS, PROMOTION]].reset_index(drop=True)
    scores = np.asarray(recommender.score_items(known, queries), dtype=np.float64)
    records = recommender.records_
    by_user = {u: rows for u, rows in known.groupby(USER, sort=False)}
    out = []
    for q, query in enumerate(queries.to_dict("records")):
        if not np.isfinite(scores[q]).any():
            continue
        column = int(np.argmax(scores[q]))
        item = str(recommender.items_[column])
        rows = by_user.get(str(query[USER]))
        history = [] if rows is None else list(zip(rows[EVENT_TYPE].astype(str),
                                                   rows[ITEM].astype(str), strict=True))
        history = history[-n:][::-1]
        fields = model_input(history, pd.Timestamp(query[TS]), _promotion(query[PROMOTION]),
                             item, records, co_visits=model.co_visits,
                             with_share=model.config.category_share)
        out.append(HeldOut(subject=Subject(run_id=run_id, pseudonym=str(query[USER]),
                                           item_id=item, rank=1),
                           fields=fields, target_item=str(targets[ITEM].iloc[q]),
                           score=float(scores[q, column])))
    return out


__all__ = ["HeldOut", "held_out_inputs", "input_for", "item_records", "item_title", "now",
           "queries_frame", "recent_history", "recommend_now"]


def moment(row: dict[str, object]) -> tuple[pd.Timestamp | None, bool | None]:
    """The (ts, promotion) a recommendation was made for: its `ts` column, else its
    `created_at` (when `clearmark score` wrote it, about the scoring moment), else now;
    the promotion when the row says, else unknown."""
    ts = None
    for column in ("ts", "created_at"):
        value = row.get(column)
        if value is not None and not pd.isna(value):
            ts = pd.Timestamp(value)
            break
    promotion = row.get("promotion")
    if promotion is not None and pd.isna(promotion):
        promotion = None
    return (ts if ts is not None else now()), (None if promotion is None else bool(promotion))
