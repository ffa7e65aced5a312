"""The sentiment model's runs in the model registry (`core.registry.store`, kind
`SENTIMENT`): saving and loading a `SentimentClassifier` in
`data/models/sentiment/<run_id>/`.

config.json records the SentimentModelConfig, the training config, the BERT
architecture, the label names, the tokenizer reference (bundled MiniLM package path and
version) and the code version, with what the trainer adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from transformers import BertConfig

from core.config import Paths
from core.minilm import tokenizer_reference
from core.registry import store
from core.sentiment.data import LABELS
from core.sentiment.model import SentimentClassifier, SentimentModelConfig

KIND = store.SENTIMENT
RUN_COLUMNS = ["run_id", "created_at", "private", "epsilon", "delta", "accuracy", "macro_f1",
               "path"]


@dataclass
class LoadedSentimentModel:
    """A saved run: the model (eval mode) and its records as written."""

    run_id: str
    path: Path
    model: SentimentClassifier
    config: dict[str, object]  # the whole config.json
    privacy: dict[str, object]
    metrics: dict[str, object]
    fingerprint: dict[str, object]
    curve: list[dict[str, object]] = field(default_factory=list)


def save(paths: Paths, *, run_id: str, model: SentimentClassifier,
         train_config: Mapping[str, object], privacy: Mapping[str, object],
         fingerprint: Mapping[str, object], metrics: Mapping[str, object] | None = None,
         curve: Sequence[Mapping[str, object]] | None = None,
         extra_config: Mapping[str, object] | None = None, code_version: str = "unknown"
         ) -> Path:
    """Write run `run_id` (see the module docstring) through `RunKind.save`; returns its
    folder. `extra_config` adds to (and may override) config.json's keys."""
    config = {
        "model_config": model.config.to_dict(),
        "train_config": dict(train_config),
        "bert_config": model.bert.config.to_dict(),
        "labels": list(LABELS),
        "tokenizer": tokenizer_reference(),
        "code_version": code_version,
        **dict(extra_config or {}),
    }
    return KIND.save(paths, run_id, model=model, config=config, privacy=privacy,
                     fingerprint=fingerprint, metrics=metrics, curve=curve)


def load(run_id: str, paths: Paths | None = None) -> LoadedSentimentModel:
    """The run's SentimentClassifier (eval mode) with its config, privacy record and
    metrics; RegistryError where the run is missing or damaged."""
    run = KIND.read(paths or Paths(), run_id)
    model = SentimentClassifier.from_config(
        BertConfig.from_dict(run.config["bert_config"]),
        SentimentModelConfig.from_dict(run.config["model_config"]))
    store.load_weights(model, run.path)
    model.eval()
    return LoadedSentimentModel(run_id=run_id, path=run.path, model=model, config=run.config,
                                privacy=run.privacy, metrics=run.metrics,
                                fingerprint=run.fingerprint, curve=run.curve)


def list_runs(paths: Paths | None = None) -> pd.DataFrame:
    """Complete sentiment runs, newest first, with `RUN_COLUMNS`: private (as recorded),
    epsilon (inf where none or "inf" is recorded), accuracy and macro_f1 of the model."""
    rows = []
    for run in KIND.complete_runs(paths):
        privacy, metrics = run.privacy, run.metrics
        own = metrics.get("model", {}) if isinstance(metrics, dict) else {}
        epsilon = privacy.get("epsilon")
        rows.append({"run_id": run.run_id, "created_at": run.config.get("created_at"),
                     "private": bool(privacy.get("private", False)),
                     "epsilon": float("inf") if epsilon in (None, "inf") else float(epsilon),
                     "delta": privacy.get("delta"), "accuracy": own.get("accuracy"),
                     "macro_f1": own.get("macro_f1"), "path": str(run.path)})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)
