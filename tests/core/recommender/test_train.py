"""DP training: user-level clipping, the accountant's epsilon, the ledger around the run."""

import copy
import json
import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch
from transformers import BertConfig

from core.config import Paths
from core.dp.plan import TrainingRefused
from core.recommender import data as data_mod
from core.recommender import train as train_mod
from core.recommender.config import TrainConfig
from core.recommender.data import load_training_data, make_split
from core.recommender.examples import ExampleConfig, build_examples, collate_groups, listwise_loss
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.recommender.planning import plan_privacy
from core.recommender.popularity_release import (
    LOG_FORM_MIN_RELIABILITY,
    PopularityRelease,
    model_config_for_release,
)
from core.recommender.registry import list_runs, load
from core.recommender.retrieval import CrossEncoderRecommender, with_new_item_slots
from core.recommender.spend import COUNTS_SUFFIX
from core.recommender.train import build_dataset, prepare_training, train, train_step
from core.store.warehouse import write_transaction
from privacy.accounting import compose_epsilon
from privacy.budget import set_budget
from privacy.ledger import BudgetExceeded, read_records

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
TINY_MODEL = ModelConfig(max_length=48, item_length=16, history_len=2, negatives=3,
                         prior_scale=0.0,
                         content_candidates=6, popular_candidates=4,
                         omit_fields=("item_description",))
CUSTOMERS = 40
ITEMS = 30


def build_warehouse(paths: Paths, *, customers: int = CUSTOMERS, seed: int = 0) -> None:
    """`customers` customers with 4..7 purchases on distinct days, 30 items in 3
    categories; customer u buys mostly from category u % 3 (something to learn), never
    the same item twice in a row (training collapses such runs into one)."""
    rng = np.random.default_rng(seed)
    categories = ("Books", "Kitchen", "Garden")
    items = [(f"i{j:02d}", f"{categories[j % 3]} item {j}", f"Brand {j % 4}",
              categories[j % 3], 4.0 + 3 * j, f"Item {j} of {categories[j % 3]}.", "fixture")
             for j in range(ITEMS)]
    events = []
    for u in range(customers):
        day = datetime(2024, 1, 1) + timedelta(days=int(rng.integers(0, 30)))
        last = None
        for _ in range(int(rng.integers(4, 8))):
            last = j = int(rng.choice([k for k in range(ITEMS) if k != last and (
                k % 3 == u % 3 or rng.random() < .1)]))
            day += timedelta(days=int(rng.integers(1, 9)))
            events.append((f"u_{u:03d}", f"i{j:02d}", "purchase", day, bool(rng.random() < .3),
                           "fixture"))
    with write_transaction(paths) as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", events)


@pytest.fixture
def tiny_warehouse(warehouse_paths: Paths) -> Paths:
    build_warehouse(warehouse_paths)
    return warehouse_paths


def quick(**changes) -> TrainConfig:
    base = dict(epsilon=3.0, epochs=1, batch_size=16, val_users=0, eval_users=10, lr=1e-3)
    return TrainConfig(**{**base, **changes})


def groups_and_catalogue(paths: Paths):
    interactions, catalogue = load_training_data(paths)
    split = make_split(interactions, "leave_last_out")
    groups = build_examples(split.train, catalogue, ExampleConfig(history_len=2, negatives=3))
    return groups, catalogue


def test_dp_run_spends_the_target_epsilon_and_is_recorded(tiny_warehouse):
    run_id = train(tiny_warehouse, quick(), model_config=TINY_MODEL, bert_config=TINY,
                   progress=False)
    run = tiny_warehouse.models_dir / run_id
    privacy = json.loads((run / "privacy.json").read_text())
    assert privacy["privacy_unit"] == "customer" and privacy["contribution_cap"] == 8
    assert privacy["steps"] >= 2 and privacy["noise_multiplier"] > 0
    assert privacy["delta"] <= 1 / (10 * privacy["customers"])
    # The accountant's epsilon after the planned steps matches the target (within 5%).
    assert abs(privacy["epsilon"] - 3.0) / 3.0 < 0.05
    curve = json.loads((run / "curve.json").read_text())
    assert len(curve) == privacy["steps"]
    assert [c["epsilon"] for c in curve] == sorted(c["epsilon"] for c in curve)
    records = [r for r in read_records(tiny_warehouse.ledger) if r.run_id == run_id]
    assert [r.status for r in records] == ["started", "completed"]
    assert records[0].privacy_unit == "customer" and records[0].epsilon < 3.0
    assert records[0].sample_rate == pytest.approx(privacy["sample_rate"])
    assert "popularity" in records[0].note
    # The item counts the model reads are a second spend of the same run, on the same
    # unit: the two mechanisms composed are the target epsilon, as the run reports.
    counts = [r for r in read_records(tiny_warehouse.ledger)
              if r.run_id == run_id + COUNTS_SUFFIX]
    assert [r.status for r in counts] == ["started", "completed"]
    assert counts[0].privacy_unit == "customer" and (counts[0].sample_rate,
                                                     counts[0].steps) == (1.0, 1)
    assert counts[0].max_grad_norm == pytest.approx(math.sqrt(counts[0].contribution_cap))
    release = privacy["popularity_release"]
    assert release["epsilon_alone"] == pytest.approx(0.25 * 3.0, rel=0.05)
    assert 0.0 <= release["reliability"] <= 1.0
    # The log form is read exactly where the release is reliable, and the saved model
    # is the one trained (its mix has the matching width).
    reliable = release["reliability"] >= LOG_FORM_MIN_RELIABILITY
    assert release["log_form"].startswith("read" if reliable else "not read: reliability")
    assert load(run_id, tiny_warehouse).model.config.popularity_log is reliable
    composed = compose_epsilon([(r.noise_multiplier, r.sample_rate, r.steps)
                                for r in (counts[0], records[0])],
                               delta=privacy["delta"])
    assert composed == pytest.approx(privacy["epsilon"], rel=1e-3)
    assert abs(composed - 3.0) / 3.0 < 0.05
    assert list_runs(tiny_warehouse)["run_id"].tolist() == [run_id]


def test_each_customer_is_one_clipped_gradient_per_step(tiny_warehouse):
    groups, catalogue = groups_and_catalogue(tiny_warehouse)
    # small clip norm: every per-customer gradient is clipped. Opacus' hooks mode keeps
    # each customer's gradient, which this test reads.
    config = quick(max_grad_norm=1e-3, grad_sample_mode="hooks")
    plan = plan_privacy(config, len({g.user for g in groups}))
    no_dropout = BertConfig(**{**TINY.to_dict(), "hidden_dropout_prob": 0.0,
                               "attention_probs_dropout_prob": 0.0})
    model = CrossEncoder.from_config(no_dropout, TINY_MODEL)
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    reference = copy.deepcopy(model)  # the same weights, without Opacus' hooks
    dataset = build_dataset(groups, catalogue, model)
    module, optimizer, loader, engine = prepare_training(model, dataset, config, plan)
    for indices in loader.batch_sampler:  # Poisson: a customer is in a batch at most once
        assert len(indices) == len(set(indices))
    batch = next(b for b in loader if b[0].shape[0] > 1)
    customers = batch[0].shape[0]
    optimizer.zero_grad()
    listwise_loss(module(*batch)).mean().backward()  # logits (B, G)
    trainable = model.trainable_parameters()
    # One per-sample gradient per CUSTOMER (not per candidate pair) for every parameter,
    assert all(p.grad_sample.shape[0] == customers for p in trainable)
    # and it is that customer's gradient alone: the grouped forward mixes no one.
    ref_params = reference.trainable_parameters()
    alone = torch.autograd.grad(listwise_loss(reference(*(x[:1] for x in batch))).sum(),
                                ref_params)
    for p, g in zip(trainable, alone, strict=True):
        assert torch.allclose(p.grad_sample[0], g, atol=1e-6, rtol=1e-4)
    norms = torch.stack([p.grad_sample.reshape(customers, -1).norm(dim=1)
                         for p in trainable], dim=1).norm(dim=1)  # (B,)
    assert (norms > config.max_grad_norm).all()  # so clipping matters below
    # Opacus clips each customer's gradient to C: the batch sum is at most B * C.
    optimizer.clip_and_accumulate()
    total = torch.sqrt(sum((p.summed_grad ** 2).sum() for p in trainable))
    assert float(total) <= customers * config.max_grad_norm * (1 + 1e-4)


def test_an_empty_poisson_batch_is_counted_by_the_accountant(tiny_warehouse):
    groups, catalogue = groups_and_catalogue(tiny_warehouse)
    config = quick()
    plan = plan_privacy(config, len({g.user for g in groups}))
    model = CrossEncoder.from_config(TINY, TINY_MODEL)
    module, optimizer, loader, engine = prepare_training(
        model, build_dataset(groups, catalogue, model), config, plan)
    shapes = collate_groups([loader.dataset[0]])
    empty = tuple(torch.empty((0, *x.shape[1:]), dtype=x.dtype) for x in shapes)
    before = [p.detach().clone() for p in model.trainable_parameters()]
    loss = train_step(module, optimizer, empty, model.trainable_parameters(), private=True)
    assert math.isnan(loss)
    assert len(engine.accountant.history) == 1  # the step is accounted for
    after = model.trainable_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # noise


def test_delta_above_one_over_ten_n_is_refused_before_the_ledger(tiny_warehouse):
    with pytest.raises(TrainingRefused, match="delta"):
        train(tiny_warehouse, quick(delta=0.01), model_config=TINY_MODEL, bert_config=TINY,
              progress=False)
    assert not tiny_warehouse.ledger.exists() or not read_records(tiny_warehouse.ledger)


def test_over_budget_runs_are_refused_and_nothing_starts(tiny_warehouse, monkeypatch):
    set_budget(budgets_path=tiny_warehouse.budgets,
               ledger_path=tiny_warehouse.ledger, dataset=tiny_warehouse.dataset,
               epsilon=1.0, delta=1e-5)
    started = []
    monkeypatch.setattr(train_mod, "fit_model", lambda *a, **k: started.append(1))
    with pytest.raises(BudgetExceeded):
        train(tiny_warehouse, quick(epsilon=3.0), model_config=TINY_MODEL,
              bert_config=TINY, progress=False)
    assert not started and list_runs(tiny_warehouse).empty


def test_a_failure_after_the_charge_marks_the_run_failed(tiny_warehouse, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(train_mod, "fit_model", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny_warehouse, quick(), model_config=TINY_MODEL, bert_config=TINY,
              progress=False)
    by_run: dict[str, list[str]] = {}
    for record in read_records(tiny_warehouse.ledger):
        if record.run_id:
            by_run.setdefault(record.run_id, []).append(record.status)
    # the training and its item counts: both charged, both marked failed
    assert sorted(by_run.values()) == [["started", "failed"], ["started", "failed"]]
    assert any(r.endswith(COUNTS_SUFFIX) for r in by_run)
    assert list_runs(tiny_warehouse).empty


def test_non_private_needs_the_explicit_flag_and_is_recorded_as_infinite(tiny_warehouse):
    with pytest.raises(ValueError, match="non_private"):
        TrainConfig(epsilon=math.inf)
    with pytest.raises(ValueError, match="uniform"):
        TrainConfig(negative_weighting="popularity")
    run_id = train(tiny_warehouse, quick(non_private=True), model_config=TINY_MODEL,
                   bert_config=TINY, progress=False)
    record = [r for r in read_records(tiny_warehouse.ledger) if r.run_id == run_id][0]
    assert record.privacy_unit == "none" and math.isinf(record.epsilon)


def test_a_non_private_model_reads_co_visits_and_a_dp_model_never_does(tiny_warehouse):
    model_config = replace(TINY_MODEL, co_visits=True)
    plain = train(tiny_warehouse, quick(non_private=True), model_config=model_config,
                  bert_config=TINY, progress=False)
    loaded = load(plain, tiny_warehouse)
    assert loaded.model_config.co_visits and loaded.model.co_visits is not None
    assert (loaded.path / "co_visits.npz").exists()
    # cosine, popularity (and its log), category share, co-visits
    assert loaded.model.prior_mix.in_features == 5
    assert loaded.privacy["co_visits"]["customers"] == CUSTOMERS
    interactions, catalogue = load_training_data(tiny_warehouse)
    split = make_split(interactions, "leave_last_out")
    recommender = CrossEncoderRecommender(loaded.model).fit(split.train, catalogue)
    queries = split.test.head(5)
    columns = recommender.candidates(split.train, queries)
    _, text_b = recommender.text_pairs(split.train, queries, columns)
    assert all("bought with history: " in b for b in text_b)
    # the retrieval adds items bought with the history beyond content and popularity
    assert max(len(c) for c in columns) > (TINY_MODEL.content_candidates
                                           + TINY_MODEL.popular_candidates)

    private = train(tiny_warehouse, quick(), model_config=model_config, bert_config=TINY,
                    progress=False)
    loaded = load(private, tiny_warehouse)
    assert not loaded.model_config.co_visits and loaded.model.co_visits is None
    assert not (loaded.path / "co_visits.npz").exists()
    # cosine, popularity (its log only from a reliable release), category share
    log_form = loaded.privacy["popularity_release"]["log_form"] == "read"
    assert loaded.model.prior_mix.in_features == 3 + log_form
    assert "co_visits" not in loaded.privacy
    # the category share reads the customer's own history only: DP models read it too
    assert loaded.model_config.category_share
    recommender = CrossEncoderRecommender(loaded.model).fit(split.train, catalogue)
    _, text_b = recommender.text_pairs(split.train, queries,
                                       recommender.candidates(split.train, queries))
    shares = [b for b in text_b if "recent items in its category: " in b]
    assert shares and not any("bought with history" in b for b in text_b)
    assert len(shares) == len(text_b)  # every generated item has a category


def test_retrieval_adds_the_most_popular_items_of_the_history_shown_categories(
        tiny_warehouse):
    model = CrossEncoder.from_config(TINY, replace(TINY_MODEL, content_candidates=2,
                                                   popular_candidates=1,
                                                   category_candidates=2))
    interactions, catalogue = load_training_data(tiny_warehouse)
    split = make_split(interactions, "leave_last_out")
    queries = split.test.head(12)
    with_category = CrossEncoderRecommender(model).fit(split.train, catalogue)
    without = CrossEncoderRecommender(model, category_candidates=0).fit(
        split.train, catalogue)
    columns = with_category.candidates(split.train, queries)
    base = without.candidates(split.train, queries)
    counts = split.train["item_id"].value_counts()
    category = dict(zip(catalogue["item_id"], catalogue["category"], strict=True))
    for user, cols, first in zip(queries["user_pseudonym"], columns, base, strict=True):
        assert list(cols[:len(first)]) == list(first)  # content and popular come first
        rows = split.train[split.train["user_pseudonym"] == user].sort_values("ts")
        shown = list(rows["item_id"])[-TINY_MODEL.history_len:]
        taken = set(rows["item_id"]) | {with_category.items_[c] for c in first}
        expected = set()
        for cat in {category[i] for i in shown}:
            ranked = sorted((i for i in category if category[i] == cat and i not in taken
                             and i in counts.index),  # items never bought: not ranked
                            key=lambda i: (-counts[i], i))
            expected |= set(ranked[:2])
        assert {with_category.items_[c] for c in cols[len(first):]} == expected
        assert len(cols) == len(set(cols))  # no item twice


def test_max_steps_stops_within_the_epoch_and_the_accountant_counts_those_steps(
        tiny_warehouse):
    run_id = train(tiny_warehouse, quick(batch_size=4, max_steps=3), model_config=TINY_MODEL,
                   bert_config=TINY, progress=False)
    run = tiny_warehouse.models_dir / run_id
    privacy = json.loads((run / "privacy.json").read_text())
    curve = json.loads((run / "curve.json").read_text())
    assert privacy["steps"] == 3 and len(curve) == 3
    assert privacy["sample_rate"] == pytest.approx(1 / 10)  # 40 customers / 4: unchanged
    assert abs(privacy["epsilon"] - 3.0) / 3.0 < 0.05


def test_held_out_items_never_reach_training_and_are_reported_apart(tiny_warehouse,
                                                                     monkeypatch):
    seen: dict[str, object] = {}
    real_build = data_mod.build_examples

    def spy(train_frame, catalogue, config):
        seen["train_items"] = set(train_frame["item_id"].astype(str))
        seen["catalogue_items"] = set(catalogue["item_id"].astype(str))
        return real_build(train_frame, catalogue, config)

    monkeypatch.setattr(data_mod, "build_examples", spy)
    run_id = train(tiny_warehouse, quick(held_out_items=0.2, eval_users=None,
                                         eval_baselines=True),
                   model_config=TINY_MODEL, bert_config=TINY, progress=False)
    metrics = json.loads((tiny_warehouse.models_dir / run_id / "metrics.json").read_text())
    held = set(metrics["held_out_items"])
    assert len(held) == 6  # 20% of 30 items
    assert not held & seen["train_items"] and not held & seen["catalogue_items"]
    segments = metrics["segments"]
    assert segments["warm_items"]["users"] + segments.get("cold_items", {"users": 0})["users"] \
        == metrics["model"]["users"]
    # ID-based baselines cannot recommend an item they never saw: recall 0 there.
    for name in ("popularity", "item-knn"):
        cold = metrics["baselines"][name]["segments"].get("cold_items")
        assert cold is None or cold["hr@10"] == 0.0



def _one_dp_step(tiny_warehouse, mode: str):
    """One noiseless DP step of Opacus mode `mode` on the same Poisson batch from the same
    weights, in float64 (the tiny random model's per-customer gradients nearly cancel,
    which float32 ghost norms do not resolve; the real model's agree to 1e-6 in
    float32, bench/dp_step.py): (the applied gradient per parameter, customers, plan)."""
    from dataclasses import replace

    groups, catalogue = groups_and_catalogue(tiny_warehouse)
    config = quick(max_grad_norm=1e-3, grad_sample_mode=mode)
    plan = replace(plan_privacy(config, len({g.user for g in groups})), noise_multiplier=0.0)
    no_dropout = BertConfig(**{**TINY.to_dict(), "hidden_dropout_prob": 0.0,
                               "attention_probs_dropout_prob": 0.0})
    model = CrossEncoder.from_config(no_dropout, TINY_MODEL, seed=0)
    with torch.no_grad():
        model.bert.classifier.weight.normal_(generator=torch.Generator().manual_seed(1))
    dataset = build_dataset(groups, catalogue, model)
    model.double()
    module, optimizer, loader, _ = prepare_training(model, dataset, config, plan)
    batch = next(b for b in loader if b[0].shape[0] > 1)
    batch = tuple(x.double() if x.is_floating_point() else x for x in batch)
    train_step(module, optimizer, batch, model.trainable_parameters(), private=True)
    applied = {n: p.grad.detach().clone() for n, p in model.named_parameters()
               if p.requires_grad}
    return applied, int(batch[0].shape[0]), plan


@pytest.mark.parametrize("mode", ["ghost", "bookkeeping"])
def test_each_clipping_mode_applies_the_same_clipped_update_as_per_sample_hooks(
        tiny_warehouse, mode):
    hooks, customers, plan = _one_dp_step(tiny_warehouse, "hooks")
    other, _, _ = _one_dp_step(tiny_warehouse, mode)
    # float64: they differ by about 1e-9 of the largest entry (the key bias's gradient
    # is zero up to rounding: attention does not change when every key moves alike)
    scale = max(float(g.abs().max()) for g in hooks.values())
    for name in hooks:
        assert torch.allclose(hooks[name], other[name], rtol=1e-6, atol=1e-8 * scale), name
    # Each customer's gradient clipped to C (every one is larger here), summed, divided by
    # the expected batch size E: the applied gradient is at most B * C / E in norm.
    total = torch.sqrt(sum((g ** 2).sum() for g in other.values()))
    assert 0 < float(total) <= customers * 1e-3 / plan.batch_size * (1 + 1e-6)


@pytest.mark.parametrize("mode", ["ghost", "bookkeeping"])
def test_an_empty_batch_under_one_pass_clipping_is_still_a_noised_accounted_step(
        tiny_warehouse, mode):
    groups, catalogue = groups_and_catalogue(tiny_warehouse)
    config = quick(grad_sample_mode=mode)
    model = CrossEncoder.from_config(TINY, TINY_MODEL)
    module, optimizer, loader, engine = prepare_training(
        model, build_dataset(groups, catalogue, model), config,
        plan_privacy(config, len({g.user for g in groups})))
    shapes = collate_groups([loader.dataset[0]])
    empty = tuple(torch.empty((0, *x.shape[1:]), dtype=x.dtype) for x in shapes)
    before = [p.detach().clone() for p in model.trainable_parameters()]
    assert math.isnan(train_step(module, optimizer, empty, model.trainable_parameters(),
                                 private=True))
    assert len(engine.accountant.history) == 1
    assert any(not torch.equal(a, b)
               for a, b in zip(before, model.trainable_parameters(), strict=True))


def test_steps_and_sample_rate_follow_the_plan_where_opacus_rounds_down(tiny_warehouse):
    # Opacus gives a Poisson loader int(1 / (1 / n)) batches per epoch: 92 for n = 93,
    # and tells the accountant q = 1/92. Training must run and account the plan's 93.
    from dataclasses import replace

    groups, catalogue = groups_and_catalogue(tiny_warehouse)
    users = sorted({g.user for g in groups})
    first = {u: next(g for g in groups if g.user == u) for u in users}
    many = [replace(first[users[i % len(users)]], user=f"copy{i}") for i in range(93)]
    config = quick(batch_size=1)
    plan = plan_privacy(config, 93)
    assert plan.steps_per_epoch == 93 and int(1 / plan.sample_rate) == 92
    model = CrossEncoder.from_config(TINY, TINY_MODEL)
    module, optimizer, loader, engine = prepare_training(
        model, build_dataset(many, catalogue, model), config, plan)
    assert len(loader) == 93
    for batch in loader:
        train_step(module, optimizer, batch, model.trainable_parameters(), private=True)
    assert [(q, n) for _, q, n in engine.accountant.history] == [(plan.sample_rate, 93)]
    assert optimizer.expected_batch_size == 1


def test_grad_samples_kept_without_copy_and_padded_or_added_as_opacus_does():
    from opacus.grad_sample import grad_sample_module as gsm

    from core.dp.opacus_glue import keep_opacus_grad_samples, store_grad_sample

    keep_opacus_grad_samples()
    assert gsm.create_or_accumulate_grad_sample is store_grad_sample
    keep_opacus_grad_samples()  # installing twice keeps Opacus' own as the fallback
    full, param = torch.randn(4, 3), torch.nn.Parameter(torch.zeros(3))
    first = full.clone()
    store_grad_sample(param=param, grad_sample=full, max_batch_len=4)
    assert param._current_grad_sample is full  # the whole batch: kept as it is
    store_grad_sample(param=param, grad_sample=first.clone(), max_batch_len=4)  # 2nd call
    assert torch.allclose(param._current_grad_sample, 2 * first)  # added, as Opacus does
    partial, other = torch.randn(2, 3), torch.nn.Parameter(torch.zeros(3))
    store_grad_sample(param=other, grad_sample=partial, max_batch_len=4)
    assert torch.equal(other._current_grad_sample[:2], partial)  # Opacus' padded buffer
    assert torch.equal(other._current_grad_sample[2:], torch.zeros(2, 3))
    view, third = torch.randn(4, 6)[:, :3], torch.nn.Parameter(torch.zeros(3))
    store_grad_sample(param=third, grad_sample=view, max_batch_len=4)
    assert third._current_grad_sample is not view  # a view is copied, never aliased


def test_new_items_take_the_last_places_of_the_top_ten_keeping_the_order_of_the_rest():
    scores = np.arange(14, 0, -1, dtype=np.float64)  # candidate c ranks c + 1
    new = np.zeros(14, dtype=bool)
    new[[11, 13]] = True
    one = with_new_item_slots(scores, new, 1)
    order = list(np.argsort(-one, kind="stable"))
    assert order[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 11]  # the best new item is 10th
    assert order[10:] == [9, 10, 12, 13]  # everything else in its old order
    assert scores[8] > one[11] > scores[9]  # its score lies between its new neighbours
    assert one[np.arange(14) != 11].tolist() == scores[np.arange(14) != 11].tolist()
    two = list(np.argsort(-with_new_item_slots(scores, new, 2), kind="stable"))
    assert two[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 11, 13]
    new_in_top = new.copy()
    new_in_top[2] = True  # a new item the model itself puts in the top 10
    assert with_new_item_slots(scores, new_in_top, 1).tolist() == scores.tolist()
    assert with_new_item_slots(scores[:10], new[:10], 1).tolist() \
        == scores[:10].tolist()  # ten candidates or fewer: nothing to move
    assert with_new_item_slots(scores, new, 0).tolist() == scores.tolist()
    with pytest.raises(ValueError, match="new_item_slots=10"):
        ModelConfig(new_item_slots=10)


def test_items_outside_the_training_data_are_new_and_get_a_place_in_each_top_ten(
        tiny_warehouse):
    model_config = replace(TINY_MODEL, content_candidates=14, new_item_slots=1)
    run_id = train(tiny_warehouse, quick(held_out_items=0.2), model_config=model_config,
                   bert_config=TINY, progress=False)
    loaded = load(run_id, tiny_warehouse)
    held = set(loaded.metrics["held_out_items"])
    interactions, catalogue = load_training_data(tiny_warehouse)
    split = make_split(interactions, "leave_last_out")
    recommender = CrossEncoderRecommender(loaded.model).fit(split.train, catalogue)
    assert {str(i) for i in recommender.items_[recommender.new_]} == held
    plain = CrossEncoderRecommender(loaded.model, new_item_slots=0).fit(
        split.train, catalogue)
    queries = split.test.head(10)
    history = split.train
    with_slot = recommender.score_items(history, queries)
    without = plain.score_items(history, queries)
    for q, cols in enumerate(recommender.candidates(history, queries)):
        top = np.argsort(-with_slot[q], kind="stable")[:10]
        if len(cols) > 10 and recommender.new_[cols].any():
            assert recommender.new_[top].sum() >= 1
        old = [c for c in np.argsort(-without[q], kind="stable")[:len(cols)]
               if not recommender.new_[c]]
        new_order = [c for c in np.argsort(-with_slot[q], kind="stable")[:len(cols)]
                     if not recommender.new_[c]]
        assert new_order == old  # bought items keep the model's order


def test_the_log_form_of_popularity_is_read_only_from_a_reliable_release():
    def release(reliability: float) -> PopularityRelease:
        return PopularityRelease({"i1": 100}, 3.0, 5, 100, 0.75, "prv",
                                           reliability)

    model_config = ModelConfig(popularity_log=True)
    threshold = LOG_FORM_MIN_RELIABILITY
    noisy = model_config_for_release(model_config, release(threshold - 0.01))
    assert noisy.popularity_log is False and noisy.popularity is True
    assert noisy == replace(model_config, popularity_log=False)  # nothing else changes
    assert model_config_for_release(model_config, release(threshold)) \
        == model_config
    assert model_config_for_release(model_config, None) == model_config
    exact = replace(release(1.0), noise_multiplier=0.0)  # a non-private run's counts
    assert model_config_for_release(model_config, exact).popularity_log is True
