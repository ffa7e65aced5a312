"""Fixtures of the explanation tests: inputs, tiny models, the real MiniLM, and a small
warehouse whose item titles carry CSV-injection payloads, with a registered tiny run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch
from transformers import BertConfig

from core.config import Paths
from core.recommender import registry
from core.recommender.fields import Field
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.store.warehouse import write_transaction

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=256)
PAYLOADS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1")
TINY_RUN = "ce_20250701T120000_tiny0001"


def make_fields(n_history: int = 5, *, promotion: bool = True, description: bool = True
                ) -> tuple[Field, ...]:
    """A realistic input: history, context and item fields (catalogue text only)."""
    titles = ["Trail Bottle", "Northwind Socks", "Alpine Tent", "Camp Stove", "Rain Jacket"]
    history = [Field(f"h{i + 1}", "a", f"purchased: {titles[i % 5]} | Outdoor | Northwind | "
                     "$10-25") for i in range(n_history)]
    context = [Field("ctx_season", "a", "season: winter"), Field("ctx_day", "a", "day: weekend")]
    if promotion:
        context.append(Field("ctx_promotion", "a", "promotion: on"))
    item = [Field("item_title", "b", "title: Summit Gloves"),
            Field("item_category", "b", "category: Outdoor"),
            Field("item_brand", "b", "brand: Northwind"),
            Field("item_price", "b", "price: $25-50")]
    if description:
        item.append(Field("item_description", "b", "about: Warm gloves for winter hiking, "
                          "made with a windproof shell."))
    return (*history, *context, *item)


def tiny_model(*, prior_scale: float = 0.0, max_length: int = 96, seed: int = 0,
               omit: tuple[str, ...] = ()) -> CrossEncoder:
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=max_length,
                                                       prior_scale=prior_scale,
                                                       omit_fields=omit), seed=seed)
    with torch.no_grad():  # a head that is not zero, so every field can matter
        generator = torch.Generator().manual_seed(seed)
        model.bert.classifier.weight.copy_(torch.randn(model.bert.classifier.weight.shape,
                                                       generator=generator))
    return model.eval()


@pytest.fixture
def fields() -> tuple[Field, ...]:
    return make_fields()


@pytest.fixture(scope="session")
def minilm() -> CrossEncoder:
    """The real bundled all-MiniLM-L6-v2 cross-encoder (with its zero-shot prior)."""
    return CrossEncoder.from_pretrained().eval()


def _pseudonym(i: int) -> str:
    return "u_" + hashlib.sha256(f"explain-customer-{i}".encode()).hexdigest()[:32]


EXPLAIN_USERS = [_pseudonym(i) for i in range(12)]


@pytest.fixture
def explain_warehouse(warehouse_paths: Paths) -> Paths:
    """12 customers, 16 items (6 with a spreadsheet-formula title), purchases and
    add-to-carts over 2025, plus a registered tiny run `TINY_RUN`."""
    rng = np.random.default_rng(7)
    items = []
    for j in range(16):
        title = PAYLOADS[j] if j < len(PAYLOADS) else f"Trail item {j}"
        items.append((f"i_{j:03d}", title, f"Brand {j % 3}", ["Outdoor", "Kitchen"][j % 2],
                      float(5 + 7 * j), f"Item {j} for the trail.", "fixture"))
    events = []
    start = datetime(2025, 1, 6, 10, 0, 0)
    for u, user in enumerate(EXPLAIN_USERS):
        for step in range(4 + u % 3):
            item = items[int(rng.integers(len(items)))][0]
            ts = start + timedelta(days=int(7 * step + u), hours=int(rng.integers(8)))
            kind = "purchase" if step % 2 == 0 else "add_to_cart"
            events.append((user, item, kind, ts, bool(step % 3 == 0), "fixture"))
    with write_transaction(warehouse_paths) as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", events)
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                        [(u, "30-39", "North", "2024-Q1", "fixture") for u in EXPLAIN_USERS])
    registry.save(warehouse_paths, run_id=TINY_RUN, model=tiny_model(max_length=64),
                  train_config={"epochs": 1}, privacy={"privacy_unit": "none"},
                  fingerprint={"sha256": "fixture"})
    return warehouse_paths
