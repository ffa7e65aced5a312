"""The model registry: one folder per training run under `data/models/<run_id>/`.

A run folder carries everything needed to reproduce and audit the model:

    model.safetensors   the model's state dict (nothing else: no optimizer)
    config.json         ModelConfig, TrainConfig, the BERT architecture, the tokenizer
                        reference (bundled MiniLM package path and version), the split,
                        the code version (git HEAD or "unknown")
    privacy.json        epsilon, delta, noise multiplier, sample rate, steps, clip norm,
                        accountant, privacy unit and contribution cap
    metrics.json        evaluation results (next to the baselines' when given)
    fingerprint.json    sha256 over the training interactions' (user, item, ts) rows
    curve.json          per-step training loss and epsilon spent
    candidates.json     what the candidate retrieval shipped with the model uses
    co_visits.npz       a non-private model's co-visit counts (`core.recommender.co_visits`), if any

A run is written into `<run_id>.partial/` and renamed to `<run_id>/` at the very end,
so an interrupted run is never listed as complete. `save`/`load` are the one pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig

from core.config import PROJECT_ROOT, Paths
from core.recommender.co_visits import CoVisits
from core.recommender.model import CrossEncoder, ModelConfig, tokenizer_reference
from core.store.interactions import ITEM, TS, USER

WEIGHTS = "model.safetensors"
PARTIAL = ".partial"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
FILES = ("config.json", "privacy.json", "metrics.json", "fingerprint.json", "curve.json",
         "candidates.json")


class RegistryError(RuntimeError):
    """A missing or broken run folder, with a message that says what to do."""


@dataclass
class LoadedModel:
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


def new_run_id(prefix: str = "ce") -> str:
    """`<prefix>_<UTC time>_<8 hex>`: sortable by time, unique across processes."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}_{stamp}_{os.urandom(4).hex()}"


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


def _check_run_id(run_id: str) -> None:
    if not RUN_ID_PATTERN.match(run_id) or run_id.endswith(PARTIAL):
        raise RegistryError(f"run id {run_id!r} is not a valid folder name: use letters, "
                            "digits, '_', '-' and '.' (see `clearmark models`).")


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def save(paths: Paths, *, run_id: str, model: CrossEncoder, train_config: Mapping[str, object],
         privacy: Mapping[str, object], fingerprint: Mapping[str, object],
         metrics: Mapping[str, object] | None = None,
         curve: list[Mapping[str, object]] | None = None,
         candidates: Mapping[str, object] | None = None,
         extra_config: Mapping[str, object] | None = None) -> Path:
    """Write run `run_id` (see the module docstring); returns its folder.

    Everything goes to `<run_id>.partial/` first; the rename to `<run_id>/` is the last
    step, so a crash leaves no folder that `list_runs` would show."""
    _check_run_id(run_id)
    final = paths.models_dir / run_id
    if final.exists():
        raise RegistryError(f"{final} already exists: run ids are unique, pick another.")
    partial = paths.models_dir / f"{run_id}{PARTIAL}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        _write_run(partial, run_id=run_id, model=model, train_config=train_config,
                   privacy=privacy, fingerprint=fingerprint, metrics=metrics, curve=curve,
                   candidates=candidates, extra_config=extra_config)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, final)
    return final


def _write_run(partial: Path, *, run_id: str, model: CrossEncoder,
               train_config: Mapping[str, object], privacy: Mapping[str, object],
               fingerprint: Mapping[str, object], metrics: Mapping[str, object] | None,
               curve: list[Mapping[str, object]] | None,
               candidates: Mapping[str, object] | None,
               extra_config: Mapping[str, object] | None) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(partial / WEIGHTS), metadata={"run_id": run_id})
    config = {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_config": model.config.to_dict(),
        "train_config": dict(train_config),
        "bert_config": model.bert.config.to_dict(),
        "tokenizer": tokenizer_reference(),
        "code_version": code_version(),
        **dict(extra_config or {}),
    }
    _write_json(partial / "config.json", config)
    _write_json(partial / "privacy.json", dict(privacy))
    _write_json(partial / "metrics.json", dict(metrics or {}))
    _write_json(partial / "fingerprint.json", dict(fingerprint))
    _write_json(partial / "curve.json", list(curve or []))
    _write_json(partial / "candidates.json", dict(candidates or {}))
    if model.co_visits is not None:
        model.co_visits.save(partial)


def write_metrics(paths: Paths, run_id: str, metrics: Mapping[str, object]) -> Path:
    """Replace metrics.json of a complete run (e.g. after `clearmark evaluate`)."""
    path = run_dir(paths, run_id) / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    _write_json(tmp, dict(metrics))
    os.replace(tmp, path)
    return path


def run_dir(paths: Paths, run_id: str) -> Path:
    _check_run_id(run_id)
    path = paths.models_dir / run_id
    if not (path / WEIGHTS).exists() or not (path / "config.json").exists():
        raise RegistryError(f"no complete model run {run_id!r} in {paths.models_dir}: list "
                            "the runs with `clearmark models`, train one with "
                            "`clearmark train`.")
    return path


def load(run_id: str, paths: Paths | None = None) -> LoadedModel:
    """The run's CrossEncoder (eval mode) with its configs, privacy record and metrics."""
    paths = paths or Paths()
    path = run_dir(paths, run_id)
    read = {name: json.loads((path / name).read_text()) if (path / name).exists() else {}
            for name in FILES}
    config = read["config.json"]
    model_config = ModelConfig.from_dict(config["model_config"])
    bert_config = BertConfig.from_dict(config["bert_config"])
    model = CrossEncoder.from_config(bert_config, model_config)
    state = load_file(str(path / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Non-persistent buffers (position_ids) are not saved; anything else missing is a fault.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RegistryError(f"{path / WEIGHTS} does not match its config.json (missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}): the run folder is "
                            "damaged; train the model again.")
    model.item_popularity = {str(k): int(v) for k, v in
                             read["candidates.json"].get("item_popularity", {}).items()}
    model.co_visits = CoVisits.load(path) if model_config.co_visits else None
    model.eval()
    return LoadedModel(run_id=run_id, path=path, model=model, model_config=model_config,
                       train_config=config.get("train_config", {}), config=config,
                       privacy=read["privacy.json"], metrics=read["metrics.json"],
                       fingerprint=read["fingerprint.json"], curve=read["curve.json"] or [],
                       candidates=read["candidates.json"])


def list_runs(paths: Paths | None = None) -> pd.DataFrame:
    """Complete runs, newest first: run_id, created_at, private, epsilon, delta, unit,
    ndcg@10, hr@10, path. `<run_id>.partial` folders are not runs."""
    paths = paths or Paths()
    columns = ["run_id", "created_at", "private", "epsilon", "delta", "privacy_unit",
               "ndcg@10", "hr@10", "path"]
    rows = []
    if paths.models_dir.exists():
        for path in paths.models_dir.iterdir():
            if path.name.endswith(PARTIAL) or not (path / WEIGHTS).exists():
                continue
            try:
                config = json.loads((path / "config.json").read_text())
                privacy = json.loads((path / "privacy.json").read_text())
                metrics = json.loads((path / "metrics.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            model_metrics = metrics.get("model", metrics) if isinstance(metrics, dict) else {}
            epsilon = privacy.get("epsilon")
            rows.append({
                "run_id": path.name, "created_at": config.get("created_at"),
                "private": privacy.get("privacy_unit", "none") != "none",
                "epsilon": float("inf") if epsilon is None else float(epsilon),
                "delta": privacy.get("delta"), "privacy_unit": privacy.get("privacy_unit"),
                "ndcg@10": model_metrics.get("ndcg@10"), "hr@10": model_metrics.get("hr@10"),
                "path": str(path)})
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["created_at", "run_id"], ascending=False,
                             kind="stable").reset_index(drop=True)


def latest_run(paths: Paths | None = None) -> str | None:
    """The newest complete run id, or None."""
    runs = list_runs(paths)
    return None if runs.empty else str(runs["run_id"].iloc[0])


def state_equal(a: CrossEncoder, b: CrossEncoder) -> bool:
    """Whether two models hold identical weights (for tests and audits)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
