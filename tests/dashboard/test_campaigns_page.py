"""The Campaigns page in AppTest: empty states, a scored campaign with a tiny model, the
builder form, the stored backtest, and the export refusal below the minimum size."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import campaigns as C
from core.config import Paths
from core.store.warehouse import query
from tests.core.campaigns.test_campaigns import category_campaign, payload_explainer, save_tiny_run

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def campaigns_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    return at.switch_page("views/campaigns.py").run()


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_without_a_warehouse_says_how_to_get_data(warehouse_paths):
    at = campaigns_page()
    assert not at.exception
    assert any("clearmark ingest" in t for t in texts(at.info))


def test_without_a_model_says_to_train_one(small_warehouse):
    at = campaigns_page()
    assert not at.exception
    assert any("clearmark train" in t for t in texts(at.info))
    assert not at.metric


@pytest.fixture
def scored_page(small_warehouse: Paths) -> tuple[Paths, C.Campaign]:
    save_tiny_run(small_warehouse)
    campaign = C.save_campaign(small_warehouse, category_campaign())
    C.score_campaign(small_warehouse, campaign.campaign_id,
                     config=C.ScoringConfig(ce_customers=15, val_ce_customers=10, reasons=12),
                     explainer_factory=payload_explainer)
    return small_warehouse, campaign


def test_scored_campaign_shows_figures_segments_and_refuses_a_small_export(scored_page):
    paths, campaign = scored_page
    at = campaigns_page()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers scored"] == "60" and metrics["Audience"] == "30"
    assert metrics["Holdout"] == "6"
    assert "Expected conversions" in metrics and "Precision" in metrics
    assert any("fewer than 100" in t for t in texts(at.warning))  # few validation positives
    assert any("minimum of 100" in t for t in texts(at.warning))  # export refused
    assert any("Expected calibration error" in t for t in texts(at.caption))
    assert at.slider  # the audience-size what-if
    # Moving the slider changes the expected figures, not the stored audience.
    at.slider[-1].set_value(10).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Audience"] == "30"


def test_backtest_button_points_to_the_cli_then_shows_a_stored_one(scored_page):
    paths, campaign = scored_page
    at = campaigns_page()
    button = next(b for b in at.button if "backtest" in str(b.label))
    button.click().run()
    assert not at.exception
    assert any("clearmark campaign backtest" in t for t in texts(at.info))
    report = {"campaign_id": campaign.campaign_id, "cutoff": "2025-04-01T00:00:00",
              "horizon_days": 60, "run_id": "ce_x", "customers": 60, "buyers": 12,
              "rankings": {"model": {"top_decile_lift": 2.5, "gains": [
                  {"share": 0.5, "captured": 0.8}, {"share": 1.0, "captured": 1.0}]},
                  "popularity": {"top_decile_lift": 1.5, "gains": [
                      {"share": 0.5, "captured": 0.6}, {"share": 1.0, "captured": 1.0}]}},
              "at_rule": {"precision": 0.3, "recall": 0.7}, "warnings": []}
    C.save_backtest(paths, report)
    at = campaigns_page()
    next(b for b in at.button if "backtest" in str(b.label)).click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Top-decile lift (model)"] == "2.50×"


def test_the_form_creates_a_campaign(scored_page):
    paths, _ = scored_page
    at = campaigns_page()
    at.radio[0].set_value("category").run()
    at.text_input[0].input("Kitchen winter")
    submit = next(b for b in at.button if "Create campaign" in str(b.label))
    submit.click().run()
    assert not at.exception and not at.error, texts(at.error)
    names = query("campaigns_list", paths)["name"].tolist()
    assert "Kitchen winter" in names
    assert any("clearmark campaign score" in t for t in texts(at.success))


def test_page_never_shows_a_customer_id(scored_page):
    at = campaigns_page()
    shown = " ".join(texts(at.caption) + texts(at.markdown) + texts(at.info))
    assert "customer_id" not in shown
    frames = [d.value for d in at.dataframe]
    assert all(isinstance(f, pd.DataFrame) for f in frames)
    assert not any("customer_id" in f.columns for f in frames)


# --- in a real browser: charts, the download and its log ----------------------------------


@pytest.fixture
def generated_campaign(warehouse_paths: Paths, pseudonym_key: bytes, tmp_path: Path):
    """300 generated customers, a tiny model and a scored category campaign whose audience
    (top 50%, 10% holdout) is large enough to export."""
    from core.ingest.pipeline import ingest
    from core.synthetic.generator import GeneratorConfig, generate

    files = generate(GeneratorConfig(customers=300, items=200, seed=3), tmp_path / "raw",
                     progress=False)
    ingest([files.out_dir], key=pseudonym_key, paths=warehouse_paths, progress=False)
    save_tiny_run(warehouse_paths)
    campaign = C.save_campaign(warehouse_paths, category_campaign(
        target=["Outdoor"], rule_value=50.0, holdout_share=0.1))
    C.score_campaign(warehouse_paths, campaign.campaign_id,
                     config=C.ScoringConfig(ce_customers=20, val_ce_customers=10, reasons=3),
                     explainer_factory=payload_explainer)
    return warehouse_paths, campaign


@pytest.mark.browser
def test_campaigns_page_in_a_browser_draws_charts_and_logs_the_download(
        generated_campaign, running_app, browser_page, tmp_path):
    from support import BROWSER_TIMEOUT_MS, wait_until_rendered

    paths, campaign = generated_campaign
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 4000})
    wait_until_rendered(page, f"{running_app(paths.data_dir)}/campaigns")
    page.wait_for_selector("h1:has-text('Campaigns')", timeout=BROWSER_TIMEOUT_MS)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".filter(p => p.querySelector('.trace')).length >= 3", timeout=BROWSER_TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(tmp_path / "campaigns.png"), full_page=True)
    with page.expect_download(timeout=BROWSER_TIMEOUT_MS) as download:
        page.locator("[data-testid='stDownloadButton'] button").click()
    path = download.value.path()
    exported = pd.read_csv(path, dtype=str, keep_default_na=False)
    stored = query("campaign_scores", paths, campaign_id=campaign.campaign_id)
    holdout = set(stored.loc[stored["in_holdout"], "user_pseudonym"])
    assert len(exported) >= 100 and not holdout & set(exported["pseudonym"])
    # The click's callback logs the export at the start of the rerun it triggers, which
    # may not have begun when the download arrives: wait for the log, not for the page.
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    log = query("campaign_exports_list", paths, campaign_id=campaign.campaign_id)
    while log.empty and time.monotonic() < deadline:
        time.sleep(0.2)
        log = query("campaign_exports_list", paths, campaign_id=campaign.campaign_id)
    assert log["rows"].tolist() == [len(exported)]
