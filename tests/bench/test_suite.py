"""The benchmark suite's table: headline rows from each result shape, the Markdown."""

from bench.suite import SUITE, markdown, target_rows

MACHINE = {"cpu": "test cpu", "cores": 2, "memory": "1 GiB", "gpu": "none",
           "python": "3.11", "code_version": "abc", "when": "now"}


def test_rows_from_both_target_shapes():
    result = {"targets": {
        "attention p95 s": {"target": 0.1, "measured": 0.06, "hit": True},
        "knn": {"what": "non-private NDCG@10 >= item-kNN", "model": 0.14,
                "reference": 0.168, "holds": False}}}
    assert target_rows(result) == [
        ("attention p95 s", 0.06, 0.1, True),
        ("non-private NDCG@10 >= item-kNN", 0.14, ">= 0.168", False)]
    assert target_rows({}) == []


def test_sentiment_rows_compare_with_the_targets():
    bench = next(b for b in SUITE if b.name == "sentiment")
    result = {"targets": {"binary_non_private": 0.9, "binary_dp8": 0.85,
                          "macro_f1_dp8_over_vader": 0.15},
              "datasets": {"generated": {
                  "vader": {"macro_f1": 0.6},
                  "runs": {"non-private": {"binary_accuracy_balanced": 0.97},
                           "dp-eps8": {"binary_accuracy_balanced": 0.80, "macro_f1": 0.8}}}}}
    rows = {r[0]: r for r in bench.rows(result)}
    assert rows["generated: binary accuracy, non-private"][3] is True
    assert rows["generated: binary accuracy, DP eps=8"][3] is False
    gain = rows["generated: macro-F1 DP eps=8 minus VADER"]
    assert abs(gain[1] - 0.2) < 1e-9 and gain[3] is True


def test_markdown_marks_misses_and_failed_benchmarks():
    summary = {"machine": MACHINE, "quick": True, "load_average_start": [0.1, 0.1, 0.1],
               "benchmarks": {
                   "explain": {"exit": 0, "seconds": 12.0,
                               "rows": [["kendall shap vs loo", 0.31, 0.6, False]]},
                   "recommender": {"exit": 2, "seconds": 1.0}}}
    text = markdown(summary)
    assert "| explain | kendall shap vs loo | 0.31 | 0.6 | **no** |" in text
    assert "| recommender | (exit 2, 1 s) | | | |" in text
    assert "test cpu, 2 cores" in text


def test_every_committed_result_gives_its_rows():
    """Each benchmark's headline rows read the result file it writes (the committed one),
    so that a renamed key fails here, not after an hour of benchmarks."""
    import json

    from bench.machine import RESULTS

    read = {}
    for bench in SUITE:
        path = RESULTS / f"{bench.result}.json"
        if path.exists():
            read[bench.name] = bench.rows(json.loads(path.read_text()))
            assert all(len(r) == 4 for r in read[bench.name]), bench.name
    assert len(read["inference"]) == 4 and read["scale"] and read["dp_step"]


def test_a_quick_run_never_replaces_a_full_result(monkeypatch):
    from bench.machine import QUICK_ENV, result_name

    monkeypatch.delenv(QUICK_ENV, raising=False)
    assert result_name("explain") == "explain"
    monkeypatch.setenv(QUICK_ENV, "1")  # what bench.suite --quick gives its children
    assert result_name("explain") == "explain_quick"
    assert result_name("dp_step_quick") == "dp_step_quick"
