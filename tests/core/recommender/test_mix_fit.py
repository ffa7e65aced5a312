"""The maximum-likelihood fits of a non-private model's logit weights."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.config import Paths
from core.recommender import mix_fit
from core.recommender.data import load_training_data, make_split
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.recommender.registry import load
from core.recommender.retrieval import CrossEncoderRecommender
from core.recommender.spend import COUNTS_SUFFIX, FIT_SUFFIX
from core.recommender.train import train
from core.registry import runs as model_runs
from privacy.accounting import compose_epsilon
from privacy.ledger import MECHANISM_GAUSSIAN_FIT, read_records
from tests.core.recommender.test_train import TINY, TINY_MODEL, build_warehouse, quick


def test_fit_listwise_weights_the_feature_that_ranks_the_targets_first():
    rng = np.random.default_rng(0)
    features, targets = [], []
    for n in rng.integers(3, 9, size=60):  # lists of different lengths
        f = rng.normal(size=(n, 2)) * 0.3
        t = int(rng.integers(n))
        f[t, 1] += 1.0  # column 1 marks the target; column 0 is noise
        features.append(f)
        targets.append(t)
    weights = mix_fit.fit_listwise(features, targets, np.zeros(2))
    assert weights[1] > 3.0 and abs(weights[0]) < weights[1] / 3
    held = mix_fit.fit_listwise(features, targets, np.array([0.0, 0.5]), free=[0])
    assert held[1] == 0.5  # only the free weights move


def test_fit_mix_starts_a_non_private_mix_at_its_best_fit():
    """fit_mix: the mix's weights that minimise the listwise loss of the mix alone."""
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=1.0, popularity=False,
                                                       category_share=False, co_visits=True))
    rng = np.random.default_rng(0)

    class Groups:  # groups of 4: the positive first, with a higher co-visit score
        def __len__(self):
            return 50

        def mix_features(self, i):
            features = rng.normal(size=(4, 2)).astype(np.float32) * 0.1
            features[0, 1] += 1.0
            return features

    start = model.prior_mix.weight.detach().clone()
    weights = mix_fit.fit_mix(model, Groups(), customers=50)
    assert weights.shape == (2,) and weights[1] > 2.0 > start[0, 1]
    assert np.allclose(model.prior_mix.weight.detach().numpy().ravel(), weights)


@pytest.fixture
def tiny_warehouse(warehouse_paths: Paths) -> Paths:
    build_warehouse(warehouse_paths, customers=80)
    return warehouse_paths


def test_the_validation_fit_is_folded_into_the_model_exactly(tiny_warehouse):
    """After fit_on_validation the model's own logit IS head_scale * head + w . mix: the
    head's last layer is scaled, the mix's weights set, nothing else changes."""
    model_config = replace(TINY_MODEL, co_visits=True)
    run_id = train(tiny_warehouse, quick(non_private=True, final_mix_users=0),
                   model_config=model_config, bert_config=TINY, progress=False)
    model = load(run_id, tiny_warehouse).model
    interactions, catalogue = load_training_data(tiny_warehouse)
    split = make_split(interactions, "leave_last_out")
    recommender = CrossEncoderRecommender(model).fit(split.train, catalogue)
    before, positives, drawn = mix_fit.validation_lists(recommender, split, customers=500)
    assert drawn == 80 and mix_fit.MIN_RANKED <= len(before) <= drawn
    record = mix_fit.fit_on_validation(recommender, split, customers=500)
    assert record["kept"] == "fitted"
    assert record["ndcg_after"] >= record["ndcg_before"]
    head_scale, weights = record["fitted"][0], np.array(record["fitted"][1:])
    assert head_scale >= 0
    after, again, _ = mix_fit.validation_lists(recommender, split, customers=500)
    assert again == positives
    for old, new in zip(before, after, strict=True):
        assert np.allclose(new[:, 1:], old[:, 1:])  # the mix's inputs
        assert np.allclose(new[:, 0], head_scale * old[:, 0], atol=1e-5)  # the head, scaled
    assert np.allclose(model.prior_mix.weight.detach().numpy().ravel(), weights)


def test_a_non_private_run_records_its_validation_fit_and_a_dp_run_has_none(
        tiny_warehouse):
    model_config = replace(TINY_MODEL, co_visits=True)
    plain = load(train(tiny_warehouse, quick(non_private=True), model_config=model_config,
                       bert_config=TINY, progress=False), tiny_warehouse)
    fit = plain.metrics["timing"]["final_mix"]
    assert fit["validation_customers"] == 80 and len(fit["trained"]) == 6  # head + 5 inputs
    assert fit["weights_of"] == ["head", "prior", "popularity", "popularity_log",
                                 "category_share", "co_visits"]
    assert fit["kept"] == "fitted" or fit["reason"] == "the fit lowered validation NDCG@10"
    if fit["kept"] == "fitted":
        assert np.allclose(plain.model.prior_mix.weight.detach().numpy().ravel(),
                           fit["fitted"][1:], atol=1e-6)
    private = load(train(tiny_warehouse, quick(), model_config=model_config,
                         bert_config=TINY, progress=False), tiny_warehouse)
    assert "final_mix" not in private.metrics["timing"]


def test_listwise_gradients_are_the_softmax_losss_gradients():
    rng = np.random.default_rng(1)
    features = [rng.normal(size=(n, 3)) for n in (4, 6, 2)]
    targets = [1, 0, 1]
    weights = rng.normal(size=3)
    w = torch.tensor(weights, requires_grad=True)
    for f, t, got in zip(features, targets,
                         mix_fit.listwise_gradients(features, targets, weights), strict=True):
        loss = -torch.log_softmax(torch.from_numpy(f) @ w, dim=0)[t]
        (want,) = torch.autograd.grad(loss, w)
        assert np.allclose(got, want.numpy())


def test_a_dp_run_fits_its_final_weights_with_dp_and_the_ledger_composes_it(tiny_warehouse):
    """On enough customers a DP run fits its final weights with DP: one more Gaussian
    mechanism (charged, composed with training and the counts into the run's epsilon),
    the fitted weights folded into the model, nothing unnoised recorded."""
    config = quick(final_fit_max_noise=math.inf, final_mix_users=40)  # tiny data: forced
    run_id = train(tiny_warehouse, config, model_config=TINY_MODEL, bert_config=TINY,
                   progress=False)
    run = load(run_id, tiny_warehouse)
    fit = run.metrics["timing"]["final_mix"]
    log_form = ["popularity_log"] if run.model.config.popularity_log else []  # by release
    assert fit["private"] and fit["weights_of"] == ["head", "prior", "popularity", *log_form,
                                                    "category_share"]
    assert np.allclose(run.model.prior_mix.weight.detach().numpy().ravel(), fit["fitted"][1:],
                       atol=1e-6)
    assert not {"validation_customers", "ranked", "ndcg_before", "ndcg_after"} & set(fit)
    record = run.privacy["final_fit"]
    assert record["sample_rate"] == pytest.approx(40 / 80)
    assert record["epsilon_alone"] == pytest.approx(0.1 * 3.0, rel=0.05)
    entries = {r.run_id: r for r in read_records(tiny_warehouse.ledger) if r.is_spend
               and r.status == "completed"}
    fit_entry = entries[run_id + FIT_SUFFIX]
    assert fit_entry.mechanism == MECHANISM_GAUSSIAN_FIT and fit_entry.steps == 1
    assert fit_entry.noise_multiplier == pytest.approx(record["noise_multiplier"])
    composed = compose_epsilon([(entries[r].noise_multiplier, entries[r].sample_rate,
                                 entries[r].steps) for r in (
        run_id, run_id + COUNTS_SUFFIX, run_id + FIT_SUFFIX)],
        delta=run.privacy["delta"])
    assert composed == pytest.approx(run.privacy["epsilon"], abs=0.02)
    assert composed <= 3.0 + 0.01
    assert fit["averaged_steps"] == config.final_fit_steps // 2
    assert "fitted with DP" in model_runs.final_mix_note(run.metrics)
    assert f"the last {config.final_fit_steps // 2} averaged" in model_runs.final_mix_note(
        run.metrics)
    # by default, on 80 customers the fit's noise would swamp it: none is made or charged
    plain = train(tiny_warehouse, quick(), model_config=TINY_MODEL, bert_config=TINY,
                  progress=False)
    assert "final_mix" not in load(plain, tiny_warehouse).metrics["timing"]
    assert plain + FIT_SUFFIX not in {r.run_id for r in
                                                read_records(tiny_warehouse.ledger)}
