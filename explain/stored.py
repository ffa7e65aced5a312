"""Explanations computed ahead of time and kept in the warehouse (`explanations`).

Field SHAP takes about two seconds per recommendation on 2 cores, so a profile's ten
reasons would take twenty seconds on its first view. `precompute` explains, right after
scoring, the recommendations of the customers the profile page offers first (the most
active ones) and writes them in one transaction; the app only reads the warehouse, so it
cannot store what it computes itself. `ExplainService` serves a stored explanation when
its input (the fields the model reads, compared by digest) is the one it would explain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from core.config import Paths
from core.store.queries import QUERIES
from core.store.warehouse import query, write_transaction
from explain.inputs import moment
from explain.result import Explanation

PRECOMPUTED_METHODS = ("shap-field",)  # the reasons in words; attention is one pass


def fields_digest(fields: Iterable[object]) -> str:
    """Identifies a model input (the tuple of fields with their text)."""
    return hashlib.sha256(repr(tuple(fields)).encode()).hexdigest()[:32]


def to_json(e: Explanation) -> str:
    return json.dumps({
        "run_id": e.run_id, "pseudonym": e.pseudonym, "item_id": e.item_id, "rank": e.rank,
        "method": e.method, "features": list(e.features), "fields": list(e.fields),
        "values": list(e.values), "attributions": e.attributions.tolist(),
        "base_value": e.base_value, "prediction": e.prediction,
        "additivity_error": e.additivity_error, "evaluations": e.evaluations,
        "latency_s": e.latency_s, "notes": e.notes}, default=float)


def from_json(text: str) -> Explanation:
    raw = json.loads(text)
    raw["features"], raw["fields"], raw["values"] = (tuple(raw[k]) for k in
                                                     ("features", "fields", "values"))
    raw["attributions"] = np.asarray(raw["attributions"], dtype=np.float64)
    return Explanation(**raw)


def stored_for(run_id: str, pseudonym: str, paths: Paths) -> dict[tuple[str, str, str],
                                                                    Explanation]:
    """{(method, item_id, fields digest): explanation} stored for one customer."""
    if not query("table_exists", paths, table_name="explanations")["present"].iloc[0]:
        return {}
    rows = query("explanations_for_customer", paths, run_id=run_id, user=pseudonym)
    return {(r.method, r.item_id, r.fields_digest): from_json(r.payload)
            for r in rows.itertuples()}


def precompute(service, customers: list[str], paths: Paths, *,
               methods: tuple[str, ...] = PRECOMPUTED_METHODS,
               on_customer: Callable[[], None] | None = None) -> int:
    """Explain the stored recommendations of `customers` with `service` (an
    `ExplainService` of the scoring run) and replace the run's stored explanations with
    them; returns the rows written."""
    rows = []
    for pseudonym in customers:
        recs = query("recommendations_for_customer", paths, run_id=service.run_id,
                     user=pseudonym, limit=10)
        for rec in recs.to_dict("records"):
            ts, promotion = moment(rec)
            item = str(rec["item_id"])
            fields = service.fields(pseudonym, item, ts=ts, promotion=promotion)
            for method in methods:
                e = service.explain(pseudonym, item, method=method, rank=int(rec["rank"]),
                                    ts=ts, promotion=promotion)
                rows.append((service.run_id, pseudonym, item, method, fields_digest(fields),
                             to_json(e)))
        if on_customer is not None:
            on_customer()
    frame = pd.DataFrame(rows, columns=["run_id", "user_pseudonym", "item_id", "method",
                                        "fields_digest", "payload"])
    with write_transaction(paths) as con:
        con.execute(QUERIES["explanations_delete_run"], {"run_id": service.run_id})
        con.register("new_explanations", frame)
        con.execute(QUERIES["explanations_insert"])
        con.unregister("new_explanations")
    return len(frame)
