"""The customers' activity: sessions over time, interactions (which item, how far down
the funnel) and the funnel events with their timestamps.

All steps are vectorized over customers and draw from the caller's random generator in
a fixed order. Times are seconds since the epoch, days are indices into the calendar.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from core import columns as C
from core.synthetic.model import (
    CANDIDATES,
    EVENT_GAPS_S,
    EVENTS_PER_INTERACTION,
    FUNNEL,
    FUNNEL_TYPES,
    HOURS_WEEKDAY,
    HOURS_WEEKEND,
    NOUNS_PER_CATEGORY,
    P_COMPLEMENT,
    P_EXPLORE,
    P_NEW_SESSION,
    P_REVISIT,
    P_SAME_KIND,
    P_STAY,
    SESSION_GAP_S,
    STYLE_WEIGHT,
    GeneratorConfig,
)
from core.synthetic.timeline import Calendar
from core.synthetic.vocabulary import CATEGORIES, CATEGORY_NAMES, COMPLEMENTS

_SEASON = np.array([c.season for c in CATEGORIES]).T  # (12, categories)
_COMPLEMENT = np.array([CATEGORY_NAMES.index(COMPLEMENTS[c]) for c in CATEGORY_NAMES])


class Sessions(NamedTuple):
    """Interactions (N) grouped into sessions (S) of customers (n)."""

    inter_cust: np.ndarray  # (N,) customer of each interaction, sorted by customer then time
    inter_sess: np.ndarray  # (N,) session of each interaction
    inter_new: np.ndarray  # (N,) bool, first interaction of its session
    sess_cust: np.ndarray  # (S,)
    sess_start: np.ndarray  # (S,) seconds since epoch, increasing within customer
    sess_day: np.ndarray  # (S,) day index
    first_active: np.ndarray  # (n,) day index
    last_active: np.ndarray  # (n,) day index


class Interactions(NamedTuple):
    """Per interaction (N): the item and how far down the funnel it went."""

    item: np.ndarray  # (N,)
    clicked: np.ndarray  # (N,) bool
    carted: np.ndarray
    bought: np.ndarray
    fit: np.ndarray  # (N,) log price fit of the item for the customer (<= 0)


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's group, for rows sorted by group."""
    new = np.ones(len(groups), dtype=bool)
    new[1:] = groups[1:] != groups[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(len(groups)), 0))


# --- Sessions -------------------------------------------------------------------------


def make_sessions(config: GeneratorConfig, cal: Calendar, people: dict[str, np.ndarray],
                  rng: np.random.Generator) -> Sessions:
    """Each customer's active window, interactions (at least 2) and sessions, with
    session start times increasing within a customer."""
    first_active, last_active = _active_windows(cal, people["activity"], rng)
    n_inter = _interaction_counts(config, cal, people["activity"], first_active,
                                  last_active, rng)
    inter_cust = np.repeat(np.arange(config.customers), n_inter)  # (N,)
    n_all = len(inter_cust)
    inter_new = rng.random(n_all) < P_NEW_SESSION
    inter_new[_group_starts(inter_cust) == np.arange(n_all)] = True
    sess_cust = inter_cust[inter_new]  # (S,)
    day = _session_days(cal, people["promo_sensitivity"][sess_cust],
                        first_active[sess_cust], last_active[sess_cust] + 1, rng)
    start = _session_starts(cal, day, sess_cust, rng)
    return Sessions(inter_cust=inter_cust, inter_sess=np.cumsum(inter_new) - 1,
                    inter_new=inter_new, sess_cust=sess_cust, sess_start=start,
                    sess_day=(start - cal.start_s) // 86400, first_active=first_active,
                    last_active=last_active)


def _active_windows(cal: Calendar, activity: np.ndarray, rng: np.random.Generator,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """First and last active day per customer. Some are there from the start, the rest
    arrive over time (more later: the shop grows); active customers stay longer."""
    n, d = len(activity), cal.days
    early = rng.random(n) < 0.3
    arrives = np.where(early, 0, np.floor(d * rng.random(n) ** 0.8))
    lifetime = rng.exponential(np.where(early, 900.0, 540.0)) * np.sqrt(activity)
    first_active = arrives.astype(np.int64)
    last_active = np.minimum(d - 1, first_active + 14 + lifetime.astype(np.int64))
    return first_active, last_active


def _interaction_counts(config: GeneratorConfig, cal: Calendar, activity: np.ndarray,
                        first_active: np.ndarray, last_active: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Interactions per customer: 2 + Poisson of the heavy-tailed activity times the
    (sublinear) shopping time in the window, scaled to the configured mean; at most 20
    a day of the window, so that the sessions fit in it."""
    mass = cal.cum_all[last_active + 1] - cal.cum_all[first_active]
    exposure = activity * (mass / mass.mean()) ** 0.7
    mean_inter = config.events_per_customer / EVENTS_PER_INTERACTION
    extra = rng.poisson(exposure / exposure.mean() * max(mean_inter - 2.0, 0.0))
    return 2 + np.minimum(extra, 20 * (last_active - first_active + 1) - 2)


def _session_days(cal: Calendar, promo_sensitivity: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A day in [lo, hi) per session by the calendar's intensity; promotion-sensitive
    customers come back during promotions more often."""
    n_sess = len(lo)
    use_promo = rng.random(n_sess) < 0.3 * promo_sensitivity
    use_promo &= cal.cum_promo[hi] > cal.cum_promo[lo]
    u = rng.random(n_sess)
    day_all = _inverse_cumulative(cal.cum_all, lo, hi, u)
    day_promo = _inverse_cumulative(cal.cum_promo, lo, hi, u)
    return np.clip(np.where(use_promo, day_promo, day_all), lo, hi - 1)


def _inverse_cumulative(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        u: np.ndarray) -> np.ndarray:
    """The day at quantile `u` of the intensity whose cumulative sum is `cum`, within
    days [lo, hi)."""
    return np.searchsorted(cum, cum[lo] + u * (cum[hi] - cum[lo]), side="right") - 1


def _session_starts(cal: Calendar, day: np.ndarray, sess_cust: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Start second of each session on its day by the hour-of-day profile; sessions are
    exchangeable within a customer, so the starts are sorted per customer."""
    hours_wd = np.cumsum(HOURS_WEEKDAY) / HOURS_WEEKDAY.sum()
    hours_we = np.cumsum(HOURS_WEEKEND) / HOURS_WEEKEND.sum()
    uh = rng.random(len(day))
    hour = np.where(cal.weekend[day], np.searchsorted(hours_we, uh, side="right"),
                    np.searchsorted(hours_wd, uh, side="right"))
    start = (cal.start_s + day * 86400 + np.minimum(hour, 23) * 3600
             + rng.integers(0, 3600, len(day)))
    return start[np.lexsort((start, sess_cust))]


# --- Interactions ---------------------------------------------------------------------


class _ItemDraws(NamedTuple):
    """Samplers by popularity x quality: within a category, within a noun group (the
    same kind of product, e.g. tents), or from the whole catalogue."""

    cat_order: np.ndarray
    cat_cum: np.ndarray
    noun_order: np.ndarray
    noun_cum: np.ndarray
    noun_size: np.ndarray
    global_cum: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _group_sampler(groups: np.ndarray, weight: np.ndarray, n_groups: int,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by group, and one cumulative weight array in which group g spans
    (g, g + 1]: `order[searchsorted(cum, g + u, "right")]` draws from group g by weight
    for u in [0, 1). Also each group's size (an empty group cannot be drawn from)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    cum_w = np.concatenate([[0.0], np.cumsum(weight[order])])
    first = np.searchsorted(sorted_groups, np.arange(n_groups))
    stop = np.searchsorted(sorted_groups, np.arange(n_groups), side="right")
    base, total = cum_w[first], cum_w[stop] - cum_w[first]
    cum = sorted_groups + (cum_w[1:] - base[sorted_groups]) / total[sorted_groups]
    filled = stop > first
    cum[stop[filled] - 1] = np.arange(n_groups)[filled] + 1.0  # exact segment ends
    return order, cum, stop - first


def _item_draws(items: dict[str, np.ndarray]) -> _ItemDraws:
    weight = items["popularity"] * np.exp(0.5 * items["quality"])
    k = len(CATEGORIES)
    cat_order, cat_cum, _ = _group_sampler(items["category"], weight, k)
    noun_order, noun_cum, noun_size = _group_sampler(items["noun_group"], weight,
                                                    k * NOUNS_PER_CATEGORY)
    return _ItemDraws(cat_order=cat_order, cat_cum=cat_cum, noun_order=noun_order,
                      noun_cum=noun_cum, noun_size=noun_size,
                      global_cum=np.cumsum(weight) / weight.sum())


def simulate_interactions(cal: Calendar, people: dict[str, np.ndarray],
                          items: dict[str, np.ndarray], s: Sessions,
                          rng: np.random.Generator, bar: tqdm) -> Interactions:
    """Choose each interaction's item and run its funnel, one step at a time for all
    customers at once (step t = every customer's t-th interaction)."""
    n_all = len(s.inter_cust)
    draws = _item_draws(items)
    step = np.arange(n_all) - _group_starts(s.inter_cust)
    order = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[order], np.arange(step.max() + 2))
    done = Interactions(item=np.zeros(n_all, dtype=np.int64),
                        clicked=np.zeros(n_all, dtype=bool), carted=np.zeros(n_all, dtype=bool),
                        bought=np.zeros(n_all, dtype=bool), fit=np.zeros(n_all))
    for t in range(len(bounds) - 1):
        rows = order[bounds[t]:bounds[t + 1]]
        cust = s.inter_cust[rows]
        day = s.sess_day[s.inter_sess[rows]]
        cat, noun, revisit = _where_to_look(t, rows, cust, cal.month[day], people, items, s,
                                            done, draws.noun_size, rng)
        chosen = _choose_items(cat, noun, cust, people, items, draws, rng)
        if t > 0:
            chosen = np.where(revisit, done.item[rows - 1], chosen)
        _run_funnel(rows, chosen, cust, cal.promo[day], people, items, done, rng)
        bar.set_postfix_str(f"interactions: step {t}, {len(rows):,} customers", refresh=False)
    return done


def _where_to_look(t: int, rows: np.ndarray, cust: np.ndarray, month: np.ndarray,
                   people: dict[str, np.ndarray], items: dict[str, np.ndarray], s: Sessions,
                   done: Interactions, noun_size: np.ndarray, rng: np.random.Generator,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Category, noun group (-1: the whole category) and whether to revisit the previous
    item, for step `t`'s `rows`. A category by preference x season; after a purchase
    often the complement (category, or the matching kind of product); within a session
    often the same category or the same kind of product; a clicked item unbought is
    often revisited."""
    m = len(rows)
    item_cat, item_noun = items["category"], items["noun_group"]
    cw = np.cumsum(people["pref"][cust] * _SEASON[month], axis=1)  # (m, k)
    cat = (cw < (rng.random(m) * cw[:, -1])[:, None]).sum(axis=1)
    noun = np.full(m, -1)
    mode, narrow = rng.random(m), rng.random(m) < P_SAME_KIND
    revisit = np.zeros(m, dtype=bool)
    if t == 0:
        return cat, noun, revisit
    prev = rows - 1
    prev_item = done.item[prev]
    prev_cat, prev_noun = item_cat[prev_item], item_noun[prev_item]
    bought = done.bought[prev]
    comp = bought & (mode < P_COMPLEMENT)
    stay = ~bought & (s.inter_sess[prev] == s.inter_sess[rows]) & (mode < P_STAY)
    revisit = done.clicked[prev] & ~bought & (mode >= 1.0 - P_REVISIT)
    comp_noun = _COMPLEMENT[prev_cat] * NOUNS_PER_CATEGORY + prev_noun % NOUNS_PER_CATEGORY
    cat = np.where(comp, _COMPLEMENT[prev_cat], np.where(stay, prev_cat, cat))
    noun = np.where(comp & narrow, comp_noun, np.where(stay & narrow, prev_noun, -1))
    noun = np.where((noun >= 0) & (noun_size[np.maximum(noun, 0)] > 0), noun, -1)
    return cat, noun, revisit


def _choose_items(cat: np.ndarray, noun: np.ndarray, cust: np.ndarray,
                  people: dict[str, np.ndarray], items: dict[str, np.ndarray],
                  draws: _ItemDraws, rng: np.random.Generator) -> np.ndarray:
    """One item per row: candidates by popularity x quality from the noun group (or the
    category), the best price fit + taste match + Gumbel noise wins; some exploration
    of the whole catalogue by popularity x quality."""
    m, n_items = len(cat), len(items["quality"])
    level, sens, taste = people["price_level"], people["price_sensitivity"], people["taste"]
    u = rng.random((m, CANDIDATES))
    by_cat = draws.cat_order[np.minimum(np.searchsorted(draws.cat_cum, cat[:, None] + u,
                                                        "right"), n_items - 1)]
    by_noun = draws.noun_order[np.minimum(np.searchsorted(draws.noun_cum, noun[:, None] + u,
                                                          "right"), n_items - 1)]
    cand = np.where((noun >= 0)[:, None], by_noun, by_cat)  # (m, candidates)
    cand_fit = -0.5 * sens[cust, None] * (items["price_z"][cand] - level[cust, None]) ** 2
    cand_taste = np.einsum("md,mcd->mc", taste[cust], items["style"][cand])
    score = cand_fit + STYLE_WEIGHT * cand_taste + rng.gumbel(size=(m, CANDIDATES))
    chosen = cand[np.arange(m), np.argmax(score, axis=1)]
    explore = rng.random(m) < P_EXPLORE
    anywhere = np.minimum(np.searchsorted(draws.global_cum, rng.random(m), "right"),
                          n_items - 1)
    return np.where(explore, anywhere, chosen)


def _run_funnel(rows: np.ndarray, chosen: np.ndarray, cust: np.ndarray, promo: np.ndarray,
                people: dict[str, np.ndarray], items: dict[str, np.ndarray],
                done: Interactions, rng: np.random.Generator) -> None:
    """Run click -> add_to_cart -> purchase on the chosen items and record the outcome
    (and the price fit) in `done` at `rows`."""
    sens, level = people["price_sensitivity"], people["price_level"]
    item_fit = -0.5 * sens[cust] * (items["price_z"][chosen] - level[cust]) ** 2
    affinity = np.clip(np.log(len(CATEGORIES)
                              * people["pref"][cust, items["category"][chosen]]), -2.0, 1.5)
    taste_match = np.einsum("md,md->m", people["taste"][cust], items["style"][chosen])
    appeal = (0.8 * items["quality"][chosen] + 0.8 * item_fit + 0.5 * affinity
              + 0.3 * taste_match)
    promo_effect = promo * people["promo_sensitivity"][cust]
    passed = []
    for name in ("click", "add_to_cart", "purchase"):
        base, a, b = FUNNEL[name]
        passed.append(rng.random(len(rows)) < _sigmoid(base + a * appeal + b * promo_effect))
    done.item[rows], done.fit[rows] = chosen, item_fit
    done.clicked[rows] = passed[0]
    done.carted[rows] = passed[0] & passed[1]
    done.bought[rows] = passed[0] & passed[1] & passed[2]


# --- Events ---------------------------------------------------------------------------


def make_events(config: GeneratorConfig, cal: Calendar, customer_ids: np.ndarray,
                item_ids: np.ndarray, s: Sessions, inter: Interactions,
                rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Expand interactions into funnel events with increasing timestamps per customer,
    customers in id order and all inside the range; also each event's time (seconds
    since the epoch) and interaction."""
    n_ev = 1 + inter.clicked.astype(np.int64) + inter.carted + inter.bought  # (N,)
    ev_inter = np.repeat(np.arange(len(n_ev)), n_ev)  # (E,)
    pos = np.arange(len(ev_inter)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)  # 0..3 = type
    ev_sess = s.inter_sess[ev_inter]
    offset = _offsets_in_session(pos, s.inter_new[ev_inter], ev_sess, rng)
    start = _session_starts_apart(s, ev_sess, offset)
    ev_cust = s.inter_cust[ev_inter]
    time_s = _fit_in_range(cal, config.customers, ev_cust, start[ev_sess] + offset)

    day = (time_s - cal.start_s) // 86400
    # Categoricals: a million rows of repeated ids build and write far faster.
    events = pd.DataFrame({
        C.CUSTOMER_ID: pd.Categorical.from_codes(ev_cust, customer_ids),
        C.ITEM_ID: pd.Categorical.from_codes(inter.item[ev_inter], item_ids),
        C.EVENT_TYPE: pd.Categorical.from_codes(pos, FUNNEL_TYPES),
        C.TIMESTAMP: np.datetime_as_string(time_s.astype("datetime64[s]"), unit="s"),
        C.PROMOTION: cal.promo[day],
    })
    return events, time_s, ev_inter


def _offsets_in_session(pos: np.ndarray, opens: np.ndarray, ev_sess: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """(E,) seconds from the session's start to each event: a random gap before each
    event by its funnel position `pos`; a session opens with its first view."""
    lo = np.array([g[0] for g in EVENT_GAPS_S])[pos]
    hi = np.array([g[1] for g in EVENT_GAPS_S])[pos]
    gap = lo + np.floor(rng.random(len(pos)) * (hi - lo)).astype(np.int64)
    gap[(pos == 0) & opens] = 0
    cum = np.cumsum(gap)
    return cum - cum[_group_starts(ev_sess)]


def _session_starts_apart(s: Sessions, ev_sess: np.ndarray, offset: np.ndarray,
                          ) -> np.ndarray:
    """(S,) session starts pushed so that sessions of one customer do not overlap: each
    begins at least SESSION_GAP_S after the previous one ends (a running max within
    customer)."""
    last_of_sess = np.r_[np.flatnonzero(np.diff(ev_sess)), len(ev_sess) - 1]
    span = offset[last_of_sess] + SESSION_GAP_S  # (S,)
    before = np.cumsum(span) - span
    before -= before[_group_starts(s.sess_cust)]
    key = s.sess_start - before  # start_i = before_i + max over earlier j of key_j
    shift = key.min()
    big = int(key.max() - shift) + 1  # customers' blocks cannot mix in the running max
    running = np.maximum.accumulate(key - shift + s.sess_cust * big) - s.sess_cust * big
    return running + shift + before


def _fit_in_range(cal: Calendar, n_customers: int, ev_cust: np.ndarray,
                  time_s: np.ndarray) -> np.ndarray:
    """Event times with every customer whose last event runs past the range moved back
    as a whole."""
    cust_last = np.zeros(n_customers, dtype=np.int64)
    np.maximum.at(cust_last, ev_cust, time_s)
    overflow = np.maximum(cust_last - (cal.end_s - 1), 0)
    time_s = time_s - overflow[ev_cust]
    assert time_s.min() >= cal.start_s, "a customer was pushed before the start"
    return time_s
