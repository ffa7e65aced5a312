"""Why audience members score high: the explainer's phrases and field-group attributions.

The explainer is passed in by the caller (the CLI or the dashboard page): this package
never imports the explanation package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from core.campaigns.definition import Campaign, campaign_input
from core.campaigns.tiers import item_records, recent_items
from core.recommender.co_visits import CoVisits
from core.recommender.fields import ModelInput, field_kind
from core.store.interactions import ITEM, USER, as_interactions

REASONS_PER_CUSTOMER = 3
FIELD_GROUPS = ("history", "context", "item")

# fields -> (reason phrases, best first; attribution per field name, probability units)
Explainer = Callable[[ModelInput], tuple[Sequence[str], Mapping[str, float]]]


def group_attributions(attributions: Mapping[str, float]) -> dict[str, float]:
    """Field attributions summed per group (history, context, item; core.recommender.fields)."""
    out = dict.fromkeys(FIELD_GROUPS, 0.0)
    for name, value in attributions.items():
        out[field_kind(name)] += float(value)
    return out


def explain_audience(scores: pd.DataFrame, interactions: pd.DataFrame,
                     catalogue: pd.DataFrame, campaign: Campaign, *, explainer: Explainer,
                     history_len: int, cap: int, co_visits: CoVisits | None = None,
                     with_share: bool = False) -> pd.DataFrame:
    """Reasons for the first `cap` audience members by rank (holdout and customers
    without history left out): the explainer's top `REASONS_PER_CUSTOMER` phrases on the
    customer's best target item, and the attributions per field group.

    Columns: user_pseudonym, item_id, reasons (list), history, context, item."""
    columns = [USER, ITEM, "reasons", *FIELD_GROUPS]
    chosen = scores[scores["in_audience"] & ~scores["in_holdout"]
                    & scores["best_item"].notna()].head(cap)
    if chosen.empty or cap <= 0:
        return pd.DataFrame(columns=columns)
    frame = as_interactions(interactions[interactions[USER].isin(set(chosen[USER]))])
    recent = recent_items(frame, chosen[USER], history_len)
    records = item_records(catalogue)
    rows = []
    for user, item in zip(chosen[USER], chosen["best_item"], strict=True):
        history = [(kind, records.get(i) or {ITEM: i}) for kind, i in recent[user]]
        fields = campaign_input(history, campaign, records.get(item) or {ITEM: item},
                                co_visits=co_visits, with_share=with_share)
        phrases, attributions = explainer(fields)
        rows.append({USER: user, ITEM: item,
                     "reasons": [str(p) for p in list(phrases)[:REASONS_PER_CUSTOMER]],
                     **group_attributions(attributions)})
    return pd.DataFrame(rows, columns=columns)
