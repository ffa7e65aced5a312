"""Scoring coalitions of fields: the value function every field-level explainer uses.

A coalition is a subset of an input's fields; its value is the model's score
p = sigmoid(logit) of the text pair with every other field removed
(`core.recommender.fields.to_text_pair(fields, masked=...)`). Explainers take the model as a plain
callable, texts -> logits (`TextScorer`, e.g. `CrossEncoder.score_pairs`); a
`CrossEncoder` itself is accepted too.

Every batch of coalitions is ONE call of the model. Logits are cached per exact model
input (the text pair), so the empty coalition, coalitions that differ only by identical
fields and coalitions without any of the candidate's fields (the same for every
candidate of a customer) are computed once. Below that, the late-interaction
cross-encoder (`core.recommender.model`) encodes each side's text once (its frozen lower layers and
the zero-shot prior's sentence embedding are per side): the history-and-context side of
a coalition is shared by all candidates of a customer, so explaining a customer's
second, third, ... recommendation costs a fraction of the first.

Precision: "fp32" (the default) scores with the model itself (`CrossEncoder.score_pairs`),
exactly as it ranks. "bf16" runs a bfloat16 copy of the model and of the prior's
sentence encoder through the same public steps (`side_states`, `join`, `score_hidden`),
within about 5e-3 of the float32 logit; explainers then report the float32 score of the
full input beside the explained one (`FieldGame.reference_notes`). On the target
machine (AMX) bf16 matrix products are 3-10x faster, but HF BERT's layer norms, GELU and
softmax in bf16 are slower, and end to end it measured no faster: kept as an option.
"auto" picks bf16 where the CPU has native bf16 matrix units, else fp32.
"""

from __future__ import annotations

import copy
import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.minilm import MAX_TOKENS, load_encoder
from core.recommender.fields import (
    NUMBER_ONLY_FIELDS,
    SEPARATOR,
    ModelInput,
    encoder_text,
    to_text_pair,
)
from core.recommender.model import CrossEncoder

TextScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (text_a, text_b) -> logits
CACHE_SIZE = 50_000  # cached logits per scorer (a few MB)
BATCH_SIZE = 64
PRECISIONS = ("auto", "fp32", "bf16")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


class LRU:
    """A small thread-safe LRU mapping."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# --- token layout of a joined pair --------------------------------------------------------


@dataclass(frozen=True)
class PairLayout:
    """Token ids of one joined pair as the model reads it, and where each field is.

    ids: [CLS] a [SEP] b [SEP]: each side tokenized alone and cut at its end (side a to
    `history_length - 2` tokens, side b to `item_length - 2`), b without its own [CLS]
    (`CrossEncoder.join`); split: the index of the first side-"b" token; spans:
    {field name: (start, end)} in `ids`, only for fields with a token left after the cut.
    """

    ids: tuple[int, ...]
    split: int
    spans: dict[str, tuple[int, int]]


class PairTokenizer:
    """Token ids of fields (each tokenized once, cached) joined into the pair layout of
    a `core.recommender.model_config.ModelConfig` (`history_length`, `item_length`)."""

    def __init__(self, tokenizer, *, history_length: int, item_length: int,
                 cache_size: int = 20_000):
        self.tokenizer = tokenizer
        self.history_length = history_length
        self.item_length = item_length
        self.cls = int(tokenizer.cls_token_id)
        self.sep = int(tokenizer.sep_token_id)
        self._cache = LRU(cache_size)
        self.separator = self.ids(SEPARATOR.strip())

    @classmethod
    def of(cls, model: CrossEncoder) -> PairTokenizer:
        return cls(model.tokenizer, history_length=model.config.history_length,
                   item_length=model.config.item_length)

    def ids(self, text: str) -> tuple[int, ...]:
        ids = self._cache.get(text)
        if ids is None:
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self._cache.put(text, ids)
        return ids

    def _side(self, fields: Sequence) -> tuple[list[int], list[tuple[str, int, int]]]:
        ids: list[int] = []
        spans: list[tuple[str, int, int]] = []
        for f in fields:
            if ids:
                ids.extend(self.separator)
            start = len(ids)
            ids.extend(self.ids(f.text))
            spans.append((f.name, start, len(ids)))
        return ids, spans

    def layout(self, fields: ModelInput, masked: frozenset[str] = frozenset()) -> PairLayout:
        """The joined pair of `fields` without `masked`, built field by field (the
        WordPiece tokenizer splits at the separator's punctuation, so the fields' ids
        joined by the separator's ids are the ids of the joined text)."""
        a, spans_a = self._side([f for f in fields if f.side == "a" and f.name not in masked])
        # number-only fields (co-visits) are read by the mix, never by the encoder
        b, spans_b = self._side([f for f in fields if f.side == "b" and f.name not in masked
                                 and f.name not in NUMBER_ONLY_FIELDS])
        n_a = min(len(a), self.history_length - 2)
        n_b = min(len(b), self.item_length - 2)
        ids = (self.cls, *a[:n_a], self.sep, *b[:n_b], self.sep)
        spans: dict[str, tuple[int, int]] = {}
        for name, start, end in spans_a:
            lo, hi = 1 + start, 1 + min(end, n_a)
            if hi > lo:
                spans[name] = (lo, hi)
        offset = n_a + 2
        for name, start, end in spans_b:
            lo, hi = offset + start, offset + min(end, n_b)
            if hi > lo:
                spans[name] = (lo, hi)
        return PairLayout(ids=ids, split=n_a + 2, spans=spans)


# --- precision --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def bf16_is_faster() -> bool:
    """Whether the CPU computes bfloat16 matrix products natively (AMX or AVX512-BF16:
    about 10x float32 on the target machine; elsewhere bf16 is emulated and slower).
    Read from the CPU flags, so that the answer does not depend on the load."""
    try:
        flags = next((line for line in open("/proc/cpuinfo").read().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str) -> str:
    """"fp32" or "bf16" ("auto": bf16 where the CPU computes it fast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}.")
    if precision == "auto":
        return "bf16" if bf16_is_faster() else "fp32"
    return precision


def has_prior(model: CrossEncoder) -> bool:
    """True where the model's logit adds the learnt mix (zero-shot prior, popularity)."""
    return bool(getattr(model, "mixes", False))


class _Bf16SentenceEncoder:
    """A bfloat16 copy of the frozen MiniLM sentence encoder with the same pooling as
    `core.minilm.embed_texts` (mean over tokens, L2-normalised), cached per text."""

    def __init__(self, tokenizer, cache_size: int = 50_000):
        self.tokenizer = tokenizer
        self.encoder = load_encoder().to(torch.bfloat16).eval()
        self._cache = LRU(cache_size)

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found = {t: self._cache.get(t) for t in set(texts)}
        missing = sorted(t for t, v in found.items() if v is None)
        for start in range(0, len(missing), BATCH_SIZE):
            chunk = missing[start:start + BATCH_SIZE]
            batch = self.tokenizer(chunk, padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.encoder(**batch).last_hidden_state.float()  # (B, T, H)
            keep = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1e-9)  # (B, H)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
            for text, vector in zip(chunk, pooled, strict=True):
                self._cache.put(text, vector)
                found[text] = vector
        return found

    def similarity(self, text_a: Sequence[str], text_b: Sequence[str]) -> np.ndarray:
        text_b = [encoder_text(b) for b in text_b]
        vectors = self.embed([*text_a, *text_b])
        return np.array([float(vectors[a] @ vectors[b]) for a, b in
                         zip(text_a, text_b, strict=True)], dtype=np.float32)


# --- scorers: (fields, masked) -> cached logits ---------------------------------------------


class Scorer:
    """Logits of coalitions, cached per exact model input (the text pair)."""

    omit: frozenset[str] = frozenset()

    def __init__(self, *, cache_size: int = CACHE_SIZE):
        self._cache = LRU(cache_size)
        self._lock = threading.Lock()
        self.evaluations = 0  # rows forwarded over this scorer's life

    def key(self, fields: ModelInput, masked: frozenset[str]) -> tuple[str, str]:
        """The text pair the model reads for `fields` without `masked`."""
        return to_text_pair(fields, masked=frozenset(masked) | self.omit)

    def _forward(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        raise NotImplementedError

    def logits(self, pairs: Sequence[tuple[str, str]]) -> tuple[np.ndarray, int]:
        """(logits in order, rows forwarded for this call: cache misses, deduplicated)."""
        out = np.empty(len(pairs), dtype=np.float64)
        missing: dict[tuple[str, str], list[int]] = {}
        for i, pair in enumerate(pairs):
            value = self._cache.get(pair)
            if value is None:
                missing.setdefault(pair, []).append(i)
            else:
                out[i] = value
        if missing:
            todo = list(missing)
            values = np.asarray(self._forward(todo), dtype=np.float64).reshape(-1)
            if values.shape != (len(todo),):
                raise ValueError(f"the model returned {values.shape[0]} scores for "
                                 f"{len(todo)} text pairs: it must return one per pair.")
            for pair, value in zip(todo, values, strict=True):
                self._cache.put(pair, float(value))
                out[missing[pair]] = value
            with self._lock:
                self.evaluations += len(todo)
        return out, len(missing)

    def remember(self, pair: tuple[str, str], logit: float) -> None:
        """Store a logit computed elsewhere for the same model input (e.g. by the
        attention forward)."""
        self._cache.put(pair, float(logit))

    def clear(self) -> None:
        self._cache.clear()


class TextPairScorer(Scorer):
    """A plain callable (text_a list, text_b list) -> logits, one call per batch."""

    def __init__(self, score: TextScorer, *, omit: frozenset[str] = frozenset(),
                 cache_size: int = CACHE_SIZE):
        super().__init__(cache_size=cache_size)
        self.score = score
        self.omit = frozenset(omit)

    def _forward(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.asarray(self.score([a for a, _ in pairs], [b for _, b in pairs]))


def fresh_copy(model: CrossEncoder, *, dtype: torch.dtype | None = None,
               attention: str | None = None) -> CrossEncoder:
    """A copy of `model` with its own (empty) caches: the same weights, optionally in
    another dtype or attention implementation."""
    bert = copy.deepcopy(model.bert)
    if attention is not None:
        bert.config._attn_implementation = attention
    twin = CrossEncoder(bert, model.config, tokenizer=model.tokenizer)
    twin.load_state_dict(model.state_dict())
    if dtype is not None:
        twin = twin.to(dtype)
    twin.clear_cache()
    return twin.eval()


class CrossEncoderScorer(Scorer):
    """A `CrossEncoder` as the value function (see the module docstring)."""

    def __init__(self, model: CrossEncoder, *, precision: str = "fp32",
                 batch_size: int = BATCH_SIZE, cache_size: int = CACHE_SIZE):
        super().__init__(cache_size=cache_size)
        self.model = model
        self.precision = resolve_precision(precision)
        self.batch_size = batch_size
        self.omit = frozenset(model.config.omit_fields)
        self.pairs = PairTokenizer.of(model)
        self._runner: CrossEncoder | None = None
        self._sentences: _Bf16SentenceEncoder | None = None
        self._setup_lock = threading.Lock()

    def layout(self, fields: ModelInput, masked: frozenset[str] = frozenset()) -> PairLayout:
        return self.pairs.layout(fields, frozenset(masked) | self.omit)

    def _bf16(self) -> tuple[CrossEncoder, _Bf16SentenceEncoder]:
        with self._setup_lock:
            if self._runner is None:
                self._runner = fresh_copy(self.model, dtype=torch.bfloat16)
                self._sentences = _Bf16SentenceEncoder(self.model.tokenizer)
            return self._runner, self._sentences

    def prior(self, text_a: Sequence[str], text_b: Sequence[str]) -> torch.Tensor | None:
        """The zero-shot prior of each pair at this scorer's precision (None without)."""
        if not has_prior(self.model):
            return None
        if self.precision == "fp32":
            return torch.from_numpy(self.model.prior_similarity(text_a, text_b))
        cosine = (self._bf16()[1].similarity(text_a, text_b) if self.model.config.prior_scale > 0
                  else np.zeros(len(text_a), dtype=np.float32))
        return torch.from_numpy(self.model.mix_inputs(cosine, text_b))

    def _forward(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        text_a, text_b = [a for a, _ in pairs], [b for _, b in pairs]
        if self.precision == "fp32":
            return self.model.score_pairs(text_a, text_b)
        runner, _ = self._bf16()
        prior = self.prior(text_a, text_b)  # (N,) or None
        a_states = runner.side_states(text_a, segment=0)
        b_states = runner.side_states([encoder_text(b) for b in text_b], segment=1)
        order = sorted(range(len(pairs)),
                       key=lambda i: a_states[i].shape[0] + b_states[i].shape[0])
        out = np.empty(len(pairs), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                hidden, mask = runner.join([a_states[i] for i in rows],
                                           [b_states[i] for i in rows])  # (B, L, H), (B, L)
                part = None if prior is None else prior[rows].to(torch.bfloat16)
                logits = runner.score_hidden(hidden.to(torch.bfloat16), mask, part)  # (B,)
                out[rows] = logits.float().numpy()
        return out


_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SCORERS_LOCK = threading.Lock()


def as_scorer(model: CrossEncoder | TextScorer | Scorer, *, precision: str = "fp32"
              ) -> Scorer:
    """The cached scorer of `model`: one per CrossEncoder (and precision) or callable
    object, so its cache serves every explanation of that model; `model` itself if it is
    a Scorer. `precision` applies to a CrossEncoder only (see the module docstring)."""
    if isinstance(model, Scorer):
        return model
    precision = resolve_precision(precision) if isinstance(model, CrossEncoder) else "fp32"
    with _SCORERS_LOCK:
        try:
            per_model = _SCORERS.setdefault(model, {})
        except TypeError:  # not weak-referenceable: no sharing
            per_model = {}
        scorer = per_model.get(precision)
        if scorer is None:
            scorer = (CrossEncoderScorer(model, precision=precision)
                      if isinstance(model, CrossEncoder) else TextPairScorer(model))
            per_model[precision] = scorer
        return scorer


def reference_scorer(scorer: Scorer) -> Scorer | None:
    """The float32 scorer of the same model where `scorer` runs a bf16 copy, else None."""
    if isinstance(scorer, CrossEncoderScorer) and scorer.precision != "fp32":
        return as_scorer(scorer.model, precision="fp32")
    return None


# --- the game of one input -------------------------------------------------------------------


class FieldGame:
    """v(S) = sigmoid(logit of the input with only the fields in S) for one input.

    `players` are the input's fields the model reads (a model's `omit_fields` are never
    players). Called with a (M, n) boolean array of coalitions (True = field kept), it
    scores all M in one batched call. `evaluations` counts rows actually forwarded."""

    def __init__(self, scorer: Scorer, fields: ModelInput):
        self.scorer = scorer
        self.fields = tuple(fields)
        self.players = tuple(f for f in self.fields if f.name not in scorer.omit)
        self.names = tuple(f.name for f in self.players)
        self.evaluations = 0
        self.calls = 0
        self.coalitions = 0

    def __len__(self) -> int:
        return len(self.players)

    def masked(self, keep: np.ndarray) -> frozenset[str]:
        return frozenset(n for n, k in zip(self.names, keep, strict=True) if not k)

    def text_pair(self, keep: np.ndarray) -> tuple[str, str]:
        """The serialized pair of a coalition (what the model reads, before tokenizing)."""
        return self.scorer.key(self.fields, self.masked(keep))

    def logits(self, masks: np.ndarray) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(masks).astype(bool))  # (M, n)
        if masks.shape[1] != len(self.players):
            raise ValueError(f"coalitions of {masks.shape[1]} players for an input with "
                             f"{len(self.players)} fields.")
        out, new = self.scorer.logits([self.text_pair(row) for row in masks])
        self.evaluations += new
        self.calls += 1
        self.coalitions += len(masks)
        return out

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(masks))

    def value(self, keep: Sequence[bool]) -> float:
        return float(self(np.asarray(keep, dtype=bool)[None, :])[0])

    def reference_notes(self, explained: float) -> dict[str, object]:
        """Where the game runs a bf16 copy: the float32 score of the full input (one more
        row, cached) and how far the explained score is from it; else nothing."""
        reference = reference_scorer(self.scorer)
        if reference is None:
            return {}
        logit, new = reference.logits([reference.key(self.fields, frozenset())])
        self.evaluations += new
        score = float(sigmoid(logit)[0])
        return {"precision": "bf16", "reference_prediction": score,
                "precision_error": abs(explained - score)}
