"""The Privacy page in AppTest, and the warehouse privacy report behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import Paths
from core.store.report import warehouse_report
from privacy import budget, ledger
from privacy.audit import record_membership_audit
from privacy.budget import set_budget

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
DP_RUN, PLAIN_RUN = "ce_20250702T090000_0000dp01", "ce_20250701T090000_0000np01"


def _charge(paths: Paths, run_id: str, epsilon: float, sigma: float,
            dataset: str = "warehouse") -> None:
    budget.charge(ledger_path=paths.ledger, budgets_path=paths.budgets, run_id=run_id,
                  dataset=dataset, dataset_fingerprint="ab" * 32,
                  artefact_kind="ranking_model",
                  privacy_unit="none" if epsilon == float("inf") else "customer",
                  contribution_cap=8, noise_multiplier=sigma, sample_rate=0.01, steps=1000,
                  max_grad_norm=1.0, delta=1e-5, epsilon=epsilon, accountant="prv",
                  secure_mode=False)
    ledger.complete(ledger_path=paths.ledger, run_id=run_id,
                    epsilon=None if epsilon == float("inf") else epsilon, note="saved")


@pytest.fixture
def charged(small_warehouse: Paths) -> Paths:
    set_budget(budgets_path=small_warehouse.budgets, ledger_path=small_warehouse.ledger,
               dataset="warehouse", epsilon=10.0, delta=1e-5)
    _charge(small_warehouse, DP_RUN, 1.838, 1.0)  # PRV at sigma 1, q .01, 1000 steps
    record_membership_audit(ledger_path=small_warehouse.ledger, run_id=DP_RUN,
                            epsilon_lower_bound=0.12, confidence=0.95, method="one-run")
    return small_warehouse


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page("views/privacy.py").run()


def test_warehouse_report_lists_what_ingest_removed(small_warehouse):
    report = warehouse_report(small_warehouse)
    assert {c["column"] for c in report["columns_not_stored"]} == {"name", "email", "phone"}
    assert report["k_anonymity"]["k_reached"] == 6 and report["k_anonymity"]["k_target"] == 5
    assert report["k_anonymity"]["suppressed_customers"] == 2
    assert report["min_cell_size"] == 10
    json.dumps(report)  # the download is plain JSON


def test_no_spend_yet_says_how_to_get_one(small_warehouse):
    at = _page()
    assert not at.exception
    assert any("clearmark train" in i.value for i in at.info)
    assert any(m.label == "k reached" and m.value == "6" for m in at.metric)


def test_runs_budget_audit_and_downloads(charged):
    at = _page()
    assert not at.exception
    assert any("Ledger verified" in s.value for s in at.success)
    runs = at.dataframe[0].value
    assert runs["run_id"].tolist() == [DP_RUN]
    row = runs.iloc[0]
    assert row["privacy_unit"] == "customer" and bool(row["agrees"])
    assert row["empirical_epsilon_lower_bound"] == pytest.approx(0.12)
    assert bool(row["releasable"])
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Audit (CSV)", "Audit (JSON, with the ledger head hash)",
                      "Warehouse report (JSON)"]


def test_a_non_private_run_is_warned_about(charged):
    _charge(charged, PLAIN_RUN, float("inf"), 0.0, dataset="trial")  # no budget there
    at = _page()
    assert not at.exception
    assert any("WITHOUT differential privacy" in w.value for w in at.warning)


def test_an_edited_ledger_is_shown_as_failed(charged):
    lines = charged.ledger.read_text().splitlines()
    lines[1] = lines[1].replace('"epsilon": 1.838', '"epsilon": 0.5')
    charged.ledger.write_text("\n".join(lines) + "\n")
    at = _page()
    assert not at.exception
    assert any("FAILED verification" in e.value for e in at.error)


@pytest.mark.browser
def test_privacy_page_in_a_browser_draws_the_gauge_and_the_spend(charged, running_app,
                                                                 browser_page):
    from support import BROWSER_TIMEOUT_MS, wait_until_rendered

    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2400})
    # A deep link: the sidebar must list the app's pages, not the files of a folder.
    wait_until_rendered(page, f"{running_app(charged.data_dir)}/privacy")
    page.wait_for_selector("h1:has-text('Privacy')", timeout=BROWSER_TIMEOUT_MS)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".filter(p => p.querySelector('.indicator, .trace')).length >= 2",
        timeout=BROWSER_TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Privacy" in nav and "Customer profile" in nav and "app" not in nav.split()
    assert page.get_by_text("Ledger verified").count() == 1
