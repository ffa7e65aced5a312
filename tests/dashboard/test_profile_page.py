"""The Customer profile page in AppTest (the charts drawn in a browser are in
test_pages_browser.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import fixture_pseudonym

from core.config import Paths
from core.store.warehouse import ensure_schema, query, write_transaction

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
EMPTY_HINT = "Run `make run` (demo data) or `clearmark ingest <file>`"
REC_RUN = "ce_20250702T090000_0000dp01"
OLD_RUN = "ce_20250615T090000_0000old1"
RECOMMENDATIONS_DDL = """
    CREATE TABLE IF NOT EXISTS recommendations(run_id VARCHAR, user_pseudonym VARCHAR,
        item_id VARCHAR, rank INTEGER, score DOUBLE, created_at TIMESTAMP)
"""


def most_active(paths: Paths) -> str:
    return str(query("top_active_customers", paths, limit=1)["user_pseudonym"].iloc[0])


def write_recommendations(
    paths: Paths,
    run_id: str,
    users: list[str],
    *,
    created_at: datetime = datetime(2025, 7, 2, 9, 30),
    k: int = 10,
    first_item: int = 0,
) -> None:
    """Top-k rows per user as `clearmark score` writes them: ranks 1..k, scores falling."""
    rows = [
        (
            run_id,
            user,
            f"i_{(first_item + r) % 30:04d}",
            r + 1,
            round(0.95 - 0.05 * r, 3),
            created_at,
        )
        for user in users
        for r in range(k)
    ]
    with write_transaction(paths) as con:
        con.execute(RECOMMENDATIONS_DDL)
        con.executemany(
            "INSERT INTO recommendations (run_id, user_pseudonym, item_id, rank, score, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


@pytest.fixture
def scored_warehouse(small_warehouse: Paths) -> Paths:
    """`small_warehouse` with recommendations for the most active customer: an older
    run (2 users) and the latest run (that customer only)."""
    top = most_active(small_warehouse)
    write_recommendations(
        small_warehouse,
        OLD_RUN,
        [top, fixture_pseudonym(1)],
        created_at=datetime(2025, 6, 15, 9, 0),
        first_item=20,
    )
    write_recommendations(small_warehouse, REC_RUN, [top])
    return small_warehouse


def _profile_page(**query_params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.query_params.update(query_params)
    return at.switch_page("views/profile.py").run()


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _attributes(at: AppTest) -> list[str]:
    """The generalized attributes as shown, markdown escapes and emphasis removed."""
    return [m.value.replace("\\", "").strip("*") for m in at.markdown]


def test_no_warehouse_shows_the_command_to_run(warehouse_paths):
    at = _profile_page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Customer profile"
    assert len(at.info) == 1 and EMPTY_HINT in at.info[0].value
    assert not at.selectbox


def test_empty_warehouse_shows_the_command_to_run(warehouse_paths):
    ensure_schema(warehouse_paths)
    at = _profile_page()
    assert not at.exception
    assert EMPTY_HINT in at.info[0].value
    assert not at.selectbox


def test_profile_of_the_most_active_customer_without_recommendations(small_warehouse):
    at = _profile_page()
    assert not at.exception, [e.value for e in at.exception]
    top = most_active(small_warehouse)
    picker = at.selectbox[0]
    assert picker.value == top
    assert len(picker.options) == 60  # every customer with events (fewer than 200)
    assert at.code[0].value == top
    activity = query("customer_activity", small_warehouse, user=top).iloc[0]
    metrics = _metrics(at)
    assert metrics["Events"] == f"{int(activity['events']):,}"
    i = next(i for i in range(60) if fixture_pseudonym(i) == top)
    shown = _attributes(at)
    assert f"{20 + 10 * (i % 4)}-{29 + 10 * (i % 4)}" in shown  # age band
    assert ["North", "South", "East", "West"][i % 3] in shown  # region
    assert f"2024-Q{1 + i % 4}" in shown  # signup month
    assert not any("suppressed" in v for v in shown)
    assert len(at.get("plotly_chart")) == 2  # history timeline, category affinities
    # No recommendations table yet: the hint names the command.
    assert len(at.info) == 1 and "`clearmark score`" in at.info[0].value
    assert not at.dataframe


def test_category_affinities_are_shares_of_the_customer_interactions(small_warehouse):
    top = most_active(small_warehouse)
    affinity = query("customer_category_affinity", small_warehouse, user=top)
    events = int(query("customer_activity", small_warehouse, user=top)["events"].iloc[0])
    assert affinity["interactions"].sum() == events
    assert affinity["share"].sum() == pytest.approx(1.0)
    assert set(affinity["category"]) <= {"Gift Cards", "Books", "Kitchen"}


def test_history_carries_item_titles_most_recent_first(small_warehouse):
    top = most_active(small_warehouse)
    history = query("customer_history", small_warehouse, user=top, limit=1000)
    assert history["title"].str.startswith("Fixture item ").all()
    assert history["ts"].is_monotonic_decreasing


def test_suppressed_attributes_are_labelled(small_warehouse):
    top = most_active(small_warehouse)
    with write_transaction(small_warehouse) as con:  # what k-anonymity suppression stores
        con.execute(
            "UPDATE users SET age_band = NULL, region = NULL, signup_month = NULL "
            "WHERE user_pseudonym = ?",
            [top],
        )
    at = _profile_page()
    assert not at.exception
    suppressed = [v for v in _attributes(at) if "suppressed (k-anonymity)" in v]
    assert len(suppressed) == 3


def test_top_recommendations_of_the_latest_scored_run(scored_warehouse):
    at = _profile_page()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.info
    recs = at.dataframe[0].value
    assert recs["rank"].tolist() == list(range(1, 11))
    assert recs["title"].tolist() == [f"Fixture item {j}" for j in range(10)]  # not OLD_RUN's
    assert recs["score"].is_monotonic_decreasing
    assert {"category", "price"} <= set(recs.columns)
    assert any(REC_RUN in c.value for c in at.caption)


def test_a_customer_the_latest_run_did_not_score(scored_warehouse):
    at = _profile_page()
    other = next(
        fixture_pseudonym(i)
        for i in range(60)
        if fixture_pseudonym(i) != most_active(scored_warehouse)
    )
    at.selectbox[0].set_value(other).run()
    assert at.code[0].value == other
    assert not at.exception
    assert not at.dataframe
    assert len(at.info) == 1
    assert REC_RUN in at.info[0].value and "`clearmark score`" in at.info[0].value


def test_search_narrows_the_picker(small_warehouse):
    target = fixture_pseudonym(7)
    at = _profile_page()
    at.text_input[0].input(target[2:14].upper()).run()  # a fragment, other case
    assert not at.exception
    # Options read "u_ea056a61bd…9a4d96 · 21 events": a short form, never a name.
    options = at.selectbox[0].options
    assert options and all(o.startswith(target[:12]) for o in options)
    assert at.selectbox[0].value == target
    assert at.code[0].value == target


def test_search_without_match_says_so(small_warehouse):
    at = _profile_page()
    at.text_input[0].input("no-such-pseudonym").run()
    assert not at.exception
    assert "No customer's pseudonym contains" in at.warning[0].value
    assert not at.get("plotly_chart")


def test_deep_link_selects_the_customer(small_warehouse):
    target = fixture_pseudonym(3)
    at = _profile_page(customer=target)
    assert not at.exception
    assert at.selectbox[0].value == target


def test_the_explanation_panel_follows_the_recommendations(scored_warehouse):
    at = _profile_page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[-1].value == "Why these recommendations"
    # REC_RUN has recommendations but no registered model: the panel says so, the page stays.
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert len(warnings) == 1 and "Explanations are not available" in warnings[0]
    assert REC_RUN in warnings[0]
