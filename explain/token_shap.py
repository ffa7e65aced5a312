"""SHAP values of the tokens of ONE field, on demand (`shap.maskers.Text` + Partition).

Everything else in the input stays fixed; the field's label ("title: ", "purchased: ")
stays too, so the players are the words of its value. A masked token is deleted
(`mask_token=""`), as a masked field is deleted at field level. shap's Partition
explainer computes Owen values over the tokenizer's word hierarchy; they add up:
base (the field's value fully deleted) + sum(phi) = f(x).

Costs about 2-4 model rows per token; all rows of one shap call go to the model in one
batch (shap's default for text maskers is 5 rows per call, which is what makes it slow).
Results are cached in memory (LRU) and optionally on disk (`cache_dir`), keyed by the
run, the pseudonym, the item, the field and the exact text pair, so a changed history
never hits a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shap

from core.recommender.fields import Field, ModelInput
from explain.result import NO_SUBJECT, Explanation, Subject
from explain.scoring import LRU, Scorer, TextScorer, as_scorer, reference_scorer, sigmoid

_MEMORY = LRU(256)


@dataclass(frozen=True)
class TokenShapConfig:
    """max_evals: cap on model rows of one field (Partition stops refining there).
    precision: as in `explain.field_shap.FieldShapConfig` (CrossEncoder only)."""

    max_evals: int = 200
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.max_evals < 4:
            raise ValueError(f"max_evals={self.max_evals}: at least 4.")


DEFAULT_TOKEN_SHAP = TokenShapConfig()


def split_label(text: str) -> tuple[str, str]:
    """("title: ", "Northwind Socks") of "title: Northwind Socks" (no label: "")."""
    head, sep, tail = text.partition(": ")
    return (head + sep, tail) if sep else ("", text)


def _cache_key(subject: Subject, field_name: str, pair: tuple[str, str],
               config: TokenShapConfig, scorer: Scorer) -> str:
    material = json.dumps([subject.run_id, subject.pseudonym, subject.item_id, field_name,
                           pair, config.max_evals, getattr(scorer, "precision", "callable")])
    return hashlib.sha256(material.encode()).hexdigest()


def _to_json(e: Explanation) -> dict[str, object]:
    return {"run_id": e.run_id, "pseudonym": e.pseudonym, "item_id": e.item_id,
            "rank": e.rank, "method": e.method, "features": list(e.features),
            "fields": list(e.fields), "values": list(e.values),
            "attributions": e.attributions.tolist(), "base_value": e.base_value,
            "prediction": e.prediction, "additivity_error": e.additivity_error,
            "evaluations": e.evaluations, "latency_s": e.latency_s, "notes": e.notes}


def _from_json(d: dict[str, object]) -> Explanation:
    return Explanation(
        run_id=d["run_id"], pseudonym=d["pseudonym"], item_id=d["item_id"], rank=d["rank"],
        method=d["method"], features=tuple(d["features"]), fields=tuple(d["fields"]),
        values=tuple(d["values"]), attributions=np.array(d["attributions"], dtype=float),
        base_value=d["base_value"], prediction=d["prediction"],
        additivity_error=d["additivity_error"], evaluations=d["evaluations"],
        latency_s=d["latency_s"], notes=dict(d.get("notes") or {}))


def _read_disk(cache_dir: Path | None, key: str) -> Explanation | None:
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    try:
        return _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_disk(cache_dir: Path | None, key: str, e: Explanation) -> None:
    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_to_json(e), f)
    os.replace(tmp, cache_dir / f"{key}.json")


def explain_tokens(model: TextScorer | Scorer, fields: ModelInput, field_name: str, *,
                   subject: Subject = NO_SUBJECT, config: TokenShapConfig = DEFAULT_TOKEN_SHAP,
                   cache_dir: Path | None = None) -> Explanation:
    """Token-level SHAP values of sigmoid(model logit) for the tokens of `field_name`,
    every other field fixed. Cached (memory, and `cache_dir` when given)."""
    started = time.perf_counter()
    scorer = as_scorer(model, precision=config.precision)
    names = [f.name for f in fields]
    if field_name not in names:
        raise ValueError(f"field {field_name!r} is not in this input: choose one of {names}.")
    if field_name in scorer.omit:
        raise ValueError(f"the model never reads {field_name!r} (omit_fields): it has no "
                         "token attributions.")
    target = next(f for f in fields if f.name == field_name)
    pair = scorer.key(fields, frozenset())
    key = _cache_key(subject, field_name, pair, config, scorer)
    cached = _MEMORY.get(key) or _read_disk(cache_dir, key)
    if cached is not None:
        _MEMORY.put(key, cached)
        return cached.with_subject(subject)

    label, value = split_label(target.text)
    evaluations = 0

    def f(texts) -> np.ndarray:
        nonlocal evaluations
        pairs = []
        for text in np.asarray(texts).reshape(-1):
            variant = tuple(Field(x.name, x.side, label + str(text)) if x.name == field_name
                            else x for x in fields)
            pairs.append(scorer.key(variant, frozenset()))
        logits, new = scorer.logits(pairs)
        evaluations += new
        return sigmoid(logits)

    masker = shap.maskers.Text(scorer_tokenizer(scorer), mask_token="",
                               collapse_mask_token=True)
    explainer = shap.explainers.Partition(f, masker)
    result = explainer([value], max_evals=config.max_evals, batch_size=config.max_evals,
                       silent=True)
    tokens = [str(t) for t in np.asarray(result.data[0]).reshape(-1)]
    phi = np.asarray(result.values[0], dtype=np.float64).reshape(-1)
    keep = [i for i, t in enumerate(tokens) if t.strip()]  # drop [CLS]/[SEP] slots ("")
    base = float(np.asarray(result.base_values, dtype=np.float64).reshape(-1)[0])
    prediction = float(f(np.array([value]))[0])
    # Under a tight max_evals, Partition can leave a little credit on the fixed [CLS] /
    # [SEP] slots; it is not any word's, so it shows up in the additivity error.
    unassigned = float(phi.sum() - phi[keep].sum())
    notes: dict[str, object] = {"label": label.strip(), "masking": "deletion",
                                "max_evals": config.max_evals, "unassigned": unassigned}
    reference = reference_scorer(scorer)
    if reference is not None:
        logit, new = reference.logits([pair])
        evaluations += new
        score = float(sigmoid(logit)[0])
        notes.update(precision="bf16", reference_prediction=score,
                     precision_error=abs(prediction - score))
    explanation = Explanation.build(
        subject=subject, method="shap-token",
        features=[tokens[i].strip() for i in keep], fields=[field_name] * len(keep),
        values=[tokens[i] for i in keep], attributions=phi[keep], base_value=base,
        prediction=prediction, evaluations=evaluations,
        latency_s=time.perf_counter() - started, notes=notes)
    _MEMORY.put(key, explanation)
    _write_disk(cache_dir, key, explanation)
    return explanation


def scorer_tokenizer(scorer: Scorer):
    """The tokenizer that splits a field into players: the model's own where there is
    one, else the bundled MiniLM tokenizer."""
    model = getattr(scorer, "model", None)
    if model is not None and getattr(model, "tokenizer", None) is not None:
        return model.tokenizer
    from core.minilm import load_tokenizer

    return load_tokenizer()
