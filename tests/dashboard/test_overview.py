"""The Overview page in AppTest (what AppTest cannot see, the charts drawn in a
browser, is in test_browser.py)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.store import warehouse
from core.store.warehouse import ensure_schema, table_counts, write_transaction

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
HINT = "Run `make run` (demo data) or `clearmark ingest <file>`"


def _run() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_renders_with_data(small_warehouse):
    at = _run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Overview"
    assert not at.info
    counts = table_counts(small_warehouse)
    metrics = _metrics(at)
    assert metrics["Customers"] == "60"
    assert metrics["Items"] == "30"
    assert metrics["Events"] == f"{counts['events']:,}"
    assert metrics["Reviews"] == "55"
    assert metrics["k reached"] == "6"
    assert metrics["k target"] == "5"
    # events by month, reviews by star, rejections by reason
    assert len(at.get("plotly_chart")) == 3
    assert len(at.dataframe) == 1  # last ingest runs
    assert "demo_events.csv" in at.dataframe[0].value["source"].tolist()


def test_small_cells_are_hidden_and_said_so(small_warehouse):
    at = _run()
    captions = [c.value for c in at.caption]
    assert any(
        "12 of 30 month × event-type cells hidden (add to cart: 3 months, purchase: 3 months, "
        "review: 6 months)" in c
        for c in captions
    ), captions
    assert any("2 of 5 star ratings hidden" in c for c in captions), captions
    assert any("fewer than 10 distinct customers" in c for c in captions), captions


def test_no_warehouse_shows_the_command_to_run(warehouse_paths):
    assert not warehouse_paths.snapshot.exists()
    at = _run()
    assert not at.exception
    assert len(at.info) == 1
    assert HINT in at.info[0].value
    assert not at.metric  # st.stop() before anything else


def test_empty_warehouse_shows_the_command_to_run(warehouse_paths):
    ensure_schema(warehouse_paths)
    at = _run()
    assert not at.exception
    assert HINT in at.info[0].value
    assert not at.metric


def test_new_ingest_shows_without_restart(small_warehouse):
    at = _run()
    before = table_counts(small_warehouse)["events"]
    assert _metrics(at)["Events"] == f"{before:,}"
    with write_transaction(small_warehouse) as con:  # what an ingest does, then a new snapshot
        con.execute(
            "INSERT INTO events VALUES (?, ?, 'view', TIMESTAMP '2025-06-15 10:00', NULL, ?)",
            ["u_" + "0" * 64, "i_0001", "run_extra"],
        )
    at.run()
    assert not at.exception
    assert _metrics(at)["Events"] == f"{before + 1:,}"


def test_reruns_read_the_cache_not_the_warehouse(small_warehouse, monkeypatch):
    at = _run()
    calls = []
    real_query = warehouse.query
    monkeypatch.setattr(warehouse, "query", lambda *a, **k: calls.append(a) or real_query(*a, **k))
    at.run()
    assert not at.exception
    assert calls == []
