"""Deterministic labelled sample for measuring ``privacy.scrub``.

``build_labelled_sample`` plants personal data of every type in ``PII_TYPES`` into
review-like sentences, in varied formats (international and national phone formats, grouped
and contiguous cards, spaced and compact IBANs, IPv4 and compressed IPv6, obfuscated
e-mails, names in any case) and positions (start, middle, end, next to punctuation, in
brackets and quotes), and adds clean texts full of numbers that are not personal data
(prices, years, dates, model numbers, quantities, percentages, ISBNs, order numbers,
version strings). Every planted value is recorded with its span and type, so recall and
false positives can be computed without a person in the loop.

``build_typical_reviews`` makes the throughput corpus: review-length texts where most
contain nothing to scrub, as in the demo data.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from privacy.scrub import PII_TYPES, luhn_valid


@dataclass(frozen=True)
class PlantedSpan:
    """``text[start:end] == value`` is personal data of type ``kind``."""

    start: int
    end: int
    kind: str
    value: str


@dataclass(frozen=True)
class LabelledText:
    """A text, the personal data planted in it, and the names known for its author."""

    text: str
    spans: tuple[PlantedSpan, ...]
    names: tuple[str, ...] = ()

    @property
    def is_clean(self) -> bool:
        return not self.spans


PER_TYPE = 80
MULTI = 60
CLEAN = 260

# fmt: off
_FIRST = ("John", "Maria", "Wei", "Aisha", "Oliver", "Sofia", "Liam", "Priya", "Lucas",
          "Hannah", "Mateo", "Chloe", "Ethan", "Fatima", "Noah", "Ingrid", "Rahul", "Emma",
          "Tomasz", "Yuki", "Jean-Luc", "Siobhan", "Carlos", "Amelia", "Dmitri", "Zoe")
_LAST = ("Smith", "Garcia", "Chen", "Okafor", "Johansson", "Rossi", "Patel", "Nguyen",
         "Kowalski", "Dubois", "Schmidt", "O'Brien", "Tanaka", "Haddad", "Fernandes", "MacLeod",
         "Novak", "Larsen", "Moreau", "Becker", "Khan", "Murphy", "Silva")
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "icloud.com",
            "protonmail.com", "example.org", "mail.example.net", "company.de", "uni-bonn.de",
            "web.de", "orange.fr", "rediffmail.com", "shop-support.io")

_PRICES = ("$50.00", "$1,299.99", "£15", "€39.95", "49.99 USD", "$5", "$12.50/month",
           "under $100", "$249", "$19.99", "£1,050.00", "€7,50")
_DATES = ("06/17/2018", "6/7/19", "17.06.2018", "2018-06-17", "June 17, 2018", "12/25",
          "Jan 3rd", "03/14/2021", "2020-11-29", "1.4.2019", "Dec 24 2019")
_MODELS = ("XR-200", "SM-G960U", "A1532", "KD-55X750H", "WH-1000XM4", "RTX 3080", "iPhone 12",
           "Model 3", "HP 7855", "Galaxy S21", "PS5", "B07XJ8C8F5", "MX-5000", "DCB205-2",
           "T-1000", "QN65Q80T", "G502", "FX-991EX")
_QUANTITIES = ("3 packs of 12", "2 x 500ml", "24-pack", "1,000 sheets", "6 pairs", "a 12 pack",
               "two 16oz bottles", "100 count", "4 boxes of 250", "36 rolls",
               "12 x 18 x 24 inches", "10,000mAh", "1920x1080", "3.5mm", "2.4GHz", "65W")
_PERCENTS = ("15%", "99.9%", "50% off", "100%", "20 percent", "0.5%")
_MISC = ("10:30 am", "7:45", "24/7", "4.5/5", "10/10", "5 stars", "2 hours",
         "ISBN 978-0-13-110362-7", "ISBN 0131103628", "order #112-3456789-0123456",
         "firmware 1.0.4.2", "version 2.1.3", "UPC 036000291452", "over 10000 reviews",
         "30,000 miles", "1,000,000 steps", "chapter 11", "size 10.5", "room 101",
         "from 2015 to 2019", "between 2018 and 2020", "the 1990s", "No. 5", "track 7",
         "tracking number 1Z999AA10123456784", "serial 12345-67890-1234", "978-0-13-110362-7",
         "112-3456789-0123456", "9400 1000 0000 0000 0000 00", "$1299.99 vs $1499.99",
         "10-12 days", "3.14159265", "sizes 8, 10, 12", "zip 90210", "1080p at 60Hz",
         "2 for $20", "5-7 business days", "rev. 2.0.1.7", "1/2 inch", "3:45:10 run time",
         "page 1234 of 2048")

# fmt: on

_LEADS = {
    "EMAIL": ("email me at", "my email is", "contact:", "write to", "reply to"),
    "PHONE": ("call me on", "my number is", "text", "phone:", "ring"),
    "CARD": ("they charged my card", "card number", "my Visa", "used card", "billed to"),
    "IBAN": ("refund to IBAN", "my account", "IBAN:", "send it to", "bank details"),
    "IP": ("my IP is", "from address", "the router at", "server", "logged in from"),
    "URL": ("see", "more at", "link:", "I posted photos on", "compare with"),
    "NAME": ("signed,", "my name is", "this is", "ask for", "thanks from"),
}

# {pii} is where the planted value goes (with its lead and wrapping); the other fields are
# filled with tricky non-personal numbers so collateral damage shows in the same texts.
_TEMPLATES = (
    "{pii} - that's how to reach me. The {model} cost {price} and arrived {date}.",
    "Bought the {model} in {year} for {price}. {pii}, if the seller asks.",
    "Returned {quantity} because it broke after {percent} use. {pii}.",
    "Honestly the best {model} I've owned since {year}; {pii} if you have questions!",
    "({pii}) Arrived {date}, {quantity}, no issues.",
    "Five stars. {pii}",
    "The {model} lasted until {date}.\n{pii}\nStill worth {price}.",
    'Customer service said "{pii}" and hung up; {percent} refund only.',
    "Got {quantity} at {price} ({misc}); {pii}; would buy again in {year}.",
    "Not great: {misc}. {pii}? No answer for weeks.",
    "{pii}: {model} works, {percent} battery after {misc}.",
    "Update {date} - replacement {model} received, {pii}, thanks.",
    "Paid {price} on {date} [{pii}] and got {quantity}.",
    "Support wrote '{pii}' in the box with {quantity}, weird for a {price} item.",
)
_MULTI_TEMPLATES = (
    "Reach me at {pii} or {pii2}. The {model} was {price}.",
    "{pii}, {pii2} - please refund the {price} for the {model}.",
    "Seller asked for {pii} and {pii2}; I paid {price} in {year} anyway.",
    "Contact ({pii} / {pii2}) about the {quantity} order from {date}.",
)
_CLEAN_TEMPLATES = (
    "Bought the {model} in {year} for {price}. It arrived {date} and works fine.",
    "Great value: {quantity} for {price}, {percent} cheaper than in stores.",
    "The {model} died after {misc}. Replacement came on {date}.",
    "Rated {misc} because the {model} is {percent} better than the {model2}.",
    "I've used it since {year}; {quantity} lasts about {misc}.",
    "Paid {price} on {date}, got {quantity}. Mine is the {model}, {misc}.",
    "{percent} of the {quantity} were broken ({misc}). Refund of {price} took until {date}.",
    "Compared to the {model} I had in {year}, this {model2} at {price} is a steal.",
    "Shipping took from {date} to {date2}, {misc}; the {model} itself is fine.",
    "{misc}, {misc2}, and {quantity} - all for {price} in {year}.",
)
_CLEAN_NAME_TEXTS = (
    ("Great customer service, Amazon replaced it for free. {misc}.", ("Amazon Customer",)),
    ("As a Kindle reader since {year} I love it; {price} well spent.", ("Kindle Customer",)),
    ("A customer like me expects more for {price}.", ("A Customer",)),
    ("I will buy again, the headphone jack works and the {model} is black.", ("Will Jack Black",)),
    ("You may love it; mark my words, {percent} worth it.", ("May Mark",)),
    ("The {model} is great, {quantity} for {price}.", ("Oliver Johansson",)),
    ("Sunny days, happy kids, {quantity}, bought {date}.", ("Sunny Happy",)),
)

_WRAPS = ("{}", "{}", "{}", "({})", '"{}"', "'{}'", "<{}>", "“{}”", "[{}]")

# fmt: off
# (first digits, length): Visa 13/16/19, Mastercard 51-55 and 2221-2720, Amex, Discover,
# JCB, Diners, UnionPay, Maestro.
_CARD_BRANDS: tuple[tuple[str, int], ...] = (
    ("4", 16), ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16),
    ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528", 16),
    ("36", 14), ("62", 19), ("6304", 18),
)

# IBAN body per country: "n" digit, "a" upper-case letter, "c" either.
_IBAN_FORMATS = {
    "DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "nn",
    "NL": "aaaa" + "n" * 10, "ES": "n" * 20, "IT": "a" + "n" * 10 + "c" * 12,
    "BE": "n" * 12, "CH": "n" * 5 + "c" * 12, "AT": "n" * 16, "PL": "n" * 24,
    "IE": "aaaa" + "n" * 14, "NO": "n" * 11,
}

_URL_HOSTS = ("example.com", "myshop.co.uk", "photos.example.org", "blog.janedoe.net", "bit.ly",
              "en.wikipedia.org", "github.com", "imgur.com", "shop.example.de")
_URL_PATHS = ("", "/", "/review", "/p/12345", "/user/jsmith?tab=reviews",
              "/wiki/Headphones_(audio)", "/a/b/c.html", "/search?q=xr-200&page=2",
              "/img/IMG_2018.jpg", "/item#reviews")
# fmt: on


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def _email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST).lower(), rng.choice(_LAST).lower().replace("'", "")
    local = rng.choice(
        (
            f"{first}.{last}",
            f"{first}{last}{rng.randint(1, 99)}",
            f"{first[0]}_{last}",
            f"{first}+reviews",
            f"{last}.{first}",
            f"{first}{rng.randint(1950, 2005)}",
        )
    )
    domain = rng.choice(_DOMAINS)
    if rng.random() < 0.1:
        word_local = local.replace(".", " dot ")
        word_domain = domain.replace(".", " dot ")
        return rng.choice(
            (
                f"{word_local} at {word_domain}",
                f"{local} [at] {domain.replace('.', ' [dot] ')}",
                f"{local} (at) {domain}",
            )
        )
    if rng.random() < 0.1:
        return f"{local}@{domain}".upper()
    return f"{local}@{domain}"


def _phone(rng: random.Random) -> str:
    area = f"{rng.randint(2, 9)}{_digits(rng, 2)}"
    exchange = rng.choice(("555", _digits(rng, 3)))
    line = _digits(rng, 4)
    formats: tuple[Callable[[], str], ...] = (
        lambda: f"({area}) {exchange}-{line}",
        lambda: f"{area}-{exchange}-{line}",
        lambda: f"{area}.{exchange}.{line}",
        lambda: f"+1-{area}-{exchange}-{line}",
        lambda: f"+1 ({area}) {exchange}-{line}",
        lambda: f"1-800-{exchange}-{line}",
        lambda: f"{area}{exchange}{line}",
        lambda: f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}",
        lambda: f"020 {rng.randint(7, 8)}{_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"07700 {_digits(rng, 6)}",
        lambda: f"+44 7{rng.randint(4, 9)}{_digits(rng, 2)} {_digits(rng, 6)}",
        lambda: f"0161 {rng.randint(2, 9)}{_digits(rng, 2)} {_digits(rng, 4)}",
        lambda: f"+49 30 {rng.randint(2, 9)}{_digits(rng, 7)}",
        lambda: f"030 {rng.randint(2, 9)}{_digits(rng, 7)}",
        lambda: f"+49 171 {_digits(rng, 7)}",
        lambda: f"0049 89 {rng.randint(2, 9)}{_digits(rng, 6)}",
        lambda: "+33 1 " + " ".join(_digits(rng, 2) for _ in range(4)),
        lambda: f"0{rng.randint(1, 7)} " + " ".join(_digits(rng, 2) for _ in range(4)),
        lambda: f"+91 {rng.randint(7, 9)}{_digits(rng, 4)} {_digits(rng, 5)}",
        lambda: f"{rng.randint(7, 9)}{_digits(rng, 4)} {_digits(rng, 5)}",
        lambda: f"+44 (0)20 {_digits(rng, 4)} {_digits(rng, 4)}",
    )
    return rng.choice(formats)()


def _card_number(rng: random.Random) -> str:
    prefix, length = rng.choice(_CARD_BRANDS)
    body = prefix + _digits(rng, length - len(prefix) - 1)
    check = next(d for d in string.digits if luhn_valid(body + d))
    number = body + check
    assert luhn_valid(number)
    return number


def _card(rng: random.Random) -> str:
    number = _card_number(rng)
    style = rng.choice(("compact", "space", "dash"))
    if style == "compact":
        return number
    sep = " " if style == "space" else "-"
    if len(number) in (14, 15):
        # Amex and Diners print as 4-6-5 and 4-6-4.
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_IBAN_FORMATS))
    alphabet = {
        "n": string.digits,
        "a": string.ascii_uppercase,
        "c": string.digits + string.ascii_uppercase,
    }
    bban = "".join(rng.choice(alphabet[slot]) for slot in _IBAN_FORMATS[country])
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        first = rng.choice((10, 172, 192, 8, 81, 203, 151, 94))
        return ".".join(str(part) for part in (first, *(rng.randint(0, 255) for _ in range(3))))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    style = rng.choice(("full", "compressed", "link-local", "doc"))
    if style == "full":
        return ":".join(groups)
    if style == "compressed":
        return f"{groups[0]}:{groups[1]}::{groups[6]}:{groups[7]}"
    if style == "link-local":
        return "fe80::" + ":".join(groups[4:])
    return f"2001:db8:{groups[2]}::{groups[7]}"


def _url(rng: random.Random) -> str:
    host = rng.choice(_URL_HOSTS)
    path = rng.choice(_URL_PATHS)
    scheme = rng.choice(("https://", "http://", "https://www.", "www."))
    return f"{scheme}{host}{path}"


def _name(rng: random.Random) -> tuple[str, str]:
    """(display name as the platform knows it, the form written in the text)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    middle = rng.choice(("", "", f"{rng.choice(string.ascii_uppercase)}. "))
    display = f"{first} {middle}{last}"
    written = rng.choice((display, f"{first} {last}", first, last, first, display))
    case = rng.random()
    if case < 0.15:
        written = written.lower()
    elif case < 0.25:
        written = written.upper()
    return display, written


_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": _email,
    "PHONE": _phone,
    "CARD": _card,
    "IBAN": _iban,
    "IP": _ip,
    "URL": _url,
}


def _fill(template: str, rng: random.Random) -> str:
    """Fill every non-PII field of ``template``, leaving ``{pii}``/``{pii2}`` in place."""
    fields = {
        "price": rng.choice(_PRICES),
        "date": rng.choice(_DATES),
        "date2": rng.choice(_DATES),
        "model": rng.choice(_MODELS),
        "model2": rng.choice(_MODELS),
        "quantity": rng.choice(_QUANTITIES),
        "percent": rng.choice(_PERCENTS),
        "misc": rng.choice(_MISC),
        "misc2": rng.choice(_MISC),
        "year": str(rng.randint(2009, 2024)),
        "pii": "{pii}",
        "pii2": "{pii2}",
    }
    return template.format(**fields)


def _planted(rng: random.Random, kind: str) -> tuple[str, str, tuple[str, ...]]:
    """(text to insert, planted value, known names) for one PII of ``kind``."""
    if kind == "NAME":
        display, value = _name(rng)
        names: tuple[str, ...] = (display,)
    else:
        value = _GENERATORS[kind](rng)
        names = ()
    lead = rng.choice(_LEADS[kind]) + " " if rng.random() < 0.5 else ""
    wrapped = rng.choice(_WRAPS).format(value)
    return lead + wrapped, value, names


def _compose(
    template: str, inserts: list[tuple[str, str, str]], names: tuple[str, ...]
) -> LabelledText:
    """Put ``(insert, value, kind)`` into the ``{pii}``, ``{pii2}`` slots, recording spans."""
    text = template
    spans: list[PlantedSpan] = []
    for slot, (insert, value, kind) in zip(("{pii}", "{pii2}"), inserts, strict=False):
        at = text.index(slot)
        start = at + insert.index(value)
        text = text[:at] + insert + text[at + len(slot) :]
        shift = len(insert) - len(slot)
        spans = [
            PlantedSpan(s.start + shift, s.end + shift, s.kind, s.value) if s.start > at else s
            for s in spans
        ]
        spans.append(PlantedSpan(start, start + len(value), kind, value))
    for span in spans:
        assert text[span.start : span.end] == span.value
    return LabelledText(text, tuple(sorted(spans, key=lambda s: s.start)), names)


def build_labelled_sample(seed: int = 0) -> list[LabelledText]:
    """``PER_TYPE`` texts per PII type, ``MULTI`` texts with two types, ``CLEAN`` clean texts.

    Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    sample: list[LabelledText] = []
    for kind in PII_TYPES:
        for index in range(PER_TYPE):
            # Cycle templates so every position and punctuation occurs for every type.
            template = _fill(_TEMPLATES[index % len(_TEMPLATES)], rng)
            insert, value, names = _planted(rng, kind)
            sample.append(_compose(template, [(insert, value, kind)], names))
    for index in range(MULTI):
        first, second = rng.sample(PII_TYPES, 2)
        template = _fill(_MULTI_TEMPLATES[index % len(_MULTI_TEMPLATES)], rng)
        insert_a, value_a, names_a = _planted(rng, first)
        insert_b, value_b, names_b = _planted(rng, second)
        sample.append(
            _compose(
                template,
                [(insert_a, value_a, first), (insert_b, value_b, second)],
                names_a + names_b,
            )
        )
    for index in range(CLEAN):
        if index % 5 == 0:
            template, names = _CLEAN_NAME_TEXTS[(index // 5) % len(_CLEAN_NAME_TEXTS)]
        else:
            template = _CLEAN_TEMPLATES[index % len(_CLEAN_TEMPLATES)]
            names = (f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",) if index % 3 else ()
        sample.append(LabelledText(_fill(template, rng), (), names))
    return sample


_REVIEW_SENTENCES = (
    "I bought this for my daughter and she loves it.",
    "The sound quality is much better than I expected for the price.",
    "Battery life is okay, not great, but it charges quickly.",
    "It stopped working after two weeks and the return process was a pain.",
    "Fits perfectly and the material feels sturdy.",
    "Shipping was fast and the packaging was fine.",
    "Would not recommend, the instructions were missing and the screws did not fit.",
    "Exactly as described, no complaints at all.",
    "Customer service was helpful when the first one arrived damaged.",
    "The color is a little darker than in the pictures.",
    "Setup took about ten minutes and the app is easy to use.",
    "Great gift idea, everyone in the family uses it now.",
    "Paid {price} in {year} and it still works.",
    "Got {quantity} on {date}, {percent} cheaper than the store.",
    "My old {model} broke, this one is better.",
    "Rated {misc} overall, the {model} is solid.",
)


def build_typical_reviews(
    count: int, *, seed: int = 0, pii_rate: float = 0.05
) -> tuple[list[str], list[tuple[str, ...]]]:
    """``count`` review texts of roughly 200 characters and their authors' display names.

    A ``pii_rate`` share of reviews gets one sentence carrying planted personal data; a
    third of authors are shown as "Amazon Customer", as on real review sites.
    """
    rng = random.Random(seed)
    texts: list[str] = []
    names: list[tuple[str, ...]] = []
    for _ in range(count):
        sentences: list[str] = []
        while sum(len(s) + 1 for s in sentences) < 180:
            sentences.append(_fill(rng.choice(_REVIEW_SENTENCES), rng))
        author: tuple[str, ...] = (f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",)
        if rng.random() < 0.33:
            author = ("Amazon Customer",)
        if rng.random() < pii_rate:
            kind = rng.choice(PII_TYPES)
            insert, _, planted_names = _planted(rng, kind)
            sentences[rng.randrange(len(sentences))] = f"Contact {insert} please."
            author = planted_names or author
        texts.append(" ".join(sentences))
        names.append(author)
    return texts, names


def value_survives(value: str, kind: str, output: str) -> bool:
    if kind == "NAME":
        # Names are matched case-insensitively as whole words, so judge them that way.
        return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", output, re.IGNORECASE) is not None
    return value in output


def recall_by_type(
    sample: Sequence[LabelledText], outputs: Sequence[str | None]
) -> dict[str, float]:
    """Per PII type, the share of planted values absent from the scrubbed output, in [0, 1]."""
    found: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    for item, output in zip(sample, outputs, strict=True):
        for span in item.spans:
            planted[span.kind] += 1
            if output is not None and not value_survives(span.value, span.kind, output):
                found[span.kind] += 1
    return {kind: found[kind] / planted[kind] for kind in PII_TYPES if planted[kind]}


def false_positive_rate(sample: Sequence[LabelledText], outputs: Sequence[str | None]) -> float:
    """Share of clean texts that the scrubber changed at all, in [0, 1]."""
    clean = [(item, output) for item, output in zip(sample, outputs, strict=True) if item.is_clean]
    return sum(item.text != output for item, output in clean) / len(clean)


def expected_output(item: LabelledText) -> str:
    """The text with exactly its planted spans replaced by their placeholders."""
    text = item.text
    for span in sorted(item.spans, key=lambda s: s.start, reverse=True):
        text = f"{text[: span.start]}[{span.kind}]{text[span.end :]}"
    return text


def exact_rate(sample: Sequence[LabelledText], outputs: Sequence[str | None]) -> float:
    """Share of texts with PII whose output is exactly ``expected_output``, in [0, 1]:
    every value found with the right type and nothing else touched."""
    dirty = [
        (item, output) for item, output in zip(sample, outputs, strict=True) if not item.is_clean
    ]
    return sum(expected_output(item) == output for item, output in dirty) / len(dirty)
