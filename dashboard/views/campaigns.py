"""Campaigns: define a campaign, see whom it reaches and how sure the numbers are, why
those customers, how it did in a backtest, and export the audience.

What this page writes: campaign definitions and one log row per export, each in a short
write transaction through `core.campaigns` (the CLI is otherwise the only writer).
Scoring and backtests run from the command line (they take minutes; a backtest trains a
model and spends privacy budget); this page shows what they stored. The page never maps
a pseudonym back to a customer: that is `clearmark activate`, with the steward's key.
"""

import json

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import campaigns as C
from core.config import Paths, PrivacyConfig
from core.store import warehouse
from core.store.interactions import STRONG_EVENT_TYPES
from core.store.warehouse import WarehouseError, WarehouseMissing
from dashboard import data
from dashboard.ui import ingest_hint, short
from explain.reasons import campaign_explainer
from privacy.csv_safe import safe_cell

NO_DATA_HINT = ingest_hint()
NO_MODEL_HINT = (
    "No trained model yet: campaign audiences are scored by the ranking model. Train one "
    "with `clearmark train`, then reload this page."
)
CHART_HEIGHT = 340
SHOWN_REASONS = 20
KIND_LABELS = {"item": "one item", "items": "several items", "category": "a category"}
RULE_LABELS = {"top_n": "top N customers", "top_pct": "top % of customers",
               "min_prob": "probability at least"}

paths = Paths()
floor = PrivacyConfig().min_cell_size

st.title("Campaigns")

try:
    catalogue = data.load("catalogue")
except WarehouseMissing:
    st.info(NO_DATA_HINT, icon=":material/database:")
    st.stop()
if catalogue.empty:
    st.info(NO_DATA_HINT, icon=":material/database:")
    st.stop()

from core.recommender import registry  # noqa: E402  (imports torch: only once there is data)

if registry.latest_run(paths) is None:
    st.info(NO_MODEL_HINT, icon=":material/model_training:")
    st.stop()

st.caption(
    "Customers appear only as keyed pseudonyms. This page writes campaign definitions and "
    "export log entries only; mapping pseudonyms back to customers for activation is the "
    "data steward's `clearmark activate` command, never the app. Segment charts hide "
    f"cells with fewer than {floor} customers (the privacy floor)."
)


def audience_segments(paths: Paths, campaign_id: str, size: int, min_cell: int
                      ) -> tuple[pd.DataFrame, dict[str, int], pd.Timestamp, pd.DataFrame]:
    """(segment rows, hidden cells per dimension, as-of date, every customer's segment
    features) of the campaign's top `size` customers against everyone (`data.computed`
    caches it per snapshot)."""
    events = list(STRONG_EVENT_TYPES)
    raw = warehouse.query("campaign_customer_features", paths, event_types=events,
                          before=None)
    as_of = warehouse.query("latest_event_ts", paths, event_types=events)["ts"].iloc[0]
    as_of = as_of if pd.notna(as_of) else pd.Timestamp.now()
    features = C.segment_features(raw, as_of=as_of)
    ranked = warehouse.query("campaign_scores", paths, campaign_id=campaign_id)
    rows, hidden = C.segments(features, ranked["user_pseudonym"].head(size),
                              min_cell=min_cell)
    return rows, hidden, as_of, features


def audience_csv(paths: Paths, campaign_id: str) -> tuple[bytes, int]:
    """The audience export and its row count (`data.computed` caches it per snapshot)."""
    return C.export_csv(paths, campaign_id, cell=safe_cell)


def item_label(item_id: str) -> str:
    title = titles.get(item_id)
    return f"{title} ({item_id})" if isinstance(title, str) and title else item_id


titles = dict(zip(catalogue["item_id"].astype(str), catalogue["title"], strict=True))
categories = sorted(catalogue["category"].dropna().astype(str).unique())
item_ids = catalogue["item_id"].astype(str).tolist()

# --- builder ------------------------------------------------------------------------------
campaigns = data.load("campaigns_list")
with st.expander("New campaign", expanded=campaigns.empty, icon=":material/add_circle:"):
    kind = st.radio("Target", C.TARGET_KINDS, horizontal=True,
                    format_func=KIND_LABELS.__getitem__, key="campaign_kind")
    with st.form("new_campaign", border=False):
        name = st.text_input("Name", placeholder="e.g. Winter outdoor promotion")
        if kind == "item":
            picked = [st.selectbox("Item", item_ids, format_func=item_label)]
        elif kind == "items":
            picked = st.multiselect("Items", item_ids, format_func=item_label)
        else:
            picked = [st.selectbox("Category", categories)] if categories else []
        left, right = st.columns(2)
        with left:
            season = st.selectbox("Season", C.SEASON_CHOICES,
                                  index=C.SEASON_CHOICES.index(C.season_of()))
            promotion = st.toggle("Runs as a promotion")
            seed = int(st.number_input("Holdout seed", min_value=0, value=0, step=1))
        with right:
            rule = st.selectbox("Audience rule", C.RULES, index=1,
                                format_func=RULE_LABELS.__getitem__)
            value = st.number_input("Rule value", min_value=0.0, value=10.0,
                                    help="customers (top N), percent (top %) or a "
                                         "probability between 0 and 1")
            holdout = st.slider("Holdout share (control group, never exported)", 0.0, 0.5,
                                0.10, 0.01)
        submitted = st.form_submit_button("Create campaign", type="primary")
    if submitted:
        try:
            created = C.save_campaign(paths, C.new_campaign(
                name=name, target_kind=kind, target=[p for p in picked if p],
                promotion=promotion, season=season, rule=rule, rule_value=value,
                holdout_share=holdout, seed=seed))
        except (C.CampaignError, WarehouseError) as exc:
            st.error(str(exc))
        else:
            st.success(f"Created {created.label}. Pick it below and score it (or from the "
                       f"command line: `clearmark campaign score {created.campaign_id}`).")
            campaigns = data.load("campaigns_list")

if campaigns.empty:
    st.info("No campaigns yet: create one above.", icon=":material/campaign:")
    st.stop()

st.subheader("Saved campaigns")
shown_campaigns = campaigns.assign(target=campaigns["target"].map(
    lambda t: ", ".join(json.loads(t))))
st.dataframe(shown_campaigns[["name", "campaign_id", "target_kind", "target", "season",
                              "promotion", "rule", "rule_value", "holdout_share",
                              "created_at", "created_by"]],
             hide_index=True, width="stretch")

labels = dict(zip(campaigns["campaign_id"], campaigns["name"], strict=True))
campaign_id = st.selectbox("Campaign", list(labels),
                           format_func=lambda c: f"{labels[c]} · {c}")
campaign = C.Campaign.from_row(campaigns[campaigns["campaign_id"] == campaign_id]
                               .iloc[0].to_dict())
scoring = data.load("campaign_latest_scoring", campaign_id=campaign_id)
if scoring.empty:
    st.info("Not scored yet: score it here, or from the command line with "
            f"`clearmark campaign score {campaign_id}`.", icon=":material/pending:")
    if st.button("Score this campaign now", type="primary", icon=":material/play_arrow:",
                 help="Every customer's probability of the target, calibrated, with the "
                      "reasons of the first audience members (about a minute per 2,000 "
                      "customers on 2 cores)."):
        with st.spinner("Scoring every customer for this campaign…", show_time=True):
            try:
                C.score_campaign(paths, campaign_id, explainer_factory=campaign_explainer)
            except (C.CampaignError, WarehouseError) as exc:
                st.error(str(exc))
                st.stop()
        st.rerun()
    st.stop()

summary = json.loads(scoring["summary"].iloc[0])
scores = data.load("campaign_scores", campaign_id=campaign_id)
validation = summary.get("validation", {})
calibration = summary.get("calibration", {})
st.caption(f"Scored {pd.Timestamp(scoring['scored_at'].iloc[0]):%Y-%m-%d %H:%M} UTC with "
           f"model `{scoring['run_id'].iloc[0] or 'none (content only)'}` · target: "
           f"{campaign.target_kind} {', '.join(item_label(t) for t in campaign.target)}"
           f" · season {campaign.season} · promotion {'on' if campaign.promotion else 'off'}")
for warning in summary.get("warnings", []):
    st.warning(warning, icon=":material/warning:")

audience = scores[scores["in_audience"]]
cols = st.columns(5)
cols[0].metric("Customers scored", f"{len(scores):,}", border=True)
cols[1].metric("Audience", f"{len(audience):,}", border=True,
               help=f"{campaign.rule} {campaign.rule_value:g}")
cols[2].metric("Holdout", f"{int(scores['in_holdout'].sum()):,}", border=True,
               help="random, seeded control group; never exported")
cols[3].metric("Validation AUC", f"{validation.get('auc') or float('nan'):.2f}", border=True)
cols[4].metric("Top-decile lift", f"{validation.get('top_decile_lift') or float('nan'):.1f}×",
               border=True, help="positive rate in the top 10% / overall (validation)")

# --- size trade-off -----------------------------------------------------------------------
st.subheader("Audience size")
total = len(scores)
size = st.slider("Audience size (customers, best first)", 1, max(total, 2),
                 min(max(len(audience), 1), total),
                 help="What-if: the saved audience follows the campaign's rule. To make "
                      "this size the rule: `clearmark campaign audience "
                      f"{campaign_id} --rule top_n --value <size>`.")
at = C.at_size(scores["probability"], size)
cols = st.columns(4)
cols[0].metric("Expected conversions", f"{at['expected_conversions']:,.1f}", border=True,
               help="sum of the calibrated probabilities in the audience (= expected true "
                    "positives): how many of these customers' next purchase, review or "
                    "cart addition is expected to be with the target. Not a count over "
                    "a time window: customers who do not come back do not convert.")
cols[1].metric("Expected false positives", f"{at['expected_false_positives']:,.1f}",
               border=True)
cols[2].metric("Precision", f"{at['precision']:.1%}", border=True)
cols[3].metric("Share of all expected conversions", f"{at['expected_recall']:.1%}",
               border=True)
curve = C.size_curve(scores["probability"])
fig = go.Figure()
fig.add_scatter(x=curve["n"], y=curve["expected_conversions"], name="expected conversions")
fig.add_scatter(x=curve["n"], y=curve["expected_false_positives"],
                name="expected false positives")
fig.add_vline(x=size, line_dash="dot")
fig.update_layout(height=CHART_HEIGHT, xaxis_title="audience size",
                  yaxis_title="customers", legend={"orientation": "h", "y": -0.25},
                  margin={"t": 10})
st.plotly_chart(fig, width="stretch")

# --- segments -----------------------------------------------------------------------------
st.subheader("Who is in it")
rows, hidden, as_of, features = data.computed(audience_segments, campaign_id, size,
                                              floor)
st.caption(f"The top {size:,} customers against all {total:,}; recency and frequency count "
           "purchases, reviews and add-to-cart events, as of the latest one in the "
           f"warehouse ({pd.Timestamp(as_of):%Y-%m-%d}). Lift = share in the audience / "
           "share in the population (1: as common as everywhere).")
dimension = st.segmented_control("Segment by", [label for _, label in C.SEGMENT_DIMENSIONS],
                                 default="top category")
dimension = dimension or "top category"
shown = rows[rows["dimension"] == dimension]
if shown.empty:
    st.info(f"Every {dimension} cell has fewer than {floor} customers: nothing to show.")
else:
    long = shown.melt(id_vars=["segment", "lift"],
                      value_vars=["audience_share", "population_share"],
                      var_name="group", value_name="share")
    long["group"] = long["group"].map({"audience_share": "audience",
                                       "population_share": "population"})
    share_col, lift_col = st.columns(2)
    with share_col:
        fig = px.bar(long, x="segment", y="share", color="group", barmode="group",
                     height=CHART_HEIGHT, labels={"segment": dimension, "share": "share"})
        fig.update_yaxes(tickformat=".0%")
        fig.update_layout(legend={"orientation": "h", "y": -0.3}, margin={"t": 10})
        st.plotly_chart(fig, width="stretch")
    with lift_col:
        fig = px.bar(shown, x="segment", y="lift", height=CHART_HEIGHT,
                     labels={"segment": dimension, "lift": "lift"})
        fig.add_hline(y=1.0, line_dash="dot")
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig, width="stretch")
if hidden.get(dimension):
    st.caption(f":material/visibility_off: {hidden[dimension]} {dimension} cell(s) hidden: "
               f"fewer than {floor} customers in the audience or the population, or needed "
               "so that the hidden cells together hold at least that many.")

# --- why ----------------------------------------------------------------------------------
st.subheader("Why these customers")
reasons = data.load("campaign_reasons", campaign_id=campaign_id)
if reasons.empty:
    st.info("No reasons stored for this audience (score with reasons: `clearmark campaign "
            f"score {campaign_id} --reasons 100`).")
else:
    reasons = reasons.assign(reasons=reasons["reasons"].map(json.loads))
    st.caption(f"Field-level SHAP of the model's score on each customer's best target item, "
               f"for the first {len(reasons):,} audience members by score (holdout "
               "excluded); reasons are computed for a capped number of customers.")
    table = pd.DataFrame({
        "customer": reasons["user_pseudonym"].map(short),
        "item": reasons["item_id"].map(item_label),
        "reasons": reasons["reasons"].map(lambda r: "; ".join(r)),
    }).head(SHOWN_REASONS)
    st.dataframe(table, hide_index=True, width="stretch")
    drivers, hidden_drivers = C.segment_drivers(features, reasons, min_cell=floor)
    drivers = drivers[drivers["dimension"] == dimension]
    if drivers.empty:
        st.caption(f"No {dimension} segment has {floor} or more explained members: no "
                   "driver summary.")
    else:
        long = drivers.melt(id_vars=["segment", "members"],
                            value_vars=list(C.FIELD_GROUPS), var_name="fields",
                            value_name="mean attribution")
        fig = px.bar(long, x="segment", y="mean attribution", color="fields",
                     barmode="group", height=CHART_HEIGHT,
                     labels={"segment": dimension})
        fig.update_layout(legend={"orientation": "h", "y": -0.3}, margin={"t": 10})
        st.caption("What drives the scores per segment: mean attribution of the history, "
                   "context and item fields (probability units).")
        st.plotly_chart(fig, width="stretch")
        if hidden_drivers.get(dimension):
            st.caption(f":material/visibility_off: {hidden_drivers[dimension]} segment(s) "
                       f"hidden: fewer than {floor} explained members.")

# --- how sure -----------------------------------------------------------------------------
st.subheader("How sure: calibration and lift")
overall = calibration.get("overall", {})
cal_col, lift_col = st.columns(2)
with cal_col:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"},
                    name="perfect")
    for key, label in (("reliability_before", "before"), ("reliability_after", "after")):
        table = pd.DataFrame(overall.get(key, []))
        if not table.empty:
            table = table[table["customers"] > 0]
            fig.add_scatter(x=table["mean_predicted"], y=table["observed_rate"],
                            mode="lines+markers", name=f"{label} calibration")
    fig.update_layout(height=CHART_HEIGHT, xaxis_title="predicted probability",
                      yaxis_title="observed rate", legend={"orientation": "h", "y": -0.3},
                      margin={"t": 10})
    st.plotly_chart(fig, width="stretch")
    st.caption(f"Expected calibration error (10 bins, validation, out-of-fold): before "
               f"{overall.get('ece_before') or float('nan'):.3f}, after "
               f"{overall.get('ece_after') or float('nan'):.3f}. Methods: " + ", ".join(
                   f"{tier}: {r.get('method')}" for tier, r in
                   calibration.get("tiers", {}).items()))
with lift_col:
    lift = pd.DataFrame(validation.get("lift_by_decile", []))
    if lift.empty:
        st.info("No validation positives: no lift chart.")
    else:
        fig = px.bar(lift, x="decile", y="lift", height=CHART_HEIGHT,
                     labels={"decile": "decile (1 = top 10%)", "lift": "lift vs random"})
        fig.add_hline(y=1.0, line_dash="dot")
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig, width="stretch")
        st.caption(f"Validation: {validation.get('customers', 0):,} customers, "
                   f"{validation.get('positives', 0):,} whose next interaction was the "
                   "target.")

# --- backtest -----------------------------------------------------------------------------
st.subheader("Backtest")
if st.button("Show the latest backtest", icon=":material/history:"):
    st.session_state["show_backtest"] = campaign_id
if st.session_state.get("show_backtest") == campaign_id:
    stored = data.load("campaign_latest_backtest", campaign_id=campaign_id)
    if stored.empty:
        st.info("No backtest stored for this campaign. A backtest trains a model on the data "
                "before a cutoff (a DP run, charged to the privacy budget), so it runs from "
                f"the command line: `clearmark campaign backtest {campaign_id} --cutoff "
                "YYYY-MM-DD --horizon-days 90`.")
    else:
        report = json.loads(stored["result"].iloc[0])
        rankings = report.get("rankings", {})
        cols = st.columns(4)
        cols[0].metric("Buyers in the window", f"{report.get('buyers', 0):,}", border=True,
                       help=f"of {report.get('customers', 0):,} customers")
        cols[1].metric("Top-decile lift (model)",
                       f"{rankings.get('model', {}).get('top_decile_lift') or 0:.2f}×",
                       border=True)
        cols[2].metric("Top-decile lift (popularity)",
                       f"{rankings.get('popularity', {}).get('top_decile_lift') or 0:.2f}×",
                       border=True)
        at_rule = report.get("at_rule", {})
        cols[3].metric("Precision / recall at the rule",
                       f"{at_rule.get('precision') or 0:.1%} / {at_rule.get('recall') or 0:.1%}",
                       border=True)
        fig = go.Figure()
        fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="random (expected)",
                        line={"dash": "dot", "color": "grey"})
        for name, ranking in rankings.items():
            if name.startswith("random"):
                continue
            g = pd.DataFrame(ranking.get("gains", []))
            if not g.empty:
                fig.add_scatter(x=[0, *g["share"]], y=[0, *g["captured"]],
                                mode="lines+markers", name=name)
        fig.update_layout(height=CHART_HEIGHT, xaxis_title="share of customers targeted",
                          yaxis_title="share of buyers reached", margin={"t": 10},
                          xaxis_tickformat=".0%", yaxis_tickformat=".0%",
                          legend={"orientation": "h", "y": -0.3})
        st.plotly_chart(fig, width="stretch")
        st.caption(f"Cutoff {report.get('cutoff', '')[:10]}, horizon "
                   f"{report.get('horizon_days')} days, model `{report.get('run_id')}` "
                   "trained on data before the cutoff only. Popularity targeting ranks "
                   "customers by their past interactions in the target's category, then by "
                   "activity.")
        for warning in report.get("warnings", []):
            st.warning(warning, icon=":material/warning:")

# --- export -------------------------------------------------------------------------------
st.subheader("Export")


def _log_export(campaign_id: str, rows: int, file_name: str) -> None:
    try:
        C.log_export(paths, campaign_id, rows=rows, file_name=file_name)
    except WarehouseError as exc:
        st.session_state["export_error"] = str(exc)


try:
    csv_bytes, export_rows = data.computed(audience_csv, campaign_id)
except C.ExportRefused as exc:
    st.warning(str(exc), icon=":material/block:")
else:
    file_name = C.export_file_name(campaign)
    st.download_button(f"Download the audience ({export_rows:,} customers, CSV)",
                       data=csv_bytes, file_name=file_name, mime="text/csv",
                       icon=":material/download:", on_click=_log_export,
                       args=(campaign_id, export_rows, file_name))
    st.caption("Pseudonym, score, calibrated probability, decile and top reasons; the "
               "holdout is left out; every cell is spreadsheet-safe. Each download is "
               "logged (who: the app's OS user).")
if st.session_state.get("export_error"):
    st.error(f"The export could not be logged: {st.session_state.pop('export_error')}")
exports = data.load("campaign_exports_list", campaign_id=campaign_id)
if not exports.empty:
    st.dataframe(exports, hide_index=True, width="stretch")
