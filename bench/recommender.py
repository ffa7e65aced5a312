"""The cross-encoder next to its baselines, non-private and DP at several epsilons, seeds.

Run from the repository root:

    .venv/bin/python -m bench.recommender --data gift-cards          # ../shared Amazon data
    .venv/bin/python -m bench.recommender --data generator --customers 50000 --seeds 0 \
        --epsilons 3 --max-steps 100 --eval-users 300

Prints a table and writes ``bench/results/recommender_<data>.json`` (``..._quick.json``
with --quick) with the machine description and the load average.

Protocol, per seed: the data ingested into a throwaway warehouse in a temp dir;
leave-last-out split; 10% of the items (drawn with the seed) held out of training
entirely (`TrainConfig.held_out_items`: in no history, target or negative) so that
cold-start items are measured by the same runs; every test target (or a seeded sample
of `--eval-users`) ranked against the FULL catalogue by `core.recommender.evaluate.evaluate`
(history: the interactions before the target; seen items excluded). Reported per model:
all test targets, "warm_items" (targets training saw), "cold_items" (targets held out:
hr@10 is their recall@10) and "cold_users" (at most 2 earlier interactions), for the
non-private model, DP at each epsilon (user-level: the unit is the customer) and the
baselines (popularity, item-kNN, zero-shot content) fitted on the same training data.
The cross-encoders keep the last place of each top 10 for a new item (the default
`ModelConfig.new_item_slots`: the README's design notes); the baselines have no such
rule (the ID-based ones cannot rank an item they never saw). Mean and standard
deviation over the seeds.

Also measured in this same process: DP step time over non-private step time on the
same fixed batch, training throughput (customers per second), scoring throughput
(`core.recommender.batch_score`) and peak memory (resource.getrusage). The machine may be
shared: the
load average is recorded next to the timings.

--quick: 80 customers, one epoch, 30 test customers, one seed, epsilon 3: a smoke run.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.dp_step import step_seconds
from bench.machine import RESULTS, write_result
from core.config import PROJECT_ROOT, Paths, use_cpu_threads
from core.ingest.pipeline import ingest
from core.recommender.batch_score import score
from core.recommender.config import TrainConfig
from core.recommender.data import load_training_data, make_split
from core.recommender.examples import ExampleConfig, build_examples, collate_groups
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.recommender.planning import plan_privacy
from core.recommender.registry import load
from core.recommender.train import build_dataset, prepare_training, train
from core.synthetic.generator import GeneratorConfig, default_item_count, generate

AMAZON_DIR = PROJECT_ROOT.parent / "shared" / "data" / "amazon-2018"
GIFT_CARDS = ("Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz")
BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
MODEL = ModelConfig(max_length=128, item_length=48, history_len=5, negatives=4,
                    trainable_layers=1, content_candidates=50, popular_candidates=20,
                    prior_scale=10.0, co_visits=True)
NON_PRIVATE = TrainConfig(non_private=True, epochs=8, batch_size=32, lr=2e-4, head_lr=1e-3,
                          val_users=64, keep_best=True, held_out_items=0.1)
DP = TrainConfig(epsilon=3.0, epochs=8, batch_size=128, lr=1e-5, head_lr=5e-3,
                 max_grad_norm=1.0, val_users=0, held_out_items=0.1, final_mix_users=1000)
METRICS = ("hr@10", "ndcg@10", "mrr", "coverage@10")
SEGMENTS = ("all", "warm_items", "cold_items", "cold_users")
ID_BASELINES = ("popularity", "item-knn")
STEP_REPEATS = 3
SCORING_CUSTOMERS = 100


def _ingest(data_dir: Path, data: str, customers: int) -> tuple[Paths, str]:
    paths = Paths(data_dir=data_dir)
    if data == "gift-cards":
        sources = [AMAZON_DIR / name for name in GIFT_CARDS]
        label = "amazon-2018 Gift_Cards_5 + meta_Gift_Cards"
    else:
        config = GeneratorConfig(customers=customers, items=default_item_count(customers))
        sources = [generate(config, data_dir / "raw", progress=False).out_dir]
        label = f"generator ({customers} customers, {config.items} items, seed 0)"
    ingest(sources, key=BENCH_KEY, paths=paths, progress=False)
    return paths, label


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
        times = step_seconds(module, optimizer, batch, repeats)
        out[f"{name}_seconds_per_step"] = statistics.median(times)
        if private:
            module.cleanup()
    out["dp_over_non_private"] = out["dp_seconds_per_step"] / out["non_private_seconds_per_step"]
    return out


def _segments(metrics: dict) -> dict[str, dict]:
    """{segment: metrics} of one model's metrics.json entry (model or baseline)."""
    return {"all": metrics, **metrics.get("segments", {})}


def _summary(values: list[dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, standard deviation and n over seeds, per segment and metric."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for segment in SEGMENTS:
        rows = [v[segment] for v in values if segment in v]
        if not rows:
            continue
        out[segment] = {"users": float(statistics.mean(r["users"] for r in rows))}
        for metric in METRICS:
            xs = [float(r[metric]) for r in rows if metric in r]
            if xs:
                out[segment][metric] = {"mean": statistics.mean(xs),
                                        "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                                        "n": len(xs)}
    return out


def _mean(summary: dict, name: str, segment: str = "all", metric: str = "ndcg@10") -> float:
    return summary[name].get(segment, {}).get(metric, {}).get("mean", float("nan"))


def _targets(summary: dict, data: str) -> dict[str, dict[str, object]]:
    """Each target of the brief: the two sides and whether it holds (means over seeds)."""
    dp3 = "dp_eps3"
    out: dict[str, dict[str, object]] = {}

    def check(name: str, left: float, right: float, holds: bool, what: str) -> None:
        out[name] = {"what": what, "model": left, "reference": right, "holds": bool(holds)}

    if "non_private" in summary:
        for segment in ("all", "warm_items"):
            left = _mean(summary, "non_private", segment)
            right = _mean(summary, "item-knn", segment)
            check(f"non_private_vs_item_knn_{segment}", left, right, left >= right,
                  f"non-private NDCG@10 >= item-kNN ({segment} test targets)")
    if dp3 in summary:
        for base in ("popularity", "zero-shot-content"):
            left, right = _mean(summary, dp3), _mean(summary, base)
            check(f"dp3_vs_{base}", left, right, left >= right,
                  f"DP eps=3 NDCG@10 >= {base} (all test targets)")
    if data == "generator" and dp3 in summary and "non_private" in summary:
        left, right = _mean(summary, dp3), _mean(summary, "non_private")
        check("dp3_within_10pct_of_non_private", left, right, left >= 0.9 * right,
              "DP eps=3 NDCG@10 >= 0.9 x non-private")
    best_id = max(_mean(summary, b, "cold_items", "hr@10") for b in ID_BASELINES)
    for name in ("non_private", dp3):
        if name in summary and "cold_items" in summary[name]:
            left = _mean(summary, name, "cold_items", "hr@10")
            check(f"{name}_cold_items_recall_vs_2x_id_baselines", left, 2 * best_id,
                  left >= 2 * best_id and left > 0,
                  "recall@10 on items never seen in training >= 2 x the best ID-based "
                  "baseline (and above 0)")
    return out


def _run_model(paths: Paths, config: TrainConfig) -> dict[str, object]:
    t0 = time.perf_counter()
    run_id = train(paths, config, model_config=MODEL, progress=True)
    loaded = load(run_id, paths)
    return {"run_id": run_id, "wall_seconds": time.perf_counter() - t0,
            "train_config": config.to_dict(), "metrics": loaded.metrics,
            "privacy": loaded.privacy,
            "curve": [{k: c.get(k) for k in ("step", "epoch", "loss", "epsilon",
                                             "val_hr@10", "val_ndcg@10") if k in c}
                      for c in loaded.curve]}


def run(*, data: str, customers: int, seeds: list[int], epsilons: list[float],
        other_epsilon_seeds: int | None, eval_users: int | None, max_steps: int | None,
        quick: bool) -> dict[str, object]:
    use_cpu_threads()
    started = time.perf_counter()
    load_start = os.getloadavg()
    limits: dict[str, object] = {"eval_users": eval_users, "max_steps": max_steps}
    if quick:
        limits.update(max_customers=80, epochs=1, val_users=0, keep_best=False,
                      eval_users=30)
    with tempfile.TemporaryDirectory(prefix="clearmark-bench-") as tmp:
        paths, label = _ingest(Path(tmp), data, customers)
        per_seed: dict[int, dict[str, dict]] = {}
        for index, seed in enumerate(seeds):
            runs: dict[str, dict] = {}
            # On many customers both models take the same steps over the same number of
            # customers per step, so the DP/non-private ratio compares like with like.
            plain = replace(NON_PRIVATE, eval_baselines=True,
                            **({"batch_size": DP.batch_size} if data == "generator" else {}))
            configs = [("non_private", plain)]
            configs += [(f"dp_eps{eps:g}", replace(DP, epsilon=eps)) for eps in epsilons
                        if eps == 3.0 or other_epsilon_seeds is None
                        or index < other_epsilon_seeds]
            for name, config in configs:
                print(f"--- seed {seed}: {name}", flush=True)
                runs[name] = _run_model(paths, replace(config, seed=seed, **limits))
            per_seed[seed] = runs
        steps = step_times(paths, MODEL, batch_size=32, repeats=1 if quick else STEP_REPEATS)
        last_dp = per_seed[seeds[0]][f"dp_eps{epsilons[-1]:g}"]["run_id"]
        scored = score(paths, last_dp, max_customers=20 if quick else SCORING_CUSTOMERS,
                       progress=False)
    models: dict[str, list[dict[str, dict]]] = {}
    for runs in per_seed.values():
        for name, r in runs.items():
            models.setdefault(name, []).append(_segments(
                {**r["metrics"]["model"], "segments": r["metrics"].get("segments", {})}))
        for name, b in runs["non_private"]["metrics"]["baselines"].items():
            models.setdefault(name, []).append(_segments(b))
    summary = {name: _summary(values) for name, values in models.items()}
    first = per_seed[seeds[0]]
    return {
        "dataset": label, "data": data, "quick": quick, "seeds": seeds,
        "epsilons": epsilons, "other_epsilon_seeds": other_epsilon_seeds,
        "limits": limits,
        "split": first["non_private"]["metrics"]["model"]["split"],
        "protocol": "full catalogue, history = interactions before the target, seen items "
                    "excluded; 10% of items held out of training per seed",
        "model_config": MODEL.to_dict(), "summary": summary,
        "targets": _targets(summary, data),
        "privacy": {name: {k: r["privacy"][k] for k in (
            "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "customers",
            "privacy_unit", "accountant")} for name, r in first.items()},
        "step_times": steps,
        "training_customers_per_second": {
            name: statistics.median(runs[name]["metrics"]["timing"]["customers_per_second"]
                                    for runs in per_seed.values() if name in runs)
            for name in first},
        "scoring": {"customers": scored.customers, "seconds": scored.seconds,
                    "customers_per_second": scored.customers_per_second,
                    "candidates_per_customer": MODEL.content_candidates
                    + MODEL.popular_candidates},
        "runs": {str(seed): runs for seed, runs in per_seed.items()},
        "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "total_seconds": time.perf_counter() - started,
    }


def _print(result: dict) -> None:
    print(f"\n{result['dataset']}; {result['split']}; seeds {result['seeds']}")
    header = f"{'model':22s}" + "".join(f" {s + ' NDCG/HR':>24s}" for s in SEGMENTS)
    print(header)
    for name, segments in result["summary"].items():
        cells = []
        for segment in SEGMENTS:
            m = segments.get(segment)
            cells.append(f" {'-':>24s}" if m is None else
                         f" {m['ndcg@10']['mean']:.3f}±{m['ndcg@10']['sd']:.3f}/"
                         f"{m['hr@10']['mean']:.3f} ({m['users']:.0f})".rjust(25))
        print(f"{name:22s}" + "".join(cells))
    for name, t in result["targets"].items():
        print(f"{name:48s} {t['model']:.3f} vs {t['reference']:.3f} "
              f"{'hit' if t['holds'] else 'MISSED'}")
    s = result["step_times"]
    print(f"step (32 customers x {MODEL.negatives + 1} pairs): non-private "
          f"{s['non_private_seconds_per_step']:.2f}s, DP {s['dp_seconds_per_step']:.2f}s "
          f"({s['dp_over_non_private']:.2f}x)")
    print(f"scoring: {result['scoring']['customers_per_second']:.2f} customers/s; peak memory "
          f"{result['peak_memory_mib']:.0f} MiB; total {result['total_seconds']:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("gift-cards", "generator"), default="gift-cards")
    parser.add_argument("--customers", type=int, default=50_000,
                        help="generated customers (--data generator)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--other-epsilon-seeds", type=int,
                        help="run the epsilons other than 3 on the first N seeds only")
    parser.add_argument("--eval-users", type=int, help="seeded sample of test customers")
    parser.add_argument("--max-steps", type=int, help="training steps per run (default: "
                        "the epochs')")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    if args.data == "gift-cards" and not all((AMAZON_DIR / n).exists() for n in GIFT_CARDS):
        print(f"Gift Cards data not found in {AMAZON_DIR}: nothing to measure.",
              file=sys.stderr)
        return 2
    if args.quick:
        args.seeds, args.epsilons = args.seeds[:1], [3.0]
    result = run(data=args.data, customers=args.customers, seeds=args.seeds,
                 epsilons=args.epsilons, other_epsilon_seeds=args.other_epsilon_seeds,
                 eval_users=args.eval_users,
                 max_steps=args.max_steps, quick=args.quick)
    _print(result)
    name = f"recommender_{args.data.replace('-', '_')}" + ("_quick" if args.quick else "")
    print(f"Wrote {write_result(name, result)}")
    return 0


if __name__ == "__main__":
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.exit(main())
