"""The frozen part's outputs, computed once per review text, and predictions from them.

The embeddings and the frozen layers of a `SentimentClassifier` do not change during
training, so their output (`SentimentClassifier.features`) is computed once per review
(`FeatureStore`) and every training step runs only the trainable top layers on it.
Features are kept as float16 (L_i, H) tensors, L_i the review's own word pieces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from core.sentiment.data import LABELS
from core.sentiment.model import SentimentClassifier


class FeatureStore:
    """Outputs of a model's frozen part (`SentimentClassifier.features`), per review text.

    They depend only on the frozen pretrained weights, so one store serves every run on
    the same base (several models trained on one split). A store refuses a model whose
    frozen part differs from the first one it served."""

    def __init__(self) -> None:
        self._signature: str | None = None
        self._features: dict[str, torch.Tensor] = {}  # text -> (L, H) float16

    @staticmethod
    def signature(model: SentimentClassifier) -> str:
        """sha256 (hex) over the frozen part's shape and a checksum of its weights."""
        digest = hashlib.sha256(json.dumps(
            [model.bert.config.to_dict().get(k) for k in ("hidden_size", "num_hidden_layers",
                                                          "vocab_size")]
            + [model.first_trainable, model.config.max_length], default=str).encode())
        frozen = model.bert.bert.embeddings.word_embeddings.weight
        digest.update(f"{float(frozen[:64].double().sum()):.10e}".encode())
        for layer in model.bert.bert.encoder.layer[:model.first_trainable]:
            weight = layer.attention.self.query.weight
            digest.update(f"{float(weight.double().sum()):.10e}".encode())
        return digest.hexdigest()

    def get(self, model: SentimentClassifier, texts: Sequence[str], *, batch_size: int = 64,
            progress: bool = False, desc: str = "features") -> list[torch.Tensor]:
        """(L_i, H) float16 features of each text, in input order (computing the missing
        ones). Raises ValueError for a model whose frozen part is not this store's."""
        signature = self.signature(model)
        if self._signature is None:
            self._signature = signature
        elif signature != self._signature:
            raise ValueError("this FeatureStore holds features of another model's frozen "
                             "part: use a new store for a different base or trainable_layers.")
        missing = sorted({t for t in texts if t not in self._features}, key=len)
        bar = tqdm(total=len(missing), disable=not progress, desc=desc, unit="review")
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            batch = model.tokenize(chunk)
            hidden = model.features(batch["input_ids"], batch["attention_mask"])  # (B, L, H)
            lengths = batch["attention_mask"].sum(1).tolist()
            for text, h, n in zip(chunk, hidden, lengths, strict=True):
                self._features[text] = h[:int(n)].to(torch.float16).clone()
            bar.update(len(chunk))
        bar.close()
        return [self._features[t] for t in texts]


def pad_features(features: Sequence[torch.Tensor], hidden: int) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """(B, L, H) float32 features and (B, L) mask, L = the longest (at least 1)."""
    length = max([int(f.shape[0]) for f in features] + [1])
    out = torch.zeros((len(features), length, hidden), dtype=torch.float32)
    mask = torch.zeros((len(features), length), dtype=torch.long)
    for i, f in enumerate(features):
        out[i, :f.shape[0]] = f.float()
        mask[i, :f.shape[0]] = 1
    return out, mask


def predict_features(model: SentimentClassifier, features: Sequence[torch.Tensor], *,
                     batch_size: int = 128) -> np.ndarray:
    """Class probabilities (N, 3) float32 from precomputed frozen features, input order
    (eval mode, no grad; the model's mode is restored)."""
    hidden = model.bert.config.hidden_size
    out = np.zeros((len(features), len(LABELS)), dtype=np.float32)
    order = sorted(range(len(features)), key=lambda i: int(features[i].shape[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                x, mask = pad_features([features[i] for i in rows], hidden)
                out[rows] = torch.softmax(model(x, mask), dim=-1).numpy()
    finally:
        model.train(was_training)
    return out
