"""Batch scoring: K rows per customer in the warehouse, replaced per run, in one write."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig

from core.config import Paths
from core.recommender import registry
from core.recommender.batch_score import score
from core.recommender.data import load_training_data
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.recommender.retrieval import CrossEncoderRecommender
from core.store.warehouse import query, read_connection, write_transaction

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
CUSTOMERS = 12
K = 4


def build_warehouse(paths: Paths) -> None:
    """12 customers with 3..5 purchases, 20 items; one more customer with no events."""
    rng = np.random.default_rng(1)
    items = [(f"i{j:02d}", f"Item {j}", f"Brand {j % 3}", ("Books", "Kitchen")[j % 2],
              5.0 + j, None, "fixture") for j in range(20)]
    events = []
    for u in range(CUSTOMERS):
        day = datetime(2024, 3, 1)
        for j in rng.choice(20, size=3 + u % 3, replace=False):
            day += timedelta(days=2)
            events.append((f"u_{u:03d}", f"i{j:02d}", "purchase", day, None, "fixture"))
    with write_transaction(paths) as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", events)
        con.execute("INSERT INTO users VALUES ('u_new', NULL, NULL, NULL, 'fixture')")


@pytest.fixture
def scored_setup(warehouse_paths: Paths) -> Paths:
    build_warehouse(warehouse_paths)
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=0.0,
                                                       content_candidates=6,
                                                       popular_candidates=4))
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    registry.save(warehouse_paths, run_id="ce_test_run", model=model.eval(),
                  train_config={}, privacy={"private": True, "epsilon": 3.0},
                  fingerprint={})
    return warehouse_paths


def recommendations(paths: Paths) -> pd.DataFrame:
    with read_connection(paths) as con:
        return con.execute("SELECT * FROM recommendations").df()


def test_score_writes_k_rows_per_customer(scored_setup):
    result = score(scored_setup, k=K, at=pd.Timestamp("2024-06-01"), progress=False)
    assert result.run_id == "ce_test_run"  # the latest run by default
    rows = recommendations(scored_setup)
    assert result.customers == CUSTOMERS + 1 and result.rows == len(rows)
    per_customer = rows.groupby("user_pseudonym")["rank"].apply(sorted)
    assert len(per_customer) == CUSTOMERS + 1  # the customer without events too
    assert all(ranks == list(range(1, K + 1)) for ranks in per_customer)
    assert (rows["run_id"] == "ce_test_run").all() and rows["created_at"].nunique() == 1
    # never an item the customer already has
    events = query("interactions", scored_setup, event_types=None, before=None)
    owned = set(zip(events["user_pseudonym"], events["item_id"], strict=True))
    assert not any((u, i) in owned for u, i in zip(rows["user_pseudonym"], rows["item_id"],
                                                     strict=True))
    # scores fall with rank
    for _, g in rows.sort_values("rank").groupby("user_pseudonym"):
        assert g["score"].is_monotonic_decreasing
    assert result.customers_per_second > 0


def test_scoring_again_replaces_the_rows_of_the_run(scored_setup):
    score(scored_setup, "ce_test_run", k=K, progress=False)
    first = recommendations(scored_setup)
    score(scored_setup, "ce_test_run", k=2, progress=False)
    second = recommendations(scored_setup)
    assert len(second) == 2 * (CUSTOMERS + 1) < len(first)
    assert query("recommendation_counts", scored_setup)["rows"].tolist() == [len(second)]


def test_scoring_without_a_model_says_what_to_do(warehouse_paths):
    build_warehouse(warehouse_paths)
    with pytest.raises(registry.RegistryError, match="clearmark train"):
        score(warehouse_paths, progress=False)


def test_recommender_scores_only_its_candidates(scored_setup):
    loaded = registry.load("ce_test_run", scored_setup)
    history, catalogue = load_training_data(scored_setup)
    rec = CrossEncoderRecommender(loaded.model).fit(history, catalogue)
    queries = pd.DataFrame({"user_pseudonym": ["u_000", "u_001"],
                            "ts": pd.Timestamp("2024-06-01"), "promotion": pd.NA})
    scores = rec.score_items(history, queries)  # (2, 20)
    assert scores.shape == (2, len(rec.items_))
    finite = np.isfinite(scores).sum(axis=1)
    config = loaded.model_config  # content + popular + per category of the history shown
    most = 6 + 4 + config.category_candidates * config.history_len
    assert (finite <= most).all() and (finite >= 4).all()
    owned = set(history.loc[history["user_pseudonym"] == "u_000", "item_id"])
    candidate_items = set(rec.items_[np.isfinite(scores[0])])
    assert not owned & candidate_items
