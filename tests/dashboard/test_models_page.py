"""The Models page in AppTest, and `core.registry.runs` which reads the run folders.

Run folders are written here in the shape `core.recommender.registry.save` writes (the JSON
files, plus an empty weights file: the page never reads the weights)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import Paths
from core.registry import runs as model_runs
from core.registry import store as registry

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
DP_RUN = "ce_20250702T090000_0000dp01"
PLAIN_RUN = "ce_20250701T090000_0000np01"
FINGERPRINT = "ab" * 32
BASELINES = {
    "popularity": {"hr@10": 0.149, "ndcg@10": 0.073, "mrr": 0.061, "coverage@10": 0.01},
    "item-knn": {"hr@10": 0.354, "ndcg@10": 0.170, "mrr": 0.140, "coverage@10": 0.30},
    "zero-shot-content": {"hr@10": 0.236, "ndcg@10": 0.140, "mrr": 0.120, "coverage@10": 0.45},
}


def write_fake_run(
    paths: Paths,
    run_id: str,
    *,
    private: bool = True,
    created_at: str = "2025-07-02T09:00:00+00:00",
    steps: int = 12,
    epsilon: float = 2.98,
    baselines: bool = True,
) -> Path:
    """A complete run folder as `registry.save` leaves it (see core/recommender/spend.py for the
    privacy and metrics records). Returns the folder."""
    path = paths.models_dir / run_id
    path.mkdir(parents=True)
    (path / registry.WEIGHTS).write_bytes(b"")  # never loaded by the page
    sigma, q = (1.1, 0.25) if private else (0.0, 0.25)
    files = {
        "config.json": {
            "run_id": run_id,
            "created_at": created_at,
            "code_version": "0123abcd" * 5,
            "split": "leave_last_out",
            "train_config": {
                "epsilon": epsilon if private else 3.0,
                "epochs": 3,
                "batch_size": 16,
                "non_private": not private,
            },
            "model_config": {},
            "bert_config": {},
            "tokenizer": {},
        },
        "privacy.json": {
            "private": private,
            "epsilon": epsilon if private else math.inf,
            "target_epsilon": 3.0 if private else math.inf,
            "delta": 1e-5,
            "noise_multiplier": sigma,
            "sample_rate": q,
            "steps": steps,
            "expected_batch_size": 16,
            "customers": 60,
            "max_grad_norm": 1.0,
            "accountant": "prv" if private else "none",
            "privacy_unit": "customer" if private else "none",
            "contribution_cap": 8,
            "contribution": "one example group per sampled customer per step",
            "secure_mode": False,
            **({"popularity_release": {
                "noise_multiplier": 4.92, "cap": 10, "l2_sensitivity": 10 ** 0.5,
                "customers": 70, "epsilon_alone": 0.75, "reliability": 0.55,
                "log_form": "not read: reliability 0.55 below 0.9",
                "ledger_run_id": run_id + "-counts"}} if private else {
                "co_visits": {"what": "customers who interacted with both items",
                              "customers": 70, "pairs": 120}}),
        },
        "metrics.json": {
            "model": {
                "model": "cross-encoder",
                "split": "leave_last_out",
                "on": "test",
                "k": 10,
                "users": 60,
                "hr@10": 0.30,
                "ndcg@10": 0.15,
                "mrr": 0.12,
                "coverage@10": 0.40,
                "targets_outside_catalogue": 0,
            },
            "timing": {"steps": steps, "seconds_per_step": 2.8, **({} if private else {
                "final_mix": {"validation_customers": 60, "ranked": 51, "kept": "fitted",
                              "weights_of": ["head", "prior", "popularity", "co_visits"],
                              "trained": [1.0, 4.7, 0.75, 3.6],
                              "fitted": [0.41, 3.16, 0.29, 3.69],
                              "ndcg_before": 0.196, "ndcg_after": 0.202}})},
            **({"baselines": BASELINES} if baselines else {}),
        },
        "fingerprint.json": {
            "sha256": FINGERPRINT,
            "rows": 900,
            "customers": 60,
            "split": "leave_last_out",
            "dataset": "warehouse.duckdb",
        },
        "curve.json": [
            {
                "step": s,
                "epoch": 1 + (s - 1) * 3 // steps,
                "batch_size": 0 if s == 5 else 16,
                "loss": float("nan") if s == 5 else 2.0 - 0.1 * s,
                "epsilon": epsilon * (s / steps) ** 0.5 if private else None,
                "seconds": 2.8,
            }
            for s in range(1, steps + 1)
        ],
        "candidates.json": {"popular": ["i_0001"], "source": "training split popularity"},
    }
    for name, value in files.items():
        (path / name).write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
    return path


@pytest.fixture
def two_runs(warehouse_paths: Paths) -> Paths:
    """A user-level DP run (newest) and a non-private run, plus an unfinished folder."""
    write_fake_run(warehouse_paths, DP_RUN)
    write_fake_run(
        warehouse_paths,
        PLAIN_RUN,
        private=False,
        created_at="2025-07-01T09:00:00+00:00",
        baselines=False,
    )
    (warehouse_paths.models_dir / "ce_20250703T000000_unfinish.partial").mkdir()
    return warehouse_paths


def _models_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page("views/models.py").run()


# --- core.registry.runs ----------------------------------------------------------------


def test_files_read_are_the_registry_files():
    assert set(model_runs.RUN_FILES) <= set(registry.FILES)


@pytest.mark.parametrize(
    ("privacy", "label"),
    [
        ({"private": True, "epsilon": 3.0, "privacy_unit": "customer"}, "user-level (customer)"),
        ({"private": True, "epsilon": 3.0, "privacy_unit": "example"}, "example-level"),
        ({"private": False, "epsilon": math.inf, "privacy_unit": "none"}, "non-private (ε = ∞)"),
        ({"epsilon": None, "privacy_unit": "customer"}, "non-private (ε = ∞)"),
        ({}, "non-private (ε = ∞)"),
    ],
)
def test_privacy_label_never_calls_example_level_user_level(privacy, label):
    assert model_runs.privacy_label(privacy) == label


def test_list_runs_newest_first_complete_only(two_runs):
    runs = model_runs.list_runs(two_runs)
    assert runs["run_id"].tolist() == [DP_RUN, PLAIN_RUN]
    dp, plain = runs.iloc[0], runs.iloc[1]
    assert dp["epsilon"] == pytest.approx(2.98) and dp["epsilon_label"] == "2.98"
    assert dp["privacy"] == "user-level (customer)"
    assert (dp["accountant"], dp["epochs"], dp["steps"]) == ("prv", 3, 12)
    assert dp["hr@10"] == pytest.approx(0.30) and dp["ndcg@10"] == pytest.approx(0.15)
    assert math.isinf(plain["epsilon"]) and plain["epsilon_label"] == "∞"
    assert plain["privacy"] == "non-private (ε = ∞)"


def test_metrics_frame_puts_the_model_next_to_each_baseline(two_runs):
    frame = model_runs.metrics_frame(model_runs.read_run(two_runs, DP_RUN).metrics)
    assert list(dict.fromkeys(frame["model"])) == [model_runs.MODEL_LABEL, *BASELINES]
    assert list(dict.fromkeys(frame["metric"])) == ["HR@10", "NDCG@10", "MRR", "Coverage@10"]
    value = frame.set_index(["model", "metric"])["value"]
    assert value[("item-knn", "HR@10")] == pytest.approx(0.354)
    assert value[(model_runs.MODEL_LABEL, "NDCG@10")] == pytest.approx(0.15)


def test_metrics_frame_reads_a_flat_evaluation():
    flat = {"model": "cross-encoder", "k": 10, "hr@10": 0.5, "ndcg@10": 0.25}
    frame = model_runs.metrics_frame(flat)
    assert frame["metric"].tolist() == ["HR@10", "NDCG@10"]
    assert model_runs.metrics_frame({}).empty


def test_curve_frame_keeps_empty_batches_as_missing_loss(two_runs):
    curve = model_runs.curve_frame(model_runs.read_run(two_runs, DP_RUN).curve)
    assert curve["step"].tolist() == list(range(1, 13))
    assert curve["loss"].isna().sum() == 1
    assert curve["epsilon"].iloc[-1] == pytest.approx(2.98)
    plain = model_runs.curve_frame(model_runs.read_run(two_runs, PLAIN_RUN).curve)
    assert plain["epsilon"].isna().all()
    assert model_runs.curve_frame([]).empty


def test_read_run_tolerates_missing_and_broken_files(warehouse_paths):
    path = write_fake_run(warehouse_paths, DP_RUN)
    (path / "curve.json").unlink()
    (path / "fingerprint.json").write_text("{not json")
    run = model_runs.read_run(warehouse_paths, DP_RUN)
    assert run.curve == [] and run.fingerprint == {}
    assert run.privacy["privacy_unit"] == "customer"


# --- the page -------------------------------------------------------------------------


def test_no_model_shows_the_command_to_train(warehouse_paths):
    at = _models_page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Models"
    assert len(at.info) == 1
    assert "No trained model yet" in at.info[0].value
    assert "`clearmark train`" in at.info[0].value
    assert not at.dataframe  # st.stop() before anything else


def test_only_an_unfinished_run_is_still_empty(warehouse_paths):
    (warehouse_paths.models_dir / "ce_20250703T000000_unfinish.partial").mkdir(parents=True)
    at = _models_page()
    assert not at.exception
    assert "No trained model yet" in at.info[0].value


def test_runs_table_and_the_selected_dp_run(two_runs):
    at = _models_page()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.info
    table = at.dataframe[0].value
    assert table["run_id"].tolist() == [DP_RUN, PLAIN_RUN]
    assert table["privacy"].tolist() == ["user-level (customer)", "non-private (ε = ∞)"]
    assert table["epsilon_label"].tolist() == ["2.98", "∞"]
    assert at.selectbox[0].value == DP_RUN  # newest first
    # metrics next to baselines, loss by step, epsilon by step
    assert len(at.get("plotly_chart")) == 3
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ε spent"] == "2.98"
    assert metrics["δ"] == "1.0e-05"
    markdown = " ".join(m.value for m in at.markdown)
    assert "user-level (customer)" in markdown and "prv" in markdown
    assert "**Noise multiplier σ:** 1.100" in markdown
    codes = [c.value for c in at.code]
    assert FINGERPRINT in codes and "0123abcd" * 5 in codes
    captions = " ".join(c.value for c in at.caption)
    assert f"Item popularity: customer counts per item (at most 10 items per customer) " \
        f"released once with Gaussian noise, σ 4.920, ledger entry {DP_RUN}-counts" in captions
    assert "reliability 0.55 (share of the released spread that is signal), log form not " \
        "read: reliability 0.55 below 0.9" in captions
    assert "1 step had an empty batch" in captions
    assert not at.warning


def test_selecting_the_non_private_run_warns_and_draws_no_epsilon_curve(two_runs):
    at = _models_page()
    at.selectbox[0].set_value(PLAIN_RUN).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.warning) == 1 and "Non-private run" in at.warning[0].value
    assert {m.label: m.value for m in at.metric}["ε spent"] == "∞"
    assert len(at.get("plotly_chart")) == 2  # metrics (model only) and loss
    assert any("non-private" in i.value for i in at.info)
    assert any("no baselines recorded" in c.value for c in at.caption)
    assert any("Co-visits: exact counts of customers per item pair (70 customers; not "
               "private, non-private runs only)" in c.value for c in at.caption)
    assert any("Final weights fitted on 60 validation customers, 51 of them ranked among "
               "their candidates: head ×0.41, prior 3.16, popularity 0.29, co-visits 3.69; "
               "validation NDCG@10 0.196 → 0.202" in c.value for c in at.caption)


def test_final_mix_note_says_when_the_trained_weights_were_kept():
    fit = {"validation_customers": 12, "ranked": 3, "kept": "trained",
           "reason": "too few validation targets among their candidates"}
    assert model_runs.final_mix_note({"timing": {"final_mix": fit}}) == (
        "Final weights kept as trained (too few validation targets among their candidates; "
        "12 validation customers, 3 of them ranked among their candidates)")
    assert model_runs.final_mix_note({"timing": {"steps": 3}}) is None


def test_segments_frame_reports_cold_start_apart():
    metrics = {
        "model": {"hr@10": 0.3, "ndcg@10": 0.2},
        "segments": {"cold_items": {"users": 12, "hr@10": 0.25, "ndcg@10": 0.11},
                     "warm_items": {"users": 88, "hr@10": 0.31, "ndcg@10": 0.21}},
        "baselines": {"item-knn": {"hr@10": 0.2, "ndcg@10": 0.1, "segments": {
            "cold_items": {"users": 12, "hr@10": 0.0, "ndcg@10": 0.0}}}},
    }
    frame = model_runs.segments_frame(metrics)
    cold = frame[frame["segment"].str.startswith("items never")]
    assert dict(zip(cold["model"], cold["hr@10"], strict=True)) == {
        model_runs.MODEL_LABEL: 0.25, "item-knn": 0.0}
    assert model_runs.segments_frame({"model": {"hr@10": 0.3}}).empty
