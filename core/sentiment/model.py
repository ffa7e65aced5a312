"""The review sentiment model: MiniLM (BERT) with a 3-class head over review text.

Parameter-efficient fine-tuning: the bundled all-MiniLM-L6-v2 weights are loaded as
`BertForSequenceClassification(num_labels=3)`; the embeddings and the lower encoder
layers are frozen, only the top `trainable_layers` layers and the head learn. Under
DP-SGD every trained coordinate receives noise, so fewer trained parameters means
less noise for the same privacy (Yu et al. 2021), and each step costs less.

The forward pass is split where the frozen part ends:

- `features(input_ids, attention_mask) -> (N, L, H)`: embeddings and the frozen
  layers, without gradients. They never change during training, so training computes
  them once per review (`core.sentiment.features.FeatureStore`).
- `forward(features, attention_mask) -> (N, 3)`: the trainable layers, the pooling
  and the classifier. This is the module Opacus wraps; its batch dimension is the
  sampled reviewer (one review each), so per-sample gradients are per reviewer.

Pooling: "mean" (default) averages the top layer's token states over the attention
mask, as sentence-transformers trained this model; "cls" uses BERT's pooler on the
[CLS] state, as `BertForSequenceClassification` does.

Opacus and HF BERT: BERT's embeddings build `position_ids` and `token_type_ids` from
buffers with `expand` when they are not given (Opacus issue 841); both are always
passed explicitly, contiguous, with the batch's own shape.

Attributions (`attribute`): gradient x activation at the input of the first
trainable layer, summed over the hidden dimension and over the word pieces of each
word, towards the log-probability of the predicted class. One backward pass through
the trainable layers only; with trainable_layers=0 and mean pooling it is the exact
decomposition of the logit.

Runs are saved and loaded by `core.sentiment.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from core.minilm import load_tokenizer, minilm_path
from core.sentiment.data import LABELS

POOLINGS = ("mean", "cls")
HEAD_INITS = ("anchors", "random")
# Generic sentences of each class, written for this purpose (no customer wrote them):
# the head starts as a nearest-prototype classifier over their embeddings, so that DP
# training starts from a sensible model instead of spending its noisy steps on finding
# the directions of sentiment. Public knowledge: using them costs no privacy.
ANCHORS: dict[str, tuple[str, ...]] = {
    "negative": (
        "This is terrible and I am very unhappy with it.",
        "Horrible experience, it failed almost immediately.",
        "I really dislike this, the quality is awful.",
        "Disappointing and useless, I would never purchase it again.",
        "It made my skin break out and it smelled bad.",
        "Broken on arrival and the seller ignored my messages.",
    ),
    "neutral": (
        "It is alright, just average.",
        "Mediocre: some parts are fine, others are not.",
        "Fair enough for what it costs, but no more than that.",
        "I have no strong opinion about this product.",
        "It works, though it is not impressive.",
        "Okay overall, with a few minor drawbacks.",
    ),
    "positive": (
        "Superb, I am thrilled with it.",
        "Great quality and it works really well.",
        "I love this so much, a wonderful purchase.",
        "Amazing, even better than I hoped.",
        "It feels lovely on my skin and smells amazing.",
        "Fast delivery and a fantastic product.",
    ),
}
ANCHOR_SCALE = 10.0  # logit gap per unit of cosine difference from the prototypes


@dataclass(frozen=True)
class SentimentModelConfig:
    """What the model reads and which part of it learns.

    max_length: word pieces per review (summary . text), longer ones are cut.
    trainable_layers: top encoder layers that learn (0: only the head).
    pooling: "mean" over the top layer's tokens, or "cls" (BERT's pooler).
    head_init: "anchors" (the head starts as a nearest-prototype classifier over the
        embeddings of `ANCHORS`, generic sentences written for this purpose) or "random".
    """

    max_length: int = 128
    trainable_layers: int = 1
    pooling: str = "mean"
    head_init: str = "anchors"

    def __post_init__(self) -> None:
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length={self.max_length}: must lie in 8..512.")
        if self.trainable_layers < 0:
            raise ValueError(f"trainable_layers={self.trainable_layers}: must be >= 0.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: choose one of {POOLINGS}.")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init={self.head_init!r}: choose one of {HEAD_INITS}.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> SentimentModelConfig:
        """The config a run recorded (keys this version does not know are left out)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})



def _additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, L) 0/1 -> (N, 1, 1, L) additive: 0 where kept, the dtype's minimum elsewhere
    (not -inf: a row with nothing to attend to stays finite)."""
    keep = attention_mask.bool()[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


def _position_ids(input_ids: torch.Tensor) -> torch.Tensor:
    n, length = input_ids.shape
    return torch.arange(length, device=input_ids.device).unsqueeze(0).expand(n, length)\
        .contiguous()  # (N, L)


@dataclass
class Attribution:
    """One review's prediction and the words that drove it.

    words: the words as the model's pre-tokenizer splits them (punctuation apart);
    spans: (start, end) character offsets of each word in `text`; weights: gradient x
    activation of each word towards the predicted class (positive: pushed towards it).
    """

    text: str
    probabilities: np.ndarray  # (3,)
    predicted: int
    words: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


class SentimentClassifier(nn.Module):
    """BERT with a 3-class head over review text; see the module docstring."""

    def __init__(self, bert: BertForSequenceClassification, config: SentimentModelConfig,
                 tokenizer=None):
        super().__init__()
        if bert.config.num_labels != len(LABELS):
            raise ValueError(f"num_labels={bert.config.num_labels}: the sentiment head has "
                             f"{len(LABELS)} classes {LABELS}.")
        if config.trainable_layers > bert.config.num_hidden_layers:
            raise ValueError(f"trainable_layers={config.trainable_layers} but the encoder has "
                             f"{bert.config.num_hidden_layers} layers.")
        self.bert = bert
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.freeze()

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, config: SentimentModelConfig | None = None, *, seed: int = 0
                        ) -> SentimentClassifier:
        """The bundled all-MiniLM-L6-v2 weights with a fresh 3-class head (offline)."""
        from transformers.utils import logging as hf_logging

        torch.manual_seed(seed)  # the new head's initialisation
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "classifier newly initialised" report
        hf_logging.disable_progress_bar()
        try:
            bert = BertForSequenceClassification.from_pretrained(
                minilm_path(), num_labels=len(LABELS), attn_implementation="sdpa")
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        _label_names(bert.config)
        return cls(bert, config or SentimentModelConfig())

    @classmethod
    def from_config(cls, bert_config: BertConfig, config: SentimentModelConfig | None = None,
                    *, seed: int = 0) -> SentimentClassifier:
        """Random weights of the given architecture (a tiny BERT for tests), with the real
        tokenizer: `bert_config.vocab_size` must cover its 30,522 ids."""
        values = {k: v for k, v in bert_config.to_dict().items()
                  if k not in ("id2label", "label2id", "num_labels")}
        bert_config = BertConfig.from_dict({**values, "num_labels": len(LABELS)})
        bert_config._attn_implementation = "sdpa"
        _label_names(bert_config)
        torch.manual_seed(seed)
        return cls(BertForSequenceClassification(bert_config), config or SentimentModelConfig())

    def freeze(self) -> None:
        """Only the top `trainable_layers` layers and the head learn (the pooler too with
        "cls" pooling; with "mean" it is unused and stays frozen)."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        layers = self.bert.bert.encoder.layer
        for layer in layers[self.first_trainable:]:
            layer.requires_grad_(True)
        if self.config.pooling == "cls":
            self.bert.bert.pooler.requires_grad_(True)
        self.bert.classifier.requires_grad_(True)

    def train(self, mode: bool = True) -> SentimentClassifier:
        """Train mode for the trainable part only: the frozen embeddings and layers stay
        in eval mode (no dropout), so their outputs are a fixed function of the review
        and can be computed once (`core.sentiment.features.FeatureStore`)."""
        super().train(mode)
        self.bert.bert.embeddings.eval()
        for layer in self.bert.bert.encoder.layer[:self.first_trainable]:
            layer.eval()
        return self

    @property
    def first_trainable(self) -> int:
        return self.bert.config.num_hidden_layers - self.config.trainable_layers

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def init_head_from_anchors(self, anchors: Mapping[str, Sequence[str]] = ANCHORS, *,
                               scale: float = ANCHOR_SCALE) -> None:
        """Set the classifier to score each class by the cosine between a review's pooled
        vector and the mean (unit) pooled vector of that class's anchor sentences,
        centred over the classes; bias 0 (no class is favoured a priori)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            prototypes, norms = [], []
            for name in LABELS:
                batch = self.tokenize(list(anchors[name]))
                pooled = self._pooled(self.features(batch["input_ids"], batch["attention_mask"]),
                                      batch["attention_mask"])  # (A, H)
                norms.append(pooled.norm(dim=-1))
                prototypes.append(torch.nn.functional.normalize(pooled, dim=-1).mean(0))
            protos = torch.stack(prototypes)  # (3, H)
            protos = protos - protos.mean(0, keepdim=True)
            typical = float(torch.cat(norms).mean())
            self.bert.classifier.weight.copy_(scale * protos / max(typical, 1e-6))
            self.bert.classifier.bias.zero_()
        self.train(was_training)

    # --- tokens -----------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], *, offsets: bool = False):
        """input_ids and attention_mask (N, L), L = the longest review (<= max_length)."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length,
                              padding="longest", return_tensors="pt",
                              return_offsets_mapping=offsets)

    # --- forward paths ----------------------------------------------------------------

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings and the frozen layers: (N, L) ids -> (N, L, H), no gradients."""
        with torch.no_grad():
            hidden = self.bert.bert.embeddings(
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids).contiguous(),
                position_ids=_position_ids(input_ids))  # (N, L, H)
            mask = _additive_mask(attention_mask, hidden.dtype)  # (N, 1, 1, L)
            for layer in self.bert.bert.encoder.layer[:self.first_trainable]:
                hidden = layer(hidden, mask)  # (N, L, H)
        return hidden

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The trainable part: (N, L, H) frozen features -> (N, 3) logits."""
        pooled = self._pooled(features, attention_mask)  # (N, H)
        return self.bert.classifier(self.bert.dropout(pooled))  # (N, 3)

    def _pooled(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The trainable layers and the pooling: (N, L, H) -> (N, H)."""
        hidden = features
        mask = _additive_mask(attention_mask, hidden.dtype)  # (N, 1, 1, L)
        for layer in self.bert.bert.encoder.layer[self.first_trainable:]:
            hidden = layer(hidden, mask)  # (N, L, H)
        if self.config.pooling == "mean":
            keep = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, L, 1)
            return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (N, H)
        pooler = self.bert.bert.pooler
        return pooler.activation(pooler.dense(hidden[:, 0]))  # (N, H)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The whole model: (N, L) ids -> (N, 3) logits."""
        return self(self.features(input_ids, attention_mask), attention_mask)

    # --- inference ----------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, 3) (negative, neutral, positive), float32, input order.
        Batches reviews of similar length together (less padding); eval mode, no grad."""
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    batch = self.tokenize([texts[i] for i in rows])
                    logits = self.logits(batch["input_ids"], batch["attention_mask"])
                    out[rows] = torch.softmax(logits, dim=-1).float().numpy()
        finally:
            self.train(was_training)
        return out

    def attribute(self, texts: Sequence[str], *, batch_size: int = 64) -> list[Attribution]:
        """Predictions with word attributions (see the module docstring), input order."""
        results: list[Attribution | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = self.tokenize([texts[i] for i in rows], offsets=True)
                mask = batch["attention_mask"]
                hidden = self.features(batch["input_ids"], mask).requires_grad_(True)
                logits = self(hidden, mask)  # (B, 3)
                log_probs = torch.log_softmax(logits, dim=-1)  # (B, 3)
                predicted = log_probs.argmax(dim=-1)  # (B,)
                (grad,) = torch.autograd.grad(log_probs.gather(1, predicted[:, None]).sum(),
                                              hidden)
                tokens = (grad * hidden).sum(-1).detach() * mask  # (B, L)
                probs = log_probs.exp().detach().numpy()
                for j, i in enumerate(rows):
                    results[i] = _words(texts[i], batch, j, tokens[j].numpy(), probs[j],
                                        int(predicted[j]))
        finally:
            self.train(was_training)
        return results  # type: ignore[return-value]


def _words(text: str, batch, row: int, token_weights: np.ndarray, probs: np.ndarray,
           predicted: int) -> Attribution:
    """Word pieces -> words: sum the pieces' weights, span the pieces' characters."""
    word_ids = batch.word_ids(row)
    offsets = batch["offset_mapping"][row].tolist()
    spans: dict[int, list[float]] = {}
    for position, word in enumerate(word_ids):
        if word is None:  # [CLS], [SEP], padding
            continue
        start, end = offsets[position]
        if word not in spans:
            spans[word] = [start, end, 0.0]
        spans[word][1] = end
        spans[word][2] += float(token_weights[position])
    ordered = [spans[w] for w in sorted(spans)]
    return Attribution(text=text, probabilities=probs, predicted=predicted,
                       words=[text[int(s):int(e)].lower() for s, e, _ in ordered],
                       spans=[(int(s), int(e)) for s, e, _ in ordered],
                       weights=[w for _, _, w in ordered])


def _label_names(config: BertConfig) -> None:
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {name: i for i, name in enumerate(LABELS)}
