"""One entry point for the page, the CLI and the export: a run's model, the warehouse
data it reads, and explanations of its recommendations, cached.

`ExplainService.open(run_id, paths)` loads the registered model (`core.recommender.registry.load`);
`run_id=UNTRAINED` uses the bundled MiniLM cross-encoder with its fresh head (what the
benchmark falls back to when no run exists). Interactions and the catalogue are read
from the read snapshot once per service (short connections, `core.store.warehouse`).

Recommendations come from the `recommendations` table that `clearmark score` writes
(`recommendations_for`), or, where a run has not been scored, are computed on the spot
with the same recommender (`core.recommender.retrieval.CrossEncoderRecommender`, query time now).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.config import Paths
from core.recommender.fields import ModelInput
from core.recommender.model import CrossEncoder
from core.store.interactions import (
    ITEM,
    USER,
    collapse_repeats,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)
from explain.attention import explain_attention
from explain.field_shap import FieldShapConfig, explain_fields, leave_one_out
from explain.inputs import input_for, item_records, item_title, moment, now, recommend_now
from explain.result import FIELD_METHODS, METHODS, Explanation, Subject
from explain.scoring import LRU
from explain.stored import fields_digest, stored_for
from explain.token_shap import TokenShapConfig, explain_tokens

UNTRAINED = "untrained-minilm"
TOKEN_CACHE_DIR = "explain_cache"  # under the run folder (or data/models/<UNTRAINED>)


class ExplainError(RuntimeError):
    """Something an explanation cannot be made for, with what to do."""


@dataclass
class ExplainService:
    run_id: str
    paths: Paths
    model: CrossEncoder
    field_config: FieldShapConfig = field(default_factory=FieldShapConfig)
    token_config: TokenShapConfig = field(default_factory=TokenShapConfig)
    _data: dict[str, object] = field(default_factory=dict)
    _explanations: LRU = field(default_factory=lambda: LRU(4096))
    _stored_by_customer: LRU = field(default_factory=lambda: LRU(1024))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, run_id: str | None = None, paths: Paths | None = None, *,
             field_config: FieldShapConfig | None = None) -> ExplainService:
        """The service of `run_id` (None: the latest run, else the untrained MiniLM)."""
        from core.recommender import registry

        paths = paths or Paths()
        run_id = run_id or registry.latest_run(paths) or UNTRAINED
        if run_id == UNTRAINED:
            model = CrossEncoder.from_pretrained().eval()
        else:
            model = registry.load(run_id, paths).model.eval()
        return cls(run_id=run_id, paths=paths, model=model,
                   field_config=field_config or FieldShapConfig())

    # --- data -------------------------------------------------------------------------

    def _load(self) -> dict[str, object]:
        with self._lock:
            if not self._data:
                # what core.recommender.data.load_training_data gives scoring: funnels collapsed
                interactions = collapse_repeats(load_interactions(self.paths))
                catalogue = interacted_catalogue(load_catalogue(self.paths), interactions)
                full = self.model.with_popularity(load_catalogue(self.paths))
                records = item_records(full)
                records.update(item_records(self.model.with_popularity(catalogue)))
                self._data.update(interactions=interactions, catalogue=catalogue,
                                  records=records)
            return self._data

    @property
    def interactions(self) -> pd.DataFrame:
        return self._load()["interactions"]

    @property
    def records(self) -> dict[str, dict[str, object]]:
        return self._load()["records"]

    @functools.cached_property
    def recommender(self):
        from core.recommender.retrieval import CrossEncoderRecommender

        data = self._load()
        return CrossEncoderRecommender(self.model, name=self.run_id).fit(
            data["interactions"], data["catalogue"])

    def is_new(self, item_id: str) -> bool:
        """The item lies outside the model's training data (added to the catalogue
        since, or held out): the model judges it by its text alone, and the last place
        of each top 10 is kept for the best such item (`core.recommender.train`)."""
        item = str(item_id)
        return item in self.records and item not in self.trained_items

    @functools.cached_property
    def trained_items(self) -> frozenset[str]:
        """`core.recommender.retrieval.trained_items` of this run (without fitting the
        recommender)."""
        from core.recommender.retrieval import trained_items

        return frozenset(trained_items(self.model, self.interactions))

    @property
    def cache_dir(self) -> Path:
        return self.paths.models_dir / self.run_id / TOKEN_CACHE_DIR

    def title(self, item_id: str) -> str:
        return item_title(self.records, item_id)

    def customers(self) -> list[str]:
        """Every customer with interactions, sorted."""
        return sorted(self.interactions[USER].astype(str).unique())

    def _stored(self, pseudonym: str) -> dict[tuple[str, str, str], Explanation]:
        """What `explain.stored.precompute` kept for this customer (read once)."""
        pseudonym = str(pseudonym)
        with self._lock:
            found = self._stored_by_customer.get(pseudonym)
        if found is None:
            found = stored_for(self.run_id, pseudonym, self.paths)
            with self._lock:
                self._stored_by_customer.put(pseudonym, found)
        return found

    # --- recommendations ------------------------------------------------------------------

    def recommendations_for(self, pseudonyms: Iterable[str], *, k: int = 10) -> pd.DataFrame:
        """Recommendations of the given customers: the stored ones of this run
        (`clearmark score`), computed now for customers the run has not scored.
        Columns: user_pseudonym, rank, item_id, title, score, ts."""
        users = [str(p) for p in pseudonyms]
        stored = stored_recommendations(self.paths, self.run_id, users)
        missing = [u for u in users if u not in set(stored[USER])] if not stored.empty else users
        frames = [stored] if not stored.empty else []
        if missing:
            live = recommend_now(self.recommender, self.interactions, missing, k=k)
            live = live.assign(title=[self.title(i) for i in live[ITEM]])
            frames.append(live[[USER, "rank", ITEM, "title", "score", "ts"]])
        if not frames:
            return pd.DataFrame(columns=[USER, "rank", ITEM, "title", "score", "ts"])
        out = pd.concat(frames, ignore_index=True)
        out = out[out["rank"] <= k]
        return out.sort_values([USER, "rank"], kind="stable").reset_index(drop=True)

    # --- explanations ---------------------------------------------------------------------

    def fields(self, pseudonym: str, item_id: str, *, ts: pd.Timestamp | None = None,
               promotion: bool | None = None) -> ModelInput:
        if str(item_id) not in self.records:
            raise ExplainError(f"item {item_id!r} is not in the catalogue of the warehouse "
                               f"at {self.paths.warehouse}.")
        return input_for(self.interactions, self.records, pseudonym, item_id,
                         history_len=self.model.config.history_len, ts=ts,
                         promotion=promotion, co_visits=self.model.co_visits,
                         with_share=self.model.config.category_share)

    def explain(self, pseudonym: str, item_id: str, *, method: str = "shap-field",
                rank: int = 0, field_name: str | None = None,
                ts: pd.Timestamp | None = None, promotion: bool | None = None
                ) -> Explanation:
        """One recommendation explained by `method` (see `explain.result.METHODS`);
        "shap-token" needs `field_name`. The moment is `ts` (default now) with
        `promotion` (default unknown). Cached per input."""
        if method not in METHODS:
            raise ExplainError(f"method {method!r}: choose one of {', '.join(METHODS)}.")
        fields = self.fields(pseudonym, item_id, ts=now() if ts is None else ts,
                             promotion=promotion)
        subject = Subject(self.run_id, str(pseudonym), str(item_id), int(rank))
        key = (method, field_name, str(pseudonym), str(item_id), fields)
        cached = self._explanations.get(key)
        if cached is None and field_name is None:
            cached = self._stored(pseudonym).get((method, str(item_id), fields_digest(fields)))
        if cached is not None:
            return cached.with_subject(subject)
        if method == "shap-field":
            result = explain_fields(self.model, fields, subject=subject,
                                    config=self.field_config)
        elif method == "leave-one-out":
            result = leave_one_out(self.model, fields, subject=subject,
                                   precision=self.field_config.precision)
        elif method in ("attention-cls", "attention-rollout"):
            result = explain_attention(self.model, fields, method=method, subject=subject)
        else:
            if field_name is None:
                raise ExplainError("token SHAP explains one field: give its name (e.g. "
                                   "item_title, h1).")
            result = explain_tokens(self.model, fields, field_name, subject=subject,
                                    config=self.token_config, cache_dir=self.cache_dir)
        self._explanations.put(key, result)
        return result

    def explain_recommendations(self, recs: pd.DataFrame, *,
                                methods: Iterable[str] = ("shap-field",),
                                pseudonym: str | None = None) -> Iterator[Explanation]:
        """Explanations of each row of a recommendations frame (columns item_id and
        rank; user_pseudonym unless `pseudonym` is given; ts / created_at and promotion
        when known), one method after the other, lazily."""
        methods = list(methods)
        for method in methods:
            if method not in FIELD_METHODS:
                raise ExplainError(f"method {method!r} cannot run on every recommendation: "
                                   f"choose from {', '.join(FIELD_METHODS)}.")
        for position, row in enumerate(recs.to_dict("records")):
            who = pseudonym or str(row[USER])
            ts, promotion = moment(row)
            for method in methods:
                yield self.explain(who, str(row[ITEM]), method=method,
                                   rank=int(row.get("rank", position + 1)), ts=ts,
                                   promotion=promotion)


def stored_recommendations(paths: Paths, run_id: str, users: list[str]) -> pd.DataFrame:
    """This run's stored recommendations of `users` (empty where there are none)."""
    from core.store.warehouse import WarehouseError, query

    columns = [USER, "rank", ITEM, "title", "score", "ts"]
    if not users:
        return pd.DataFrame(columns=columns)
    try:
        present = bool(query("table_exists", paths, table_name="recommendations")
                       ["present"].iloc[0])
        if not present:
            return pd.DataFrame(columns=columns)
        frame = query("explain_recommendations_for_customers", paths, run_id=run_id,
                      users=users)
    except (WarehouseError, KeyError):
        return pd.DataFrame(columns=columns)
    frame = frame.rename(columns={"created_at": "ts"})
    frame = frame.assign(title=frame["title"].where(frame["title"].notna(), frame[ITEM]))
    return frame[columns]


_SERVICES: dict[tuple[str, str, int], ExplainService] = {}
_SERVICES_LOCK = threading.Lock()


def get_service(run_id: str | None = None, paths: Paths | None = None) -> ExplainService:
    """The process-wide service of a run (the page, the CLI and the export share it);
    at most two are kept loaded. A new warehouse snapshot gives a new service."""
    from core.recommender import registry

    paths = paths or Paths()
    resolved = run_id or registry.latest_run(paths) or UNTRAINED
    try:  # a new snapshot (after an ingest or a scoring run) means new data
        version = paths.snapshot.stat().st_mtime_ns
    except OSError:
        version = 0
    key = (resolved, str(paths.data_dir.resolve()), version)
    with _SERVICES_LOCK:
        service = _SERVICES.get(key)
        if service is None:
            service = ExplainService.open(resolved, paths)
            if len(_SERVICES) >= 2:
                _SERVICES.pop(next(iter(_SERVICES)))
            _SERVICES[key] = service
        return service


def reset() -> None:
    with _SERVICES_LOCK:
        _SERVICES.clear()
