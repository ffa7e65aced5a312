"""Training runs of the registry as plain data, for the Models page and reports.

`core.registry.store` decides which run folders are complete (`RunKind.run_ids`);
this module reads the JSON files of the recommender's folders (never the weights) and
turns them into data frames and dicts: the run table, one run's metrics next to the
baselines', its training curve, its privacy record, fingerprint and code version.

Files read in `data/models/<run_id>/` (written by `core.recommender.registry.save`):

    config.json       created_at, train_config (epochs, ...), code_version, split, tokenizer
    privacy.json      private, epsilon (spent), target_epsilon, delta, noise_multiplier,
                      sample_rate, steps, max_grad_norm, accountant, privacy_unit,
                      contribution_cap, contribution, not_covered
    metrics.json      {"model": {hr@10, ndcg@10, mrr, coverage@10, ...},
                       "baselines": {name: {...}}, "timing": {...}}
                      (a flat evaluation result is read as the model's metrics)
    fingerprint.json  sha256, rows, customers, split, dataset
    curve.json        [{step, epoch, batch_size, loss, epsilon, seconds, val_hr@10?}, ...]

Every reader tolerates a missing file or key: an older or partial record shows
what it has rather than failing the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from core.config import Paths
from core.registry.store import (
    CONFIG,
    CURVE,
    FINGERPRINT,
    METRICS,
    PRIVACY,
    RECOMMENDER,
    StoredRun,
)
from core.registry.store import FILES as RUN_FILES
from privacy.guarantee import record_is_private

USER_LEVEL = "customer"  # the privacy unit that makes a guarantee user-level
NON_PRIVATE_LABEL = "non-private (ε = ∞)"
MODEL_LABEL = "this model"
# Baselines from the simplest up (the registry writes JSON with sorted keys, so the
# recorded order is alphabetical); unknown names follow, sorted.
BASELINE_ORDER = ("popularity", "item-knn", "zero-shot-content")
# Ranking metrics shown, in this order, with their display names ({k} from the record).
RANKING_METRICS = (
    ("hr@{k}", "HR@{k}"),
    ("ndcg@{k}", "NDCG@{k}"),
    ("mrr", "MRR"),
    ("coverage@{k}", "Coverage@{k}"),
)
RUN_COLUMNS = (
    "run_id",
    "created_at",
    "epsilon",
    "epsilon_label",
    "privacy",
    "delta",
    "accountant",
    "epochs",
    "steps",
    "hr@10",
    "ndcg@10",
)


def _read_json(path: Path, default: object) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default


def _number(value: object) -> float | None:
    """A float, or None for anything that is not a number (None, text, NaN stays NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def privacy_label(privacy: Mapping[str, object]) -> str:
    """What the epsilon protects, in words: user-level only when the unit is the customer.

    An example-level guarantee is never called user-level (a customer with k examples is
    only protected at about k·ε)."""
    if not record_is_private(privacy):
        return NON_PRIVATE_LABEL
    unit = str(privacy.get("privacy_unit"))
    return "user-level (customer)" if unit == USER_LEVEL else f"{unit}-level"


def epsilon_label(privacy: Mapping[str, object]) -> str:
    epsilon = _number(privacy.get("epsilon"))
    if not record_is_private(privacy) or epsilon is None:
        return "∞"
    return f"{epsilon:.2f}"


def read_run(paths: Paths, run_id: str) -> StoredRun:
    """The JSON records of run `run_id` (missing files read as empty)."""
    path = RECOMMENDER.root(paths) / run_id
    values = {name: _read_json(path / name, [] if name == CURVE else {}) for name in RUN_FILES}
    as_dict = {name: v if isinstance(v, dict) else {} for name, v in values.items()}
    curve = values[CURVE] if isinstance(values[CURVE], list) else []
    return StoredRun(
        run_id=run_id,
        path=path,
        config=as_dict[CONFIG],
        privacy=as_dict[PRIVACY],
        metrics=as_dict[METRICS],
        fingerprint=as_dict[FINGERPRINT],
        curve=[row for row in curve if isinstance(row, dict)],
    )


def model_metrics(metrics: Mapping[str, object]) -> dict[str, object]:
    """The model's own evaluation: `metrics["model"]` when it is a dict, else the whole
    record (a flat `core.recommender.evaluate.evaluate` result, where "model" is the model's
    name)."""
    inner = metrics.get("model")
    return dict(inner) if isinstance(inner, Mapping) else dict(metrics)


def baseline_metrics(metrics: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Baselines' evaluations by name (in `BASELINE_ORDER`): `{"baselines": {name:
    {...}}}` or a list of evaluation dicts that carry their "model" name."""
    baselines = metrics.get("baselines")
    if isinstance(baselines, Mapping):
        found = {str(name): dict(v) for name, v in baselines.items() if isinstance(v, Mapping)}
    elif isinstance(baselines, list):
        found = {
            str(v.get("model", f"baseline {i + 1}")): dict(v)
            for i, v in enumerate(baselines)
            if isinstance(v, Mapping)
        }
    else:
        found = {}
    known = [name for name in BASELINE_ORDER if name in found]
    return {name: found[name] for name in known + sorted(set(found) - set(known))}


def metrics_frame(metrics: Mapping[str, object]) -> pd.DataFrame:
    """Long frame `model, metric, value, is_model` of the model's ranking metrics next to
    each baseline's (ranges: all in [0, 1]). The model comes first, then the baselines in
    `BASELINE_ORDER`; metrics in `RANKING_METRICS` order. Empty when nothing is
    recorded."""
    own = model_metrics(metrics)
    k = int(_number(own.get("k")) or 10)
    evaluations = [(MODEL_LABEL, own, True)]
    evaluations += [(name, v, False) for name, v in baseline_metrics(metrics).items()]
    rows = []
    for name, values, is_model in evaluations:
        for key, label in RANKING_METRICS:
            value = _number(values.get(key.format(k=k)))
            if value is not None and not math.isnan(value):
                rows.append(
                    {
                        "model": name,
                        "metric": label.format(k=k),
                        "value": value,
                        "is_model": is_model,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "metric", "value", "is_model"])


SEGMENT_LABELS = {"warm_items": "items seen in training", "cold_items":
                  "items never seen in training (recall)", "cold_users":
                  "customers with at most 2 earlier interactions"}


def release_quality(release: Mapping[str, object]) -> str:
    """"; reliability 0.55 (...)" for a popularity release's record: how much of the
    released spread is signal and whether the model read the log form; "" for records
    written before either existed."""
    reliability = _number(release.get("reliability"))
    if reliability is None:
        return ""
    log_form = release.get("log_form")
    return (f"; reliability {reliability:.2f} (share of the released spread that is "
            f"signal)" + (f", log form {log_form}" if log_form else ""))


def final_mix_note(metrics: Mapping[str, object]) -> str | None:
    """One line on a non-private run's validation fit of its final logit's weights
    (`core.recommender.mix_fit.fit_on_validation`), or None where the run made none."""
    fit = (metrics.get("timing") or {}).get("final_mix")
    if not fit:
        return None
    names = fit.get("weights_of") or ["head"] + [f"input {i}" for i in
                                                  range(1, len(fit.get("fitted", [])))]
    weights = ", ".join(f"{n.replace('_', '-')} ×{w:.2f}" if n == "head" else
                        f"{n.replace('_', '-')} {w:.2f}"
                        for n, w in zip(names, fit.get("fitted", []), strict=False))
    if fit.get("private"):  # nothing unnoised is released: no counts, no NDCG
        averaged = (f", the last {fit['averaged_steps']} averaged"
                    if fit.get("averaged_steps") else "")
        return (f"Final weights fitted with DP on the validation targets of a Poisson "
                f"sample of customers (rate {fit['sample_rate']:.3g}, about "
                f"{fit['expected_customers']:,.0f}; {fit['steps']} noisy steps{averaged}, "
                f"covered by the run's ε): {weights}")
    drawn, ranked = fit.get("validation_customers", 0), fit.get("ranked", 0)
    where = f"{drawn:,} validation customers, {ranked:,} of them ranked among their candidates"
    if fit.get("kept") != "fitted":
        return f"Final weights kept as trained ({fit.get('reason', '')}; {where})"
    return (f"Final weights fitted on {where}: {weights}; validation NDCG@10 "
            f"{fit['ndcg_before']:.3f} → {fit['ndcg_after']:.3f}")


def segments_frame(metrics: Mapping[str, object]) -> pd.DataFrame:
    """Cold start, reported apart: `segment, model, users, hr@10, ndcg@10` for the model
    and each baseline on every recorded segment (empty when none was recorded)."""
    rows = []
    evaluations = [(MODEL_LABEL, metrics.get("segments"))]
    evaluations += [(name, v.get("segments")) for name, v in baseline_metrics(metrics).items()]
    for name, segments in evaluations:
        if not isinstance(segments, Mapping):
            continue
        for segment, label in SEGMENT_LABELS.items():
            values = segments.get(segment)
            if isinstance(values, Mapping):
                rows.append({"segment": label, "model": name,
                             "users": _number(values.get("users")),
                             "hr@10": _number(values.get("hr@10")),
                             "ndcg@10": _number(values.get("ndcg@10"))})
    return pd.DataFrame(rows, columns=["segment", "model", "users", "hr@10", "ndcg@10"])


def curve_frame(curve: list[Mapping[str, object]]) -> pd.DataFrame:
    """Per-step `step, epoch, loss, epsilon` (+ `val_hr@10` where recorded) as numbers.

    Loss is NaN on an empty Poisson batch; epsilon is NaN for a non-private run."""
    columns = ["step", "epoch", "loss", "epsilon"]
    frame = pd.DataFrame(list(curve))
    for column in columns + ["val_hr@10"]:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in columns:
        if column not in frame:
            frame[column] = float("nan")
    if frame["step"].isna().all():
        frame["step"] = range(1, len(frame) + 1)
    keep = columns + (["val_hr@10"] if "val_hr@10" in frame else [])
    return frame[keep].sort_values("step", kind="stable").reset_index(drop=True)


def _created_at(value: object) -> pd.Timestamp:
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return stamp.tz_convert(None) if not pd.isna(stamp) else pd.NaT


def list_runs(paths: Paths | None = None) -> pd.DataFrame:
    """Complete recommender runs, newest first (`RunKind.run_ids` decides which are complete),
    with `RUN_COLUMNS`: created_at (UTC, naive), epsilon (spent; inf when non-private),
    epsilon_label ("3.00" / "∞"), privacy (`privacy_label`), delta, accountant, epochs,
    steps, hr@10, ndcg@10."""
    paths = paths or Paths()
    rows = []
    for run_id in RECOMMENDER.run_ids(paths):
        run = read_run(paths, run_id)
        own = model_metrics(run.metrics)
        epsilon = _number(run.privacy.get("epsilon"))
        train_config = run.config.get("train_config")
        train_config = train_config if isinstance(train_config, Mapping) else {}
        rows.append(
            {
                "run_id": run.run_id,
                "created_at": _created_at(run.config.get("created_at")),
                "epsilon": (epsilon if record_is_private(run.privacy) and epsilon is not None
                            else math.inf),
                "epsilon_label": epsilon_label(run.privacy),
                "privacy": privacy_label(run.privacy),
                "delta": _number(run.privacy.get("delta")),
                "accountant": run.privacy.get("accountant"),
                "epochs": _number(train_config.get("epochs")),
                "steps": _number(run.privacy.get("steps")) or (len(run.curve) or None),
                "hr@10": _number(own.get("hr@10")),
                "ndcg@10": _number(own.get("ndcg@10")),
            }
        )
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))
