"""Maximum-likelihood weights for a NON-PRIVATE model's logit, before and after training.

The model's logit is head(pair) + w . mix inputs (the zero-shot prior's cosine, the
popularity percentile, the co-visit score: `core.model.CrossEncoder.mix_inputs`). Both
fits below read customers' data without noise, so they are for non-private runs only;
a DP run's weights start at the zero-shot prior and learn under DP-SGD's noise.

- `fit_mix` (start of training): the mix's weights that best rank each training
  example group (positive first, sampled negatives) by the mix alone; the head is zero
  at the start, so the mix is the whole logit. Adam moves a weight by about its learning
  rate per step: a run of a few dozen steps could not take an exact feature such as the
  co-visits from 0 to the weight it merits.
- `fit_on_validation` (end of training): the weights of the FINAL logit,
  head_scale * head + w . mix inputs, that best rank the validation targets among the
  candidates the retrieval gives (`core.train.CrossEncoderRecommender`). Training
  groups hold uniform and same-category negatives; the model is used to re-rank a
  candidate set of content neighbours, popular and co-visited items, where the balance
  between the head, the prior and the co-visits differs. The validation targets (each
  customer's second-to-last interaction) are never test targets, so the test
  evaluation stays clean. The fitted weights are folded into the model (the head's last
  linear layer scaled, the mix's weights set), so scoring, explanations and campaigns
  read exactly the fitted logit and the saved model needs nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.interactions import ITEM, PROMOTION, TS, USER
from core.model import mix_input_names
from core.splits import Split, histories_frame

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
    each of a seeded sample of `customers` (`core.examples.CustomerDataset`: the
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
    model = recommender.model
    targets = split.targets("valid")
    if targets.empty:
        return [], [], 0
    if len(targets) > customers:
        targets = targets.sample(n=customers, random_state=seed)
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
    with torch.no_grad():
        model.bert.classifier.weight.mul_(float(fitted[0]))
        model.bert.classifier.bias.mul_(float(fitted[0]))
        model.prior_mix.weight.copy_(torch.from_numpy(fitted[1:]).reshape(
            model.prior_mix.weight.shape))
    record["kept"] = "fitted"
    return record
