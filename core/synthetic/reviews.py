"""Reviews of a share of purchases: stars follow the experience, the text follows the
stars (phrase banks of the matching sentiment), and a share of texts carries the
reviewer's own name, e-mail address or phone number."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd

from core import columns as C
from core.synthetic.activity import Interactions
from core.synthetic.model import REVIEW_DELAY_DAYS, STAR_CUTS, GeneratorConfig
from core.synthetic.vocabulary import (
    ASPECT_BANKS,
    CATEGORIES,
    GENERAL_BANKS,
    GENERIC_ASPECTS,
    PII_TEMPLATES,
    SUMMARY_BANKS,
    CategorySpec,
)

# Sentiment of each aspect sentence: mostly the review's own, sometimes not.
# Rows: stars 1..5; columns: negative, neutral, positive.
_ASPECT_MIX = np.array([[0.95, 0.04, 0.01], [0.75, 0.17, 0.08], [0.25, 0.5, 0.25],
                        [0.08, 0.17, 0.75], [0.01, 0.04, 0.95]])
_REVIEW_CLASS = np.array([0, 0, 1, 2, 2])  # sentiment class of 1..5 stars


class _TextDraws(NamedTuple):
    """Per review (m): the random choices its text is built from."""

    review_class: np.ndarray  # (m,) 0 negative, 1 neutral, 2 positive
    n_aspects: np.ndarray  # (m,) 1 or 2 aspect sentences
    aspect_class: np.ndarray  # (m, 2) sentiment class of each aspect sentence
    picks: np.ndarray  # (m, 8) indices into the banks, taken modulo their length
    closing: np.ndarray  # (m,) bool, a second general sentence at the end
    pii: np.ndarray  # (m,) bool, the text carries the reviewer's personal data
    pii_kind: np.ndarray  # (m,) "name", "email" or "phone"
    pii_front: np.ndarray  # (m,) bool, that sentence comes first (else last)


def make_reviews(config: GeneratorConfig, people: dict[str, np.ndarray],
                 item_truth: dict[str, np.ndarray], ev_time: np.ndarray,
                 ev_inter: np.ndarray, events: pd.DataFrame, inter: Interactions,
                 rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reviews export (one customer's reviews in time order, customers in id order;
    none after the range), and `review_pii`: the rows whose text carries the reviewer's
    personal data (review_row, customer_id, kind, value). Needs the `id_*` identities
    in `people`."""
    reviewed, when = _reviewed_purchases(config, events, ev_time, rng)
    inter_idx = ev_inter[reviewed]
    item = inter.item[inter_idx]
    cust = events[C.CUSTOMER_ID].cat.codes.to_numpy()[reviewed]  # row in `people`
    experience = (1.0 * item_truth["quality"][item] + 0.5 * inter.fit[inter_idx]
                  + people["leniency"][cust] + rng.normal(0.0, 0.7, len(reviewed)))
    stars = 1 + np.searchsorted(np.array(STAR_CUTS), experience)  # (m,) 1..5
    draws = _text_draws(stars, config.pii_in_review_rate, rng)
    ids = {k.removeprefix("id_"): v for k, v in people.items() if k.startswith("id_")}

    texts, summaries, pii_rows = [], [], []
    for j in range(len(reviewed)):
        noun = item_truth["noun"][item[j]]
        sentences = _sentences(CATEGORIES[item_truth["category"][item[j]]], noun, draws, j)
        if draws.pii[j]:
            sentence, value = _pii_sentence(ids, cust[j], draws.pii_kind[j],
                                            draws.picks[j, 6])
            sentences.insert(0 if draws.pii_front[j] else len(sentences), sentence)
            pii_rows.append((j, draws.pii_kind[j], value))
        texts.append(" ".join(sentences))
        summary_bank = SUMMARY_BANKS[draws.review_class[j]]
        summaries.append(summary_bank[draws.picks[j, 7] % len(summary_bank)].format(noun=noun))

    reviews = pd.DataFrame({
        C.CUSTOMER_ID: people["customer_id"][cust],
        "customer_name": [ids["display"][c] for c in cust],
        C.ITEM_ID: item_truth["item_id"][item],
        C.RATING: stars.astype(np.int64),
        C.TIMESTAMP: np.datetime_as_string(when.astype("datetime64[s]"), unit="s"),
        C.SUMMARY: summaries,
        C.TEXT: texts,
    })
    return _in_export_order(reviews, when, cust, pii_rows)


def _reviewed_purchases(config: GeneratorConfig, events: pd.DataFrame, ev_time: np.ndarray,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Event rows of the purchases that get a review, and each review's time (seconds
    since the epoch): a few days after the purchase, before the range ends."""
    end_s = int(np.datetime64(config.end + timedelta(days=1), "s").astype(np.int64))
    purchase = np.flatnonzero(events[C.EVENT_TYPE].to_numpy() == "purchase")
    reviewed = purchase[rng.random(len(purchase)) < config.review_rate]
    delay = rng.integers(REVIEW_DELAY_DAYS[0] * 86400, REVIEW_DELAY_DAYS[1] * 86400,
                         len(reviewed))
    when = ev_time[reviewed] + delay
    keep = when < end_s  # reviews after the export's cut-off do not exist yet
    return reviewed[keep], when[keep]


def _text_draws(stars: np.ndarray, pii_rate: float, rng: np.random.Generator) -> _TextDraws:
    m = len(stars)
    n_aspects = 1 + (rng.random(m) < 0.6)
    aspect_class = np.stack([(np.cumsum(_ASPECT_MIX[stars - 1], axis=1)
                              < rng.random(m)[:, None]).sum(axis=1) for _ in range(2)], axis=1)
    picks = rng.integers(0, 1 << 30, (m, 8))
    closing = rng.random(m) < 0.5
    pii = rng.random(m) < pii_rate
    pii_kind = rng.choice(["name", "email", "phone"], size=m, p=[0.4, 0.3, 0.3])
    pii_front = rng.random(m) < 0.5
    return _TextDraws(review_class=_REVIEW_CLASS[stars - 1], n_aspects=n_aspects,
                      aspect_class=aspect_class, picks=picks, closing=closing, pii=pii,
                      pii_kind=pii_kind, pii_front=pii_front)


def _sentences(spec: CategorySpec, noun: str, draws: _TextDraws, j: int) -> list[str]:
    """Review `j`'s sentences without personal data: a general one that may name the
    noun, 1-2 on aspects of the category (or generic ones), maybe a closing one."""
    p, general = draws.picks[j], GENERAL_BANKS[draws.review_class[j]]
    aspects = spec.aspects + GENERIC_ASPECTS
    sentences = [general[p[0] % len(general)].format(noun=noun)]
    first_aspect = p[1] % len(aspects)
    for a in range(draws.n_aspects[j]):
        aspect = aspects[(first_aspect + a * (1 + p[2] % (len(aspects) - 1))) % len(aspects)]
        bank = ASPECT_BANKS[draws.aspect_class[j, a]]
        sentences.append(bank[p[3 + a] % len(bank)].format(aspect=aspect))
    if draws.closing[j]:
        extra = general[(p[0] + 1 + p[5] % (len(general) - 1)) % len(general)].format(noun=noun)
        sentences.append(extra)
    return sentences


def _pii_sentence(ids: dict[str, np.ndarray], c: int, kind: str, pick: int,
                  ) -> tuple[str, str]:
    """A sentence with customer `c`'s personal data of `kind`, and the exact string."""
    first, last = ids["first"][c], ids["last"][c]
    value = {"name": first, "email": ids["email"][c], "phone": ids["phone"][c]}[kind]
    template = PII_TEMPLATES[kind][pick % len(PII_TEMPLATES[kind])]
    if "{full}" in template:
        value = f"{first} {last}"
    return template.format(first=first, full=value, email=value, phone=value), value


def _in_export_order(reviews: pd.DataFrame, when: np.ndarray, cust: np.ndarray,
                     pii_rows: list[tuple[int, str, str]],
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reviews sorted by customer then time, and the personal-data rows pointing
    at the sorted rows (sorted by row)."""
    m = len(reviews)
    order = np.lexsort((when, cust))
    reviews = reviews.iloc[order].reset_index(drop=True)
    position = np.empty(m, dtype=np.int64)
    position[order] = np.arange(m)
    review_pii = pd.DataFrame(pii_rows, columns=["review_row", "kind", "value"])
    review_pii["review_row"] = position[review_pii["review_row"].to_numpy(dtype=np.int64)]
    review_pii.insert(1, "customer_id", reviews[C.CUSTOMER_ID].to_numpy()[
        review_pii["review_row"].to_numpy()])
    review_pii = review_pii.sort_values("review_row", kind="stable").reset_index(drop=True)
    return reviews, review_pii
