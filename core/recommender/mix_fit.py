"""Fitted weights for a model's logit: before and after training, exact or with DP.

The model's logit is head(pair) + w . mix inputs (the zero-shot prior's cosine, the
popularity percentile, the category share, the co-visit score:
`core.recommender.model.CrossEncoder.mix_inputs`). `fit_mix` and `fit_on_validation` read
customers' data without noise, so they are for non-private runs only; a DP run's
weights start at the zero-shot prior, learn under DP-SGD's noise and, on enough
customers, are refitted by `fit_on_validation_private`, which is charged to the budget.

- `fit_mix` (start of training): the mix's weights that best rank each training
  example group (positive first, sampled negatives) by the mix alone; the head is zero
  at the start, so the mix is the whole logit. Adam moves a weight by about its learning
  rate per step: a run of a few dozen steps could not take an exact feature such as the
  co-visits from 0 to the weight it merits.
- `fit_on_validation` (end of training): the weights of the FINAL logit,
  head_scale * head + w . mix inputs, that best rank the validation targets among the
  candidates the retrieval gives (`core.recommender.retrieval.CrossEncoderRecommender`).
  Training groups hold uniform and same-category negatives; the model is used to re-rank a
  candidate set of content neighbours, popular and co-visited items, where the balance
  between the head, the prior and the co-visits differs. The validation targets (each
  customer's second-to-last interaction) are never test targets, so the test
  evaluation stays clean. The fitted weights are folded into the model (the head's last
  linear layer scaled, the mix's weights set), so scoring, explanations and campaigns
  read exactly the fitted logit and the saved model needs nothing new.
- `fit_on_validation_private` (end of a DP run, on large data): the same weights fitted
  with DP. Customers are Poisson-sampled (rate q, secret randomness); each sampled
  customer's validation target, ranked among its candidates, gives one listwise-loss
  gradient of the weights, clipped to norm `clip`; `steps` steps of Adam on the sum of
  the clipped gradients plus Gaussian noise of sd noise_multiplier x clip each. T
  Gaussian steps on one sample compose to ONE Gaussian mechanism of noise multiplier
  noise_multiplier / sqrt(T) (Gaussian DP composes exactly), and that mechanism runs
  on a Poisson sample: the accountant charges it as (noise_multiplier / sqrt(T), q, 1),
  composed with the run's DP-SGD (`core.recommender.planning.plan_run`). Nothing
  unnoised leaves it: no count of the sampled customers, no validation NDCG, no "keep if better".
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from core.recommender.model_config import mix_input_names
from core.recommender.splits import Split, histories_frame
from core.store.interactions import ITEM, PROMOTION, TS, USER

VALIDATION_CUSTOMERS = 500  # validation targets ranked for the final fit (a seeded sample)
MIN_RANKED = 20  # fewer validation targets among their candidates: keep the trained weights


def fit_listwise(features: Sequence[np.ndarray], targets: Sequence[int], start: np.ndarray,
                 *, free: Sequence[int] | None = None) -> np.ndarray:
    """Weights w (F,) minimising the mean softmax cross-entropy of the `targets` under
    the scores features @ w, by L-BFGS from `start`: `features` holds one (n_i, F) array
    per ranked list (lists may differ in length), `targets` the index of the positive in
    each. `free`: the weights that move (None: all); the others stay at `start`."""
    if not features:
        return np.asarray(start, dtype=np.float64).copy()
    width = len(start)
    longest = max(len(f) for f in features)
    padded = np.zeros((len(features), longest, width))  # (N, n, F)
    keep = np.zeros((len(features), longest), dtype=bool)  # (N, n)
    for row, f in enumerate(features):
        padded[row, :len(f)] = np.asarray(f, dtype=np.float64).reshape(len(f), width)
        keep[row, :len(f)] = True
    x = torch.from_numpy(padded)
    hidden = torch.from_numpy(~keep)
    positive = torch.tensor(list(targets))
    fixed = torch.tensor(np.asarray(start, dtype=np.float64))
    moving = np.arange(width) if free is None else np.asarray(list(free), dtype=np.int64)
    mask = torch.zeros(width, dtype=torch.float64)
    mask[torch.from_numpy(moving)] = 1.0
    delta = torch.zeros(width, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([delta], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = (x @ (fixed + mask * delta)).masked_fill(hidden, -torch.inf)  # (N, n)
        loss = -torch.log_softmax(logits, dim=1).gather(1, positive[:, None]).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return (fixed + mask * delta).detach().numpy()


def _weights(model) -> np.ndarray:
    """The model's mix weights (F,), float64."""
    return model.prior_mix.weight.detach().double().reshape(-1).numpy().copy()


def fit_mix(model, dataset, *, customers: int = 2000, seed: int = 0) -> np.ndarray:
    """Start a NON-PRIVATE model's mix at its maximum-likelihood weights on one group of
    each of a seeded sample of `customers` (`core.recommender.examples.CustomerDataset`: the
    positive first). Sets and returns the weights (F,)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(dataset), size=min(customers, len(dataset)), replace=False)
    features = [np.asarray(dataset.mix_features(int(i)), dtype=np.float64) for i in chosen]
    weights = fit_listwise(features, [0] * len(features), _weights(model))
    with torch.no_grad():
        model.prior_mix.weight.copy_(torch.from_numpy(weights).reshape(
            model.prior_mix.weight.shape))
    return _weights(model)


def _ndcg(features: Sequence[np.ndarray], targets: Sequence[int], weights: np.ndarray,
          customers: int, k: int = 10) -> float:
    """NDCG@k over `customers` validation targets, those outside their candidates (not
    in `features`) counting as misses; ties go against the target."""
    total = 0.0
    for f, t in zip(features, targets, strict=True):
        scores = f @ weights
        rank = int((scores >= scores[t]).sum()) - 1  # 0 = first
        total += 1.0 / np.log2(rank + 2) if rank < k else 0.0
    return float(total / max(customers, 1))


def validation_lists(recommender, split: Split, *, customers: int, seed: int = 0
                     ) -> tuple[list[np.ndarray], list[int], int]:
    """(features (n_i, 1 + F) per ranked validation target: the head's logit then the
    mix's inputs of each candidate; the target's index among them; the validation
    targets drawn). Targets outside their candidate set are drawn but not ranked."""
    targets = split.targets("valid")
    if len(targets) > customers:
        targets = targets.sample(n=customers, random_state=seed)
    return ranked_lists(recommender, split, targets)


def ranked_lists(recommender, split: Split, targets: pd.DataFrame
                 ) -> tuple[list[np.ndarray], list[int], int]:
    """`validation_lists` for the given validation `targets` (rows of split.valid)."""
    model = recommender.model
    if targets.empty:
        return [], [], 0
    targets = targets.reset_index(drop=True)
    history = histories_frame(split.known_for("valid"), targets, same_time=True)
    queries = targets[[USER, TS, PROMOTION]]
    columns = recommender.candidates(history, queries)
    text_a, text_b = recommender.text_pairs(history, queries, columns)
    logits = model.score_pairs(text_a, text_b)  # (N,) the whole logit
    mix = model.prior_similarity(text_a, text_b).reshape(len(text_a), -1)  # (N, F)
    head = logits - mix @ _weights(model)  # (N,) what the encoder and head add
    features, positives = [], []
    start = 0
    for wanted, cols in zip(targets[ITEM].astype(str), columns, strict=True):
        at = np.flatnonzero(recommender.items_[cols] == wanted)
        if len(at):
            rows = slice(start, start + len(cols))
            features.append(np.column_stack([head[rows], mix[rows]]))
            positives.append(int(at[0]))
        start += len(cols)
    return features, positives, len(targets)


def fit_on_validation(recommender, split: Split, *, customers: int = VALIDATION_CUSTOMERS,
                      seed: int = 0) -> dict[str, object]:
    """Fit and fold in the final logit's weights (head scale, mix weights) on the
    validation targets (see the module docstring). The head's scale is kept >= 0 (a
    negative one would turn the trained head's judgement upside down: the fit is then
    repeated with the head at 0). The fit is kept only where it does not lower the
    validation NDCG@10. Returns what was done, for the run's metrics."""
    model = recommender.model
    features, positives, drawn = validation_lists(recommender, split, customers=customers,
                                                  seed=seed)
    start = np.concatenate([[1.0], _weights(model)])
    record: dict[str, object] = {"validation_customers": drawn, "ranked": len(features),
                                 "weights_of": ["head", *mix_input_names(model.config)],
                                 "trained": [float(w) for w in start]}
    if len(features) < MIN_RANKED:
        record.update(kept="trained", reason="too few validation targets among their "
                                             "candidates")
        return record
    fitted = fit_listwise(features, positives, start)
    if fitted[0] < 0:
        fitted = fit_listwise(features, positives, np.concatenate([[0.0], start[1:]]),
                              free=range(1, len(start)))
    before = _ndcg(features, positives, start, drawn)
    after = _ndcg(features, positives, fitted, drawn)
    record.update(fitted=[float(w) for w in fitted], ndcg_before=before, ndcg_after=after)
    if after < before:
        record.update(kept="trained", reason="the fit lowered validation NDCG@10")
        return record
    _fold(model, fitted)
    record["kept"] = "fitted"
    return record


def _fold(model, weights: np.ndarray) -> None:
    """Scale the head's last layer by weights[0] and set the mix to weights[1:]."""
    with torch.no_grad():
        model.bert.classifier.weight.mul_(float(weights[0]))
        model.bert.classifier.bias.mul_(float(weights[0]))
        model.prior_mix.weight.copy_(torch.from_numpy(np.asarray(weights[1:])).reshape(
            model.prior_mix.weight.shape))


def private_noise_per_step(noise_multiplier: float, steps: int) -> float:
    """The per-step noise multiplier of `steps` Gaussian steps that compose to one
    Gaussian mechanism of `noise_multiplier` (what the accountant charges)."""
    return noise_multiplier * math.sqrt(steps)


def listwise_gradients(features: Sequence[np.ndarray], targets: Sequence[int],
                       weights: np.ndarray) -> np.ndarray:
    """(N, F): each list's gradient of its softmax cross-entropy at `weights`:
    features^T (softmax(features @ w) - one_hot(target))."""
    out = np.zeros((len(features), len(weights)))
    for row, (f, t) in enumerate(zip(features, targets, strict=True)):
        scores = f @ weights
        p = np.exp(scores - scores.max())
        p /= p.sum()
        out[row] = p @ f - f[t]
    return out


def fit_on_validation_private(recommender, split: Split, *, sample_rate: float,
                              noise_multiplier: float, steps: int, lr: float,
                              clip: float = 1.0, population: int,
                              rng: np.random.Generator | None = None) -> dict[str, object]:
    """The DP fit of the final logit's weights (see the module docstring), folded into
    the model. `noise_multiplier` is the one Gaussian mechanism's the accountant charges
    (per step it is times sqrt(steps)); `population`: the customers the sample is drawn
    from, whose expected sample size normalises the gradient (the actual size is not
    released). The default generator is seeded from the operating system's entropy."""
    model = recommender.model
    rng = rng or np.random.default_rng(secrets.randbits(128))
    targets = split.targets("valid")
    sampled = targets[rng.random(len(targets)) < sample_rate]
    features, positives, _ = ranked_lists(recommender, split, sampled)
    features = [np.asarray(f, dtype=np.float64) for f in features]
    start = np.concatenate([[1.0], _weights(model)])
    per_step = private_noise_per_step(noise_multiplier, steps)
    expected = max(sample_rate * population, 1.0)
    weights = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.Adam([weights], lr=lr)
    averaged_from = steps // 2
    later = []  # the weights after each of the last steps - averaged_from steps
    for step in range(steps):
        grads = listwise_gradients(features, positives, weights.detach().numpy())
        norms = np.linalg.norm(grads, axis=1, keepdims=True)  # (N, 1); (0, 1) for none
        total = (grads * np.minimum(1.0, clip / np.maximum(norms, 1e-12))).sum(axis=0)
        noisy = (total + rng.normal(0.0, per_step * clip, len(start))) / expected
        optimizer.zero_grad()
        weights.grad = torch.from_numpy(noisy)
        optimizer.step()
        if step >= averaged_from:
            later.append(weights.detach().numpy().copy())
    fitted = np.mean(later, axis=0) if later else start.copy()
    fitted[0] = max(fitted[0], 0.0)  # never turn the trained head upside down
    _fold(model, fitted)
    return {"private": True, "kept": "fitted", "weights_of": ["head", *mix_input_names(
                model.config)], "trained": [float(w) for w in start],
            "fitted": [float(w) for w in fitted], "sample_rate": sample_rate,
            "expected_customers": expected, "noise_multiplier": noise_multiplier,
            "noise_per_step": per_step, "steps": steps, "averaged_steps": len(later),
            "lr": lr, "clip": clip}
