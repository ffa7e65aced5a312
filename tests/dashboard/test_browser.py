"""The Overview in a real browser: what AppTest cannot see (Plotly drawing,
front-end exceptions). Needs Debian's chromium at /usr/bin/chromium."""

import os
import subprocess
import sys

import pytest
from support import BROWSER_TIMEOUT_MS, wait_until_rendered

from core.store.warehouse import table_counts


@pytest.mark.browser
def test_overview_draws_charts_without_exceptions(small_warehouse, running_app, browser_page,
                                                  tmp_path):
    page = browser_page
    wait_until_rendered(page, running_app(small_warehouse.data_dir))
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2",
                           timeout=BROWSER_TIMEOUT_MS)
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stMetric']").count() >= 4
    assert "Customers" in page.locator("[data-testid='stMetric']").first.inner_text()


@pytest.mark.browser
def test_ingest_writes_while_the_app_is_serving(small_warehouse, running_app, browser_page,
                                                pseudonym_key, tmp_path):
    """The app holds no lock on the warehouse: a CLI ingest commits while a
    browser has the page open, and the page shows the new rows on reload."""
    page = browser_page
    url = running_app(small_warehouse.data_dir)
    wait_until_rendered(page, url)
    events_before = table_counts(small_warehouse)["events"]

    raw = tmp_path / "more_events.csv"
    raw.write_text("customer_id,item_id,timestamp\n"
                   + "".join(f"N{i},P{i % 5},2025-06-2{i % 9}T10:00:00\n" for i in range(40)))
    (tmp_path / "more_events.mapping.toml").write_text(
        'table = "events"\n[columns]\ncustomer_id = "customer_id"\n'
        'item_id = "item_id"\ntimestamp = "timestamp"\n')
    env = {**os.environ, "CLEARMARK_DATA": str(small_warehouse.data_dir)}
    done = subprocess.run([sys.executable, "-m", "core.cli", "ingest", "--quiet", str(raw)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert table_counts(small_warehouse)["events"] == events_before + 40

    wait_until_rendered(page, url)
    page.wait_for_selector("[data-testid='stMetric']", timeout=BROWSER_TIMEOUT_MS)
    events_metric = page.locator("[data-testid='stMetric']").nth(2).inner_text()
    assert f"{events_before + 40:,}" in events_metric
    assert page.locator("[data-testid='stException']").count() == 0
