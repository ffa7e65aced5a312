"""Training examples: no leak from the future, honest negatives, capped per customer."""

from datetime import datetime, timedelta

import pandas as pd
import pytest
import torch

from core.recommender.examples import (
    CustomerDataset,
    ExampleConfig,
    build_examples,
    collate_groups,
    group_text_pairs,
    item_records,
    listwise_loss,
)
from core.store.interactions import as_interactions

CATEGORIES = ("Books", "Kitchen", "Garden")


def catalogue(n: int = 24) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": [f"i{j:02d}" for j in range(n)],
        "title": [f"Item number {j}" for j in range(n)],
        "brand": [f"Brand {j % 4}" for j in range(n)],
        "category": [CATEGORIES[j % 3] for j in range(n)],
        "price": [5.0 + 3 * j for j in range(n)],
        "description": [f"A fine item, the {j}th." for j in range(n)],
    })


def interactions() -> pd.DataFrame:
    """12 customers with 3..14 interactions each; customer 0 has same-day ties."""
    rows = []
    start = datetime(2024, 1, 1)
    for u in range(12):
        for j in range(3 + u):
            day = start + timedelta(days=3 * j + u)
            if u == 0 and j in (1, 2):
                day = start + timedelta(days=3)  # two interactions on one day
            rows.append((f"u{u:02d}", f"i{(u * 5 + j * 7) % 24:02d}", "purchase", day,
                         j % 2 == 0))
    return as_interactions(pd.DataFrame(rows, columns=["user_pseudonym", "item_id",
                                                       "event_type", "ts", "promotion"]))


def test_history_is_strictly_before_the_target_and_most_recent_first():
    train = interactions()
    groups = build_examples(train, catalogue(), ExampleConfig(history_len=3))
    assert groups
    for g in groups:
        stamps = [ts for _, _, ts in g.history]
        assert stamps and all(ts < g.ts for ts in stamps)  # nothing at or after the target
        assert stamps == sorted(stamps, reverse=True)  # most recent first
        assert len(g.history) <= 3
        # the history is the user's LAST interactions before the target
        user = train[(train["user_pseudonym"] == g.user) & (train["ts"] < g.ts)]
        assert [i for _, i, _ in g.history] == user["item_id"].tolist()[::-1][:3]


def test_same_day_interactions_are_not_history_of_each_other():
    groups = [g for g in build_examples(interactions(), catalogue()) if g.user == "u00"]
    same_day = datetime(2024, 1, 4)
    for g in groups:
        if g.ts == same_day:
            assert all(ts < same_day for _, _, ts in g.history)
            assert len(g.history) == 1  # only the first interaction came before


def test_negatives_are_never_the_target_nor_the_customers_items():
    train = interactions()
    config = ExampleConfig(negatives=4, same_category_share=0.5)
    groups = build_examples(train, catalogue(), config)
    owned = train.groupby("user_pseudonym")["item_id"].apply(set).to_dict()
    cat = catalogue().set_index("item_id")["category"]
    for g in groups:
        assert len(g.negatives) == 4 and len(set(g.negatives)) == 4
        assert g.positive not in g.negatives
        assert not set(g.negatives) & owned[g.user]
        same = sum(cat[n] == cat[g.positive] for n in g.negatives)
        assert same >= 2  # half from the target's category where possible


def test_cap_keeps_the_most_recent_targets_per_customer():
    train = interactions()
    groups = build_examples(train, catalogue(), ExampleConfig(max_per_customer=4))
    by_user: dict[str, list] = {}
    for g in groups:
        by_user.setdefault(g.user, []).append(g.ts)
    assert max(len(v) for v in by_user.values()) == 4
    last = train.groupby("user_pseudonym")["ts"].apply(lambda s: sorted(s)[-4:]).to_dict()
    for user, stamps in by_user.items():
        if len(stamps) == 4:
            assert sorted(stamps) == last[user]


def test_popularity_weighting_is_an_option_and_validated():
    with pytest.raises(ValueError, match="negative_weighting"):
        ExampleConfig(negative_weighting="in-batch")
    groups = build_examples(interactions(), catalogue(),
                            ExampleConfig(negative_weighting="popularity"))
    assert groups


def test_text_pairs_go_through_the_fields_and_omit_fields():
    groups = build_examples(interactions(), catalogue())
    items = item_records(catalogue())
    a, b = group_text_pairs(groups[0], items)
    assert len(a) == len(b) == 5 and len(set(a)) == 1  # one history side per group
    assert a[0].startswith("purchased: ") and "season: " in a[0]
    assert b[0].startswith("title: ") and "about: " in b[0]
    _, b2 = group_text_pairs(groups[0], items, omit=frozenset({"item_description"}))
    assert "about: " not in b2[0]


def test_customer_dataset_yields_one_group_per_customer():
    groups = build_examples(interactions(), catalogue())
    seen = []

    def pair_states(text_a, text_b):  # stands in for CrossEncoder.pair_states
        seen.append((list(text_a), list(text_b)))
        length = 7 + len(seen) % 3
        return torch.ones(len(text_a), length, 4), torch.ones(len(text_a), length,
                                                               dtype=torch.long)

    dataset = CustomerDataset(groups, item_records(catalogue()), pair_states=pair_states,
                              omit=frozenset({"item_description"}))
    assert len(dataset) == len({g.user for g in groups})
    hidden, mask, prior = dataset[0]
    assert hidden.shape[:1] == mask.shape[:1] == prior.shape == (5,)
    assert float(prior.abs().sum()) == 0.0  # no prior given
    assert all("about: " not in b for b in seen[0][1])  # omitted fields are not read
    assert {g.user for g in dataset.groups[0]} == {dataset.customers[0]}
    batch = collate_groups([dataset[i] for i in range(3)])
    lengths = {int(m.shape[1]) for m in (dataset[i][1] for i in range(3))}
    assert batch[0].shape[:2] == (3, 5) and batch[0].shape[2] >= max(lengths)
    assert batch[1].shape == batch[0].shape[:3] and batch[2].shape == (3, 5)


def test_listwise_loss_of_one_customer_ignores_the_others():
    logits = torch.randn(4, 5, requires_grad=True)
    losses = listwise_loss(logits)
    assert losses.shape == (4,)
    (grad,) = torch.autograd.grad(losses[1], logits)
    assert torch.count_nonzero(grad[[0, 2, 3]]) == 0
    assert torch.allclose(losses, torch.nn.functional.cross_entropy(
        logits, torch.zeros(4, dtype=torch.long), reduction="none"))


def test_a_batch_encoded_together_equals_its_customers_encoded_alone():
    """`__getitems__` (what the DataLoader calls) encodes a batch's texts in one pass;
    after collation it gives the tensors of encoding each customer alone."""
    from transformers import BertConfig

    from core.recommender.model import CrossEncoder
    from core.recommender.model_config import ModelConfig

    tiny = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = CrossEncoder.from_config(tiny, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=2.0)).eval()
    groups = build_examples(interactions(), catalogue())

    def dataset() -> CustomerDataset:
        return CustomerDataset(groups, item_records(catalogue()), pair_states=model.pair_states,
                               prior=model.prior_similarity, seed=3)

    together = collate_groups(dataset().__getitems__([0, 1, 2]))
    model.clear_cache()
    alone_dataset = dataset()
    alone = collate_groups([alone_dataset[i] for i in range(3)])
    assert float(together[2].abs().sum()) > 0  # the prior is there
    for x, y in zip(together, alone, strict=True):
        assert x.shape == y.shape
        assert torch.allclose(x.float(), y.float(), atol=1e-5)
    assert dataset().__getitems__([]) == []
