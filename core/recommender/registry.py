"""The recommender's runs in the model registry (`core.registry.store`, kind `RECOMMENDER`):
saving and loading a `CrossEncoder` in `data/models/<run_id>/`.

Besides the registry's files, a recommender run folder holds

    candidates.json     what the candidate retrieval shipped with the model uses
    co_visits.npz       a non-private model's co-visit counts (`core.recommender.co_visits`),
                        if any

config.json records ModelConfig, TrainConfig, the BERT architecture, the tokenizer
reference (bundled MiniLM package path and version) and the code version (git HEAD or
"unknown"), with what the trainer adds (the split); fingerprint.json the sha256 over the
training interactions' (user, item, ts) rows (`data_fingerprint`).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from transformers import BertConfig

from core.config import PROJECT_ROOT, Paths
from core.minilm import tokenizer_reference
from core.recommender.co_visits import CoVisits
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.registry import store
from core.registry.store import WEIGHTS, RegistryError, new_run_id
from core.store.interactions import ITEM, TS, USER
from privacy.guarantee import record_is_private

__all__ = ["CANDIDATES", "FILES", "KIND", "RUN_COLUMNS", "WEIGHTS", "LoadedModel",
           "RegistryError", "code_version", "data_fingerprint", "latest_run", "list_runs",
           "load", "new_run_id", "run_dir", "save", "state_equal", "write_metrics"]

KIND = store.RECOMMENDER
CANDIDATES = "candidates.json"
FILES = (*store.FILES, CANDIDATES)
RUN_COLUMNS = ["run_id", "created_at", "private", "epsilon", "delta", "privacy_unit",
               "ndcg@10", "hr@10", "path"]

# The registry's functions for this kind.
run_dir = KIND.run_dir
latest_run = KIND.latest_run
write_metrics = KIND.write_metrics


@dataclass
class LoadedModel:
    """A saved run: the model (eval mode, retrieval data attached) and its records."""

    run_id: str
    path: Path
    model: CrossEncoder
    model_config: ModelConfig
    train_config: dict[str, object]
    config: dict[str, object]  # the whole config.json
    privacy: dict[str, object]
    metrics: dict[str, object]
    fingerprint: dict[str, object]
    curve: list[dict[str, object]] = field(default_factory=list)
    candidates: dict[str, object] = field(default_factory=dict)


def data_fingerprint(interactions: pd.DataFrame) -> str:
    """sha256 over the (user, item, ts) rows in a canonical order (hex)."""
    frame = interactions[[USER, ITEM, TS]].astype({USER: str, ITEM: str})
    frame = frame.assign(**{TS: pd.to_datetime(frame[TS]).dt.strftime("%Y-%m-%dT%H:%M:%S.%f")})
    frame = frame.sort_values([USER, TS, ITEM], kind="stable")
    digest = hashlib.sha256()
    for user, item, ts in frame.itertuples(index=False, name=None):
        digest.update(f"{user}\t{item}\t{ts}\n".encode())
    return digest.hexdigest()


def code_version(repo_dir: Path = PROJECT_ROOT) -> str:
    """`git rev-parse HEAD` of the project, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=repo_dir, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def save(paths: Paths, *, run_id: str, model: CrossEncoder, train_config: Mapping[str, object],
         privacy: Mapping[str, object], fingerprint: Mapping[str, object],
         metrics: Mapping[str, object] | None = None,
         curve: list[Mapping[str, object]] | None = None,
         candidates: Mapping[str, object] | None = None,
         extra_config: Mapping[str, object] | None = None) -> Path:
    """Write run `run_id` (see the module docstring) through `RunKind.save`; returns its
    folder. `extra_config` adds to (and may override) config.json's keys."""
    config = {
        "model_config": model.config.to_dict(),
        "train_config": dict(train_config),
        "bert_config": model.bert.config.to_dict(),
        "tokenizer": tokenizer_reference(),
        "code_version": code_version(),
        **dict(extra_config or {}),
    }
    co_visits = model.co_visits
    return KIND.save(paths, run_id, model=model, config=config, privacy=privacy,
                     fingerprint=fingerprint, metrics=metrics, curve=curve,
                     records={CANDIDATES: dict(candidates or {})},
                     write_files=None if co_visits is None else co_visits.save)


def load(run_id: str, paths: Paths | None = None) -> LoadedModel:
    """The run's CrossEncoder (eval mode) with its configs, privacy record and metrics;
    RegistryError where the run is missing or damaged."""
    paths = paths or Paths()
    run = KIND.read(paths, run_id)
    candidates_path = run.path / CANDIDATES
    candidates = store.read_json(candidates_path) if candidates_path.exists() else {}
    model_config = ModelConfig.from_dict(run.config["model_config"])
    model = CrossEncoder.from_config(BertConfig.from_dict(run.config["bert_config"]),
                                     model_config)
    store.load_weights(model, run.path)
    model.item_popularity = {str(k): int(v) for k, v in
                             candidates.get("item_popularity", {}).items()}
    model.co_visits = CoVisits.load(run.path) if model_config.co_visits else None
    model.eval()
    return LoadedModel(run_id=run_id, path=run.path, model=model, model_config=model_config,
                       train_config=run.config.get("train_config", {}), config=run.config,
                       privacy=run.privacy, metrics=run.metrics, fingerprint=run.fingerprint,
                       curve=run.curve, candidates=candidates)


def list_runs(paths: Paths | None = None) -> pd.DataFrame:
    """Complete runs, newest first, with `RUN_COLUMNS`: private
    (`privacy.guarantee.record_is_private`), epsilon (inf where none is recorded), ndcg@10
    and hr@10 of the model."""
    rows = []
    for run in KIND.complete_runs(paths):
        privacy, metrics = run.privacy, run.metrics
        own = metrics.get("model", metrics) if isinstance(metrics, dict) else {}
        epsilon = privacy.get("epsilon")
        rows.append({
            "run_id": run.run_id, "created_at": run.config.get("created_at"),
            "private": record_is_private(privacy),
            "epsilon": float("inf") if epsilon is None else float(epsilon),
            "delta": privacy.get("delta"), "privacy_unit": privacy.get("privacy_unit"),
            "ndcg@10": own.get("ndcg@10"), "hr@10": own.get("hr@10"), "path": str(run.path)})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def state_equal(a: CrossEncoder, b: CrossEncoder) -> bool:
    """Whether two models hold identical weights (for tests and audits)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
