"""The service: stored recommendations first, computed ones for customers not scored;
the moment of a recommendation."""

from __future__ import annotations

import pandas as pd

from core.store.warehouse import write_transaction
from explain.service import ExplainService, moment
from tests.explain.conftest import EXPLAIN_USERS, TINY_RUN


def test_stored_recommendations_are_used(explain_warehouse):
    created = pd.Timestamp("2025-12-06 10:00:00")  # a Saturday in winter
    with write_transaction(explain_warehouse) as con:
        con.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?)",
                        [(TINY_RUN, EXPLAIN_USERS[0], f"i_00{r}", r, 1.0 / r,
                          created.to_pydatetime()) for r in (1, 2, 3)])
    service = ExplainService.open(TINY_RUN, explain_warehouse)
    recs = service.recommendations_for(EXPLAIN_USERS[:2], k=2)
    stored = recs[recs["user_pseudonym"] == EXPLAIN_USERS[0]]
    assert stored["item_id"].tolist() == ["i_001", "i_002"]
    assert stored["title"].tolist() == ["+1+1", "-2+3"]  # raw here; neutralised in CSV only
    assert len(recs[recs["user_pseudonym"] == EXPLAIN_USERS[1]]) == 2  # computed now
    e = next(service.explain_recommendations(stored.head(1)))
    fields = dict(zip(e.fields, e.values, strict=True))
    assert fields["ctx_season"] == "season: winter" and fields["ctx_day"] == "day: weekend"
    assert "ctx_promotion" not in fields  # unknown when scored


def test_moment():
    ts, promotion = moment({"created_at": pd.Timestamp("2025-01-01"), "promotion": True})
    assert ts == pd.Timestamp("2025-01-01") and promotion is True
    ts, promotion = moment({"ts": pd.Timestamp("2025-02-01"), "promotion": pd.NA})
    assert ts == pd.Timestamp("2025-02-01") and promotion is None
