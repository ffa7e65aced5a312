"""Campaign audiences: who is likely to buy the target, how sure we are, how many, and why.

A `Campaign` (definition) names a target, a context and an audience rule. Scoring
(scoring, propensities, tiers, calibration) gives every customer a calibrated
probability that their next interaction is with the target, picks the audience by the
rule and draws a seeded holdout from it (audience); segments and reasons describe the
audience (segmentation, reasons); export hands it out, backtesting checks it against
what customers bought after a cutoff. The campaign tables live in the warehouse
(storage).

Privacy
    Customers appear only as pseudonyms. Segment tables hide small cells
    (`privacy.disclosure.hide_until_floor`); the holdout never leaves the warehouse; exports are
    refused below `MIN_EXPORT` rows. Not covered by any epsilon, and stored only in the
    warehouse (never shipped with a model): the calibrators and validation metrics
    (statistics of the customers' own interactions, like the popularity list the model
    ships with, see core.recommender.train).

Import direction: core never imports `explain`. The explanation of audience members
(`explainer`) and the CSV cell neutralizer (`cell`) are passed in by the callers: the CLI
(`core.cli.campaigns`, the composition root) and the dashboard page.

This module re-exports the names the callers use: `from core import campaigns as C`.
"""

from core.campaigns.audience import at_size, audience_mask, holdout_mask, size_curve
from core.campaigns.backtesting import (
    OUTCOME_EVENT_TYPES,
    assert_before,
    backtest,
    popularity_ranking,
    train_before,
)
from core.campaigns.calibration import Calibrator
from core.campaigns.definition import (
    RULES,
    SEASON_CHOICES,
    TARGET_KINDS,
    Campaign,
    CampaignError,
    new_campaign,
    season_of,
    target_items,
)
from core.campaigns.export import (
    EXPORT_COLUMNS,
    MIN_EXPORT,
    ExportRefused,
    activate,
    export_csv,
    export_file_name,
    export_frame,
    write_export,
)
from core.campaigns.metrics import (
    auc,
    expected_calibration_error,
    reliability_table,
    top_share_lift,
)
from core.campaigns.propensities import ScoringConfig, propensity
from core.campaigns.reasons import FIELD_GROUPS, explain_audience
from core.campaigns.scoring import reassign_audience, score_campaign
from core.campaigns.segmentation import (
    SEGMENT_DIMENSIONS,
    customer_features,
    segment_drivers,
    segment_features,
    segments,
)
from core.campaigns.storage import (
    list_campaigns,
    load_campaign,
    log_export,
    save_backtest,
    save_campaign,
)
from core.campaigns.tiers import TIER_CE, TIERS, item_embeddings
from core.store.interactions import load_catalogue

__all__ = [
    "EXPORT_COLUMNS", "FIELD_GROUPS", "MIN_EXPORT", "OUTCOME_EVENT_TYPES", "RULES",
    "SEASON_CHOICES", "SEGMENT_DIMENSIONS", "TARGET_KINDS", "TIERS", "TIER_CE",
    "Calibrator", "Campaign", "CampaignError", "ExportRefused", "ScoringConfig",
    "activate", "assert_before", "at_size", "auc", "audience_mask", "backtest",
    "customer_features", "expected_calibration_error", "explain_audience", "export_csv",
    "export_file_name", "export_frame", "holdout_mask", "item_embeddings", "list_campaigns",
    "load_campaign", "load_catalogue", "log_export", "new_campaign", "popularity_ranking",
    "propensity", "reassign_audience", "reliability_table", "save_backtest", "save_campaign",
    "score_campaign", "season_of", "segment_drivers", "segment_features", "segments",
    "size_curve", "target_items", "top_share_lift", "train_before",
    "write_export",
]
