from collections import Counter

import pytest

from privacy.scrub import (
    PII_TYPES,
    Span,
    find_pii,
    iban_valid,
    luhn_valid,
    resolve_overlaps,
    scrub_many,
    scrub_text,
)
from privacy.scrub_samples import (
    build_labelled_sample,
    exact_rate,
    false_positive_rate,
    recall_by_type,
)


@pytest.fixture(scope="module")
def labelled():
    sample = build_labelled_sample(seed=0)
    outputs, _ = scrub_many([item.text for item in sample], names=[item.names for item in sample])
    return sample, outputs


# --- each type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at john.smith@gmail.com, thanks.", "Mail me at [EMAIL], thanks."),
        ("(JANE_DOE+shop@Mail.Example.co.uk)", "([EMAIL])"),
        ("write to john dot smith at gmail dot com", "write to [EMAIL]"),
        ("jsmith [at] example [dot] org!", "[EMAIL]!"),
    ],
)
def test_email(text, expected):
    assert scrub_text(text) == (expected, Counter(EMAIL=1))


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "07700 900123",
        "+1-202-555-0143",
        "+1 (415) 555-2671",
        "1-800-555-0199",
        "030 12345678",
        "+49 30 12345678",
        "0049 89 3218010",
        "+33 1 42 68 53 00",
        "01 42 68 53 00",
        "+91 98765 43210",
        "98765 43210",
        "+44 (0)20 7946 0958",
    ],
)
def test_phone_formats(phone):
    assert scrub_text(f"Call me on {phone}.") == ("Call me on [PHONE].", Counter(PHONE=1))


def test_phone_in_brackets_keeps_the_brackets():
    assert scrub_text("Call (+44 20 7946 0958) now")[0] == "Call ([PHONE]) now"


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "3782 822463 10005",
        "378282246310005",
        "6011 0009 9013 9424",
        "4222222222222",
    ],
)
def test_card_formats(card):
    assert scrub_text(f"charged {card}!") == ("charged [CARD]!", Counter(CARD=1))


def test_card_needs_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert scrub_text("charged 4111 1111 1111 1112!") == ("charged 4111 1111 1111 1112!", Counter())


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
)
def test_iban(iban):
    assert iban_valid(iban)
    assert scrub_text(f"IBAN: {iban}. Thanks") == ("IBAN: [IBAN]. Thanks", Counter(IBAN=1))


def test_iban_needs_checksum_and_leaves_following_words():
    assert not iban_valid("DE88 3704 0044 0532 0130 00")
    assert scrub_text("DE88 3704 0044 0532 0130 00")[1] == Counter()
    assert scrub_text("DE89 3704 0044 0532 0130 00 ABCD")[0] == "[IBAN] ABCD"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 192.168.1.10.", "from [IP]."),
        ("server 10.0.0.254:8080", "server [IP]:8080"),
        ("addr 2001:db8:85a3::8a2e:370:7334 ok", "addr [IP] ok"),
        ("link fe80::1ff:fe23:4567:890a", "link [IP]"),
        ("fe80::444a:bdc7:e660:d8fd: works", "[IP]: works"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full [IP]"),
    ],
)
def test_ip(text, expected):
    assert scrub_text(text) == (expected, Counter(IP=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/a?b=1.", "see [URL]."),
        ("(www.shop.co.uk/page)", "([URL])"),
        ('"http://blog.example.org/p/12345", he said', '"[URL]", he said'),
        ("https://en.wikipedia.org/wiki/Headphones_(audio)", "[URL]"),
    ],
)
def test_url(text, expected):
    assert scrub_text(text) == (expected, Counter(URL=1))


# --- names ---------------------------------------------------------------------------


def test_name_full_and_tokens_case_insensitive():
    text = "John Q. Smith here. john liked it, SMITH too; Johnny and blacksmith stay."
    scrubbed, counts = scrub_text(text, names=["John Q. Smith"])
    assert scrubbed == "[NAME] here. [NAME] liked it, [NAME] too; Johnny and blacksmith stay."
    assert counts == Counter(NAME=3)


def test_name_first_last_without_middle_initial_is_one_name():
    assert scrub_text("Thanks, John Smith", names=["John Q. Smith"]) == (
        "Thanks, [NAME]",
        Counter(NAME=1),
    )


@pytest.mark.parametrize("generic", ["Amazon Customer", "Kindle Customer", "A Customer"])
def test_generic_display_names_are_not_names(generic):
    text = "Great customer service from Amazon, my Kindle works."
    assert scrub_text(text, names=[generic]) == (text, Counter())


def test_common_word_tokens_are_kept_but_full_name_goes():
    text = "I will buy again. Signed, Will Baker"
    assert scrub_text(text, names=["Will Baker"]) == (
        "I will buy again. Signed, [NAME]",
        Counter(NAME=1),
    )


def test_short_and_numeric_tokens_are_not_names():
    assert scrub_text("Li said since 1985 ok", names=["Li 1985"]) == (
        "Li said since 1985 ok",
        Counter(),
    )


def test_single_string_name_is_one_name():
    assert scrub_text("ask Maria", names="Maria Garcia")[0] == "ask [NAME]"


# --- what must survive ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Paid $50.00 in 2018 for the XR-200.",
        "$1,299.99 vs $1499.99, 15% off, 99.9% uptime",
        "3 packs of 12, 2 x 500ml, 24-pack, 1,000 sheets, 12 x 18 x 24 inches",
        "Arrived 06/17/2018, 17.06.2018, 2018-06-17, 6/7/19, June 17, 2018",
        "Models SM-G960U, KD-55X750H, WH-1000XM4, RTX 3080, B07XJ8C8F5",
        "ISBN 978-0-13-110362-7, order #112-3456789-0123456, UPC 036000291452",
        "firmware 1.0.4.2, version 2.1.3, rated 1.2.3.4 out of 5",
        "from 2015 to 2019, years 2018 2019 2020, 10:30 am, 24/7, 4.5/5",
        "the 1200 1500 1800 watt models, 1 234 567 890 won, 100 200 300 400 500",
        "cost 1299.99 1499.99 1699.99 and 9400 1000 0000 0000 0000 00",
        "I got it at amazon dot com, it at walmart.com",
    ],
)
def test_non_pii_survives(text):
    assert scrub_text(text) == (text, Counter())


# --- API contracts -------------------------------------------------------------------


def test_none_passes_through():
    assert scrub_text(None) == (None, Counter())
    assert scrub_many([None, "x@y.com"]) == ([None, "[EMAIL]"], Counter(EMAIL=1))


def test_counts_and_mixed_types():
    text = (
        "John Smith (john@x.org, +1-202-555-0143) paid with 4111 1111 1111 1111 "
        "from 8.20.106.17, see www.x.com"
    )
    scrubbed, counts = scrub_text(text, names=["John Smith"])
    assert scrubbed == "[NAME] ([EMAIL], [PHONE]) paid with [CARD] from [IP], see [URL]"
    assert counts == Counter(NAME=1, EMAIL=1, PHONE=1, CARD=1, IP=1, URL=1)
    assert set(counts) <= set(PII_TYPES)


def test_scrub_many_equals_scrub_text_one_by_one(labelled):
    sample, outputs = labelled
    texts = [item.text for item in sample][:300] + [None]
    names = [item.names for item in sample][:300] + [None]
    many, total = scrub_many(texts, names=names)
    singles = [scrub_text(text, names=n or ()) for text, n in zip(texts, names, strict=True)]
    assert many == [scrubbed for scrubbed, _ in singles]
    assert total == sum((counts for _, counts in singles), Counter())


def test_scrub_many_without_names_and_with_mismatched_names():
    assert scrub_many(["Maria", "a@b.co"]) == (["Maria", "[EMAIL]"], Counter(EMAIL=1))
    with pytest.raises(ValueError, match="2 texts but 1 name entries"):
        scrub_many(["a", "b"], names=[None])


def test_overlaps_longest_wins_then_priority():
    spans = [Span(0, 10, "PHONE"), Span(2, 20, "CARD"), Span(20, 25, "NAME"), Span(20, 25, "IP")]
    assert resolve_overlaps(spans) == [Span(2, 20, "CARD"), Span(20, 25, "IP")]
    # A URL holding an e-mail address and a phone number is one URL.
    text = "https://x.com/?u=a@b.com&tel=5551234567"
    assert find_pii(text) == [Span(0, len(text), "URL")]


# --- labelled sample -----------------------------------------------------------------


def test_labelled_sample_shape():
    sample = build_labelled_sample(seed=0)
    assert len(sample) >= 600
    assert sum(item.is_clean for item in sample) >= 200
    assert {span.kind for item in sample for span in item.spans} == set(PII_TYPES)
    for item in sample:
        for span in item.spans:
            assert item.text[span.start : span.end] == span.value
    assert build_labelled_sample(seed=0) == sample


@pytest.mark.parametrize("kind", ["EMAIL", "PHONE", "CARD"])
def test_recall_on_labelled_sample(labelled, kind):
    sample, outputs = labelled
    assert recall_by_type(sample, outputs)[kind] >= 0.95


def test_all_types_recall_and_false_positives_on_labelled_sample(labelled):
    sample, outputs = labelled
    recall = recall_by_type(sample, outputs)
    assert min(recall.values()) >= 0.95, recall
    assert false_positive_rate(sample, outputs) < 0.02
    assert exact_rate(sample, outputs) >= 0.95


def test_metric_identities():
    sample = build_labelled_sample(seed=1)
    texts = [item.text for item in sample]
    # Doing nothing finds nothing and breaks nothing; blanking everything finds everything.
    assert set(recall_by_type(sample, texts).values()) == {0.0}
    assert false_positive_rate(sample, texts) == 0.0
    blank = ["" for _ in sample]
    assert set(recall_by_type(sample, blank).values()) == {1.0}
    assert false_positive_rate(sample, blank) == 1.0
