"""Review sentiment: VADER, the non-private model and reviewer-level DP at epsilon 3 and 8.

Run from the repository root: ``.venv/bin/python -m bench.sentiment [--quick]``. Prints a
table and writes ``bench/results/sentiment.json`` (``sentiment_quick.json`` with
--quick) with the machine description.

Datasets, each ingested into a throwaway warehouse in a temp dir (pseudonymized and
scrubbed like any ingest), split by time (newest 20% of reviews are the test):

- Amazon 2018 All_Beauty_5 + Gift_Cards_5 (+ Gift Cards metadata), read from
  ``../shared/data/amazon-2018`` when present (research-use data, never copied into the
  repository); skipped otherwise.
- The project's generator (``GENERATED_CUSTOMERS`` customers; reviews whose text agrees
  with the stars).

Per dataset: VADER (compound >= +0.05 positive, <= -0.05 negative), the model's
starting point alone ("anchors only": the head initialised from generic sentences of
each class, `core.sentiment.model.ANCHORS`, no training), the model trained
without privacy (``--non-private``: epsilon recorded as inf), and DP-SGD with the
reviewer as the privacy unit at epsilon 3 and 8 (delta = min(1e-5, 1/(10 N))). Metrics
on the test split: 3-class accuracy and macro-F1, and binary accuracy on a balanced
negative/positive subset (all test negatives and as many random positives). Every run
goes through `core.sentiment.train.train` (ledger charge, registry) and the runs of a
dataset share the frozen features (`FeatureStore`), so the per-run seconds are the
trainable part only; the shared feature pass is reported once. Scoring throughput is
`core.sentiment.score.score` (prediction + word attributions + warehouse write) over
every review with the epsilon-8 model, and plain prediction over a sample.

--quick: fewer reviewers, one epoch, small test samples: a smoke run of the harness,
not numbers to report.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.machine import write_result
from core.config import PROJECT_ROOT, Paths
from core.ingest.pipeline import ingest
from core.sentiment import data as D
from core.sentiment import registry
from core.sentiment import train as T
from core.sentiment.config import SentimentTrainConfig, prepare
from core.sentiment.evaluate import evaluate_model_proba
from core.sentiment.features import FeatureStore, predict_features
from core.sentiment.model import SentimentModelConfig
from core.sentiment.score import score
from core.synthetic.generator import GeneratorConfig, default_item_count, generate

AMAZON_DIR = PROJECT_ROOT.parent / "shared" / "data" / "amazon-2018"
AMAZON_FILES = ("All_Beauty_5.json.gz", "Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz")
BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
GENERATED_CUSTOMERS = 30_000  # about 10k reviews from 7.7k reviewers
EPSILONS = (3.0, 8.0)
PREDICT_SAMPLE = 512
TARGETS = {"binary_non_private": 0.90, "binary_dp8": 0.85, "macro_f1_dp8_over_vader": 0.15}

# Per dataset: the training settings of every run (the privacy settings vary).
TRAIN = {
    "amazon": SentimentTrainConfig(epochs=3, batch_size=64, lr=1e-3),
    "generated": SentimentTrainConfig(epochs=1, batch_size=64, lr=3e-3),
}
QUICK = {"max_reviewers": 300, "epochs": 1, "max_test_reviews": 300}
MODEL = SentimentModelConfig()
# Extra rows, outside the targets: only the head learns (trainable_layers=0), which on
# Amazon's few old negative reviews generalises better than training the top layer.
HEAD_ONLY = SentimentModelConfig(trainable_layers=0)
VARIANTS = {
    "amazon": [("head-only non-private", {"non_private": True, "epsilon": math.inf,
                                          "epochs": 5}),
               ("head-only dp-eps8", {"epsilon": 8.0, "epochs": 5})],
}


def _ingest_amazon(root: Path) -> Paths | None:
    files = [AMAZON_DIR / name for name in AMAZON_FILES]
    if not all(f.exists() for f in files[:2]):
        return None
    paths = Paths(data_dir=root / "amazon")
    ingest([f for f in files if f.exists()], key=BENCH_KEY, paths=paths, progress=False)
    return paths


def _ingest_generated(root: Path, customers: int) -> Paths:
    config = GeneratorConfig(customers=customers, items=default_item_count(customers), seed=0)
    files = generate(config, root / "raw", progress=False)
    paths = Paths(data_dir=root / "generated")
    ingest([files.tables[t] for t in ("customers", "items", "reviews")], key=BENCH_KEY,
           paths=paths, progress=False)
    return paths


def _summary(metrics: dict) -> dict[str, object]:
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "binary_accuracy_balanced",
                                    "binary_reviews", "test_reviews", "per_class",
                                    "confusion")}


def _load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_dataset(name: str, paths: Paths, *, quick: bool) -> dict[str, object]:
    base = TRAIN[name]
    if quick:
        base = replace(base, **QUICK)
    store = FeatureStore()
    runs: dict[str, dict[str, object]] = {}
    vader = None
    data_info: dict[str, object] = {}
    feature_seconds = 0.0
    eps8_run = None
    settings = [("non-private", replace(base, non_private=True, epsilon=math.inf))]
    settings += [(f"dp-eps{eps:g}", replace(base, epsilon=eps)) for eps in EPSILONS]
    for label, config in settings:
        started = time.perf_counter()
        run_id = T.train(paths, config, model_config=MODEL, progress=False,
                         feature_store=store, with_vader=vader is None)
        wall = time.perf_counter() - started
        loaded = registry.load(run_id, paths)
        metrics = loaded.metrics
        if vader is None:
            vader = _summary(metrics["baselines"]["vader"])
            data_info = metrics["data"]
            feature_seconds = float(metrics["timing"]["feature_seconds"])
        runs[label] = {
            "run_id": run_id, **_summary(metrics["model"]),
            "epsilon_spent": loaded.privacy["epsilon"], "delta": loaded.privacy["delta"],
            "noise_multiplier": loaded.privacy["noise_multiplier"],
            "sample_rate": loaded.privacy["sample_rate"], "steps": loaded.privacy["steps"],
            "reviewers": loaded.privacy["reviewers"],
            "train_seconds": metrics["timing"]["train_seconds"],
            "seconds_per_step": metrics["timing"]["seconds_per_step"],
            "run_wall_seconds": wall,
            "load_average_after": _load_avg(),
        }
        if label == "dp-eps8":
            eps8_run = run_id
        print(f"  {name} {label}: acc {runs[label]['accuracy']:.3f}, macro-F1 "
              f"{runs[label]['macro_f1']:.3f}, binary {runs[label]['binary_accuracy_balanced']:.3f}"
              f" ({wall:.0f} s)", flush=True)

    variants: dict[str, dict[str, object]] = {}
    head_store = FeatureStore()
    for label, changes in VARIANTS.get(name, []) if not quick else []:
        config = replace(base, **changes)
        run_id = T.train(paths, config, model_config=HEAD_ONLY, progress=False,
                         feature_store=head_store, with_vader=False)
        loaded = registry.load(run_id, paths)
        variants[label] = {"run_id": run_id, **_summary(loaded.metrics["model"]),
                           "epsilon_spent": loaded.privacy["epsilon"],
                           "steps": loaded.privacy["steps"],
                           "train_seconds": loaded.metrics["timing"]["train_seconds"],
                           "model": HEAD_ONLY.to_dict()}
        print(f"  {name} {label}: acc {variants[label]['accuracy']:.3f}, macro-F1 "
              f"{variants[label]['macro_f1']:.3f}, binary "
              f"{variants[label]['binary_accuracy_balanced']:.3f}", flush=True)

    # The anchors alone (the head's starting point, no training, no privacy spent).
    prepared = prepare(D.load_reviews(paths), base)
    zero = T.new_model(MODEL)
    proba = predict_features(zero, store.get(zero, D.review_texts(prepared.test)))
    anchors = _summary(evaluate_model_proba(prepared.test, proba, seed=base.seed))

    scored = score(paths, eps8_run, progress=False)
    model = registry.load(eps8_run, paths).model
    texts = D.review_texts(D.load_reviews(paths))
    pick = np.random.default_rng(0).choice(len(texts), size=min(PREDICT_SAMPLE, len(texts)),
                                           replace=False)
    sample = [texts[i] for i in pick]
    started = time.perf_counter()
    model.predict_proba(sample)
    predict_seconds = time.perf_counter() - started
    return {
        "data": data_info,
        "frozen_feature_seconds": feature_seconds,
        "vader": vader,
        "anchors_only": anchors,
        "runs": runs,
        "variants": variants,
        "scoring": {"reviews": scored.reviews, "seconds": scored.seconds,
                    "reviews_per_second": scored.reviews_per_second,
                    "what": "score(): prediction + word attributions, every review",
                    "predict_reviews_per_second": len(sample) / max(predict_seconds, 1e-9),
                    "predict_sample": len(sample), "aspects": scored.aspects},
        "settings": {**SentimentTrainConfig.to_dict(base), "model": MODEL.to_dict()},
    }


def _targets(result: dict[str, object]) -> dict[str, object]:
    vader = result["vader"]
    runs = result["runs"]
    out = {}
    non_private = runs["non-private"]["binary_accuracy_balanced"]
    dp8 = runs["dp-eps8"]
    out["binary_non_private>=0.90"] = {"value": non_private, "met": non_private >= 0.90,
                                       "vader": vader["binary_accuracy_balanced"]}
    out["binary_dp8>=0.85"] = {"value": dp8["binary_accuracy_balanced"],
                               "met": dp8["binary_accuracy_balanced"] >= 0.85,
                               "vader": vader["binary_accuracy_balanced"]}
    need = vader["macro_f1"] + TARGETS["macro_f1_dp8_over_vader"]
    out["macro_f1_dp8>=vader+0.15"] = {"value": dp8["macro_f1"], "needed": need,
                                       "met": dp8["macro_f1"] >= need}
    return out


def _print(name: str, result: dict[str, object]) -> None:
    print(f"\n{name}: {result['data'].get('pool_reviewers')} training reviewers, "
          f"{result['data'].get('test_reviews')} test reviews; class shares "
          f"{ {k: round(v, 3) for k, v in result['data']['class_shares']['test'].items()} }")
    print(f"{'':22s} {'accuracy':>9s} {'macro-F1':>9s} {'binary':>8s} {'eps':>6s} "
          f"{'train s':>8s}")
    rows = [("VADER", result["vader"], None, None),
            ("anchors only", result["anchors_only"], None, None)]
    rows += [(k, v, v["epsilon_spent"], v["train_seconds"]) for k, v in result["runs"].items()]
    rows += [(k, v, v["epsilon_spent"], v["train_seconds"])
             for k, v in result["variants"].items()]
    for label, m, eps, secs in rows:
        eps_s = "-" if eps is None else ("inf" if math.isinf(float(eps)) else f"{eps:.2f}")
        print(f"{label:22s} {m['accuracy']:9.3f} {m['macro_f1']:9.3f} "
              f"{m['binary_accuracy_balanced']:8.3f} {eps_s:>6s} "
              f"{'' if secs is None else f'{secs:8.0f}'}")
    s = result["scoring"]
    print(f"scoring: {s['reviews_per_second']:.1f} reviews/s with attributions, "
          f"{s['predict_reviews_per_second']:.1f} reviews/s prediction only")
    for target, t in result["targets"].items():
        print(f"target {target}: {t['value']:.3f} {'MET' if t['met'] else 'MISSED'}")


def run(*, quick: bool) -> dict[str, object]:
    results: dict[str, object] = {"quick": quick, "epsilons": list(EPSILONS),
                                  "targets": TARGETS, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="bench-sentiment-") as tmp:
        root = Path(tmp)
        amazon = _ingest_amazon(root)
        todo = []
        if amazon is None:
            results["datasets"]["amazon"] = {"skipped": f"{AMAZON_DIR} has no "
                                             f"{AMAZON_FILES[0]} / {AMAZON_FILES[1]}"}
        else:
            todo.append(("amazon", amazon))
        todo.append(("generated", _ingest_generated(
            root, 4000 if quick else GENERATED_CUSTOMERS)))
        for name, paths in todo:
            print(f"{name}: training VADER / non-private / DP eps {EPSILONS} ...", flush=True)
            started = time.perf_counter()
            result = run_dataset(name, paths, quick=quick)
            result["targets"] = _targets(result)
            result["wall_seconds"] = time.perf_counter() - started
            results["datasets"][name] = result
            _print(name, result)
    results["load_average_end"] = _load_avg()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    np.seterr(all="ignore")
    result = run(quick=args.quick)
    path = write_result("sentiment_quick" if args.quick else "sentiment", result)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
