"""Helpers the pages share: how stored text, pseudonyms, event types and recorded
numbers are shown, and the hint of an empty warehouse. No Streamlit calls here."""

from __future__ import annotations

import math
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>:$])")


def md_escape(text: str) -> str:
    """Stored text shown literally in markdown (no links, emphasis or directives)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def short(pseudonym: str) -> str:
    """'u_3fa9c2d1…8e41b0': enough to tell pseudonyms apart in a list."""
    return pseudonym if len(pseudonym) <= 22 else f"{pseudonym[:12]}…{pseudonym[-6:]}"


def pretty(event_type: str) -> str:
    """An event type as read: "add_to_cart" reads "add to cart"."""
    return event_type.replace("_", " ")


def number(value: object, spec: str = "", missing: str = "—") -> str:
    """A recorded value as shown: `missing` for None or NaN, "∞" for an infinite float
    (a non-private run's ε), else `format(value, spec)` (`str` without a spec)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return format(value, spec) if spec else str(value)


def epsilon(value: object) -> str:
    """An ε as shown: three decimals, "∞" without differential privacy, "—" when
    missing."""
    return number(value, ".3f")


def ingest_hint(what: str = "data") -> str:
    """What to run when the warehouse holds no `what` yet."""
    return (f"No {what} yet. Run `make run` (demo data) or `clearmark ingest <file>`, then "
            "reload this page.")
