"""The evaluation harness: full-catalogue ranking metrics on a split, by segment.

Every target is ranked against the FULL catalogue (`model.items_`), never against
sampled negatives: sampled metrics can reorder models (Krichene and Rendle, 2020).
The history given to the model for a test target is the user's train and valid
interactions before it; for a valid target, their train interactions before it. The
model is fitted by the caller (on `split.train`).

"Before" comes in two kinds (`history=`):

- "sequence" (default): every known interaction not later than the target, i.e. the
  interactions that precede it in the user's order. Where events are stamped by the
  day, the order within a day is by item id, so the target is one arbitrary item of
  that day and its same-day siblings are history: the usual leave-last-out protocol,
  the one that reproduces the reference numbers (bench/recommender_baselines.py).
- "strict": only interactions stamped strictly earlier (what
  `core.recommender.splits.histories` gives for training examples). Nothing of the same
  day is known.

On a time split both kinds give the same histories (known interactions all lie
before the cutoff).

Already-seen items: `exclude_seen=True` by default, for data where a user interacts with
an item once (a seen item is then never the answer; leaving it in only spends top-k
places on certain misses). Where customers re-buy, measure `repeat_share` and evaluate
with `exclude_seen=False`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from sklearn.base import clone

from core.recommender.metrics import catalogue_coverage, hit_rate_at_k, mrr, ndcg_at_k
from core.recommender.protocol import Recommender, rank_columns, seen_mask
from core.recommender.splits import Split, histories_frame
from core.store.interactions import ITEM, PROMOTION, TS, USER, as_interactions

BATCH_USERS = 1024  # queries scored at once: bounds the (Q, I) score matrix
HISTORY_KINDS = ("sequence", "strict")


def _batches(targets: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(targets), size):
        yield targets.iloc[start:start + size]


def _history(split: Split, on: str, targets: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind not in HISTORY_KINDS:
        raise ValueError(f"history={kind!r}: choose one of {HISTORY_KINDS}.")
    return histories_frame(split.known_for(on), targets, same_time=kind == "sequence")


def evaluate(model: Recommender, split: Split, *, k: int = 10, on: str = "test",
             exclude_seen: bool = True, history: str = "sequence") -> dict[str, object]:
    """HR@k, NDCG@k, MRR and catalogue coverage@k of a fitted `model` on the `on`
    targets of `split`, ranking the full catalogue (`model.items_`). Keys: model, split,
    on, k, exclude_seen, history, users, hr@k, ndcg@k, mrr, coverage@k,
    targets_outside_catalogue (targets the model cannot rank: counted as misses)."""
    targets = split.targets(on).reset_index(drop=True)
    known_before = _history(split, on, targets, history)
    items = np.asarray(model.items_)
    outside = int((~targets[ITEM].astype(str).isin(set(items))).sum())
    sums = {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}
    top_k: list[np.ndarray] = []
    for chunk in _batches(targets, BATCH_USERS):
        queries = chunk[[USER, TS, PROMOTION]].reset_index(drop=True)
        known = known_before[known_before[USER].isin(set(queries[USER]))]
        scores = np.asarray(model.score_items(known, queries), dtype=np.float64)  # (Q, I)
        if scores.shape != (len(queries), len(items)):
            raise ValueError(f"{model.name}.score_items returned shape {scores.shape}, "
                             f"expected {(len(queries), len(items))}.")
        order = rank_columns(scores)  # (Q, I) best first
        if exclude_seen:
            seen = np.take_along_axis(seen_mask(items, known, queries), order, axis=1)
            ranked = [items[row[~hidden]] for row, hidden in zip(order, seen, strict=True)]
        else:
            ranked = list(items[order])
        wanted = chunk[ITEM].astype(str).tolist()
        sums["hr"] += hit_rate_at_k(ranked, wanted, k) * len(chunk)
        sums["ndcg"] += ndcg_at_k(ranked, wanted, k) * len(chunk)
        sums["mrr"] += mrr(ranked, wanted) * len(chunk)
        top_k += [r[:k] for r in ranked]
    users = len(targets)
    return {
        "model": model.name, "split": split.name, "on": on, "k": k,
        "exclude_seen": exclude_seen, "history": history, "users": users,
        f"hr@{k}": sums["hr"] / users if users else 0.0,
        f"ndcg@{k}": sums["ndcg"] / users if users else 0.0,
        "mrr": sums["mrr"] / users if users else 0.0,
        f"coverage@{k}": catalogue_coverage(top_k, len(items), k) if len(items) else 0.0,
        "targets_outside_catalogue": outside,
    }


def repeat_share(split: Split, *, on: str = "test", history: str = "sequence") -> float:
    """Share of `on` targets whose item the user already had in their history before
    the target: the data's answer to "exclude seen items?" (near 0: exclude). [0, 1]."""
    targets = split.targets(on)
    if targets.empty:
        return 0.0
    known_before = _history(split, on, targets, history)
    pairs = set(zip(known_before[USER], known_before[ITEM], strict=True))
    repeats = sum((u, i) in pairs for u, i in zip(targets[USER].astype(str),
                                                   targets[ITEM].astype(str), strict=True))
    return repeats / len(targets)


def hold_out_items(interactions: pd.DataFrame, *, share: float = 0.1,
                   seed: int = 0) -> tuple[pd.DataFrame, frozenset[str]]:
    """Draw `share` of the distinct items of `interactions` (at least one) at random and
    remove every interaction with them: (the remaining interactions, the held-out ids)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share={share}: the share of items to hold out lies in (0, 1).")
    frame = as_interactions(interactions)
    ids = np.array(sorted(frame[ITEM].unique()), dtype=object)
    n = max(1, round(share * len(ids)))
    held = frozenset(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
    kept = frame[~frame[ITEM].isin(held)].reset_index(drop=True)
    return kept, held


def without_items(split: Split, *, share: float = 0.1,
                  seed: int = 0) -> tuple[Split, frozenset[str]]:
    """`split` with `share` of its training items removed from train and valid (so from
    every history); the test targets are kept, those items included."""
    train, held = hold_out_items(split.train, share=share, seed=seed)
    valid = split.valid[~split.valid[ITEM].astype(str).isin(held)].reset_index(drop=True)
    return Split(train=train, valid=valid, test=split.test,
                 name=f"{split.name}+without-items(share={share}, seed={seed})"), held


def cold_item_split(split: Split, *, share: float = 0.1,
                    seed: int = 0) -> tuple[Split, frozenset[str]]:
    """`without_items`, keeping only the test targets that are held-out items."""
    cold, held = without_items(split, share=share, seed=seed)
    test = split.test[split.test[ITEM].astype(str).isin(held)].reset_index(drop=True)
    return Split(train=cold.train, valid=cold.valid, test=test,
                 name=f"{split.name}+cold-items(share={share}, seed={seed})"), held


def _subset_test(split: Split, users: set[str], label: str) -> Split:
    test = split.test[split.test[USER].astype(str).isin(users)].reset_index(drop=True)
    return Split(train=split.train, valid=split.valid, test=test, name=f"{split.name}+{label}")


def cold_start_report(model: Recommender, split: Split, catalogue: pd.DataFrame, *,
                      k: int = 10, max_history: int = 2, share: float = 0.1, seed: int = 0,
                      exclude_seen: bool = True,
                      history: str = "sequence") -> dict[str, dict[str, object]]:
    """Two cold starts, on the test targets of `split`:

    - "cold_users": users with at most `max_history` interactions before their target
      (`evaluate` on them; `model` as given if fitted, else a clone fitted on train);
    - "cold_items": a clone of `model` fitted on train without `share` of the items
      (`cold_item_split`), recall@k on the test targets that are those items. Models
      that only learn from interactions (popularity, item-kNN) score 0 here."""
    fitted = model if hasattr(model, "items_") else clone(model, safe=False).fit(
        split.train, catalogue)
    earlier = _history(split, "test", split.test, history).groupby(USER).size()
    earlier = earlier.reindex(split.test[USER].astype(str), fill_value=0)
    few = set(earlier[earlier <= max_history].index)
    users = evaluate(fitted, _subset_test(split, few, f"history<={max_history}"), k=k,
                     exclude_seen=exclude_seen, history=history)
    users["max_history"] = max_history

    cold, held = cold_item_split(split, share=share, seed=seed)
    cold_model = clone(model, safe=False).fit(cold.train, catalogue)
    result = evaluate(cold_model, cold, k=k, exclude_seen=exclude_seen, history=history)
    items = {"model": result["model"], "split": result["split"], "k": k,
             "held_out_items": len(held), "users": result["users"],
             f"recall@{k}": result[f"hr@{k}"], f"ndcg@{k}": result[f"ndcg@{k}"],
             "mrr": result["mrr"]}
    return {"cold_users": users, "cold_items": items}


def sample_test_users(split: Split, users: int | None, *, seed: int = 0) -> Split:
    """`split` with a seeded sample of `users` test targets (all with None)."""
    if users is None or users >= len(split.test):
        return split
    test = split.test.sample(n=users, random_state=seed).reset_index(drop=True)
    return Split(train=split.train, valid=split.valid, test=test,
                 name=f"{split.name}+sample({users} test users, seed {seed})")


def evaluate_baselines(split: Split, catalogue: pd.DataFrame, *, k: int = 10,
                       held: frozenset[str] = frozenset()) -> dict[str, dict[str, object]]:
    """Popularity, item-kNN and zero-shot content on the same split (full catalogue);
    with `held` items, each also carries its "segments" (`evaluate_segments`)."""
    from core.recommender.baselines import ItemKNN, Popularity, ZeroShotContent

    out = {}
    for model in (Popularity(), ItemKNN(), ZeroShotContent()):
        segments = evaluate_segments(model.fit(split.train, catalogue), split, held, k=k)
        out[model.name] = {**segments.pop("all"), "segments": segments}
    return out


def evaluate_segments(model, split: Split, held: frozenset[str] = frozenset(), *,
                      k: int = 10, max_history: int = 2) -> dict[str, dict[str, object]]:
    """Full-catalogue metrics on the test targets: "all"; with `held` items, "warm_items"
    (targets the training data contains) and "cold_items" (targets never seen in
    training: hr@k is their recall@k); "cold_users" (at most `max_history` earlier
    interactions) where there are such customers. Segments with no target are left out."""
    out = {"all": evaluate(model, split, k=k, on="test")}
    test = split.test
    masks = {}
    if held:
        cold = test[ITEM].astype(str).isin(held).to_numpy()
        masks["warm_items"], masks["cold_items"] = ~cold, cold
    earlier = (pd.concat([split.train, split.valid]).groupby(USER).size()
               .reindex(test[USER], fill_value=0).to_numpy())
    masks["cold_users"] = earlier <= max_history
    for name, mask in masks.items():
        if mask.any():
            sub = Split(train=split.train, valid=split.valid,
                        test=test[mask].reset_index(drop=True), name=f"{split.name}+{name}")
            out[name] = evaluate(model, sub, k=k, on="test")
    return out


def validation_metrics(model, split: Split, catalogue: pd.DataFrame, *,
                       users: int, seed: int) -> dict[str, float]:
    """HR@10 and NDCG@10 of a CrossEncoder `model` (through `core.recommender.retrieval`) on
    a seeded sample of `users` validation targets, full catalogue: the training progress
    bar's signal, and what `TrainConfig.keep_best` selects on. NaN with no target."""
    from core.recommender.retrieval import CrossEncoderRecommender

    if users <= 0 or split.valid.empty:
        return {"hr@10": float("nan"), "ndcg@10": float("nan")}
    sample = split.valid.sample(n=min(users, len(split.valid)), random_state=seed)
    sub = Split(train=split.train, valid=sample.reset_index(drop=True), test=split.test,
                name=split.name)
    result = evaluate(CrossEncoderRecommender(model).fit(split.train, catalogue), sub, k=10,
                      on="valid")
    return {"hr@10": float(result["hr@10"]), "ndcg@10": float(result["ndcg@10"])}
