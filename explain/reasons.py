"""Reasons in words, for marketers, from field attributions.

"Mainly because of recent purchases of Northwind Socks and Trail Bottle; the promotion
adds a little; the price band counts against."

The sentence is built from the numbers and says no more than they show. Attributions
are grouped into parts: the history items that push the score up (one part, named by
their titles and what the customer did), the history items that push it down (one
part), and every context or item field on its own. A part's share is its |attribution|
over the sum of all |attributions| (the shares add up to 1). Then:

- "Mainly because of X"      only when X's share is at least 50% (MAINLY);
- "Partly because of X"      the largest part that raises the score, 15% to 50%
                             ("Slightly because of X" below 15%);
- "X also helps"             other raising parts with at least 15% (ALSO);
- "X adds a little"          raising parts from 5% (LITTLE) to below 15%;
- "X counts against"         lowering parts with at least 5% ("strongly" from 50%;
                             "count" for the history's plural nouns);
- parts under 5% are not mentioned.

Only attributions that are contributions to the score (field SHAP, leave-one-out) give
reasons; attention shows where the model looked and gives none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.recommender.fields import field_kind
from explain.result import Explanation

MAINLY = 0.5
ALSO = 0.15
LITTLE = 0.05
MAX_TITLES = 3
REASON_METHODS = ("shap-field", "leave-one-out")
NOUNS = {"purchased": "purchases of", "added to cart": "cart additions of",
         "viewed": "views of", "clicked": "clicks on", "reviewed": "reviews of"}
CONTEXT_LABELS = {"ctx_season": "the season", "ctx_day": "the day of the week",
                  "ctx_promotion": "the promotion"}
ITEM_LABELS = {"item_title": "the item's name", "item_category": "its category",
               "item_brand": "its brand", "item_price": "the price band",
               "item_description": "its description",
               "item_popularity": "how popular it is",
               "item_category_share": "how many recent items share its category",
               "item_co_visits": "how often others bought it with the recent items"}


@dataclass(frozen=True)
class ReasonPart:
    """One part of the sentence: what it is, its signed contribution and share."""

    label: str
    fields: tuple[str, ...]
    contribution: float  # sum of the parts' attributions (probability units)
    share: float  # |contribution| / sum of all |attributions|
    phrase: str  # "" when not mentioned (share below LITTLE)


def _value(text: str) -> str:
    return text.partition(": ")[2] or text


def _history_label(fields: list[tuple[str, str, float]], direction: str) -> str:
    """"recent purchases of A and B" from [(field, text, attribution)], largest first."""
    by_verb: dict[str, list[str]] = {}
    for _, text, _ in fields:
        verb, _, rest = text.partition(": ")
        title = (rest or text).split(" | ")[0].strip() or "an item"
        titles = by_verb.setdefault(verb.strip(), [])
        if title not in titles:
            titles.append(title)
    phrases, shown = [], 0
    total = sum(len(t) for t in by_verb.values())
    for verb, titles in by_verb.items():
        room = MAX_TITLES - shown
        if room <= 0:
            break
        names = titles[:room]
        shown += len(names)
        noun = NOUNS.get(verb, f"{verb} items:")
        phrases.append(f"{noun} {_and(names)}")
    label = _and(phrases)
    if total > shown:
        label += f" (and {total - shown} more)"
    return "recent " + label


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def reason_parts(e: Explanation) -> list[ReasonPart]:
    """The parts of the sentence, largest share first, with their phrases."""
    if e.method not in REASON_METHODS:
        raise ValueError(f"{e.method} attributions are not contributions to the score: "
                         f"reasons come from {' or '.join(REASON_METHODS)}.")
    phi = np.asarray(e.attributions, dtype=float)
    total = float(np.abs(phi).sum())
    if total <= 0:
        return []
    groups: list[tuple[str, list[tuple[str, str, float]]]] = []
    up = [(f, v, a) for f, v, a in zip(e.fields, e.values, phi, strict=True)
          if field_kind(f) == "history" and a > 0]
    down = [(f, v, a) for f, v, a in zip(e.fields, e.values, phi, strict=True)
            if field_kind(f) == "history" and a < 0]
    if up:
        groups.append((_history_label(sorted(up, key=lambda x: -x[2]), "up"), up))
    if down:
        groups.append((_history_label(sorted(down, key=lambda x: x[2]), "down"), down))
    for f, v, a in zip(e.fields, e.values, phi, strict=True):
        if field_kind(f) == "context" and a != 0:
            groups.append((f"{CONTEXT_LABELS.get(f, f)} ({_value(v)})", [(f, v, a)]))
        elif field_kind(f) == "item" and a != 0:
            label = ITEM_LABELS.get(f, f)
            if f in ("item_category", "item_brand", "item_price"):
                label += f" ({_value(v)})"
            elif f == "item_popularity":  # "popularity: 73 of 100"
                label += f" ({_value(v)} among items)"
            elif f == "item_category_share":  # "recent items in its category: 3 of 5"
                label += f" ({_value(v)})"
            elif f == "item_co_visits":  # "bought with history: 0.412"
                label += f" (score {_value(v)})"
            groups.append((label, [(f, v, a)]))
    parts = []
    for label, members in groups:
        contribution = float(sum(a for _, _, a in members))
        parts.append(ReasonPart(label=label, fields=tuple(f for f, _, _ in members),
                                contribution=contribution,
                                share=abs(contribution) / total, phrase=""))
    parts.sort(key=lambda p: -p.share)
    return _phrase(parts)


def _phrase(parts: list[ReasonPart]) -> list[ReasonPart]:
    out = []
    lead_done = False
    for part in parts:
        if part.contribution > 0 and not lead_done:
            phrase = (f"mainly because of {part.label}" if part.share >= MAINLY
                      else f"partly because of {part.label}" if part.share >= ALSO
                      else f"slightly because of {part.label}")
            lead_done = True
        elif part.share < LITTLE:
            phrase = ""
        elif part.contribution > 0:
            phrase = (f"{part.label} also helps" if part.share >= ALSO
                      else f"{part.label} adds a little")
        else:
            verb = "count" if part.label.startswith("recent ") else "counts"  # plural nouns
            phrase = (f"{part.label} {verb} strongly against" if part.share >= MAINLY
                      else f"{part.label} {verb} against")
        out.append(ReasonPart(part.label, part.fields, part.contribution, part.share, phrase))
    return out


def reason(e: Explanation) -> str:
    """One sentence saying why, from the attributions (see the module docstring)."""
    parts = reason_parts(e)
    if not parts:
        return "No single field moved this score: the model rates the item about the same " \
               "with or without any of them."
    said = [p.phrase for p in parts if p.phrase]
    lead = [p for p in parts if p.contribution > 0]
    if not lead:
        said.insert(0, "nothing in this profile raises the score")
    order = [s for s in said if "because of" in s or s.startswith("nothing")] + \
        [s for s in said if "because of" not in s and not s.startswith("nothing")]
    sentence = "; ".join(order)
    return sentence[0].upper() + sentence[1:] + "."


def campaign_explainer(model):
    """fields -> (top reason phrases, attribution per field): field SHAP on the input,
    phrased by `reason_parts` (largest share first, phrases under 5% left out). The
    `explainer_factory` that campaign scoring (`core.campaigns.score_campaign`) takes."""
    from explain.field_shap import FieldShapConfig, explain_fields

    config = FieldShapConfig()

    def explain(fields):
        explanation = explain_fields(model, fields, config=config)
        phrases = [p.phrase for p in reason_parts(explanation) if p.phrase]
        return phrases, explanation.by_field()

    return explain
