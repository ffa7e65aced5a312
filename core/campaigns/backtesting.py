"""Would the audience have bought? Build it as of a cutoff, then look at the window after.

Everything the model, the candidates, the calibration and the popularity baseline read
lies strictly before the cutoff (`assert_before` checks it); only the outcome window
[cutoff, cutoff + horizon) is read after it. The model is compared with random and
popularity targeting on the same customers.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from core.campaigns.audience import assign_audience
from core.campaigns.definition import Campaign, CampaignError, target_categories
from core.campaigns.metrics import expected_calibration_error
from core.campaigns.propensities import (
    DEFAULT_SCORING,
    Propensity,
    ScoringConfig,
    propensity,
)
from core.campaigns.segmentation import customer_features
from core.campaigns.tiers import TextScorer, item_embeddings
from core.config import Paths
from core.store.interactions import ITEM, TS, USER, load_catalogue, load_interactions

OUTCOME_EVENT_TYPES = ("purchase", "review")  # "bought": Amazon reviews stand for purchases
MIN_BUYERS = 20  # buyers in the window, below: a warning that the lifts are noisy


def assert_before(frame: pd.DataFrame, cutoff: pd.Timestamp, what: str,
                  column: str = TS) -> None:
    """Internal invariant of the backtest: nothing at or after the cutoff is an input."""
    if len(frame) and frame[column].notna().any():
        latest = pd.to_datetime(frame[column]).max()
        assert latest < pd.Timestamp(cutoff), (
            f"{what}: a row at {latest} is not before the cutoff {cutoff}")


def train_before(paths: Paths, *, cutoff: pd.Timestamp, train_config=None,
                 model_config=None, bert_config=None, progress: bool = False) -> str:
    """The backtest's one training call: a model that sees only events strictly before
    the cutoff (interactions and the candidates' popularity), a DP run charged to the
    ledger like every other. Returns its run id."""
    from core.recommender.train import train

    if "before" not in inspect.signature(train).parameters:
        raise CampaignError("core.recommender.train.train has no `before` keyword yet, so a model "
                            "restricted to data before the cutoff cannot be trained: "
                            "update clearmark (or pass --run-id of a model trained on "
                            "data before the cutoff).")
    return train(paths, train_config, before=pd.Timestamp(cutoff),
                 model_config=model_config, bert_config=bert_config, progress=progress)


def popularity_ranking(history: pd.DataFrame, catalogue: pd.DataFrame,
                       categories: Sequence[str], customers: Sequence[str]) -> np.ndarray:
    """Popularity-based targeting: customers ordered by their count of past interactions
    in the target categories, then by their count of all interactions, then pseudonym.
    Returns indices into `customers`, best first."""
    category = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}) \
        .drop_duplicates(ITEM).set_index(ITEM)["category"]
    in_target = history[ITEM].astype(str).map(category).isin(set(categories))
    users = pd.Index([str(u) for u in customers])
    per_user = pd.DataFrame({USER: history[USER].astype(str), "t": in_target.astype(int)})
    grouped = per_user.groupby(USER)["t"].agg(["sum", "size"]).reindex(users, fill_value=0)
    by_name = np.argsort(np.argsort(np.asarray(users, dtype=str), kind="stable"))
    return np.lexsort((by_name, -grouped["size"].to_numpy(), -grouped["sum"].to_numpy()))


def gains(order: np.ndarray, positive: np.ndarray, *, points: int = 20
          ) -> list[dict[str, float]]:
    """Cumulative share of positives captured when targeting the top share of customers in
    `order` (indices, best first), at `points` equal steps plus 1%, 2% and 5%."""
    n = len(order)
    total = positive.sum()
    hits = np.concatenate([[0], np.cumsum(positive[order])])
    shares = sorted({0.01, 0.02, 0.05, *np.round(np.arange(1, points + 1) / points, 4)})
    out = []
    for share in shares:
        k = max(1, math.ceil(share * n))
        out.append({"share": float(share), "captured": float(hits[k] / total) if total
                    else float("nan"), "precision": float(hits[k] / k)})
    return out


def _ranking_report(order: np.ndarray, positive: np.ndarray, base: float,
                    truth: np.ndarray | None) -> dict[str, object]:
    n = len(order)
    top = order[:max(1, math.ceil(0.1 * n))]
    precision = float(positive[top].mean()) if len(top) else float("nan")
    report = {"top_decile_precision": precision,
              "top_decile_lift": precision / base if base > 0 else float("nan"),
              "gains": gains(order, positive)}
    if truth is not None:
        from scipy.stats import spearmanr

        known = ~np.isnan(truth)
        ranks = np.empty(n)
        ranks[order] = np.arange(n)
        report["truth_spearman"] = float(spearmanr(-ranks[known], truth[known]).statistic) \
            if known.sum() > 2 else float("nan")
        top_known = top[known[top]]
        mean_all = float(np.nanmean(truth))
        report["truth_top_decile_mean"] = float(np.mean(truth[top_known])) \
            if len(top_known) else float("nan")
        report["truth_top_decile_lift"] = report["truth_top_decile_mean"] / mean_all \
            if mean_all > 0 else float("nan")
    return report


def _bought(paths: Paths, targets: Sequence[str], users: np.ndarray, cutoff: pd.Timestamp,
            end: pd.Timestamp) -> np.ndarray:
    """Per user: bought (purchase or review) a target item in [cutoff, end)."""
    outcome = load_interactions(paths, event_types=OUTCOME_EVENT_TYPES, before=end)
    outcome = outcome[outcome[TS] >= cutoff]
    buyers = set(outcome.loc[outcome[ITEM].astype(str).isin(set(targets)), USER].astype(str))
    return np.isin(users, list(buyers))


def _rankings(history: pd.DataFrame, catalogue: pd.DataFrame, campaign: Campaign,
              users: np.ndarray, positive: np.ndarray, base: float,
              truth: np.ndarray | None) -> dict[str, dict[str, object]]:
    """The model's ranking (`users` is in rank order) against popularity and one seeded
    random draw."""
    pop_order = popularity_ranking(history, catalogue, target_categories(campaign, catalogue),
                                   users)
    random_order = np.random.default_rng(campaign.seed).permutation(len(users))
    return {"model": _ranking_report(np.arange(len(users)), positive, base, truth),
            "popularity": _ranking_report(pop_order, positive, base, truth),
            "random (one seeded draw)": _ranking_report(random_order, positive, base, truth)}


def _at_rule(campaign: Campaign, scores: pd.DataFrame, positive: np.ndarray
             ) -> dict[str, object]:
    audience = scores["in_audience"].to_numpy()
    hits = int(positive[audience].sum())
    return {"rule": campaign.rule, "value": campaign.rule_value,
            "audience": int(audience.sum()), "buyers_in_audience": hits,
            "precision": hits / audience.sum() if audience.sum() else float("nan"),
            "recall": hits / positive.sum() if positive.sum() else float("nan"),
            "expected_conversions": float(scores.loc[audience, "probability"].sum())}


def _calibration_summary(result: Propensity) -> dict[str, object]:
    overall = result.calibration["overall"]
    return {"ece_after": overall["ece_after"], "ece_before": overall["ece_before"],
            "tiers": {t: {k: r[k] for k in ("method", "ece_before", "ece_after", "customers",
                                            "positives")}
                      for t, r in result.calibration["tiers"].items()}}


def _inputs_before(paths: Paths, cutoff: pd.Timestamp
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, customer features, catalogue): the first two strictly before the
    cutoff (asserted)."""
    history = load_interactions(paths, before=cutoff)
    assert_before(history, cutoff, "interactions")
    if history.empty:
        raise CampaignError(f"no interactions before {cutoff.date()}: pick a later cutoff.")
    raw_features = customer_features(paths, before=cutoff)
    assert_before(raw_features, cutoff, "customer features", column="last_ts")
    catalogue = load_catalogue(paths)  # item text: catalogue data, not time-bound
    return history, raw_features, catalogue


def _with_lifts(report: dict[str, object], buyers: int) -> dict[str, object]:
    """The report with the model's top-decile lift against random and popularity, and a
    warning when few customers bought."""
    model_lift = report["rankings"]["model"]["top_decile_lift"]
    pop_lift = report["rankings"]["popularity"]["top_decile_lift"]
    report["top_decile_lift_vs_random"] = model_lift
    report["top_decile_lift_vs_popularity"] = model_lift / pop_lift if pop_lift else \
        float("nan")
    if buyers < MIN_BUYERS:
        report["warnings"] = [*report["warnings"], f"only {buyers} customers "
                              "bought the target in the window: the lifts are noisy."]
    return report


def backtest(paths: Paths, campaign: Campaign, *, cutoff: pd.Timestamp | str,
             horizon_days: int = 90, train_config=None, model_config=None, bert_config=None,
             config: ScoringConfig = DEFAULT_SCORING, run_id: str | None = None,
             score_fn_factory: Callable[[object], TextScorer] | None = None,
             truth: pd.DataFrame | None = None, progress: bool = False) -> dict[str, object]:
    """Build the audience as of `cutoff` from data before it only, then measure who
    actually bought (purchase or review) a target item in [cutoff, cutoff + horizon).

    The model is trained by `train_before` (data before the cutoff only; a ledger entry)
    unless `run_id` names one. Compared with random targeting (lift 1 by definition) and
    popularity targeting (`popularity_ranking`): gains, top-decile lift, precision and
    recall at the campaign's rule. `truth` (user_pseudonym, preference: the planted
    preference for the target, generator only) adds rank correlations with it.
    Returns a JSON-ready report (`save_backtest` stores it)."""
    from core.recommender import registry

    cutoff = pd.Timestamp(cutoff)
    if horizon_days < 1:
        raise CampaignError(f"horizon_days={horizon_days}: give at least 1 day.")
    end = cutoff + pd.Timedelta(days=horizon_days)
    history, raw_features, catalogue = _inputs_before(paths, cutoff)
    started = time.perf_counter()
    if run_id is None:
        run_id = train_before(paths, cutoff=cutoff, train_config=train_config,
                              model_config=model_config, bert_config=bert_config,
                              progress=progress)
    train_s = time.perf_counter() - started
    model = registry.load(run_id, paths).model
    customers = raw_features[USER].astype(str).tolist()
    result = propensity(history, catalogue, campaign, customers=customers, model=model,
                        config=config, score_fn=score_fn_factory(model)
                        if score_fn_factory else None,
                        embeddings=item_embeddings(catalogue,
                                                   cache_dir=paths.data_dir / "cache"))
    scores = assign_audience(result.scores, campaign)
    users = scores[USER].astype(str).to_numpy()  # rank order
    positive = _bought(paths, result.targets, users, cutoff, end)
    base = float(positive.mean()) if len(positive) else float("nan")
    truth_values = None if truth is None else pd.Series(
        truth["preference"].to_numpy(dtype=float),
        index=truth[USER].astype(str)).reindex(users).to_numpy()
    report = {
        "campaign_id": campaign.campaign_id, "cutoff": cutoff.isoformat(),
        "horizon_days": horizon_days, "window_end": end.isoformat(), "run_id": run_id,
        "customers": len(users), "buyers": int(positive.sum()), "base_rate": base,
        "targets": result.targets,
        "inputs": {"interactions": len(history),
                   "latest_input_ts": pd.Timestamp(history[TS].max()).isoformat(),
                   "customers_known": len(customers)},
        "rankings": _rankings(history, catalogue, campaign, users, positive, base,
                              truth_values),
        "at_rule": _at_rule(campaign, scores, positive),
        "calibration": _calibration_summary(result),
        "realized_calibration": {
            "note": "probabilities are of the NEXT interaction; the window counts any "
                    "purchase in it, so observed rates exceed them for active customers",
            "ece": expected_calibration_error(scores["probability"], positive)},
        "validation": result.validation, "warnings": result.warnings,
        "timing": {**result.timing, "train_s": train_s},
    }
    return _with_lifts(report, int(positive.sum()))
