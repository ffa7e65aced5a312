"""How faithful the explanations are: ERASER comprehensiveness and sufficiency at field
level (DeYoung et al. 2020), per method, on held-out recommendations.

For one recommendation with score p(x) and a method's ranking of its fields (most
supporting first; a random permutation for the baseline):

    comprehensiveness(k) = p(x) - p(x without its top-k fields)   (higher: more faithful)
    sufficiency(k)       = p(x) - p(only its top-k fields)         (lower: more faithful)

and the AOPC of each is its mean over k = 1..K (K = min(k_max, fields - 1)). Scores are
in probability units, computed with the same value function as field SHAP
(`explain.scoring.FieldGame`). Also measured: Kendall tau between field SHAP and
leave-one-out (do the two occlusion-based methods agree?), and the rank correlation
between field SHAP and attention rollout.

`evaluate_run` measures a registered run on held-out moments (the test, then validation,
targets of `core.recommender.splits.leave_last_out`, each with the model's top recommendation) and
writes the summary to `data/models/<run_id>/faithfulness.json`; `preferred_method` reads
it back: the method with the higher comprehensiveness AOPC is the one the page shows by
default.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.config import Paths
from core.recommender.model import CrossEncoder
from explain.attention import explain_attention, rank_agreement
from explain.field_shap import (
    DEFAULT_FIELD_SHAP,
    FieldShapConfig,
    explain_fields,
    leave_one_out,
)
from explain.inputs import HeldOut
from explain.result import Explanation
from explain.scoring import FieldGame, as_scorer

K_MAX = 5
SUMMARY_FILE = "faithfulness.json"
COMPARED = ("shap-field", "leave-one-out", "attention-rollout", "attention-cls", "random")
DEFAULT_METHOD = "shap-field"
PREFERABLE = ("shap-field", "leave-one-out", "attention-rollout", "attention-cls")


def erasure_curves(game: FieldGame, order: Sequence[int], k_max: int = K_MAX
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(comprehensiveness (K,), sufficiency (K,)) of one ranking of the game's players,
    K = min(k_max, n - 1); one batched call."""
    n = len(game)
    k = min(k_max, n - 1)
    if k < 1:
        return np.zeros(0), np.zeros(0)
    order = np.asarray(order, dtype=int)
    masks = np.ones((1 + 2 * k, n), dtype=bool)  # row 0: the full input
    for j in range(1, k + 1):
        top = order[:j]
        masks[j, top] = False  # without the top j
        masks[k + j] = False
        masks[k + j, top] = True  # only the top j
    scores = game(masks)
    return scores[0] - scores[1:k + 1], scores[0] - scores[k + 1:]


def aopc(curve: np.ndarray) -> float:
    """Area over the perturbation curve: the mean of the curve (NaN when empty)."""
    return float(np.mean(curve)) if len(curve) else float("nan")


def ranking(e: Explanation) -> np.ndarray:
    """Fields most supporting first (signed attribution, ties by position)."""
    return e.order()


@dataclass
class RecommendationFaithfulness:
    pseudonym: str
    item_id: str
    fields: int
    comprehensiveness: dict[str, list[float]]
    sufficiency: dict[str, list[float]]
    kendall_shap_loo: float
    spearman_shap_rollout: float
    kendall_shap_rollout: float
    latency_s: dict[str, float] = field(default_factory=dict)
    evaluations: dict[str, int] = field(default_factory=dict)
    additivity_error: float = float("nan")

    def aopc(self, method: str, which: str = "comprehensiveness") -> float:
        curves = self.comprehensiveness if which == "comprehensiveness" else self.sufficiency
        return aopc(np.asarray(curves[method]))


def measure(model: CrossEncoder, held: HeldOut, *, config: FieldShapConfig = DEFAULT_FIELD_SHAP,
            k_max: int = K_MAX, seed: int = 0) -> RecommendationFaithfulness:
    """Every compared method on one recommendation."""
    explanations = {
        "shap-field": explain_fields(model, held.fields, subject=held.subject, config=config),
        "leave-one-out": leave_one_out(model, held.fields, subject=held.subject,
                                       precision=config.precision),
        "attention-rollout": explain_attention(model, held.fields, method="attention-rollout",
                                               subject=held.subject),
        "attention-cls": explain_attention(model, held.fields, method="attention-cls",
                                           subject=held.subject),
    }
    game = FieldGame(as_scorer(model, precision=config.precision), held.fields)
    n = len(game)
    rng = np.random.default_rng(
        [seed, zlib.crc32(f"{held.subject.pseudonym}|{held.subject.item_id}".encode())])
    orders = {m: ranking(e) for m, e in explanations.items()}
    orders["random"] = rng.permutation(n)
    comp, suff = {}, {}
    for method in COMPARED:
        c, s = erasure_curves(game, orders[method], k_max)
        comp[method], suff[method] = c.tolist(), s.tolist()
    shap_e = explanations["shap-field"]
    loo = rank_agreement(shap_e, explanations["leave-one-out"])
    roll = rank_agreement(shap_e, explanations["attention-rollout"])
    return RecommendationFaithfulness(
        pseudonym=held.subject.pseudonym, item_id=held.subject.item_id, fields=n,
        comprehensiveness=comp, sufficiency=suff, kendall_shap_loo=loo["kendall"],
        spearman_shap_rollout=roll["spearman"], kendall_shap_rollout=roll["kendall"],
        latency_s={m: e.latency_s for m, e in explanations.items()},
        evaluations={m: e.evaluations for m, e in explanations.items()},
        additivity_error=shap_e.additivity_error)


def _stats(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": float("nan"), "median": float("nan"), "n": 0}
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "median": float(np.median(x)),
            "ci95": [float(x.mean() - half), float(x.mean() + half)], "n": int(len(x))}


def _mean_curve(curves: list[list[float]]) -> list[float]:
    longest = max((len(c) for c in curves), default=0)
    return [float(np.mean([c[k] for c in curves if len(c) > k])) for k in range(longest)]


def summarize(rows: Sequence[RecommendationFaithfulness], *, k_max: int = K_MAX
              ) -> dict[str, object]:
    """The per-run summary: AOPCs and curves per method, the share of recommendations
    where field SHAP beats random on comprehensiveness, the agreement statistics, and
    the preferred method."""
    methods = {}
    for method in COMPARED:
        comp = [r.aopc(method) for r in rows]
        suff = [r.aopc(method, "sufficiency") for r in rows]
        methods[method] = {
            "comprehensiveness_aopc": _stats(comp), "sufficiency_aopc": _stats(suff),
            "comprehensiveness_curve": _mean_curve([r.comprehensiveness[method] for r in rows]),
            "sufficiency_curve": _mean_curve([r.sufficiency[method] for r in rows])}
    comparable = [r for r in rows if np.isfinite(r.aopc("shap-field"))]
    above = [r.aopc("shap-field") > r.aopc("random") for r in comparable]
    taus = [r.kendall_shap_loo for r in rows]
    finite_taus = [t for t in taus if np.isfinite(t)]
    summary = {
        "recommendations": len(rows), "k_max": k_max,
        "methods": methods,
        "shap_above_random_share": float(np.mean(above)) if above else float("nan"),
        "kendall_shap_vs_leave_one_out": {
            **_stats(taus),
            "share_at_least_0.6": (float(np.mean([t >= 0.6 for t in finite_taus]))
                                   if finite_taus else float("nan"))},
        "spearman_shap_vs_rollout": _stats([r.spearman_shap_rollout for r in rows]),
        "kendall_shap_vs_rollout": _stats([r.kendall_shap_rollout for r in rows]),
        "shap_additivity_error_max": max(
            (r.additivity_error for r in rows if np.isfinite(r.additivity_error)),
            default=float("nan")),
    }
    summary["preferred_method"] = _preferred(methods)
    return summary


def _preferred(methods: dict[str, dict[str, object]]) -> str:
    best, best_value = DEFAULT_METHOD, -np.inf
    for method in PREFERABLE:
        value = methods.get(method, {}).get("comprehensiveness_aopc", {}).get("mean")
        if value is not None and np.isfinite(value) and value > best_value:
            best, best_value = method, value
    return best


def evaluate(model: CrossEncoder, held_out: Sequence[HeldOut], *,
             config: FieldShapConfig = DEFAULT_FIELD_SHAP, k_max: int = K_MAX, seed: int = 0,
             progress: Callable[[int, int], None] | None = None
             ) -> tuple[dict[str, object], list[RecommendationFaithfulness]]:
    """(summary, per-recommendation rows) over `held_out`."""
    rows = []
    for i, held in enumerate(held_out):
        rows.append(measure(model, held, config=config, k_max=k_max, seed=seed))
        if progress is not None:
            progress(i + 1, len(held_out))
    return summarize(rows, k_max=k_max), rows


# --- per run: measure, store, read --------------------------------------------------------


def summary_path(paths: Paths, run_id: str) -> Path:
    return paths.models_dir / run_id / SUMMARY_FILE


def held_out_for(service, *, recommendations: int = 200, content_candidates: int = 10,
                 popular_candidates: int = 5, seed: int = 0) -> tuple[list[HeldOut], str]:
    """(held-out recommendations, split name) of a service's run on its warehouse: test
    targets of `leave_last_out` (then validation targets, until `recommendations`), each
    with the model's best item among a reduced candidate set (`content_candidates` +
    `popular_candidates`, no per-category ones, and a co-visit model's co-visited items,
    to keep the ranking cheap)."""
    from core.recommender.data import load_training_data
    from core.recommender.retrieval import CrossEncoderRecommender
    from core.recommender.splits import leave_last_out
    from explain.inputs import held_out_inputs

    interactions, catalogue = load_training_data(service.paths)
    split = leave_last_out(interactions)
    recommender = CrossEncoderRecommender(service.model, content_candidates=content_candidates,
                                          popular_candidates=popular_candidates,
                                          category_candidates=0
                                          ).fit(split.train, catalogue)
    held = held_out_inputs(service.model, recommender, split, on="test",
                           users=recommendations, seed=seed, run_id=service.run_id)
    if len(held) < recommendations and not split.valid.empty:
        held += held_out_inputs(service.model, recommender, split, on="valid",
                                users=recommendations - len(held), seed=seed,
                                run_id=service.run_id)
    return held, split.name


def evaluate_run(run_id: str | None = None, paths: Paths | None = None, *,
                 recommendations: int = 200, content_candidates: int = 10,
                 popular_candidates: int = 5, config: FieldShapConfig = DEFAULT_FIELD_SHAP,
                 k_max: int = K_MAX, seed: int = 0, write: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Measure a run on `recommendations` held-out moments (`held_out_for`) and, with
    `write`, store the summary beside the run."""
    from explain.service import ExplainService

    paths = paths or Paths()
    service = ExplainService.open(run_id, paths, field_config=config)
    started = time.perf_counter()
    held, split_name = held_out_for(service, recommendations=recommendations,
                                    content_candidates=content_candidates,
                                    popular_candidates=popular_candidates, seed=seed)
    ranking_seconds = time.perf_counter() - started
    summary, _ = evaluate(service.model, held, config=config, k_max=k_max, seed=seed,
                          progress=progress)
    summary.update(describe(service.run_id, split_name, content_candidates,
                            popular_candidates, config),
                   ranking_seconds=ranking_seconds)
    if write:
        write_summary(paths, service.run_id, summary)
    return summary


def describe(run_id: str, split_name: str, content_candidates: int, popular_candidates: int,
             config: FieldShapConfig) -> dict[str, object]:
    """What a summary was measured on (stored with it)."""
    return {"run_id": run_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "split": split_name,
            "targets": "test, then validation, targets (one per customer)",
            "candidates": {"content": content_candidates, "popular": popular_candidates},
            "field_shap": {"exact_max_fields": config.exact_max_fields,
                           "permutations": config.permutations,
                           "precision": config.precision}}


def write_summary(paths: Paths, run_id: str, summary: dict[str, object]) -> Path:
    """Write `faithfulness.json` into the run's folder (atomically)."""
    path = summary_path(paths, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(summary, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_summary(run_id: str, paths: Paths | None = None) -> dict[str, object] | None:
    """The stored summary of a run, or None when it was not measured."""
    path = summary_path(paths or Paths(), run_id)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def preferred_method(run_id: str, paths: Paths | None = None) -> str:
    """The field-attribution method that measured more faithful for this run (higher
    comprehensiveness AOPC); field SHAP where the run was not measured."""
    summary = read_summary(run_id, paths)
    if not summary:
        return DEFAULT_METHOD
    method = summary.get("preferred_method")
    return method if method in PREFERABLE else _preferred(summary.get("methods", {}))
