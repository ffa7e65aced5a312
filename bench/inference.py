"""Ranking inference: the full last layer, the [CLS]-only last layer, int8; speed and quality.

Run from the repository root:

    .venv/bin/python -m bench.inference --data DIR [--run RUN_ID] [--users 200]

DIR is a data folder with a warehouse and a trained run (default: data/, the latest
run). The run's model re-ranks its candidates (content + popular retrieval) for
`--users` seeded test customers of the leave-last-out split (`core.recommender.evaluate.evaluate`,
as the recommender benchmark does) three times:

1. "all tokens": float32, every token of every pair through the trainable layer (the
   scoring path before the [CLS]-only last layer; `CrossEncoder.all_token_outputs`);
2. "float32": the default path (the last layer for [CLS] alone, scored from each
   side's cached keys and values without joining pairs; `CrossEncoder.score_pairs`);
3. "int8": the default path with every linear layer of the BERT encoder dynamically
   quantized to int8 (`torch.ao.quantization.quantize_dynamic`: weights int8,
   activations quantized per batch; the zero-shot prior's sentence encoder stays
   float32).

Each variant is a copy of the model made before any of them runs, and starts cold: the
model's side states, its prior embeddings and the sentence encoder's cache are cleared,
so each pays for its own encodings. Reported: seconds, customers per second, NDCG@10 /
HR@10 of each, and the ratios to "all tokens". What scoring
does in all three: candidate pairs sorted by length before batching (less
padding), the history side encoded once per customer and the candidate side once per
item (cached lower-layer states), 2 torch threads (the machine's cores). Writes
``bench/results/inference.json`` with the machine description and the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

from bench.machine import write_result


def _rank(model, split, catalogue, users: int) -> dict[str, float]:
    from core.recommender.evaluate import evaluate, sample_test_users
    from core.recommender.retrieval import CrossEncoderRecommender

    sample = sample_test_users(split, users, seed=0)
    recommender = CrossEncoderRecommender(model).fit(split.train, catalogue)
    started = time.perf_counter()
    metrics = evaluate(recommender, sample)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "customers": int(metrics["users"]),
            "candidates": f"{recommender.n_content} content + {recommender.n_popular} popular",
            "customers_per_second": metrics["users"] / seconds,
            "ndcg@10": float(metrics["ndcg@10"]), "hr@10": float(metrics["hr@10"])}


def _cold(model) -> None:
    """Forget every cached encoding the model's scoring could reuse."""
    from core.minilm import forget_embeddings

    model.clear_cache()
    forget_embeddings()


def main(argv: list[str] | None = None) -> int:
    import torch

    from core.config import Paths
    from core.recommender import registry
    from core.recommender.data import load_training_data, make_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="data folder (default: data/ or CLEARMARK_DATA)")
    parser.add_argument("--run", help="run id (default: the latest)")
    parser.add_argument("--users", type=int, default=200, help="test customers ranked")
    args = parser.parse_args(argv)
    paths = Paths(Path(args.data)) if args.data else Paths()
    run_id = args.run or registry.latest_run(paths)
    if run_id is None:
        print(f"no trained run in {paths.models_dir}", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    loaded = registry.load(run_id, paths)
    interactions, catalogue = load_training_data(paths)
    split = make_split(interactions, "leave_last_out")
    full = copy.deepcopy(loaded.model)
    full.all_token_outputs = True
    quantized = copy.deepcopy(loaded.model)
    quantized.bert = torch.ao.quantization.quantize_dynamic(
        quantized.bert, {torch.nn.Linear}, dtype=torch.qint8)
    variants = {"all_tokens": full, "float32": loaded.model, "int8_dynamic": quantized}
    result: dict[str, object] = {
        "data": str(paths.warehouse), "run_id": run_id, "users": args.users,
        "catalogue_items": int(len(catalogue))}
    for name, model in variants.items():
        _cold(model)
        result[name] = _rank(model, split, catalogue, args.users)
        print(f"{name:>12}: {result[name]['customers_per_second']:.2f} customers/s, "
              f"NDCG@10 {result[name]['ndcg@10']:.4f}", flush=True)
    base = result["all_tokens"]
    for name in ("float32", "int8_dynamic"):
        result[f"speedup_{name}"] = base["seconds"] / result[name]["seconds"]
        result[f"ndcg_change_{name}"] = result[name]["ndcg@10"] - base["ndcg@10"]
        print(f"{name} is {result[f'speedup_{name}']:.2f}x the speed of all tokens; NDCG@10 "
              f"change {result[f'ndcg_change_{name}']:+.4f}")
    result.update(load_average_start=load_start, load_average_end=os.getloadavg())
    print(f"wrote {write_result('inference', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
