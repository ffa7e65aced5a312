"""Baseline recommenders on Amazon Gift Cards (the reference numbers) and generated data.

Run from the repository root: ``.venv/bin/python -m bench.recommender_baselines``. Prints
a table and writes ``bench/results/recommender_baselines.json``.

Protocol (core.recommender.evaluate): leave-last-out (min 3 interactions), every target ranked
against the full ranking catalogue, models fitted on the train part only. On Gift
Cards the ranking catalogue is the 148 reviewed items (the metadata file lists 1,543;
ranking those is reported too) and already-seen items are excluded (no test target
repeats an item of the user's history). The history of a target is every interaction
before it in the user's sequence ("sequence"); "strict" rows keep only interactions
stamped strictly earlier (Amazon stamps by the day and 64% of test targets share their
day with the valid target).

Generated data: 5,000 customers from core.synthetic.generator, strong interactions with funnel
runs collapsed (add-to-cart then purchase of one item counts once). Whether to exclude
seen items is decided by the data: exclude when under 5% of test targets repeat a
history item.

Gift Cards is read from ``../shared/data/amazon-2018`` when present (research-use data,
never copied into the repository); without it only the generated part runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.config import PROJECT_ROOT, Paths
from core.ingest.pipeline import ingest
from core.recommender.baselines import ItemKNN, Popularity, ZeroShotContent
from core.recommender.evaluate import cold_start_report, evaluate, repeat_share
from core.recommender.splits import Split, leave_last_out, time_split
from core.store.interactions import (
    collapse_repeats,
    interacted_catalogue,
    load_catalogue,
    load_interactions,
)
from core.synthetic.generator import GeneratorConfig, default_item_count, generate

RESULTS = Path(__file__).resolve().parent / "results" / "recommender_baselines.json"
AMAZON_DIR = PROJECT_ROOT.parent / "shared" / "data" / "amazon-2018"
GIFT_CARDS = ("Gift_Cards_5.json.gz", "meta_Gift_Cards.json.gz")
BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
K = 10
REFERENCE = {  # ARCHITECTURE.md: Gift Cards, leave-last-out, full catalogue
    "popularity": {"hr@10": 0.149, "ndcg@10": 0.073},
    "item-knn": {"hr@10": 0.354, "ndcg@10": 0.170},
    "zero-shot-content": {"hr@10": 0.236, "ndcg@10": 0.140},
}
REPEAT_THRESHOLD = 0.05
GENERATED_CUSTOMERS = 5000
MODELS = (Popularity, ItemKNN, ZeroShotContent)


def _machine() -> dict[str, object]:
    return {"platform": platform.platform(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "pandas": pd.__version__,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def _run(split: Split, catalogue: pd.DataFrame, *, dataset: str, exclude_seen: bool,
         histories: tuple[str, ...] = ("sequence",), catalogue_name: str = "interacted",
         ) -> list[dict[str, object]]:
    rows = []
    for make in MODELS:
        start = time.perf_counter()
        model = make().fit(split.train, catalogue)
        fit_s = time.perf_counter() - start
        for history in histories:
            start = time.perf_counter()
            result = evaluate(model, split, k=K, exclude_seen=exclude_seen, history=history)
            rows.append({"dataset": dataset, "catalogue": catalogue_name,
                         "catalogue_size": len(model.items_), **result,
                         "fit_s": round(fit_s, 3),
                         "evaluate_s": round(time.perf_counter() - start, 3)})
    return rows


def _cold(split: Split, catalogue: pd.DataFrame, *, dataset: str,
          exclude_seen: bool) -> list[dict[str, object]]:
    rows = []
    for make in MODELS:
        report = cold_start_report(make(), split, catalogue, k=K, exclude_seen=exclude_seen)
        users, items = report["cold_users"], report["cold_items"]
        rows.append({"dataset": dataset, "model": users["model"],
                     "cold_users": {"max_history": users["max_history"],
                                    "users": users["users"], "hr@10": users["hr@10"],
                                    "ndcg@10": users["ndcg@10"]},
                     "cold_items": {"held_out_items": items["held_out_items"],
                                    "users": items["users"], "recall@10": items["recall@10"]}})
    return rows


def gift_cards(tmp: Path) -> dict[str, object] | None:
    files = [AMAZON_DIR / name for name in GIFT_CARDS]
    if not all(f.exists() for f in files):
        return None
    paths = Paths(data_dir=tmp / "gift_cards")
    start = time.perf_counter()
    ingest(files, key=BENCH_KEY, paths=paths, progress=False)
    ingest_s = time.perf_counter() - start
    interactions = load_interactions(paths)
    metadata = load_catalogue(paths)
    catalogue = interacted_catalogue(metadata, interactions)
    split = leave_last_out(interactions)
    share = repeat_share(split)
    rows = _run(split, catalogue, dataset="gift_cards", exclude_seen=True,
                histories=("sequence", "strict"))
    for row in rows:
        ref = REFERENCE[row["model"]]
        if row["history"] == "sequence":
            row["reference"] = ref
            row["delta"] = {m: round(row[m] - v, 4) for m, v in ref.items()}
    rows += _run(split, metadata, dataset="gift_cards", exclude_seen=True,
                 catalogue_name="all metadata rows")
    return {
        "data": {"interactions": len(interactions), "users": interactions["user_pseudonym"]
                 .nunique(), "ranking_catalogue": len(catalogue), "metadata_items":
                 len(metadata), "test_users": len(split.test), "ingest_s": round(ingest_s, 2),
                 "test_repeat_share": share,
                 "test_same_day_as_valid": float((split.test.set_index("user_pseudonym")["ts"]
                                                  == split.valid.set_index("user_pseudonym")[
                                                      "ts"]).mean())},
        "exclude_seen": True,
        "results": rows,
        "cold_start": _cold(split, catalogue, dataset="gift_cards", exclude_seen=True),
    }


def generated(tmp: Path) -> dict[str, object]:
    config = GeneratorConfig(customers=GENERATED_CUSTOMERS,
                             items=default_item_count(GENERATED_CUSTOMERS), seed=0)
    paths = Paths(data_dir=tmp / "generated")
    start = time.perf_counter()
    files = generate(config, tmp / "generated_raw", progress=False)
    ingest([files.out_dir], key=BENCH_KEY, paths=paths, progress=False)
    prepare_s = time.perf_counter() - start
    raw = load_interactions(paths)
    interactions = collapse_repeats(raw)
    catalogue = interacted_catalogue(load_catalogue(paths), interactions)
    llo = leave_last_out(interactions)
    share = repeat_share(llo)
    exclude = share < REPEAT_THRESHOLD
    cutoff = pd.Timestamp(config.end) - pd.DateOffset(months=6) + pd.Timedelta(days=1)
    timed = time_split(interactions, cutoff=cutoff,
                       valid_cutoff=cutoff - pd.DateOffset(months=3))
    rows = _run(llo, catalogue, dataset="generated", exclude_seen=exclude)
    rows += _run(timed, catalogue, dataset="generated", exclude_seen=exclude)
    rows += _run(llo, catalogue, dataset="generated", exclude_seen=not exclude)
    return {
        "data": {"config": {k: str(v) for k, v in vars(config).items()},
                 "strong_events": len(raw), "interactions_collapsed": len(interactions),
                 "users": interactions["user_pseudonym"].nunique(),
                 "ranking_catalogue": len(catalogue), "test_users_leave_last_out": len(
                     llo.test), "test_users_time_split": len(timed.test),
                 "test_repeat_share": share, "prepare_s": round(prepare_s, 2)},
        "exclude_seen": exclude,
        "results": rows,
        "cold_start": _cold(llo, catalogue, dataset="generated", exclude_seen=exclude),
    }


def _table(rows: list[dict[str, object]]) -> str:
    head = (f"{'dataset':<11} {'split':<42} {'catalogue':<10} {'hist':<8} {'excl':<5} "
            f"{'model':<18} {'users':>5} {'HR@10':>6} {'NDCG@10':>7} {'MRR':>6} {'cov@10':>6} "
            f"{'ref HR/NDCG':>12} {'fit s':>6} {'eval s':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ref = r.get("reference")
        ref_text = f"{ref['hr@10']:.3f}/{ref['ndcg@10']:.3f}" if ref else ""
        lines.append(
            f"{r['dataset']:<11} {r['split'][:42]:<42} {str(r['catalogue_size']):<10} "
            f"{r['history']:<8} {str(r['exclude_seen']):<5} {r['model']:<18} {r['users']:>5} "
            f"{r['hr@10']:>6.3f} {r['ndcg@10']:>7.3f} {r['mrr']:>6.3f} {r['coverage@10']:>6.3f} "
            f"{ref_text:>12} {r['fit_s']:>6.2f} {r['evaluate_s']:>6.2f}")
    return "\n".join(lines)


def _cold_table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'dataset':<11} {'model':<18} {'cold users (<=2 earlier)':>28} "
             f"{'cold items recall@10':>26}"]
    for r in rows:
        u, i = r["cold_users"], r["cold_items"]
        lines.append(f"{r['dataset']:<11} {r['model']:<18} "
                     f"{u['hr@10']:>14.3f} ({u['users']:>4} users) "
                     f"{i['recall@10']:>12.3f} ({i['users']:>4} users, "
                     f"{i['held_out_items']} items)")
    return "\n".join(lines)


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Bench warehouses live in a temp dir; never let the environment point them elsewhere.
    os.environ.pop("CLEARMARK_WAREHOUSE", None)
    started = time.perf_counter()
    out: dict[str, object] = {"machine": _machine(), "k": K, "protocol": __doc__}
    with tempfile.TemporaryDirectory(prefix="clearmark-bench-") as tmp:
        gc = gift_cards(Path(tmp))
        if gc is None:
            print(f"Gift Cards not found in {AMAZON_DIR}: skipped.")
        out["gift_cards"] = gc
        out["generated"] = generated(Path(tmp))
    out["total_s"] = round(time.perf_counter() - started, 1)
    rows = (gc["results"] if gc else []) + out["generated"]["results"]
    cold = (gc["cold_start"] if gc else []) + out["generated"]["cold_start"]
    print(_table(rows))
    print()
    print(_cold_table(cold))
    if gc:
        print(f"\nGift Cards: test targets repeating a history item: "
              f"{gc['data']['test_repeat_share']:.3f}; on the valid target's day: "
              f"{gc['data']['test_same_day_as_valid']:.3f}")
    g = out["generated"]
    print(f"Generated: test targets repeating a history item: "
          f"{g['data']['test_repeat_share']:.3f} -> exclude_seen={g['exclude_seen']}")
    print(f"total {out['total_s']} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=_json_default) + "\n",
                       encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(PROJECT_ROOT)}")


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
