"""Review sentiment: labels, the time split, class weights, aspects with the reviewer
floor, share suppression, and one DP training run of a tiny random BERT that charges the
ledger, registers the model and scores the warehouse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import BertConfig

from core.config import Paths
from core.ingest.pipeline import ingest
from core.registry.store import SENTIMENT, WEIGHTS, RegistryError
from core.sentiment import data as D
from core.sentiment import registry
from core.sentiment import train as T
from core.sentiment.config import SentimentTrainConfig, plan_privacy
from core.sentiment.evaluate import (
    accuracy,
    binary_accuracy,
    macro_f1,
    vader_compound,
    vader_labels,
)
from core.sentiment.features import FeatureStore
from core.sentiment.model import SentimentClassifier, SentimentModelConfig
from core.sentiment.score import ScoreConfig, score
from core.store.warehouse import query, read_connection
from core.synthetic.generator import GeneratorConfig, generate

KEY = bytes(range(32))
TINY_BERT = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=160)


# --- labels and text -------------------------------------------------------------------


def test_stars_map_to_three_labels():
    assert D.label_from_stars([1, 2, 3, 4, 5]).tolist() == [0, 0, 1, 2, 2]
    assert D.label_from_stars([1.0, 2.4, 2.6, 4.5]).tolist() == [0, 0, 1, 2]
    assert D.label_names([0, 1, 2]) == ["negative", "neutral", "positive"]


@pytest.mark.parametrize("bad", [0, 6, float("nan")])
def test_stars_outside_one_to_five_are_refused(bad):
    with pytest.raises(ValueError, match="star"):
        D.label_from_stars([5, bad])


def test_model_text_is_summary_dot_text():
    assert D.review_text("Great", "Works well.") == "Great . Works well."
    assert D.review_text(None, "Works well.") == "Works well."
    assert D.review_text("Great", None) == "Great"
    assert D.review_text(float("nan"), "  ") == ""


# --- split, cap, class balance ------------------------------------------------------------


def _reviews(n: int = 100, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 40, n)  # many reviews share a day: ties at the cut-off
    frame = pd.DataFrame({
        D.REVIEW_ID: [f"r{i:04d}" for i in range(n)],
        D.USER: [f"u_{i % 30:02d}" for i in range(n)],
        D.ITEM: [f"i_{i % 7}" for i in range(n)],
        D.RATING: rng.integers(1, 6, n).astype(float),
        D.TS: pd.Timestamp("2025-01-01") + pd.to_timedelta(days, unit="D"),
        D.SUMMARY: "s", D.TEXT: "t", D.CATEGORY: "c",
    })
    return D.with_labels(frame)


def test_time_split_trains_on_older_and_tests_on_newer_without_overlap():
    reviews = _reviews(300)
    split = D.time_split(reviews, test_share=0.2)
    assert split.train[D.TS].max() < split.test[D.TS].min()
    assert split.train[D.TS].max() < split.cutoff <= split.test[D.TS].min()
    assert not set(split.train[D.REVIEW_ID]) & set(split.test[D.REVIEW_ID])
    assert len(split.train) + len(split.test) == len(reviews)
    # every review stamped at the cut-off is a test review
    assert (reviews[D.TS] == split.cutoff).sum() == (split.test[D.TS] == split.cutoff).sum()
    assert 0.1 < len(split.test) / len(reviews) < 0.35


def test_time_split_refuses_a_single_moment():
    reviews = _reviews(20).assign(**{D.TS: pd.Timestamp("2025-01-01")})
    with pytest.raises(ValueError, match="distinct times"):
        D.time_split(reviews)


def test_cap_per_reviewer_and_groups():
    reviews = _reviews(300)
    capped = D.cap_per_reviewer(reviews, cap=3, seed=1)
    assert capped.groupby(D.USER).size().max() == 3
    assert capped[D.USER].nunique() == reviews[D.USER].nunique()
    groups = D.reviewer_groups(capped)
    assert len(groups) == 30
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(capped)))
    for g in groups:
        assert capped.iloc[g][D.USER].nunique() == 1


def test_balanced_class_weights_give_each_class_the_same_total():
    labels = np.array([2] * 80 + [0] * 15 + [1] * 5)
    weights = D.class_weights(labels, scheme="balanced")
    totals = weights * D.class_counts(labels)
    assert np.allclose(totals, totals[0])
    assert np.isclose(weights[labels].mean(), 1.0)
    assert np.allclose(D.class_weights(labels, scheme="none"), 1.0)
    assert D.class_weights(np.array([2, 2, 0]), scheme="balanced")[1] == 0.0  # absent class
    assert D.class_shares(labels) == {"negative": 0.15, "neutral": 0.05, "positive": 0.8}


def test_balanced_binary_subset_has_equal_negatives_and_positives():
    reviews = _reviews(300)
    subset = D.balanced_binary(reviews, seed=0)
    counts = subset[D.LABEL].value_counts()
    assert set(counts.index) == {D.NEGATIVE, D.POSITIVE}
    assert counts[D.NEGATIVE] == counts[D.POSITIVE] == min(
        (reviews[D.LABEL] == D.NEGATIVE).sum(), (reviews[D.LABEL] == D.POSITIVE).sum())


def test_metrics_identity_and_known_values():
    y = np.array([0, 1, 2, 2])
    assert accuracy(y, y) == 1.0
    assert macro_f1(y, y) == 1.0
    assert accuracy(y, [0, 1, 2, 0]) == 0.75
    assert binary_accuracy([0, 2], [-0.3, 0.4]) == 1.0
    assert binary_accuracy([0, 2], [0.3, -0.4]) == 0.0
    assert vader_labels(np.array([-0.5, 0.0, 0.04, 0.05])).tolist() == [0, 1, 1, 2]


def test_vader_reads_obvious_reviews():
    compound = vader_compound(["Terrible . Broke after a day, awful.",
                               "Love it . Works great, wonderful."])
    assert compound[0] < -0.05 < 0.05 < compound[1]


# --- aspects and the reviewer floor --------------------------------------------------------


def test_aspect_terms_are_non_stopword_unigrams_and_bigrams_that_pushed():
    words = ["the", "battery", "life", "is", "terrible", "."]
    weights = [0.1, 0.2, 0.3, 0.0, 0.5, -0.1]
    terms = D.aspect_terms(words, weights)
    assert terms == pytest.approx({"battery": 0.2, "life": 0.3, "battery life": 0.5,
                                   "terrible": 0.5})
    assert "life terrible" not in terms  # not next to each other ("is" between)
    assert D.aspect_terms(["zipper"], [-0.4]) == {}  # pushed against the prediction


def _aspect_frames(mentions: dict[str, list[str]]
                   ) -> tuple[pd.DataFrame, list[list[str]], list[list[float]]]:
    """Negative reviews: for each aspect word, one review per listed reviewer."""
    rows, words, weights = [], [], []
    for aspect, users in mentions.items():
        for k, user in enumerate(users):
            rows.append({D.REVIEW_ID: f"{aspect}-{k}", D.USER: user, D.ITEM: "i_1",
                         D.CATEGORY: "Kitchen", "predicted": D.NEGATIVE})
            words.append(["the", aspect, "broke", "."])
            weights.append([0.0, 0.6, 0.4, 0.0])
    return pd.DataFrame(rows), words, weights


def test_an_aspect_needs_ten_distinct_reviewers_to_appear():
    mentions = {
        "handle": [f"u{i}" for i in range(10)],  # 10 reviewers: shown
        "lid": [f"v{i}" for i in range(9)],  # 9 reviewers: never shown
        "knob": ["u_one"] * 25,  # one reviewer, 25 reviews: never shown
    }
    reviews, words, weights = _aspect_frames(mentions)
    rows = D.aspect_rows(reviews, words, weights)
    aspects = D.aggregate_aspects(rows, reviews, min_reviewers=10)
    assert set(aspects["aspect"]) >= {"handle"}
    assert not {"lid", "knob", "lid broke", "knob broke"} & set(aspects["aspect"])
    assert (aspects["reviewers"] >= 10).all()
    assert set(aspects["scope"]) == {"all", "category", "item"}
    handle = aspects[(aspects["aspect"] == "handle") & (aspects["scope"] == "item")].iloc[0]
    assert handle["polarity"] == "negative" and handle["reviewers"] == 10
    assert 0 < handle["weight"] <= 1
    # "broke" is in every review, from 10 + 9 + 1 = 20 reviewers
    broke = aspects[(aspects["aspect"] == "broke") & (aspects["scope"] == "all")].iloc[0]
    assert broke["reviewers"] == 20
    # lower the floor and the rare ones appear: the floor, not the data, kept them out
    loose = D.aggregate_aspects(rows, reviews, min_reviewers=1)
    assert {"lid", "knob"} <= set(loose["aspect"])


# --- share suppression --------------------------------------------------------------------


def test_suppress_shares_hides_small_cells_and_one_more():
    frame = pd.DataFrame({
        "month": ["2025-01"] * 3 + ["2025-02"] * 3 + ["2025-03"] * 3,
        "label": list(D.LABELS) * 3,
        "reviews": [30, 40, 100, 3, 40, 100, 2, 3, 4],
        "customers": [25, 30, 80, 3, 35, 90, 2, 3, 4],
    })
    shown, hidden, dropped = D.suppress_shares(frame, ["month"], min_cell=10)
    jan = shown[shown["month"] == "2025-01"]
    assert len(jan) == 3 and jan["share"].sum() == pytest.approx(1.0)
    feb = shown[shown["month"] == "2025-02"]
    # the 3-reviewer cell is hidden, and the next smallest (35) with it
    assert feb["label"].tolist() == ["positive"]
    assert feb["share"].iloc[0] == pytest.approx(100 / 143)
    assert hidden == 2 and dropped == 1  # March has 9 reviewers in all: dropped whole


# --- a DP training run end to end (tiny random BERT) -----------------------------------------


@pytest.fixture(scope="module")
def generated_warehouse(tmp_path_factory) -> Paths:
    root = tmp_path_factory.mktemp("sentiment")
    files = generate(GeneratorConfig(customers=800, items=200, seed=3), root / "raw",
                     progress=False)
    paths = Paths(data_dir=root / "data")
    ingest([files.tables["customers"], files.tables["items"], files.tables["reviews"]],
           key=KEY, paths=paths, progress=False)
    return paths


@pytest.fixture(scope="module")
def trained(generated_warehouse: Paths) -> str:
    # RDP: the same guarantee as PRV here at a fraction of the accountant's time
    config = SentimentTrainConfig(epsilon=8.0, epochs=1, batch_size=32, lr=5e-3,
                                  accountant="rdp")
    return T.train(generated_warehouse, config, bert_config=TINY_BERT,
                   model_config=SentimentModelConfig(max_length=64), progress=False)


def _ledger(paths: Paths) -> list[dict]:
    return [json.loads(line) for line in paths.ledger.read_text().splitlines()]


def test_dp_run_is_charged_before_training_and_completed(generated_warehouse, trained):
    records = [r for r in _ledger(generated_warehouse) if r["run_id"] == trained]
    assert [r["status"] for r in records] == ["started", "completed"]
    started = records[0]
    assert started["artefact_kind"] == "sentiment"
    # the same dataset as the recommender's runs: one budget for the warehouse's customers
    assert started["dataset"] == generated_warehouse.dataset == "warehouse"
    assert started["privacy_unit"] == "customer"
    assert started["contribution_cap"] == 8
    assert started["epsilon"] == 8.0 and started["noise_multiplier"] > 0
    assert started["accountant"] == "rdp" and started["delta"] <= 1e-5
    assert "one review per sampled reviewer" in started["note"]
    assert 0 < records[1]["epsilon"] <= 8.0 + 0.05


def test_dp_run_is_registered_with_privacy_and_metrics(generated_warehouse, trained):
    root = SENTIMENT.root(generated_warehouse)
    assert (root / trained / WEIGHTS).exists()
    assert not list(root.glob("*.partial"))
    loaded = registry.load(trained, generated_warehouse)
    assert loaded.privacy["private"] and loaded.privacy["privacy_unit"] == "reviewer"
    assert loaded.privacy["epsilon"] <= 8.0 + 0.05
    model = loaded.metrics["model"]
    assert 0 <= model["accuracy"] <= 1 and 0 <= model["macro_f1"] <= 1
    assert "vader" in loaded.metrics["baselines"]
    shares = loaded.metrics["data"]["class_shares"]
    assert sum(shares["train_pool"].values()) == pytest.approx(1.0)
    assert sum(shares["test"].values()) == pytest.approx(1.0)
    # only the top layer and the head learnt: the rest is the tiny model's initial state
    assert [n for n, p in loaded.model.named_parameters() if p.requires_grad] and all(
        n.startswith(("bert.bert.encoder.layer.1.", "bert.classifier."))
        for n, p in loaded.model.named_parameters() if p.requires_grad)
    assert registry.list_runs(generated_warehouse)["run_id"].tolist() == [trained]


def test_scoring_labels_every_review_and_rescoring_replaces_rows(generated_warehouse, trained):
    result = score(generated_warehouse, trained, ScoreConfig(min_reviewers=2), progress=False)
    reviews = query("table_counts", generated_warehouse).set_index("table_name")["rows"]
    assert result.reviews == reviews["reviews"] > 100
    with read_connection(generated_warehouse) as con:
        scored = con.execute("SELECT * FROM review_sentiment").df()
        weights = con.execute("SELECT * FROM review_token_weights").df()
    assert len(scored) == result.reviews and scored["review_id"].is_unique
    assert set(scored["run_id"]) == {trained}
    assert set(scored["label"]) <= set(D.LABELS)
    total = scored[["p_negative", "p_neutral", "p_positive"]].sum(axis=1)
    assert np.allclose(total, 1.0, atol=1e-4)
    assert len(weights) == result.examples > 0
    spans = json.loads(weights["spans"].iloc[0])
    assert all(len(s) == 3 and s[0] < s[1] for s in spans)

    again = score(generated_warehouse, trained, progress=False)
    with read_connection(generated_warehouse) as con:
        n = con.execute("SELECT count(*) FROM review_sentiment").fetchone()[0]
        floor = con.execute("SELECT min(reviewers) FROM review_aspects").fetchone()[0]
    assert n == again.reviews == result.reviews
    assert floor is None or floor >= 10  # the default floor: PrivacyConfig().min_cell_size


def test_a_run_over_budget_is_refused_before_any_training(generated_warehouse, trained):
    from privacy.budget import set_budget
    from privacy.ledger import BudgetExceeded

    paths = Paths(data_dir=generated_warehouse.data_dir.parent / "budgeted")
    paths.data_dir.mkdir()
    for name in ("warehouse.duckdb", "warehouse.read.duckdb"):
        (paths.data_dir / name).write_bytes((generated_warehouse.data_dir / name).read_bytes())
    set_budget(budgets_path=paths.budgets, ledger_path=paths.ledger,
               dataset=paths.dataset, epsilon=1.0, delta=1e-5)
    with pytest.raises(BudgetExceeded):
        T.train(paths, SentimentTrainConfig(epsilon=8.0, epochs=1, accountant="rdp"),
                bert_config=TINY_BERT, progress=False)
    with pytest.raises(BudgetExceeded):  # and a non-private run is refused outright
        T.train(paths, SentimentTrainConfig(non_private=True, epsilon=math.inf),
                bert_config=TINY_BERT, progress=False)
    assert not SENTIMENT.root(paths).exists()
    assert [r["artefact_kind"] for r in _ledger(paths)] == ["budget"]


def test_non_private_needs_the_explicit_flag():
    with pytest.raises(ValueError, match="non_private"):
        SentimentTrainConfig(epsilon=math.inf)
    config = SentimentTrainConfig(non_private=True, epsilon=math.inf)
    plan = plan_privacy(config, 100)
    assert plan.noise_multiplier == 0.0 and plan.accountant == "none"


def test_empty_poisson_batches_still_step_and_count(generated_warehouse):
    # 3 reviewers and an expected batch of 1: about 30% of the steps draw nobody
    model = T.new_model(SentimentModelConfig(max_length=32), bert_config=TINY_BERT)
    texts = ["good", "bad", "fine", "great"]
    features = FeatureStore().get(model, texts)
    groups = [np.array([0, 3]), np.array([1]), np.array([2])]
    config = SentimentTrainConfig(epsilon=20.0, epochs=4, batch_size=1, delta=1e-2,
                                  accountant="rdp")
    plan = plan_privacy(config, 3)
    before = model.bert.classifier.weight.detach().clone()
    result = T.fit(model, features, np.array([2, 0, 1, 2]), groups, config, plan,
                   class_weights=np.ones(3), progress=False)
    sizes = [c["batch_size"] for c in result.curve]
    assert len(sizes) == plan.steps and 0 in sizes
    assert 0 < result.epsilon <= 20.0 + 0.2
    assert not model.bert.classifier.weight.detach().equal(before)


def test_class_weights_act_after_clipping_so_the_sensitivity_stays_the_clip_norm():
    import torch

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))
    a.grad_sample = torch.tensor([[30.0, 0, 0], [0.3, 0, 0], [0, 4.0, 0]])  # (B=3, 3)
    b.grad_sample = torch.tensor([[[0.0, 40]], [[0, 0.4]], [[3.0, 0]]]).expand(3, 2, 2).clone()
    T.clip_and_weight([a, b], torch.tensor([1.0, 1.0, 0.25]), max_grad_norm=1.0)
    norms = torch.sqrt((a.grad_sample ** 2).sum(1) + (b.grad_sample ** 2).sum((1, 2)))
    assert norms[0] == pytest.approx(1.0, rel=1e-4)  # clipped to the norm, weight 1
    assert norms[1] == pytest.approx(float(np.sqrt(0.09 + 2 * 0.16)), rel=1e-4)  # below it
    assert norms[2] == pytest.approx(0.25, rel=1e-4)  # clipped, then weighted
    assert (norms <= 1.0 + 1e-5).all()


def test_frozen_features_are_deterministic_in_train_mode():
    model = T.new_model(SentimentModelConfig(max_length=32), bert_config=TINY_BERT)
    model.train()  # the trainable top layer drops out; the frozen part must not
    assert not model.bert.bert.encoder.layer[0].training
    assert model.bert.bert.encoder.layer[1].training
    texts = ["a short one", "a much longer review that needs padding in a batch"]
    alone = FeatureStore().get(model, texts[:1])[0]
    batched = FeatureStore().get(model, texts)[0]
    assert alone.shape == batched.shape
    assert (alone.float() - batched.float()).abs().max() < 1e-2


def test_feature_store_refuses_another_base():
    store = FeatureStore()
    a = T.new_model(SentimentModelConfig(max_length=32), bert_config=TINY_BERT, seed=0)
    b = T.new_model(SentimentModelConfig(max_length=32), bert_config=TINY_BERT, seed=1)
    store.get(a, ["one review"])
    with pytest.raises(ValueError, match="another model"):
        store.get(b, ["one review"])


def test_real_minilm_loads_with_a_three_class_head():
    model = SentimentClassifier.from_pretrained()
    assert model.bert.config.num_labels == 3
    assert model.bert.config.id2label[0] == "negative"
    proba = model.predict_proba(["Great . Love it.", "Awful . Broke in a day."])
    assert proba.shape == (2, 3) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    trainable = {n.split(".")[4] for n, p in model.named_parameters()
                 if p.requires_grad and n.startswith("bert.bert.encoder")}
    assert trainable == {"5"}  # the top layer only, by default


def test_attribution_spans_point_into_the_text():
    model = T.new_model(SentimentModelConfig(max_length=32), bert_config=TINY_BERT)
    text = "Zippers broke . Don't buy!"
    (a,) = model.attribute([text])
    assert [text[s:e].lower() for s, e in a.spans] == a.words
    assert "zippers" in a.words and len(a.weights) == len(a.words)
    assert a.predicted == int(np.argmax(a.probabilities))


def test_registry_refuses_a_bad_run_id(tmp_path):
    with pytest.raises(RegistryError):
        SENTIMENT.run_dir(Paths(data_dir=Path(tmp_path)), "../escape")


# --- the command line (registered by core.cli.main through `register`) ---------------------------


def _parser():
    import argparse

    from core.cli import sentiment as cli_sentiment

    parser = argparse.ArgumentParser(prog="clearmark")
    cli_sentiment.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_train_score_and_evaluate():
    parser = _parser()
    args = parser.parse_args(["sentiment", "train", "--epsilon", "3", "--epochs", "2",
                              "--max-reviewers", "500"])
    assert (args.epsilon, args.epochs, args.max_reviewers, args.non_private) == (3.0, 2, 500,
                                                                                 False)
    assert parser.parse_args(["sentiment", "score", "sent_x"]).run_id == "sent_x"
    assert parser.parse_args(["sentiment", "evaluate"]).run_id is None
    assert parser.parse_args(["sentiment", "train", "--non-private"]).non_private


def test_cli_mistakes_are_usage_errors(warehouse_paths):
    from core.cli.main import UsageError

    parser = _parser()
    args = parser.parse_args(["sentiment", "train", "--non-private", "--epsilon", "3"])
    with pytest.raises(UsageError, match="--non-private"):
        args.func(args)
    args = parser.parse_args(["sentiment", "train", "--epochs", "0", "--quiet"])
    with pytest.raises(UsageError, match="epochs"):
        args.func(args)
    args = parser.parse_args(["sentiment", "train", "--epsilon", "0", "--quiet"])
    with pytest.raises(UsageError, match="epsilon=0"):
        args.func(args)
    args = parser.parse_args(["sentiment", "train", "--quiet"])
    with pytest.raises(UsageError, match="clearmark demo"):  # no warehouse yet
        args.func(args)
    args = parser.parse_args(["sentiment", "score", "--quiet"])
    with pytest.raises(UsageError, match="clearmark sentiment train"):  # no model yet
        args.func(args)
