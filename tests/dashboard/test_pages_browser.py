"""Every page of the app in a real browser, on a warehouse with a trained run and
recommendations: what AppTest cannot see (Plotly drawing, front-end exceptions,
routing by URL and by the sidebar). Needs Debian's chromium at /usr/bin/chromium.

Screenshots are written to the test's tmp dir, or to $CLEARMARK_SCREENSHOTS when set
(to look at them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import BROWSER_TIMEOUT_MS, wait_until_rendered
from test_models_page import DP_RUN, PLAIN_RUN, write_fake_run
from test_profile_page import most_active, write_recommendations

# (url path, title, Plotly charts the page draws on the fixture)
PAGES = [("", "Overview", 3), ("models", "Models", 3), ("profile", "Customer profile", 2)]


@pytest.fixture
def full_warehouse(small_warehouse):
    write_fake_run(small_warehouse, DP_RUN)
    write_fake_run(
        small_warehouse,
        PLAIN_RUN,
        private=False,
        created_at="2025-07-01T09:00:00+00:00",
        baselines=False,
    )
    write_recommendations(small_warehouse, DP_RUN, [most_active(small_warehouse)])
    return small_warehouse


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CLEARMARK_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _rendered(page, charts: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
        timeout=BROWSER_TIMEOUT_MS,
    )
    # Plotly draws asynchronously: wait until every chart holds a drawn trace.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        f".filter(p => p.querySelector('.trace')).length >= {charts}",
        timeout=BROWSER_TIMEOUT_MS,
    )


@pytest.mark.browser
def test_every_page_renders_without_exceptions(full_warehouse, running_app, browser_page, tmp_path):
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside
    base_url = running_app(full_warehouse.data_dir)
    shots = _shots(tmp_path)
    for path, title, charts in PAGES:
        wait_until_rendered(page, f"{base_url}/{path}")
        page.wait_for_selector(f"h1:has-text('{title}')", timeout=BROWSER_TIMEOUT_MS)
        _rendered(page, charts)
        page.screenshot(path=str(shots / f"{path or 'overview'}.png"), full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0, title
        assert page.locator(".js-plotly-plot").count() == charts, title

    # The profile shows the latest run's top 10 in a data grid, and the timeline's hover
    # names the item and its category.
    assert page.locator("[data-testid='stDataFrame']").count() == 1
    point = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").first
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.wait_for_selector(
        ".js-plotly-plot .hoverlayer .hovertext", timeout=BROWSER_TIMEOUT_MS
    )
    text = hover.text_content()
    assert "Fixture item" in text and "Category" in text, text
    page.screenshot(path=str(shots / "profile_hover.png"))


@pytest.mark.browser
def test_sidebar_links_reach_every_page(full_warehouse, running_app, browser_page):
    page = browser_page
    wait_until_rendered(page, running_app(full_warehouse.data_dir))
    nav = page.locator("[data-testid='stSidebarNav']")
    for _, title, charts in PAGES[1:] + PAGES[:1]:
        nav.get_by_text(title, exact=True).click()
        page.wait_for_selector(f"h1:has-text('{title}')", timeout=BROWSER_TIMEOUT_MS)
        page.wait_for_selector(
            "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=BROWSER_TIMEOUT_MS
        )
        _rendered(page, charts)
        assert page.locator("[data-testid='stException']").count() == 0, title
