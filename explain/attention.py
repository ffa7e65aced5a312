"""Attention maps of the cross-encoder, aggregated to fields and tokens.

Attention shows WHERE THE MODEL LOOKED, not what caused the score: a token can draw
attention and not move the score, and the model's zero-shot prior term (a cosine of
sentence embeddings, see `core.recommender.model`) has no attention at all. The page says so.

Two readings of one forward pass:

- "attention-cls": last layer, the [CLS] row (what the pooled representation reads),
  averaged over heads;
- "attention-rollout" (Abnar & Zuidema 2020): per layer, average the heads, add the
  identity (the residual connection), renormalise the rows, multiply through the layers
  (first to last); the [CLS] row of the product.

The model is a late-interaction cross-encoder: its lower layers read each side alone,
its top layer(s) the joined pair [A ; B without its own CLS]. A lower layer's map over
the joined tokens is therefore block-diagonal (side a, side b); the attention that side
b's own [CLS] drew there is dropped with that token, and the rows renormalised.

The forward is a separate one, on a copy of the model made once per model (hooks on the
production model would see other threads' forwards). Attention probabilities come from
forward hooks on each layer's query and key projections: softmax(q k^T / sqrt(d)) per
head, exactly what the attention kernel computes (no padding: one sequence). The model's
pair layers call `scaled_dot_product_attention` themselves, so `output_attentions` and
the eager implementation are not on their way; hooks on q and k work for every layer.
The copy runs the model's own steps (`side_states`, `join`, `score_hidden`, with the
prior), so the same pass also gives the score that is explained.

A field's attention is the sum of its tokens' attention (token spans come from
tokenizing the input field by field, `explain.scoring.PairTokenizer.layout`). Fields cut
off by truncation get 0, and so do number-only fields such as the co-visits (the mix
reads them, the encoder never sees them). The rest of the mass sits on [CLS], [SEP] and
the separators: field attributions sum to at most 1 (`notes["special_tokens_share"]`
is the rest).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from core.recommender.fields import NUMBER_ONLY_FIELDS, ModelInput, encoder_text
from core.recommender.model import CrossEncoder
from explain.result import ATTENTION_METHODS, NO_SUBJECT, Explanation, Subject, sigmoid
from explain.scoring import LRU, CrossEncoderScorer, PairLayout, as_scorer, fresh_copy

CAPTION = "where the model looked — not a cause"
_HOOKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HOOK_LOCK = threading.Lock()  # one forward at a time per process: hooks share state
_MAPS = LRU(512)


@dataclass(frozen=True)
class AttentionMaps:
    """[CLS] rows of one input: last layer (L,) and rollout (L,), with its layout."""

    layout: PairLayout
    tokens: tuple[str, ...]
    cls_last: np.ndarray  # (L,)
    cls_rollout: np.ndarray  # (L,)
    logit: float  # the model's logit of the full input (prior included)
    seconds: float


class _HookedModel:
    """A copy of a CrossEncoder whose layers hand their query and key projections to
    forward hooks; attention probabilities are computed from them (softmax(q k^T / sqrt
    d) per head). That works whatever attention kernel a layer uses: the model's own
    pair layers call scaled_dot_product_attention directly, which returns no
    probabilities, and HF's eager path is not on their way."""

    def __init__(self, model: CrossEncoder):
        self.model = fresh_copy(model)
        self.model.all_token_outputs = True  # maps need every query row of the last layer
        self.heads = model.bert.config.num_attention_heads
        self.captured: list[tuple[str, int, torch.Tensor]] = []
        for index, layer in enumerate(self.model.bert.bert.encoder.layer):
            for kind in ("query", "key"):
                getattr(layer.attention.self, kind).register_forward_hook(
                    self._keeper(kind, index))

    def _keeper(self, kind: str, index: int):
        def keep(module, args, output) -> None:
            self.captured.append((kind, index, output.detach().float()))
        return keep

    def take(self) -> list[np.ndarray]:
        """Per layer called since the last take, in order: (heads, T, T) probabilities of
        one unpadded sequence."""
        queries = [(i, t) for kind, i, t in self.captured if kind == "query"]
        keys = [t for kind, _, t in self.captured if kind == "key"]
        self.captured.clear()
        maps = []
        for (_, q), k in zip(queries, keys, strict=True):
            width = q.shape[-1]
            q = q.reshape(-1, self.heads, width // self.heads).transpose(0, 1)  # (h, T, d)
            k = k.reshape(-1, self.heads, width // self.heads).transpose(0, 1)  # (h, T, d)
            scores = q @ k.transpose(1, 2) / (width // self.heads) ** 0.5  # (h, T, T)
            maps.append(torch.softmax(scores, dim=-1).numpy())
        return maps


def _hooked(model: CrossEncoder) -> _HookedModel:
    hooked = _HOOKED.get(model)
    if hooked is None:
        hooked = _HookedModel(model)
        _HOOKED[model] = hooked
    return hooked


def rollout(attentions: np.ndarray) -> np.ndarray:
    """Attention rollout of (layers, heads, L, L) maps -> (L, L): heads averaged, identity
    added, rows renormalised, multiplied from the first layer to the last."""
    layers, _, length, _ = attentions.shape
    joint = np.eye(length)
    for layer in range(layers):
        a = attentions[layer].mean(axis=0) + np.eye(length)  # (L, L)
        a = a / a.sum(axis=-1, keepdims=True)
        joint = a @ joint
    return joint


def joined_maps(lower_a: list[np.ndarray], lower_b: list[np.ndarray],
                top: list[np.ndarray]) -> np.ndarray:
    """(layers, heads, L, L) maps over the joined tokens [A ; B without its CLS]: lower
    layers block-diagonal (side b's CLS row and column dropped, rows renormalised), top
    layers as they are."""
    if not top:
        raise RuntimeError("no attention captured in the top layers.")
    heads, length = top[0].shape[0], top[0].shape[-1]
    out = []
    for a, b in zip(lower_a, lower_b, strict=True):
        ta = a.shape[-1]
        block = np.zeros((heads, length, length))
        block[:, :ta, :ta] = a
        kept = b[:, 1:, 1:]  # (H, Tb-1, Tb-1)
        block[:, ta:, ta:] = kept / np.clip(kept.sum(axis=-1, keepdims=True), 1e-12, None)
        out.append(block)
    return np.stack(out + list(top))


def _maps(model: CrossEncoder, fields: ModelInput) -> tuple[AttentionMaps, bool]:
    """(maps of the full input, whether this call ran the forward); cached."""
    if not isinstance(model, CrossEncoder):
        raise TypeError("attention needs the CrossEncoder itself (its attention maps), not a "
                        "scoring callable.")
    scorer = as_scorer(model, precision="fp32")
    assert isinstance(scorer, CrossEncoderScorer)
    layout = scorer.layout(fields)
    key = (id(model), layout.split, layout.ids)
    cached = _MAPS.get(key)
    if cached is not None:
        return cached, False
    started = time.perf_counter()
    a, b = scorer.key(fields, frozenset())
    prior = scorer.prior([a], [b])  # (1,) or None
    with _HOOK_LOCK:
        hooked = _hooked(model)
        hooked.model.clear_cache()
        hooked.captured.clear()
        with torch.inference_mode():
            a_states = hooked.model.side_states([a], segment=0)
            lower_a = hooked.take()
            b_states = hooked.model.side_states([encoder_text(b)], segment=1)
            lower_b = hooked.take()
            hidden, mask = hooked.model.join(a_states, b_states)  # (1, L, H), (1, L)
            logit = float(hooked.model.score_hidden(hidden, mask, prior).reshape(-1)[0])
            top = hooked.take()
    maps = joined_maps(lower_a, lower_b, top)  # (layers, H, L, L)
    if maps.shape[-1] != len(layout.ids):
        raise RuntimeError(f"the model read {maps.shape[-1]} tokens but the field layout has "
                           f"{len(layout.ids)}: explain.scoring.PairTokenizer no longer "
                           "matches core.recommender.model's tokenisation.")
    scorer.remember((a, b), logit)
    result = AttentionMaps(
        layout=layout, tokens=tuple(model.tokenizer.convert_ids_to_tokens(list(layout.ids))),
        cls_last=maps[-1].mean(axis=0)[0], cls_rollout=rollout(maps)[0], logit=logit,
        seconds=time.perf_counter() - started)
    _MAPS.put(key, result)
    return result, True


def attention_maps(model: CrossEncoder, fields: ModelInput) -> AttentionMaps:
    """The attention maps of the full input (one hooked forward, cached)."""
    return _maps(model, fields)[0]


def _row(maps: AttentionMaps, method: str) -> np.ndarray:
    if method not in ATTENTION_METHODS:
        raise ValueError(f"method={method!r}: choose one of {ATTENTION_METHODS}.")
    return maps.cls_last if method == "attention-cls" else maps.cls_rollout


def explain_attention(model: CrossEncoder, fields: ModelInput, *,
                      method: str = "attention-rollout", subject: Subject = NO_SUBJECT
                      ) -> Explanation:
    """Field attributions by attention ("attention-cls" or "attention-rollout"): the
    share of the [CLS] attention that lands on each field's tokens."""
    started = time.perf_counter()
    maps, fresh = _maps(model, fields)
    row = _row(maps, method)
    omit = frozenset(model.config.omit_fields)
    players = [f for f in fields if f.name not in omit]
    names = tuple(f.name for f in players)
    spans = maps.layout.spans
    shares = np.array([row[slice(*spans[n])].sum() if n in spans else 0.0 for n in names])
    return Explanation.build(
        subject=subject, method=method, features=names, fields=names,
        values=[f.text for f in players], attributions=shares, base_value=float("nan"),
        prediction=float(sigmoid(maps.logit)), evaluations=int(fresh),
        latency_s=time.perf_counter() - started,
        notes={"level": "field", "caption": CAPTION,
               "special_tokens_share": float(1.0 - shares.sum()),
               "truncated_fields": [n for n in names if n not in spans
                                    and n not in NUMBER_ONLY_FIELDS],
               "not_read_by_attention": [n for n in names if n in NUMBER_ONLY_FIELDS]})


def attention_tokens(model: CrossEncoder, fields: ModelInput, *,
                     method: str = "attention-rollout", subject: Subject = NO_SUBJECT
                     ) -> Explanation:
    """Token attributions by attention: one feature per token of the fields (special
    tokens and separators left out), with the field each belongs to."""
    started = time.perf_counter()
    maps, fresh = _maps(model, fields)
    row = _row(maps, method)
    features, owners, values, index = [], [], [], []
    for name, (lo, hi) in sorted(maps.layout.spans.items(), key=lambda kv: kv[1][0]):
        for i in range(lo, hi):
            features.append(f"{name}:{i - lo}")
            owners.append(name)
            values.append(maps.tokens[i])
            index.append(i)
    return Explanation.build(
        subject=subject, method=method, features=features, fields=owners, values=values,
        attributions=row[index], base_value=float("nan"),
        prediction=float(sigmoid(maps.logit)), evaluations=int(fresh),
        latency_s=time.perf_counter() - started, notes={"level": "token", "caption": CAPTION})


def rank_agreement(a: Explanation, b: Explanation) -> dict[str, float]:
    """Spearman rho and Kendall tau (tau-b) between two explanations' attributions over
    their common features; NaN with fewer than 3 features or a constant side."""
    shared = set(b.features)
    common = [f for f in a.features if f in shared]
    nan = {"spearman": float("nan"), "kendall": float("nan"), "features": len(common)}
    if len(common) < 3:
        return nan
    ia = {f: i for i, f in enumerate(a.features)}
    ib = {f: i for i, f in enumerate(b.features)}
    x = np.array([a.attributions[ia[f]] for f in common])
    y = np.array([b.attributions[ib[f]] for f in common])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    return {"spearman": float(stats.spearmanr(x, y).statistic),
            "kendall": float(stats.kendalltau(x, y).statistic), "features": len(common)}
