"""Privacy: the privacy officer's page. Budget spent per dataset, every run charged to
the ledger with its second-opinion epsilon and empirical audit, whether the ledger is
intact, what ingest did to the data, and the audit exports."""

import json
import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.config import Paths
from core.store import warehouse
from core.store.report import warehouse_report
from dashboard.ui import epsilon
from privacy.audit import audit_report, to_csv, to_json
from privacy.guarantee import is_private

EMPTY_HINT = (
    "Nothing has been charged to the privacy budget yet. Every model trained on customer "
    "data is recorded here before it can be used: train one with `clearmark train` (or "
    "`make run`), then reload this page."
)
CHART_HEIGHT = 300

paths = Paths()
ledger_path, budget_file = paths.ledger, paths.budgets


def _stamp(path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@st.cache_data(ttl=60, max_entries=8, show_spinner="Recomputing every run's ε…")
def _report(ledger: str, budgets: str, stamps: tuple) -> dict:
    # `stamps` (the ledger's and the budgets file's mtime and size) is part of the cache
    # key, so a new record recomputes the report.
    return audit_report(ledger_path=ledger_path, budgets_path=budget_file)


st.title("Privacy")
st.caption(
    "ε bounds what a released model can reveal about one **privacy unit**. *Customer* "
    "(user-level): a customer's whole history counts once, so ε protects each person. "
    "*Example*: each training example counts once, so a customer with k examples is "
    "protected at about k·ε. Runs stay charged even if they failed: the data was used."
)

report = _report(str(ledger_path), str(budget_file),
                 (_stamp(ledger_path), _stamp(budget_file)))
ledger = report["ledger"]

if ledger["records"] == 0:
    st.info(EMPTY_HINT, icon=":material/shield:")
else:
    if ledger["ok"]:
        st.success(f"Ledger verified: {ledger['records']} records, hash chain intact. "
                   f"Head hash `{ledger['head_hash']}`. Keep it elsewhere; "
                   "`clearmark audit verify --expected-head …` later proves nothing "
                   "changed since.", icon=":material/verified:")
    else:
        st.error("The privacy ledger FAILED verification:\n\n"
                 + "\n".join(f"- {p}" for p in ledger["problems"]),
                 icon=":material/gpp_bad:")
    for problem in report["budget_file"]["problems"]:
        st.warning(problem, icon=":material/warning:")

    st.subheader("Budget per dataset")
    runs = pd.DataFrame(report["runs"])
    for d in report["datasets"]:
        left, right = st.columns([2, 3], gap="large")
        spent = d["spent_composed_epsilon"]
        with left:
            if d["budget_epsilon"] is None:
                st.metric(f"{d['dataset']}: ε spent (no budget set)", epsilon(spent),
                          border=True)
                st.caption(f"Set a cap: `clearmark budget set --dataset {d['dataset']} "
                           "--epsilon 10 --delta 1e-5`. Runs over it are then refused "
                           "before they start.")
            else:
                cap = d["budget_epsilon"]
                gauge = go.Figure(go.Indicator(
                    mode="gauge+number", value=spent if math.isfinite(spent) else cap,
                    number={"suffix": f" of {cap:g}", "valueformat": ".2f"},
                    title={"text": f"{d['dataset']}: ε spent (composed)"},
                    gauge={"axis": {"range": [0, cap]},
                           "bar": {"color": "#d62728" if d["over_budget"] else "#1f77b4"},
                           "threshold": {"line": {"color": "black", "width": 3},
                                         "value": cap}}))
                gauge.update_layout(height=CHART_HEIGHT - 40, margin=dict(t=60, b=10))
                st.plotly_chart(gauge, use_container_width=True)
            st.caption(f"{d['runs']} run(s); composed by {d['composed_by']} at δ = "
                       f"{d['composed_at_delta']}: ε {epsilon(spent)} (sum of the "
                       f"claims: {epsilon(d['spent_summed_epsilon'])}).")
        with right:
            mine = runs[(runs["dataset"] == d["dataset"]) & runs["epsilon_claimed"].notna()]
            mine = mine.sort_values("started_at")
            finite = mine[mine["epsilon_claimed"].map(lambda e: math.isfinite(e))]
            if not finite.empty:
                # One bar per run in time order (a time axis squeezes runs of one day
                # together), and the running total: the sum is an upper bound on the
                # composed spend shown on the left.
                labels = (pd.to_datetime(finite["started_at"]).dt.strftime("%Y-%m-%d %H:%M")
                          + " · " + finite["run_id"].str[-8:]).tolist()
                fig = go.Figure([
                    go.Bar(x=labels, y=finite["epsilon_claimed"], name="ε of the run",
                           marker_color="#9ecae1", hovertext=finite["run_id"]),
                    go.Scatter(x=labels, y=finite["epsilon_claimed"].cumsum(),
                               mode="lines+markers", name="running sum",
                               line={"color": "#1f77b4"})])
                if d["budget_epsilon"] is not None:
                    fig.add_hline(y=d["budget_epsilon"], line_dash="dash",
                                  annotation_text="cap")
                fig.update_layout(title="Spend by run, oldest first", height=CHART_HEIGHT,
                                  margin=dict(t=50, b=10), yaxis_title="ε",
                                  xaxis={"type": "category"},
                                  legend={"orientation": "h", "y": -0.25})
                st.plotly_chart(fig, use_container_width=True)
            non_private = sum(not is_private(r.epsilon_claimed, r.privacy_unit)
                              for r in mine.itertuples())
            if non_private:
                st.warning(f"{non_private} run(s) on {d['dataset']} trained WITHOUT "
                           "differential privacy (ε = ∞): not releasable.",
                           icon=":material/warning:")

    st.subheader("Runs")
    table = runs.assign(
        epsilon=runs["epsilon_final"].map(epsilon),
        second_opinion=runs["pld_epsilon"].map(epsilon),
        empirical_lower_bound=runs["empirical_epsilon_lower_bound"].map(epsilon),
    )
    st.dataframe(
        table, hide_index=True,
        column_order=("run_id", "artefact_kind", "status", "privacy_unit", "epsilon",
                      "delta", "accountant", "second_opinion", "agrees",
                      "empirical_lower_bound", "releasable", "reasons", "started_at"),
        column_config={
            "privacy_unit": st.column_config.TextColumn("unit"),
            "epsilon": st.column_config.TextColumn("ε"),
            "delta": st.column_config.NumberColumn("δ", format="%.1e"),
            "second_opinion": st.column_config.TextColumn(
                "ε (PLD, 2nd opinion)", help="recomputed with Google's dp_accounting"),
            "empirical_lower_bound": st.column_config.TextColumn(
                "empirical ε ≥", help="membership audit (`clearmark audit membership`), "
                "95% confidence; — where no audit ran"),
        })
    if not runs["flagged"].any():
        st.caption("No run is flagged. Runs without an empirical audit can be audited with "
                   "`clearmark audit membership <run>` (needs `--audit-pool` at training).")
    else:
        st.error("Flagged: " + "; ".join(f"{r.run_id}: {r.reasons}" for r in
                                        runs[runs["flagged"]].itertuples()),
                 icon=":material/gpp_bad:")

st.subheader("Warehouse privacy report")
try:
    wh = warehouse_report(paths)
except warehouse.WarehouseMissing as exc:
    wh = None
    st.info(str(exc), icon=":material/database:")
if wh is not None:
    a, b, c = st.columns(3)
    k = wh["k_anonymity"]
    a.metric("k reached", "—" if not k or k["k_reached"] is None else k["k_reached"],
             help=f"target k = {k['k_target'] if k else '—'}", border=True)
    b.metric("Customers suppressed", "—" if not k else f"{k['suppressed_customers']:,}",
             border=True)
    c.metric("Minimum cell size", wh["min_cell_size"], border=True,
             help="no chart or table shows fewer customers than this")
    if k:
        st.caption(f"Quasi-identifiers: {k['quasi_identifiers']}; generalization applied: "
                   f"{k['generalization']}.")
    else:
        st.caption("No customer file ingested yet: no quasi-identifiers stored.")
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Never stored**")
        st.caption("Customer ids: " + wh["customer_id"] + ". Direct identifiers: "
                   + ", ".join(wh["direct_identifiers_never_stored"]) + ".")
        dropped = pd.DataFrame(wh["columns_not_stored"])
        if dropped.empty:
            st.caption("No source column was dropped.")
        else:
            st.dataframe(dropped.assign(sources=dropped["sources"].map(", ".join)),
                         hide_index=True, use_container_width=True)
    with right:
        st.markdown("**Scrubbed from review text**")
        scrubbed = pd.Series(wh["scrubbed_from_text"], dtype="int64")
        if scrubbed.empty or scrubbed.sum() == 0:
            st.caption("Nothing found to scrub in the review text ingested so far.")
        else:
            st.bar_chart(scrubbed.rename("found"), horizontal=True, height=220)

st.subheader("Downloads")
d1, d2, d3 = st.columns(3)
d1.download_button("Audit (CSV)", to_csv(report), file_name="privacy_audit.csv",
                   mime="text/csv", disabled=ledger["records"] == 0)
d2.download_button("Audit (JSON, with the ledger head hash)", to_json(report),
                   file_name="privacy_audit.json", mime="application/json",
                   disabled=ledger["records"] == 0)
d3.download_button("Warehouse report (JSON)",
                   json.dumps(wh, indent=2, default=str) if wh else "{}",
                   file_name="warehouse_privacy_report.json", mime="application/json",
                   disabled=wh is None)
