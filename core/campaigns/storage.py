"""The campaign tables of the warehouse: every write, and the reads of definitions.

Writes run the named queries of `core.store.queries` (prefix `campaign_`) in one write
transaction each; reads go through `core.store.warehouse.query` on the snapshot.
Customers appear only as pseudonyms; JSON columns hold no NaN or inf (stored as null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.campaigns.definition import Campaign, CampaignError, current_user, utc_now
from core.campaigns.reasons import FIELD_GROUPS
from core.config import Paths
from core.store.interactions import ITEM, USER
from core.store.queries import QUERIES
from core.store.warehouse import query, write_transaction

if TYPE_CHECKING:
    from core.campaigns.propensities import Propensity

SCORE_COLUMNS = ("campaign_id", USER, "score", "probability", "decile", "in_audience",
                 "in_holdout", "rank", "tier", "best_item")
REASON_COLUMNS = ("campaign_id", USER, ITEM, "reasons", *FIELD_GROUPS)


def to_json(value: object) -> str:
    """JSON text of nested dicts, lists, numpy values and times (sorted keys); NaN and
    inf become null."""
    def default(v: object) -> object:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (pd.Timestamp, datetime)):
            return v.isoformat()
        return str(v)

    def clean(v: object) -> object:  # NaN / inf are not JSON
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.floating):
            return clean(float(v))
        return v

    return json.dumps(clean(value), default=default, sort_keys=True)


# --- definitions ------------------------------------------------------------------------------


def save_campaign(paths: Paths, campaign: Campaign) -> Campaign:
    """Insert the definition; `CampaignError` if its id exists already."""
    with write_transaction(paths) as con:
        exists = con.execute(QUERIES["campaign_exists"],
                             {"campaign_id": campaign.campaign_id}).fetchone()[0]
        if exists:
            raise CampaignError(f"campaign {campaign.campaign_id} already exists.")
        con.execute(QUERIES["campaign_insert"], campaign.to_row())
    return campaign


def list_campaigns(paths: Paths) -> pd.DataFrame:
    """Every definition, newest first (query `campaigns_list`)."""
    return query("campaigns_list", paths)


def load_campaign(paths: Paths, campaign_id: str) -> Campaign:
    """The stored definition; `CampaignError` (saying how to list or create one) if none."""
    rows = query("campaign_by_id", paths, campaign_id=campaign_id)
    if rows.empty:
        raise CampaignError(f"no campaign {campaign_id!r}: list them with `clearmark "
                            "campaign list`, create one with `clearmark campaign create`.")
    return Campaign.from_row(rows.iloc[0].to_dict())


# --- scorings ---------------------------------------------------------------------------------


def save_scoring(paths: Paths, campaign: Campaign, result: Propensity, scores: pd.DataFrame,
                 *, run_id: str | None, reasons: pd.DataFrame | None = None) -> None:
    """Replace the campaign's scores (and reasons) and append the scoring summary, in one
    transaction. `scores`: rank order with in_audience and in_holdout; `reasons`: the
    frame of `explain_audience`."""
    frame = scores.assign(campaign_id=campaign.campaign_id)
    frame = frame.assign(score=frame["score"].astype(float),
                         best_item=frame["best_item"].astype(object))[list(SCORE_COLUMNS)]
    summary = {**result.summary(), "campaign": campaign.to_row(), "run_id": run_id,
               "audience": int(frame["in_audience"].sum()),
               "holdout": int(frame["in_holdout"].sum()),
               "explained": 0 if reasons is None else len(reasons)}
    key = {"campaign_id": campaign.campaign_id}
    with write_transaction(paths) as con:
        con.execute(QUERIES["campaign_scores_delete"], key)
        con.register("new_campaign_scores", frame)
        con.execute(QUERIES["campaign_scores_insert"])
        con.unregister("new_campaign_scores")
        con.execute(QUERIES["campaign_reasons_delete"], key)
        if reasons is not None and len(reasons):
            rows = reasons.assign(campaign_id=campaign.campaign_id,
                                  reasons=[json.dumps(list(r)) for r in reasons["reasons"]])
            con.register("new_campaign_reasons", rows[list(REASON_COLUMNS)])
            con.execute(QUERIES["campaign_reasons_insert"])
            con.unregister("new_campaign_reasons")
        con.execute(QUERIES["campaign_scoring_insert"],
                    {**key, "scored_at": utc_now(), "run_id": run_id,
                     "summary": to_json(summary)})


def save_audience(paths: Paths, campaign: Campaign, flags: pd.DataFrame) -> None:
    """Store a new rule and its audience in one transaction. `flags`: user_pseudonym,
    in_audience, in_holdout of every scored customer. Reasons of customers no longer
    exported (out of the audience or in the holdout) are deleted."""
    key = {"campaign_id": campaign.campaign_id}
    with write_transaction(paths) as con:
        con.execute(QUERIES["campaign_rule_update"],
                    {**key, "rule": campaign.rule, "rule_value": float(campaign.rule_value)})
        con.register("new_audience_flags", flags[[USER, "in_audience", "in_holdout"]])
        con.execute(QUERIES["campaign_audience_update"], key)
        con.unregister("new_audience_flags")
        # Reasons exist for members only; a changed audience keeps those still in it.
        con.execute(QUERIES["campaign_reasons_delete_non_members"], key)


# --- hand-outs and backtests --------------------------------------------------------------------


def log_export(paths: Paths, campaign_id: str, *, rows: int, file_name: str,
               who: str | None = None) -> None:
    """Record an export: rows handed out, when, by whom, the file name (no directory)."""
    with write_transaction(paths) as con:
        con.execute(QUERIES["campaign_export_insert"],
                    {"campaign_id": campaign_id, "rows": int(rows), "exported_at": utc_now(),
                     "exported_by": who or current_user(),
                     "file_name": Path(file_name).name})


def log_activation(paths: Paths, *, export_file: str, export_sha256: str, rows_in: int,
                   rows_matched: int, out_file: str) -> None:
    """Record a re-identification (`activation_log`): file names only, no directories."""
    with write_transaction(paths) as con:
        con.execute(QUERIES["campaign_activation_insert"],
                    {"activated_at": utc_now(), "activated_by": current_user(),
                     "export_file": Path(export_file).name, "export_sha256": export_sha256,
                     "rows_in": int(rows_in), "rows_matched": int(rows_matched),
                     "out_file": Path(out_file).name})


def save_backtest(paths: Paths, report: Mapping[str, object]) -> None:
    """Append a report of `backtest` (stored as JSON)."""
    with write_transaction(paths) as con:
        con.execute(QUERIES["campaign_backtest_insert"],
                    {"campaign_id": report["campaign_id"], "created_at": utc_now(),
                     "cutoff": pd.Timestamp(report["cutoff"]).to_pydatetime(),
                     "horizon_days": int(report["horizon_days"]),
                     "run_id": report.get("run_id"), "result": to_json(report)})
