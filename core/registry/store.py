"""The model registry: one folder per training run, for every model kind.

A kind (`RunKind`) keeps its runs in one folder under `Paths.models_dir`: the recommender
in `data/models/<run_id>/` (`RECOMMENDER`), the sentiment model in
`data/models/sentiment/<run_id>/` (`SENTIMENT`). Every run folder holds

    model.safetensors   the model's state dict (nothing else: no optimizer)
    config.json         run_id, created_at (UTC), then what the kind records: model and
                        training configs, architecture, tokenizer, code version, ...
    privacy.json        the DP record: epsilon, delta, noise multiplier, sample rate,
                        steps, clip norm, accountant, privacy unit, contribution cap
    metrics.json        evaluation results
    fingerprint.json    what identifies the training data (sha256, counts)
    curve.json          per-step training loss and epsilon spent

and whatever files its kind adds. A run is written into `<run_id>.partial/` and renamed
to `<run_id>/` as the last step, so an interrupted run is never listed as complete.

Building the model from its config is the kind's (`core.recommender.registry`,
`core.sentiment.registry`); this module imports torch only to read or write weights.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import Paths

if TYPE_CHECKING:
    from torch import nn

WEIGHTS = "model.safetensors"
CONFIG, PRIVACY, METRICS, FINGERPRINT, CURVE = (
    "config.json", "privacy.json", "metrics.json", "fingerprint.json", "curve.json")
FILES = (CONFIG, PRIVACY, METRICS, FINGERPRINT, CURVE)  # the JSON records of every kind
PARTIAL = ".partial"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
# Buffers that BERT rebuilds and never saves; any other key missing from a file is damage.
UNSAVED_BUFFERS = ("position_ids", "token_type_ids")


class RegistryError(RuntimeError):
    """A missing or broken run folder, with a message that says what to do."""


@dataclass(frozen=True)
class StoredRun:
    """One run's JSON records as written (a record not read is empty)."""

    run_id: str
    path: Path
    config: dict[str, object] = field(default_factory=dict)
    privacy: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, object] = field(default_factory=dict)
    fingerprint: dict[str, object] = field(default_factory=dict)
    curve: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class RunKind:
    """Where one model kind keeps its runs, and what its messages tell the user.

    subdir: the kind's folder under `Paths.models_dir` ("" for that folder itself).
    prefix: of the kind's run ids. what: a run's name in messages ("sentiment model").
    hint: what to do about a missing run ("train one with `clearmark sentiment train`.").
    """

    subdir: str
    prefix: str
    what: str
    hint: str

    def root(self, paths: Paths | None = None) -> Path:
        """The kind's folder (it exists once a run was saved)."""
        return (paths or Paths()).models_dir / self.subdir

    def new_run_id(self) -> str:
        """A new run id with the kind's prefix (`new_run_id`)."""
        return new_run_id(self.prefix)

    def run_dir(self, paths: Paths, run_id: str) -> Path:
        """The folder of complete run `run_id`; RegistryError for an invalid id or a run
        that is missing or incomplete."""
        check_run_id(run_id)
        root = self.root(paths)
        path = root / run_id
        if not (path / WEIGHTS).exists() or not (path / CONFIG).exists():
            raise RegistryError(f"no complete {self.what} {run_id!r} in {root}: {self.hint}")
        return path

    def save(self, paths: Paths, run_id: str, *, model: nn.Module,
             config: Mapping[str, object], privacy: Mapping[str, object],
             fingerprint: Mapping[str, object], metrics: Mapping[str, object] | None = None,
             curve: Sequence[Mapping[str, object]] | None = None,
             records: Mapping[str, object] | None = None,
             write_files: Callable[[Path], None] | None = None) -> Path:
        """Write run `run_id`; returns its folder.

        config.json is `config` after `run_id` and `created_at`; `records` are further
        JSON files by name, `write_files(folder)` writes any other file of the kind.
        Everything goes to `<run_id>.partial/` first and the rename to `<run_id>/` is the
        last step: a failure removes the partial folder and leaves no run. Raises
        RegistryError for an invalid or existing run id."""
        check_run_id(run_id)
        root = self.root(paths)
        final = root / run_id
        if final.exists():
            raise RegistryError(f"{final} already exists: run ids are unique, pick another.")
        partial = root / f"{run_id}{PARTIAL}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        values = {
            CONFIG: {"run_id": run_id,
                     "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     **dict(config)},
            PRIVACY: dict(privacy), METRICS: dict(metrics or {}),
            FINGERPRINT: dict(fingerprint), CURVE: list(curve or []), **dict(records or {}),
        }
        try:
            save_weights(model, partial, run_id)
            for name, value in values.items():
                write_json(partial / name, value)
            if write_files is not None:
                write_files(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        os.replace(partial, final)
        return final

    def read(self, paths: Paths, run_id: str) -> StoredRun:
        """Every JSON record of complete run `run_id` (a missing file reads as empty);
        RegistryError where there is no such run."""
        path = self.run_dir(paths, run_id)
        values = {name: read_json(path / name) if (path / name).exists() else {}
                  for name in FILES}
        return StoredRun(run_id=run_id, path=path, config=values[CONFIG],
                         privacy=values[PRIVACY], metrics=values[METRICS],
                         fingerprint=values[FINGERPRINT], curve=values[CURVE] or [])

    def write_metrics(self, paths: Paths, run_id: str, metrics: Mapping[str, object]) -> Path:
        """Replace metrics.json of complete run `run_id` (after a new evaluation), by an
        atomic rename; returns its path."""
        path = self.run_dir(paths, run_id) / METRICS
        tmp = path.with_suffix(".json.tmp")
        write_json(tmp, dict(metrics))
        os.replace(tmp, path)
        return path

    def complete_runs(self, paths: Paths | None = None) -> list[StoredRun]:
        """Complete runs with their config, privacy and metrics records, newest first
        (created_at, then run id; runs without created_at last). A `.partial` folder, a
        folder without weights and one whose records do not read are not runs."""
        root = self.root(paths)
        runs = []
        for path in root.iterdir() if root.exists() else ():
            if path.name.endswith(PARTIAL) or not (path / WEIGHTS).exists():
                continue
            try:
                config, privacy, metrics = (read_json(path / n) for n in (CONFIG, PRIVACY,
                                                                           METRICS))
            except (OSError, json.JSONDecodeError):
                continue
            runs.append(StoredRun(run_id=path.name, path=path, config=config,
                                  privacy=privacy, metrics=metrics))
        created = [run.config.get("created_at") for run in runs]
        order = sorted(range(len(runs)), reverse=True, key=lambda i: (
            created[i] is not None, str(created[i]), runs[i].run_id))
        return [runs[i] for i in order]

    def run_ids(self, paths: Paths | None = None) -> list[str]:
        """The complete runs' ids, newest first."""
        return [run.run_id for run in self.complete_runs(paths)]

    def latest_run(self, paths: Paths | None = None) -> str | None:
        """The newest complete run id, or None."""
        runs = self.run_ids(paths)
        return runs[0] if runs else None

    def resolve(self, paths: Paths, run_id: str | None) -> str:
        """`run_id`, or the newest complete run where none is given; RegistryError
        (saying how to train one) where there is no run at all."""
        if run_id:
            return run_id
        latest = self.latest_run(paths)
        if latest is None:
            raise RegistryError(f"no {self.what} in {self.root(paths)}: {self.hint}")
        return latest


RECOMMENDER = RunKind(subdir="", prefix="ce", what="model run",
                      hint="list the runs with `clearmark models`, train one with "
                           "`clearmark train`.")
# Inside the recommender's folder: a folder without weights, so never one of its runs.
SENTIMENT = RunKind(subdir="sentiment", prefix="sent", what="sentiment model",
                    hint="train one with `clearmark sentiment train`.")


def new_run_id(prefix: str) -> str:
    """`<prefix>_<UTC time>_<8 hex>`: sortable by time, unique across processes."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}_{stamp}_{os.urandom(4).hex()}"


def check_run_id(run_id: str) -> None:
    """RegistryError unless `run_id` is a plain folder name (no path, not partial)."""
    if not RUN_ID_PATTERN.match(run_id) or run_id.endswith(PARTIAL):
        raise RegistryError(f"run id {run_id!r} is not a valid folder name: use letters, "
                            "digits, '_', '-' and '.'.")


def write_json(path: Path, value: object) -> None:
    """Indented JSON with sorted keys; numpy numbers as numbers, anything else unknown
    as its text."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_json(path: Path) -> object:
    """The JSON value in `path` (OSError or json.JSONDecodeError where it does not read)."""
    return json.loads(path.read_text())


def save_weights(model: nn.Module, folder: Path, run_id: str) -> None:
    """`model`'s state dict (contiguous tensors) as `folder / WEIGHTS`, with the run id
    in the file's metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"run_id": run_id})


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load `folder / WEIGHTS` into `model`, built from the run's config.json. Raises
    RegistryError where the file does not match the model (a damaged run folder)."""
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(folder / WEIGHTS)),
                                                strict=False)
    missing = [k for k in missing if not k.endswith(UNSAVED_BUFFERS)]
    if missing or unexpected:
        raise RegistryError(f"{folder / WEIGHTS} does not match its config.json (missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}): the run folder is "
                            "damaged; train the model again.")
