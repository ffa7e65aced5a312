"""The explanation panel in AppTest (charts and the download are drawn by the browser;
AppTest sees the elements)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from explain.faithfulness import write_summary
from tests.explain.conftest import EXPLAIN_USERS, TINY_RUN

PAGE = str(Path(__file__).resolve().parent / "explanation_panel_page.py")


def _page(monkeypatch) -> AppTest:
    monkeypatch.setenv("EXPLAIN_TEST_RUN", TINY_RUN)
    monkeypatch.setenv("EXPLAIN_TEST_USER", EXPLAIN_USERS[0])
    return AppTest.from_file(PAGE, default_timeout=180).run()


def test_panel_shows_reasons_bars_and_download(explain_warehouse, monkeypatch):
    at = _page(monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "Why these recommendations"
    reasons = [line for m in at.markdown for line in m.value.splitlines()
               if line.startswith("- **#") and ("because of" in line or "raises the score"
                                                 in line or "No single field" in line)]
    assert len(reasons) == 2, [m.value for m in at.markdown]  # one line per recommendation
    captions = [c.value for c in at.caption]
    assert sum("where the model looked — not a cause" in c for c in captions) == 1
    assert len(at.get("plotly_chart")) == 2  # SHAP and attention, of the chosen one
    assert at.selectbox[1].value == 0  # the first recommendation's charts by default
    assert at.selectbox[0].value == "shap-field"  # not measured: field SHAP by default
    assert any("Not measured for this model yet" in i.value for i in at.info)
    assert len(at.get("download_button")) == 1


def test_token_heat_map_on_request(explain_warehouse, monkeypatch):
    at = _page(monkeypatch)
    at.selectbox[1].set_value(1).run()  # the second recommendation's charts
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 2
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 3
    assert any(c.value.startswith("Token SHAP of") for c in at.caption)


def test_measured_preference_is_the_default(explain_warehouse, monkeypatch):
    methods = {m: {"comprehensiveness_aopc": {"mean": v}, "sufficiency_aopc": {"mean": 0.0}}
               for m, v in (("shap-field", 0.1), ("leave-one-out", 0.3),
                            ("attention-rollout", 0.05), ("attention-cls", 0.01),
                            ("random", 0.02))}
    write_summary(explain_warehouse, TINY_RUN, {
        "recommendations": 200, "methods": methods, "preferred_method": "leave-one-out",
        "shap_above_random_share": 0.93, "kendall_shap_vs_leave_one_out": {"mean": 0.7}})
    at = _page(monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox[0].value == "leave-one-out"
    assert len(at.get("plotly_chart")) == 3  # + the faithfulness figure
    assert any("beats a random order on 93%" in c.value for c in at.caption)


def test_a_new_item_says_it_is_judged_by_its_text_alone(explain_warehouse, monkeypatch):
    from dashboard.components.explanations import NEW_ITEM_NOTE
    from explain.service import get_service, reset

    service = get_service(TINY_RUN)
    recs = service.recommendations_for([EXPLAIN_USERS[0]], k=2)
    first, second = (str(i) for i in recs["item_id"])
    try:  # as if `first` were added to the catalogue since training
        service.__dict__["trained_items"] = frozenset(service.records) - {first}
        assert service.is_new(first) and not service.is_new(second)
        assert not service.is_new("not-in-the-catalogue")
        at = _page(monkeypatch)
        assert not at.exception, [e.value for e in at.exception]
        lines = [line for m in at.markdown for line in m.value.splitlines()
                 if line.startswith("- **#")]
        assert len(lines) == 2
        assert [NEW_ITEM_NOTE.strip() in line for line in lines] == [True, False]
    finally:
        reset()  # the next test loads the run afresh
