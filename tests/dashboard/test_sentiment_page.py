"""The Review sentiment page in AppTest: the empty states, and a warehouse with scored
reviews (rows written the way `core.sentiment.score.score` writes them)."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import Paths
from core.sentiment.data import review_text
from core.store.warehouse import ensure_schema, write_transaction

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
RUN = "sent_20250702T090000_0000test"
EXTRA_RUN = "run_20250702T090000_sentiment_fixture"
CATEGORIES = ["Gift Cards", "Books", "Kitchen"]  # as in conftest's small_warehouse
NASTY = "<script>alert('x')</script> Zipper broke"


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page("views/sentiment.py").run()


def _spans(text: str, strong: str) -> str:
    """Word spans with weights: `strong` words weigh 1, the others 0.1."""
    spans, pos = [], 0
    for word in text.split(" "):
        start = text.index(word, pos)
        pos = start + len(word)
        spans.append([start, pos, 1.0 if word.strip(".!").lower() == strong else 0.1])
    return json.dumps(spans)


@pytest.fixture
def scored_warehouse(small_warehouse: Paths) -> Paths:
    """small_warehouse plus 240 reviews from 120 more reviewers, every review scored.

    The text label follows the stars, except three 5-star reviews whose text reads
    negative (one of them with markup in its text)."""
    rng = random.Random(7)
    users = [f"u_{hashlib.sha256(f'sentiment-{i}'.encode()).hexdigest()}" for i in range(120)]
    rows = []
    for i, user in enumerate(users):
        for k in range(2):
            stars = [5, 5, 4, 4, 3, 2, 1][(i + k) % 7]
            word = "great" if stars >= 4 else ("okay" if stars == 3 else "awful")
            text = f"The battery is {word}."
            ts = datetime(2025, 1 + (i + 3 * k) % 6, 1) + timedelta(days=rng.randint(0, 27))
            item = f"i_{(i + k) % 6:04d}"  # six items, about 40 reviewers each
            rid = hashlib.sha256(f"{user}|{item}|{ts}|{k}".encode()).hexdigest()
            rows.append((rid, user, item, float(stars), ts, f"{stars} stars", text, True, 0,
                         EXTRA_RUN))
    with write_transaction(small_warehouse) as con:
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                        [(u, ["20-29", "30-39", "40-49"][i % 3], ["North", "South"][i % 2],
                          "2024-Q1", EXTRA_RUN) for i, u in enumerate(users)])
        reviews = con.execute("SELECT review_id, rating, summary, text FROM reviews "
                              "ORDER BY review_id").fetchall()
        scored, weights = [], []
        flipped = 0
        for rid, rating, summary, text in reviews:
            label = "positive" if rating >= 4 else ("neutral" if rating == 3 else "negative")
            if rating == 5 and flipped < 3:
                label, flipped = "negative", flipped + 1
                if flipped == 1:
                    con.execute("UPDATE reviews SET text = ? WHERE review_id = ?", [NASTY, rid])
                    text = NASTY
            p = {"negative": (0.8, 0.1, 0.1), "neutral": (0.1, 0.8, 0.1),
                 "positive": (0.05, 0.05, 0.9)}[label]
            scored.append((rid, RUN, label, *p, datetime(2025, 7, 2, 9, 0)))
            strong = {"negative": "awful", "neutral": "okay", "positive": "great"}[label]
            weights.append((RUN, rid, _spans(review_text(summary, text), strong)))
        con.executemany("INSERT INTO review_sentiment VALUES (?, ?, ?, ?, ?, ?, ?)", scored)
        con.executemany("INSERT INTO review_token_weights VALUES (?, ?, ?)", weights)
        con.executemany("INSERT INTO review_aspects VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (RUN, "all", "all", "battery", "negative", 0.31, 40),
            (RUN, "all", "all", "awful", "negative", 0.52, 45),
            (RUN, "all", "all", "great", "positive", 0.61, 80),
            (RUN, "category", "Books", "great", "positive", 0.5, 20),
            (RUN, "item", "i_0001", "battery", "positive", 0.2, 12),
        ])
    return small_warehouse


def test_no_warehouse_shows_the_commands_to_run(warehouse_paths):
    at = _page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Review sentiment"
    assert len(at.info) == 1
    assert "`clearmark sentiment train` then `clearmark sentiment score`" in at.info[0].value
    assert not at.metric


def test_warehouse_without_scores_shows_the_commands_to_run(small_warehouse):
    at = _page()
    assert not at.exception
    assert "clearmark sentiment score" in at.info[0].value
    assert not at.get("plotly_chart")


def test_an_empty_schema_shows_the_commands_to_run(warehouse_paths):
    ensure_schema(warehouse_paths)
    at = _page()
    assert not at.exception
    assert "clearmark sentiment train" in at.info[0].value


def test_renders_scored_reviews(scored_warehouse):
    at = _page()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.info or all("nothing to show" not in i.value for i in at.info[:1])
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) >= {"Negative reviews", "Neutral reviews", "Positive reviews",
                            "Stars and text disagree"}
    assert metrics["Stars and text disagree"] == "fewer than 10 per cell"  # 3: a small cell
    # month, category, segment, item, and the two overall aspect charts
    assert len(at.get("plotly_chart")) == 6
    captions = " ".join(c.value for c in at.caption)
    assert RUN in captions
    assert "fewer than 10 distinct reviewers" in captions


def test_small_cells_are_hidden_with_a_caption(scored_warehouse):
    at = _page()
    captions = [c.value for c in at.caption]
    # small_warehouse's items have a handful of reviewers each: left out whole
    assert any("items left out: fewer than 10 distinct reviewers" in c for c in captions), \
        captions
    assert any("months left out" in c and "cell(s) hidden" in c for c in captions), captions
    assert any("No cell hidden: every cell of the categories shown" in c for c in captions)


def test_examples_highlight_words_and_escape_markup(scored_warehouse):
    at = _page()
    html = " ".join(m.value for m in at.markdown)
    assert "background-color: rgba(" in html
    assert ">awful.</span>" in html and ">great.</span>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html  # the markup in a review is shown as text


def test_aspects_of_a_category_on_demand(scored_warehouse):
    at = _page()
    assert len(at.get("plotly_chart")) == 6
    at = at.selectbox[0].select("category: Books").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 7  # its positive aspects; "no negative" caption
    assert any("No negative aspect reaches the floor" in c.value for c in at.caption)
