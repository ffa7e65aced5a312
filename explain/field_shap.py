"""SHAP values at field level, with the `shap` library, and leave-one-out.

Players are the fields of one model input (history items h1..hN, context, item
attributes). A coalition keeps some fields and removes the others: removed fields are
dropped from the serialized text pair (`core.recommender.fields.to_text_pair(fields, masked=...)`),
not replaced by a placeholder, which is how the model sees a shorter history or an item
without a description. `FieldMasker` is that masker for `shap`: it turns shap's binary
masks into coalitions, and the value function (`explain.scoring.FieldGame`) scores a whole
batch of coalitions in one batched forward.

Algorithm (both additive by construction: base + sum(phi) = f(x) up to float rounding):

- up to `exact_max_fields` players: `shap.explainers.Exact` (all 2^n coalitions);
- beyond: `shap.explainers.Permutation` with `permutations` antithetic permutations
  (each runs the permutation forward and backward: 2n + 1 coalitions, of which the empty
  and the full input are shared; exact for models whose interactions are at most
  pairwise, an unbiased estimate otherwise).

How many permutations: the fields interact strongly (a history item or the category
moves the score much more in a small coalition than in the full input, where other
fields say the same), so one permutation is far from the Shapley values. Measured on
the demo model against exact Shapley values (all 2,048 coalitions of 11 fields, about
3 s per recommendation): Kendall tau 0.11 with one antithetic permutation, 0.55 with 8,
0.67 with 16; on 40 held-out recommendations, removing the top fields by 8-permutation
SHAP moved the score more than a random order on all 40 (one permutation: 21 of 40).
The default is 8 (8 * 23 = 184 coalitions for 11 fields), within the 1 s latency aim.

Cost: the model is a late-interaction cross-encoder (`core.recommender.model`): each side's text
is encoded alone (frozen lower layers and the prior's sentence embedding, cached per
text) and only the top layer reads the pair, so a coalition costs one pair row plus any
side text not seen before. The history-side texts are the same for every candidate of
a customer, so a customer's first explained recommendation pays for them and the next
ones cost less (`bench/explain.py` measures both). Exact runs for up to 4 fields (16
rows); over 11 fields it would need 2,048.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import shap

from core.recommender.fields import ModelInput
from explain.result import NO_SUBJECT, Explanation, Subject
from explain.scoring import FieldGame, Scorer, TextScorer, as_scorer


@dataclass(frozen=True)
class FieldShapConfig:
    """exact_max_fields: players up to which Exact runs (2^n rows; 4 -> 16 rows).
    permutations: antithetic permutations of the Permutation explainer beyond that
        (max_evals = permutations * (2n + 1)).
    seed: the permutations' seed (shap seeds numpy's global generator with it).
    precision: "fp32" (default: the model exactly as it ranks), "bf16" (a bfloat16 copy,
        see `explain.scoring`; measured no faster end to end on the target machine,
        where the linear layers gain but BERT's layer norms and GELU in bf16 lose) or
        "auto"; CrossEncoder only.
    """

    exact_max_fields: int = 4
    permutations: int = 8
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not 0 <= self.exact_max_fields <= 16:
            raise ValueError(f"exact_max_fields={self.exact_max_fields}: Exact needs 2^n "
                             "model rows; keep it between 0 and 16.")
        if self.permutations < 1:
            raise ValueError(f"permutations={self.permutations}: at least 1.")


DEFAULT_FIELD_SHAP = FieldShapConfig()


class FieldMasker(shap.maskers.Masker):
    """shap masker over the fields of one input: a binary mask (True = keep) becomes the
    coalition itself, which the value function turns into the masked text pair.

    `text_pair(mask)` is the serialized pair that a mask stands for."""

    immutable_outputs = True

    def __init__(self, game: FieldGame):
        self.game = game
        self.shape = (1, len(game))
        self.clustering = None

    def __call__(self, mask, *args) -> tuple[np.ndarray]:
        mask = self._standardize_mask(mask, *args)
        return (np.asarray(mask, dtype=bool).reshape(1, -1).copy(),)  # (1, n)

    def text_pair(self, mask) -> tuple[str, str]:
        return self.game.text_pair(np.asarray(mask, dtype=bool))


def _values(fields: ModelInput, names: tuple[str, ...]) -> list[str]:
    by_name = {f.name: f.text for f in fields}
    return [by_name[n] for n in names]


def _trivial(game: FieldGame, *, subject: Subject, method: str, started: float
             ) -> Explanation:
    """An input without players: nothing to attribute."""
    base = game.value(np.zeros(0, dtype=bool))
    return Explanation.build(subject=subject, method=method, features=(), fields=(),
                             values=(), attributions=np.zeros(0), base_value=base,
                             prediction=base, evaluations=game.evaluations,
                             latency_s=time.perf_counter() - started)


def explain_fields(model: TextScorer | Scorer, fields: ModelInput, *,
                   subject: Subject = NO_SUBJECT, config: FieldShapConfig = DEFAULT_FIELD_SHAP
                   ) -> Explanation:
    """Field-level SHAP values of sigmoid(model logit) for one input.

    `model` is a callable (text_a list, text_b list) -> logits, a `CrossEncoder`
    (faster path, same function) or an `explain.scoring.Scorer`."""
    started = time.perf_counter()
    game = FieldGame(as_scorer(model, precision=config.precision), fields)
    n = len(game)
    if n == 0:
        return _trivial(game, subject=subject, method="shap-field", started=started)
    masker = FieldMasker(game)
    row = np.ones((1, n), dtype=bool)
    if n <= config.exact_max_fields:
        explainer = shap.explainers.Exact(game, masker)
        result = explainer(row, max_evals=2 ** n, batch_size=2 ** n, silent=True)
        algorithm = f"exact ({2 ** n} coalitions)"
    else:
        explainer = shap.explainers.Permutation(game, masker, seed=config.seed)
        max_evals = config.permutations * (2 * n + 1)
        result = explainer(row, max_evals=max_evals, batch_size=max_evals, silent=True)
        algorithm = f"permutation ({config.permutations} antithetic, {max_evals} coalitions)"
    phi = np.asarray(result.values, dtype=np.float64).reshape(-1)
    base = float(np.asarray(result.base_values, dtype=np.float64).reshape(-1)[0])
    prediction = game.value(np.ones(n, dtype=bool))  # cached: no extra model row
    return Explanation.build(
        subject=subject, method="shap-field", features=game.names, fields=game.names,
        values=_values(fields, game.names), attributions=phi, base_value=base,
        prediction=prediction, evaluations=game.evaluations,
        latency_s=time.perf_counter() - started,
        notes={"algorithm": algorithm, "model_calls": game.calls,
               "coalitions": game.coalitions, **game.reference_notes(prediction)})


def leave_one_out(model: TextScorer | Scorer, fields: ModelInput, *,
                  subject: Subject = NO_SUBJECT, precision: str = "fp32") -> Explanation:
    """phi_i = f(x) - f(x without field i); base = f(no field), so `additivity_error`
    shows how far the occlusion scores are from adding up (they need not)."""
    started = time.perf_counter()
    game = FieldGame(as_scorer(model, precision=precision), fields)
    n = len(game)
    if n == 0:
        return _trivial(game, subject=subject, method="leave-one-out", started=started)
    masks = np.vstack([np.ones((1, n), dtype=bool), ~np.eye(n, dtype=bool),
                       np.zeros((1, n), dtype=bool)])  # (n + 2, n)
    scores = game(masks)
    full, drops, base = scores[0], scores[1:n + 1], scores[n + 1]
    return Explanation.build(
        subject=subject, method="leave-one-out", features=game.names, fields=game.names,
        values=_values(fields, game.names), attributions=full - drops, base_value=base,
        prediction=full, evaluations=game.evaluations,
        latency_s=time.perf_counter() - started,
        notes={"model_calls": game.calls, **game.reference_notes(float(full))})


def exact_shapley(game: FieldGame) -> tuple[np.ndarray, float, float]:
    """Exact Shapley values by enumeration without shap (a reference for tests and the
    benchmark): (phi, base, prediction). 2^n rows."""
    n = len(game)
    masks = ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)
    values = game(masks)  # (2^n,)
    index = {int(m): i for i, m in enumerate(np.arange(2 ** n))}
    from math import factorial

    weights = [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]
    phi = np.zeros(n)
    for code in range(2 ** n):
        size = bin(code).count("1")
        for i in range(n):
            if not code >> i & 1:
                phi[i] += weights[size] * (values[index[code | 1 << i]] - values[index[code]])
    return phi, float(values[0]), float(values[-1])
