"""What a campaign is: its target, context and audience rule, checked on creation.

A `Campaign` names a target (one item, a list of items, or a category), a context
(season, promotion on or off) and an audience rule (`top_n`, `top_pct` or `min_prob`).
`target_items` resolves the target against the catalogue; `campaign_input` builds the
model input of one customer and one target item in the campaign's context.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.recommender.co_visits import CoVisits
from core.recommender.fields import (
    Field,
    ModelInput,
    category_share,
    history_fields,
    item_fields,
)
from core.store.interactions import ITEM

TARGET_KINDS = ("item", "items", "category")
RULES = ("top_n", "top_pct", "min_prob")
SEASON_CHOICES = ("winter", "spring", "summer", "autumn", "any")


class CampaignError(RuntimeError):
    """A campaign cannot be created, scored or exported; the message says what to do."""


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        return f"uid {os.getuid()}"


def utc_now() -> datetime:
    """Naive UTC (DuckDB TIMESTAMP columns hold no zone)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_campaign_id() -> str:
    return f"cmp_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{os.urandom(3).hex()}"


def season_of(when: datetime | pd.Timestamp | None = None) -> str:
    from core.recommender.fields import SEASONS

    return SEASONS[(when or datetime.now(UTC)).month]


@dataclass(frozen=True)
class Campaign:
    """One campaign definition (table `campaigns`).

    target: item ids ('item': exactly one, 'items': one or more) or one category name.
    season: the context the model is asked about ('any' leaves the season out).
    rule / rule_value: 'top_n' (customers), 'top_pct' (percent of all scored customers,
        0-100] or 'min_prob' (calibrated probability, [0, 1]).
    holdout_share: share of the audience kept as an untreated control group, [0, 0.5].
    seed: the holdout's seed (same seed, same audience: same holdout).
    run_id: the ranking model (None: the latest complete run at scoring time).
    """

    campaign_id: str
    name: str
    target_kind: str
    target: tuple[str, ...]
    promotion: bool
    season: str
    rule: str
    rule_value: float
    holdout_share: float = 0.10
    seed: int = 0
    run_id: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    created_by: str = field(default_factory=current_user)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", tuple(str(t) for t in self.target))
        if not str(self.name).strip():
            raise CampaignError("the campaign needs a name.")
        if self.target_kind not in TARGET_KINDS:
            raise CampaignError(f"target_kind={self.target_kind!r}: choose one of "
                                f"{TARGET_KINDS}.")
        if not self.target or any(not t.strip() for t in self.target):
            raise CampaignError("the target is empty: name the item(s) or the category.")
        if self.target_kind in ("item", "category") and len(self.target) != 1:
            raise CampaignError(f"target_kind={self.target_kind!r} takes exactly one "
                                f"target, got {len(self.target)}: use 'items' for a list.")
        if self.season not in SEASON_CHOICES:
            raise CampaignError(f"season={self.season!r}: choose one of {SEASON_CHOICES}.")
        check_rule(self.rule, self.rule_value)
        if not 0.0 <= self.holdout_share <= 0.5:
            raise CampaignError(f"holdout_share={self.holdout_share}: choose a share in "
                                "[0, 0.5] (0.10 is usual).")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.campaign_id})"

    def to_row(self) -> dict[str, object]:
        """The row of table `campaigns`, one entry per column (target as a JSON list)."""
        row = asdict(self)
        row["target"] = json.dumps(list(self.target))
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Campaign:
        run_id = row.get("run_id")
        created = pd.Timestamp(row["created_at"]).to_pydatetime()
        return cls(campaign_id=str(row["campaign_id"]), name=str(row["name"]),
                   target_kind=str(row["target_kind"]),
                   target=tuple(json.loads(str(row["target"]))),
                   promotion=bool(row["promotion"]), season=str(row["season"]),
                   rule=str(row["rule"]), rule_value=float(row["rule_value"]),
                   holdout_share=float(row["holdout_share"]), seed=int(row["seed"]),
                   run_id=None if run_id is None or pd.isna(run_id) else str(run_id),
                   created_at=created, created_by=str(row["created_by"]))


def check_rule(rule: str, value: float) -> None:
    """Raise `CampaignError` unless `value` is valid for the audience `rule`."""
    if rule not in RULES:
        raise CampaignError(f"rule={rule!r}: choose one of {RULES}.")
    if rule == "top_n" and not (value >= 1 and float(value).is_integer()):
        raise CampaignError(f"top_n={value}: give a whole number of customers (>= 1).")
    if rule == "top_pct" and not 0 < value <= 100:
        raise CampaignError(f"top_pct={value}: give a percentage in (0, 100].")
    if rule == "min_prob" and not 0 <= value <= 1:
        raise CampaignError(f"min_prob={value}: give a probability in [0, 1].")


def new_campaign(*, name: str, target_kind: str, target: Sequence[str], promotion: bool,
                 season: str, rule: str, rule_value: float, holdout_share: float = 0.10,
                 seed: int = 0, run_id: str | None = None) -> Campaign:
    """A checked campaign with a fresh id, created now by the current OS user."""
    return Campaign(campaign_id=new_campaign_id(), name=name, target_kind=target_kind,
                    target=tuple(target), promotion=promotion, season=season, rule=rule,
                    rule_value=float(rule_value), holdout_share=holdout_share, seed=seed,
                    run_id=run_id)


def target_items(campaign: Campaign, catalogue: pd.DataFrame) -> np.ndarray:
    """The catalogue item ids the campaign targets (sorted)."""
    ids = catalogue[ITEM].astype(str)
    if campaign.target_kind == "category":
        chosen = ids[catalogue["category"].astype("string") == campaign.target[0]]
        what = f"category {campaign.target[0]!r}"
    else:
        chosen = ids[ids.isin(set(campaign.target))]
        what = f"item(s) {list(campaign.target)[:5]}"
    if chosen.empty:
        raise CampaignError(f"no catalogue item matches the target {what}: pick items or a "
                            "category that the warehouse holds (see the Campaigns page).")
    return np.array(sorted(set(chosen)), dtype=object)


def target_categories(campaign: Campaign, catalogue: pd.DataFrame) -> list[str]:
    """The categories of the target (the one named, or those of the target items)."""
    if campaign.target_kind == "category":
        return [campaign.target[0]]
    rows = catalogue[catalogue[ITEM].astype(str).isin(set(campaign.target))]
    return sorted(rows["category"].dropna().astype(str).unique())


def campaign_input(history: Sequence[tuple[str, Mapping[str, object]]], campaign: Campaign,
                   candidate: Mapping[str, object], *, co_visits: CoVisits | None = None,
                   with_share: bool = False) -> ModelInput:
    """The model input of one customer and one target item in the campaign's context:
    history fields (most recent first), season (unless 'any'), promotion, item fields
    (with the co-visit score against the history, for a model that reads co-visits, and
    the category share of the history, for a model that reads it). No weekday: a
    campaign does not have one."""
    context = []
    if campaign.season != "any":
        context.append(Field("ctx_season", "a", f"season: {campaign.season}"))
    context.append(Field("ctx_promotion", "a",
                         f"promotion: {'on' if campaign.promotion else 'off'}"))
    value = None if co_visits is None else co_visits.score(
        [str(record.get(ITEM)) for _, record in history], str(candidate.get(ITEM)))
    share = category_share(history, candidate) if with_share else None
    return (*history_fields(history), *context,
            *item_fields(candidate, co_visits=value, share=share))
