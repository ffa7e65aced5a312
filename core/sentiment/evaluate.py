"""Evaluating the sentiment model next to VADER on the newer reviews of the time split.

Metrics (all in [0, 1]): 3-class accuracy and macro-F1, per-class precision, recall and
F1 with the confusion matrix, and the binary accuracy on a balanced negative/positive
subset (`core.sentiment.data.balanced_binary`). The model and VADER are scored on the
same test reviews. The test metrics are computed without noise: they are not covered
by the run's epsilon (the ledger note says so).

`evaluate_run` evaluates a saved run again on the warehouse's current split and
rewrites its metrics.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.config import Paths
from core.registry.store import SENTIMENT
from core.sentiment import data as D
from core.sentiment import registry
from core.sentiment.config import SentimentTrainConfig, prepare
from core.sentiment.features import FeatureStore, predict_features

VADER_THRESHOLD = 0.05  # compound score: >= +0.05 positive, <= -0.05 negative


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of exact matches, in [0, 1] (NaN when empty)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of the three classes' F1, in [0, 1]; a class absent from both
    truth and prediction counts 0 (scikit-learn's zero_division=0). NaN when empty."""
    from sklearn.metrics import f1_score

    if not len(y_true):
        return float("nan")
    return float(f1_score(y_true, y_pred, labels=list(range(len(D.LABELS))), average="macro",
                          zero_division=0))


def binary_accuracy(y_true: Sequence[int], positive_score: Sequence[float], *,
                    threshold: float = 0.0) -> float:
    """Accuracy of `positive_score > threshold` against y_true in {NEGATIVE, POSITIVE},
    in [0, 1]; meant for a balanced subset (`core.sentiment.data.balanced_binary`)."""
    y_true = np.asarray(y_true)
    if not len(y_true):
        return float("nan")
    predicted = np.where(np.asarray(positive_score) > threshold, D.POSITIVE, D.NEGATIVE)
    return float((predicted == y_true).mean())


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score of each text, in [-1, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=float)


def vader_labels(compound: np.ndarray, *, threshold: float = VADER_THRESHOLD) -> np.ndarray:
    """Compound >= +threshold positive, <= -threshold negative, else neutral."""
    return np.where(compound >= threshold, D.POSITIVE,
                    np.where(compound <= -threshold, D.NEGATIVE, D.NEUTRAL))


def evaluate_predictions(test: pd.DataFrame, predicted: np.ndarray,
                         positive_score: np.ndarray, *, seed: int = 0) -> dict[str, object]:
    """3-class accuracy and macro-F1 on `test`, per-class F1 and the confusion matrix,
    and the binary accuracy on a balanced negative/positive subset (`positive_score` >
    0 means positive: p_positive - p_negative for the model, compound for VADER)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = test[D.LABEL].to_numpy()
    labels = list(range(len(D.LABELS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0)
    balanced = D.balanced_binary(test.assign(_row=np.arange(len(test))), seed=seed)
    rows = balanced["_row"].to_numpy(dtype=np.int64)
    return {
        "accuracy": accuracy(y, predicted),
        "macro_f1": macro_f1(y, predicted),
        "binary_accuracy_balanced": binary_accuracy(balanced[D.LABEL].to_numpy(),
                                                    positive_score[rows]),
        "binary_reviews": int(len(rows)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(s)}
                      for name, p, r, f, s in zip(D.LABELS, precision, recall, f1, support,
                                                  strict=True)},
        "confusion": confusion_matrix(y, predicted, labels=labels).tolist(),
        "test_reviews": int(len(test)),
    }


def evaluate_model_proba(test: pd.DataFrame, proba: np.ndarray, *, seed: int = 0
                         ) -> dict[str, object]:
    """`evaluate_predictions` of the model's (N, 3) class probabilities on `test`."""
    return evaluate_predictions(test, proba.argmax(axis=1),
                                proba[:, D.POSITIVE] - proba[:, D.NEGATIVE], seed=seed)


def evaluate_vader(test: pd.DataFrame, *, seed: int = 0) -> dict[str, object]:
    """`evaluate_predictions` of VADER on `test`."""
    compound = vader_compound(D.review_texts(test))
    return evaluate_predictions(test, vader_labels(compound), compound, seed=seed)


def evaluate_run(paths: Paths | None = None, run_id: str | None = None, *,
                 progress: bool = True) -> dict[str, object]:
    """Evaluate a saved run (None: the newest) again on the warehouse's current time
    split (the run's own test share and seed), next to VADER; rewrites its metrics.json
    and returns them. `fingerprint_match` says whether the training pool is still the one
    the model was trained on. Raises RegistryError where there is no such run."""
    paths = paths or Paths()
    run_id = SENTIMENT.resolve(paths, run_id)
    loaded = registry.load(run_id, paths)
    config = SentimentTrainConfig.from_dict(loaded.config.get("train_config", {}))
    prepared = prepare(D.load_reviews(paths), config)
    features = FeatureStore().get(loaded.model, D.review_texts(prepared.test),
                                  progress=progress, desc="frozen features (test)")
    proba = predict_features(loaded.model, features)
    metrics = dict(loaded.metrics)
    metrics.update({
        "model": evaluate_model_proba(prepared.test, proba, seed=config.seed),
        "baselines": {"vader": evaluate_vader(prepared.test, seed=config.seed)},
        "data": prepared.info,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint_match": D.data_fingerprint(prepared.pool)
        == loaded.fingerprint.get("sha256"),
    })
    SENTIMENT.write_metrics(paths, run_id, metrics)
    return metrics
