"""Score a stored campaign end to end, or change its rule without re-scoring.

`score_campaign` loads the data and the model, computes the propensities, picks the
audience and holdout, explains the first members (with an explainer passed in) and
stores it all in one transaction. `reassign_audience` re-derives audience and holdout
from the stored probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from core.campaigns.audience import assign_audience
from core.campaigns.definition import Campaign, CampaignError
from core.campaigns.propensities import (
    DEFAULT_SCORING,
    Propensity,
    ScoringConfig,
    propensity,
)
from core.campaigns.reasons import Explainer, explain_audience
from core.campaigns.segmentation import customer_features
from core.campaigns.storage import load_campaign, save_audience, save_scoring
from core.campaigns.tiers import TextScorer, item_embeddings
from core.config import Paths
from core.store.interactions import USER, load_catalogue, load_interactions
from core.store.warehouse import query


@dataclass
class Scored:
    """What `score_campaign` stored: scores in rank order with in_audience and in_holdout,
    reasons (None without a model or an explainer), wall-clock seconds."""

    campaign: Campaign
    run_id: str | None
    result: Propensity
    scores: pd.DataFrame
    reasons: pd.DataFrame | None
    seconds: float


def score_campaign(paths: Paths, campaign_id: str, *, config: ScoringConfig = DEFAULT_SCORING,
                   score_fn_factory: Callable[[object], TextScorer] | None = None,
                   explainer_factory: Callable[[object], Explainer] | None = None,
                   use_model: bool = True) -> Scored:
    """Score, pick the audience and holdout, explain (with an explainer), and store.

    The model is the campaign's `run_id`, else the latest complete run; `use_model`
    False scores by content similarity only. The factories build the text scorer and the
    explainer from the loaded model."""
    from core.recommender import registry

    started = time.perf_counter()
    campaign = load_campaign(paths, campaign_id)
    model = None
    run_id = None
    if use_model:
        run_id = campaign.run_id or registry.latest_run(paths)
        if run_id is None:
            raise CampaignError("no trained model: train one with `clearmark train` (or "
                                "score by content similarity only with --no-model).")
        model = registry.load(run_id, paths).model
    interactions = load_interactions(paths)
    catalogue = load_catalogue(paths)
    features = customer_features(paths)
    result = propensity(interactions, catalogue, campaign, customers=features[USER].tolist(),
                        model=model, config=config,
                        score_fn=score_fn_factory(model) if model is not None
                        and score_fn_factory else None,
                        embeddings=item_embeddings(catalogue,
                                                   cache_dir=paths.data_dir / "cache"))
    scores = assign_audience(result.scores, campaign)
    reasons = None
    if model is not None and explainer_factory is not None and config.reasons > 0:
        t0 = time.perf_counter()
        reasons = explain_audience(scores, interactions, model.with_popularity(catalogue),
                                   campaign,
                                   explainer=explainer_factory(model),
                                   history_len=model.config.history_len, cap=config.reasons,
                                   co_visits=model.co_visits,
                                   with_share=model.config.category_share)
        result.timing["reasons_s"] = time.perf_counter() - t0
        result.timing["reasons_customers"] = len(reasons)
    save_scoring(paths, campaign, result, scores, run_id=run_id, reasons=reasons)
    return Scored(campaign=campaign, run_id=run_id, result=result, scores=scores,
                  reasons=reasons, seconds=time.perf_counter() - started)


def reassign_audience(paths: Paths, campaign_id: str, *, rule: str, value: float) -> Campaign:
    """Change the campaign's rule and re-derive audience and holdout from the stored
    probabilities (no re-scoring). Returns the updated campaign."""
    campaign = replace(load_campaign(paths, campaign_id), rule=rule, rule_value=float(value))
    scores = query("campaign_scores", paths, campaign_id=campaign_id)
    if scores.empty:
        raise CampaignError(f"campaign {campaign_id} is not scored yet: run `clearmark "
                            f"campaign score {campaign_id}`.")
    flags = assign_audience(scores.drop(columns=["in_audience", "in_holdout"]), campaign)
    save_audience(paths, campaign, flags)
    return campaign
