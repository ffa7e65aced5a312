"""What to generate (`GeneratorConfig`) and the fixed parameters of the behaviour model.

The constants are recorded in `truth/truth.json` where evaluation needs them; times are
in seconds unless the name says days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from core.synthetic.vocabulary import CATEGORIES

FUNNEL = {  # logit = base + appeal coefficient * appeal + promo coefficient * promo effect
    "click": (-0.7, 0.7, 0.6),
    "add_to_cart": (-0.7, 0.7, 0.4),
    "purchase": (-0.3, 0.6, 2.2),
}
FUNNEL_TYPES = ("view", "click", "add_to_cart", "purchase")  # event types, funnel order
P_NEW_SESSION = 0.6  # an interaction starts a new session
P_COMPLEMENT = 0.4  # after a purchase, next interaction in the complement category
P_STAY = 0.5  # within a session, stay in the previous interaction's category
P_SAME_KIND = 0.5  # of those two: the same kind of product (noun), not just the category
P_REVISIT = 0.35  # after a click without purchase, come back to that item
P_EXPLORE = 0.07  # any item, by popularity
CANDIDATES = 16  # items sampled by popularity x quality before the personal choice
NOUNS_PER_CATEGORY = 12
assert all(len(c.nouns) == NOUNS_PER_CATEGORY for c in CATEGORIES)  # noun groups index them
STYLE_DIM = 2  # latent taste: customers' taste vector . items' style vector
STYLE_WEIGHT = 0.8  # of the taste match in the choice among candidates
# Mean funnel events per interaction under FUNNEL; turns events_per_customer into
# interactions.
EVENTS_PER_INTERACTION = 1.98
STAR_CUTS = (-0.15, 0.23, 0.68, 1.34)  # experience thresholds for 2, 3, 4, 5 stars
SESSION_GAP_S = 300  # least gap between the end of a session and the next one
EVENT_GAPS_S = ((15, 240), (3, 90), (10, 300), (30, 600))  # before view/click/cart/buy
REVIEW_DELAY_DAYS = (2, 21)

# Daily session intensity: weekday x month x trend x promotion boost.
WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 0.9, 1.2, 1.3])  # Monday first
MONTH = np.array([0.95, 0.85, 0.9, 0.9, 0.9, 0.9, 0.95, 0.95, 0.95, 1.0, 1.25, 1.35])
TREND_PER_YEAR = 0.25
PROMO_DAY_BOOST = 1.6
# Relative session starts per hour of the day, midnight first.
HOURS_WEEKDAY = np.array([0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.4, 0.8, 1.0, 1.0, 1.0, 1.1,
                          1.4, 1.3, 1.0, 1.0, 1.0, 1.1, 1.5, 1.9, 2.2, 2.1, 1.5, 0.8])
HOURS_WEEKEND = np.array([0.5, 0.3, 0.15, 0.1, 0.08, 0.1, 0.2, 0.4, 0.8, 1.2, 1.5, 1.6,
                          1.6, 1.5, 1.5, 1.5, 1.4, 1.4, 1.5, 1.7, 1.9, 1.8, 1.3, 0.8])


def default_item_count(customers: int) -> int:
    """Catalogue size that suits a number of customers."""
    return max(200, customers // 50)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. `events_per_customer` is a mean (activity is heavy-tailed;
    everyone views at least 2 items, so small means come out higher). `items` has no
    automatic default from `customers`: see `default_item_count`. Invalid values raise
    `ValueError` naming the value."""

    customers: int = 2000
    items: int = 400
    events_per_customer: float = 10.0
    review_rate: float = 0.3  # share of purchases that get a review (before the cut-off)
    pii_in_review_rate: float = 0.05  # share of reviews naming the reviewer's name/e-mail/phone
    start: date = date(2023, 1, 1)
    end: date = date(2025, 12, 31)  # inclusive
    seed: int = 0

    def __post_init__(self) -> None:
        least_items = 2 * len(CATEGORIES)
        if self.customers < 1:
            raise ValueError(f"customers={self.customers}: need at least 1 customer.")
        if self.items < least_items:
            raise ValueError(f"items={self.items}: need at least {least_items} items (2 per "
                             f"category); try items={default_item_count(self.customers)}.")
        if self.events_per_customer < 2:
            raise ValueError(f"events_per_customer={self.events_per_customer}: every customer "
                             "has at least 2 events, so the mean must be at least 2.")
        for name in ("review_rate", "pii_in_review_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: a share, must lie in [0, 1].")
        if self.end <= self.start:
            raise ValueError(f"start={self.start} is not before end={self.end}: swap them.")
