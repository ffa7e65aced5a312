"""The one result type of every explainer: `Explanation`.

An explanation says how much each feature (a field of the model input, or a token of one
field) moved the model's score for one recommendation. The score explained is always the
model's probability-like output p = sigmoid(logit) of the cross-encoder's relevance logit,
so attributions, base value and prediction are all in probability units (0..1) and
additivity reads as "base_value + sum(attributions) == prediction" in those units.

`values` shows what each feature held: catalogue text (item titles, categories, prices,
the summaries of the items in the history) and context (season, day, promotion). Never a
name, an e-mail address or a customer id: the model input holds none (see core.recommender.fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

METHODS = ("shap-field", "shap-token", "attention-cls", "attention-rollout", "leave-one-out")
FIELD_METHODS = ("shap-field", "attention-cls", "attention-rollout", "leave-one-out")
ADDITIVE_METHODS = ("shap-field", "shap-token")
ATTENTION_METHODS = ("attention-cls", "attention-rollout")
METHOD_LABELS = {
    "shap-field": "SHAP (fields)",
    "shap-token": "SHAP (tokens of one field)",
    "attention-cls": "attention, last layer [CLS]",
    "attention-rollout": "attention rollout",
    "leave-one-out": "leave one field out",
}


def sigmoid(logits: np.ndarray | float) -> np.ndarray:
    """The probability-like score that explanations are about: 1 / (1 + exp(-logit))."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass(frozen=True)
class Subject:
    """Which recommendation an explanation is about (blank outside a run)."""

    run_id: str = ""
    pseudonym: str = ""
    item_id: str = ""
    rank: int = 0


@dataclass(frozen=True, eq=False)
class Explanation:
    """Attributions of one recommendation's score to its features, by one method.

    features: feature names (field names such as "h1", "ctx_season", "item_price"; for
        token SHAP the tokens of the explained field).
    fields: the field each feature belongs to (equal to `features` at field level).
    values: the text each feature held (catalogue text and context only).
    attributions: (F,) float64; probability units for SHAP and leave-one-out, shares of
        attention mass for the attention methods.
    base_value: the score with every feature removed (NaN for attention).
    prediction: the score of the full input, sigmoid(logit).
    additivity_error: |base_value + sum(attributions) - prediction| (NaN for attention,
        where the attributions are not contributions to the score).
    evaluations: model evaluations (rows forwarded) this explanation used; cached rows
        reused from earlier explanations are not counted.
    latency_s: wall-clock seconds to compute it.
    """

    run_id: str
    pseudonym: str
    item_id: str
    rank: int
    method: str
    features: tuple[str, ...]
    fields: tuple[str, ...]
    values: tuple[str, ...]
    attributions: np.ndarray
    base_value: float
    prediction: float
    additivity_error: float
    evaluations: int
    latency_s: float
    notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: choose one of {METHODS}.")
        n = len(self.features)
        if not (len(self.fields) == len(self.values) == n):
            raise ValueError(f"{n} features but {len(self.fields)} fields and "
                             f"{len(self.values)} values: give one of each per feature.")
        attributions = np.asarray(self.attributions, dtype=np.float64).reshape(-1)
        if attributions.shape != (n,):
            raise ValueError(f"{attributions.shape[0]} attributions for {n} features.")
        attributions.setflags(write=False)
        object.__setattr__(self, "attributions", attributions)

    # --- construction -----------------------------------------------------------------

    @classmethod
    def build(cls, *, subject: Subject, method: str, features, fields, values,
              attributions, base_value: float, prediction: float, evaluations: int,
              latency_s: float, notes: dict[str, object] | None = None) -> Explanation:
        """An explanation with its additivity error computed (NaN for attention)."""
        attributions = np.asarray(attributions, dtype=np.float64)
        if method in ATTENTION_METHODS or math.isnan(base_value):
            error = float("nan")
        else:
            error = abs(float(base_value) + float(attributions.sum()) - float(prediction))
        return cls(run_id=subject.run_id, pseudonym=subject.pseudonym,
                   item_id=subject.item_id, rank=int(subject.rank), method=method,
                   features=tuple(features), fields=tuple(fields),
                   values=tuple(str(v) for v in values), attributions=attributions,
                   base_value=float(base_value), prediction=float(prediction),
                   additivity_error=error, evaluations=int(evaluations),
                   latency_s=float(latency_s), notes=dict(notes or {}))

    def with_subject(self, subject: Subject) -> Explanation:
        return replace(self, run_id=subject.run_id, pseudonym=subject.pseudonym,
                       item_id=subject.item_id, rank=int(subject.rank))

    # --- reading ------------------------------------------------------------------------

    @property
    def subject(self) -> Subject:
        return Subject(self.run_id, self.pseudonym, self.item_id, self.rank)

    @property
    def approximation_error(self) -> float:
        """|base_value + sum(attributions) - the model's float32 score|: the additivity
        error, plus the distance of a bf16 explained function from the model as it ranks
        (`notes["reference_prediction"]`). NaN for attention."""
        if math.isnan(self.additivity_error):
            return float("nan")
        reference = self.notes.get("reference_prediction")
        if reference is None:
            return self.additivity_error
        return abs(self.base_value + float(self.attributions.sum()) - float(reference))

    def order(self) -> np.ndarray:
        """Feature indices, most supporting first (by signed attribution, ties by
        position)."""
        return np.argsort(-self.attributions, kind="stable")

    def top(self, k: int) -> list[str]:
        """The `k` most supporting features."""
        return [self.features[i] for i in self.order()[:k]]

    def by_field(self) -> dict[str, float]:
        """Attribution per field (token attributions summed into their field)."""
        out: dict[str, float] = {}
        for name, value in zip(self.fields, self.attributions, strict=True):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per feature: feature, field, value, attribution, direction."""
        return pd.DataFrame({
            "feature": list(self.features), "field": list(self.fields),
            "value": list(self.values), "attribution": self.attributions,
            "direction": [direction(a) for a in self.attributions]})


NO_SUBJECT = Subject()


def direction(attribution: float) -> str:
    """'for' (raises the score), 'against' (lowers it) or 'none'."""
    if attribution > 0:
        return "for"
    if attribution < 0:
        return "against"
    return "none"
