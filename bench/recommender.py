"""The cross-encoder on Amazon Gift Cards: non-private and DP (epsilon 3) next to baselines.

Run from the repository root: ``.venv/bin/python -m bench.recommender [--quick]``. Prints
a table and writes ``bench/results/recommender.json`` (``recommender_quick.json`` with
--quick) with the machine description.

Protocol: Gift Cards reviews and metadata ingested into a throwaway warehouse in a temp
dir; leave-last-out split; every test target ranked against the full ranking catalogue
(the 148 reviewed items) by `core.evaluate.evaluate` (history: the interactions before
the target in the user's sequence; seen items excluded), the model next to popularity,
item-kNN and zero-shot content on the same split. Both models are the bundled MiniLM
with the top encoder layer, the pooler and the head trainable (see `core.model`).

Also measured, in this same process: DP step time over non-private step time on the
same fixed batch, training throughput (customers per second), scoring throughput
(`core.scoring`, customers per second, on a sample of customers) and peak memory
(resource.getrusage). The machine may be shared: timings are wall-clock.

--quick: 80 customers, one epoch, 30 test customers: a smoke run of the whole script.
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from bench.machine import RESULTS, write_result
from core.config import PROJECT_ROOT, Paths
from core.examples import ExampleConfig, build_examples, collate_groups, listwise_loss
from core.ingest import ingest
from core.model import CrossEncoder, ModelConfig
from core.registry import load
from core.scoring import score
from core.train import (
    TrainConfig,
    build_dataset,
    evaluate_baselines,
    load_training_data,
    make_split,
    plan_privacy,
    prepare_training,
    sample_test_users,
    train,
)

AMAZON_DIR = PROJECT_ROOT.parent / "shared" / "data" / "amazon-2018"
GIFT_CARDS = ("Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz")
BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
TARGETS = {  # ARCHITECTURE.md and the brief: what each model has to reach (NDCG@10)
    "non_private": ("item-knn", "NDCG@10 >= item-kNN"),
    "dp": (("popularity", "zero-shot-content"), "NDCG@10 >= popularity and zero-shot"),
}
MODEL = ModelConfig(max_length=128, item_length=48, history_len=3, negatives=4,
                    trainable_layers=1, content_candidates=50, popular_candidates=20,
                    prior_scale=10.0)
NON_PRIVATE = TrainConfig(non_private=True, epochs=8, batch_size=32, lr=2e-4, head_lr=1e-3,
                          val_users=64, keep_best=True)
DP = TrainConfig(epsilon=3.0, epochs=8, batch_size=128, lr=1e-5, head_lr=1e-3,
                 max_grad_norm=1.0, val_users=32)
STEP_REPEATS = 3
SCORING_CUSTOMERS = 100


def _ingest(data_dir: Path) -> Paths:
    paths = Paths(data_dir=data_dir)
    ingest([AMAZON_DIR / name for name in GIFT_CARDS], key=BENCH_KEY, paths=paths,
           progress=False)
    return paths


def step_times(paths: Paths, model_config: ModelConfig, *, batch_size: int,
               repeats: int) -> dict[str, float]:
    """Seconds per optimisation step, non-private and DP, on the SAME fixed batch of
    `batch_size` customers (median of `repeats`, after one warm-up step each)."""
    interactions, catalogue = load_training_data(paths)
    split = make_split(interactions, "leave_last_out")
    groups = build_examples(split.train, catalogue,
                            ExampleConfig(history_len=model_config.history_len,
                                          negatives=model_config.negatives))
    customers = len({g.user for g in groups})
    base = CrossEncoder.from_pretrained(model_config)
    dataset = build_dataset(groups, catalogue, base)
    batch = collate_groups([dataset[i] for i in range(min(batch_size, len(dataset)))])
    out: dict[str, float] = {"batch_customers": float(batch[0].shape[0]),
                             "batch_tokens": float(batch[1].sum())}
    for name, private in (("non_private", False), ("dp", True)):
        model = copy.deepcopy(base)
        config = TrainConfig(non_private=not private, epochs=1, batch_size=batch_size)
        plan = plan_privacy(config, customers)
        module, optimizer, _, _ = prepare_training(model, dataset, config, plan)
        module.train()
        times = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(repeats + 1):
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                listwise_loss(module(*batch)).mean().backward()
                optimizer.step()
                times.append(time.perf_counter() - started)
        out[f"{name}_seconds_per_step"] = sorted(times[1:])[len(times[1:]) // 2]
        if private:
            module.cleanup()
    out["dp_over_non_private"] = out["dp_seconds_per_step"] / out["non_private_seconds_per_step"]
    return out


def _row(name: str, r: dict) -> str:
    return f"{name:34s} {r['hr@10']:7.3f} {r['ndcg@10']:8.3f} {r['mrr']:7.3f} {r['users']:6d}"


def run(*, quick: bool) -> dict[str, object]:
    torch.set_num_threads(2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clearmark-bench-") as tmp:
        paths = _ingest(Path(tmp))
        limits = ({"max_customers": 80, "epochs": 1, "val_users": 0, "keep_best": False,
                   "eval_users": 30} if quick else {})
        runs: dict[str, dict[str, object]] = {}
        for name, config in (("non_private", NON_PRIVATE), ("dp", DP)):
            config = replace(config, **limits)
            t0 = time.perf_counter()
            run_id = train(paths, config, model_config=MODEL, progress=True)
            loaded = load(run_id, paths)
            runs[name] = {"run_id": run_id, "wall_seconds": time.perf_counter() - t0,
                          "train_config": config.to_dict(),
                          "metrics": loaded.metrics["model"],
                          "timing": loaded.metrics["timing"], "privacy": loaded.privacy,
                          "curve_loss": [c["loss"] for c in loaded.curve],
                          "curve_val_hr@10": [c.get("val_hr@10") for c in loaded.curve
                                              if "val_hr@10" in c]}
        interactions, catalogue = load_training_data(
            paths, max_customers=limits.get("max_customers"))
        split = sample_test_users(make_split(interactions, "leave_last_out"),
                                  limits.get("eval_users"), seed=0)  # the models' users
        baselines = evaluate_baselines(split, catalogue)
        steps = step_times(paths, MODEL, batch_size=32, repeats=1 if quick else STEP_REPEATS)
        scored = score(paths, runs["dp"]["run_id"],
                       max_customers=20 if quick else SCORING_CUSTOMERS, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    checks = {
        "non_private_ndcg_minus_item_knn": runs["non_private"]["metrics"]["ndcg@10"]
        - baselines["item-knn"]["ndcg@10"],
        "dp_ndcg_minus_popularity": runs["dp"]["metrics"]["ndcg@10"]
        - baselines["popularity"]["ndcg@10"],
        "dp_ndcg_minus_zero_shot": runs["dp"]["metrics"]["ndcg@10"]
        - baselines["zero-shot-content"]["ndcg@10"],
    }
    return {
        "dataset": "amazon-2018 Gift_Cards_5 + meta_Gift_Cards", "quick": quick,
        "split": split.name, "catalogue_items": len(catalogue),
        "protocol": "full catalogue, history = interactions before the target in sequence, "
                    "seen items excluded (core.evaluate defaults)",
        "model_config": MODEL.to_dict(), "runs": runs, "baselines": baselines,
        "targets": checks, "step_times": steps,
        "training_customers_per_second": {k: v["timing"]["customers_per_second"]
                                          for k, v in runs.items()},
        "scoring": {"customers": scored.customers, "seconds": scored.seconds,
                    "customers_per_second": scored.customers_per_second,
                    "candidates_per_customer": MODEL.content_candidates
                    + MODEL.popular_candidates},
        "peak_memory_mib": peak_kb / 1024, "total_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    if not all((AMAZON_DIR / name).exists() for name in GIFT_CARDS):
        print(f"Gift Cards data not found in {AMAZON_DIR}: nothing to measure.",
              file=sys.stderr)
        return 2
    result = run(quick=args.quick)
    print(f"\n{result['split']}, {result['catalogue_items']} items, full catalogue")
    print(f"{'model':34s} {'HR@10':>7s} {'NDCG@10':>8s} {'MRR':>7s} {'users':>6s}")
    for name, r in result["runs"].items():
        eps = r["privacy"]["epsilon"]
        print(_row(f"cross-encoder {name} (eps {eps:.2f})", r["metrics"]))
    for name, r in result["baselines"].items():
        print(_row(name, r))
    for name, value in result["targets"].items():
        print(f"{name:34s} {value:+.3f} {'hit' if value >= 0 else 'MISSED'}")
    s = result["step_times"]
    print(f"step (32 customers x {MODEL.negatives + 1} pairs): non-private "
          f"{s['non_private_seconds_per_step']:.2f}s, DP {s['dp_seconds_per_step']:.2f}s "
          f"({s['dp_over_non_private']:.2f}x)")
    print(f"scoring: {result['scoring']['customers_per_second']:.2f} customers/s; peak memory "
          f"{result['peak_memory_mib']:.0f} MiB; total {result['total_seconds']:.0f}s")
    path = write_result("recommender_quick" if args.quick else "recommender", result)
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.exit(main())
