"""The customers export: identities (names, e-mail addresses on the reserved
`example.*` domains, phone numbers from fictional ranges, review display names) and
sign-up dates before each customer's first event."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from core import columns as C
from core.synthetic.activity import Sessions
from core.synthetic.model import GeneratorConfig
from core.synthetic.vocabulary import (
    CALLING_CODES,
    CITIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    City,
)


def _ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits of `text`, accents folded."""
    folded = text.translate(str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
                                           "ł": "l"}))
    folded = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


_FIRST_SLUGS = tuple(_ascii_slug(x) for x in FIRST_NAMES)
_LAST_SLUGS = tuple(_ascii_slug(x) for x in LAST_NAMES)


def make_customers_table(config: GeneratorConfig, people: dict[str, np.ndarray],
                         s: Sessions, ev_time: np.ndarray, ev_inter: np.ndarray,
                         rng: np.random.Generator) -> pd.DataFrame:
    """The customers export; also adds the identities to `people` as `id_first`,
    `id_last`, `id_email`, `id_phone` and `id_display` (for reviews)."""
    ids = _identities(people, rng)
    people.update({f"id_{k}": np.array(v, dtype=object) for k, v in ids.items()})
    n = config.customers
    first_ts = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, s.inter_cust[ev_inter], ev_time)
    # Signed up at least a day before the first event; customers already there when the
    # range starts signed up long before.
    early = s.first_active == 0
    wait = np.floor(rng.exponential(np.where(early, 700.0, 90.0))).astype(np.int64)
    signup = (first_ts // 86400 - 1 - wait).astype("datetime64[D]")
    return pd.DataFrame({
        C.CUSTOMER_ID: people["customer_id"],
        C.NAME: [f"{f} {g}" for f, g in zip(ids["first"], ids["last"], strict=True)],
        C.EMAIL: ids["email"],
        C.PHONE: ids["phone"],
        C.AGE: people["age"],
        C.CITY: [CITIES[i].name for i in people["city"]],
        C.SIGNUP_DATE: np.datetime_as_string(signup, unit="D"),
    })


def _identities(people: dict[str, np.ndarray], rng: np.random.Generator,
                ) -> dict[str, list[str]]:
    """First and last names, unique e-mail addresses, phone numbers and review display
    names, one each per customer."""
    first = [FIRST_NAMES[i] for i in people["first"]]
    last = [LAST_NAMES[i] for i in people["last"]]
    email, number = _emails(people["first"], people["last"], rng)
    n = len(first)
    digits = rng.integers(0, 10, (n, 8))
    style = rng.integers(0, 1 << 20, n)
    phone = [_phone(CITIES[people["city"][i]], digits[i], style[i]) for i in range(n)]
    display = _display_names(people["first"], first, last, number, rng)
    return {"first": first, "last": last, "email": email, "phone": phone, "display": display}


def _emails(first_of: np.ndarray, last_of: np.ndarray, rng: np.random.Generator,
            ) -> tuple[list[str], np.ndarray]:
    """Unique e-mail addresses in common local-part patterns (a repeated one gets `.2`,
    `.3` ...), and the number drawn per customer (also used in handles)."""
    n = len(first_of)
    pattern = rng.integers(0, 7, n)
    number = rng.integers(1, 100, n)
    year = rng.integers(60, 100, n) % 100
    domain = rng.integers(0, len(EMAIL_DOMAINS), n)
    locals_ = []
    for i in range(n):
        f, g = _FIRST_SLUGS[first_of[i]], _LAST_SLUGS[last_of[i]]
        locals_.append((f"{f}.{g}", f"{f}{g}", f"{f[0]}{g}", f"{f}_{g}", f"{g}.{f}",
                        f"{f}.{g}{year[i]:02d}", f"{f}{number[i]}")[pattern[i]])
    local_s = pd.Series([f"{loc}@{EMAIL_DOMAINS[d]}" for loc, d in zip(locals_, domain,
                                                                        strict=True)])
    dup = local_s.groupby(local_s).cumcount().to_numpy()  # the 2nd, 3rd ... get a number
    email = [e if r == 0 else e.replace("@", f".{r + 1}@", 1)
             for e, r in zip(local_s, dup, strict=True)]
    return email, number


def _phone(city: City, digits: np.ndarray, style: int) -> str:
    """One phone number of `city` in one of its country's common formats."""
    it = iter(digits)
    groups = "".join(str(next(it)) if ch == "#" else ch for ch in city.phone).split(" ")
    cc = CALLING_CODES[city.country]
    if city.country in ("US", "CA"):
        a, b, c = groups
        forms = (f"+1 {a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}",
                 f"+1 ({a}) {b}-{c}", f"1-{a}-{b}-{c}", f"+1{a}{b}{c}")
    elif city.country in ("ES", "IT"):  # no trunk prefix
        forms = (f"+{cc} " + " ".join(groups), " ".join(groups), f"+{cc}" + "".join(groups))
    else:
        national = "0" + " ".join(groups)
        forms = [f"+{cc} " + " ".join(groups), national, f"+{cc}" + "".join(groups)]
        if city.country in ("UK", "DE"):
            forms.append(f"+{cc} (0)" + " ".join(groups))
        if city.country == "DE":
            forms.append(f"0{groups[0]}/{''.join(groups[1:])}")
        if city.country == "FR":
            forms.append("0" + ".".join(groups))
        if city.country == "NL":
            forms.append(f"0{groups[0]}-{''.join(groups[1:])}")
        if city.country == "AU":
            forms.append(f"(0{groups[0]}) " + " ".join(groups[1:]))
    return forms[style % len(forms)]


def _display_names(first_of: np.ndarray, first: list[str], last: list[str],
                   number: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Review display names, as shops show them: full, "First L.", first only, handle."""
    display_kind = rng.choice(4, size=len(first), p=[0.5, 0.3, 0.1, 0.1])
    display = []
    for i, kind in enumerate(display_kind):
        if kind == 0:
            display.append(f"{first[i]} {last[i]}")
        elif kind == 1:
            display.append(f"{first[i]} {last[i][0].upper()}.")
        elif kind == 2:
            display.append(first[i])
        else:
            display.append(f"{_FIRST_SLUGS[first_of[i]]}{number[i]}")
    return display
