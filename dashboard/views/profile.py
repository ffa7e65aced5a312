"""Customer profile: one customer, known only by their keyed pseudonym: their activity,
generalized attributes, event history and category affinities, the latest scoring run's
top recommendations for them, and why each was recommended (the explanation panel).
Nothing on this page names a person."""

import html

import pandas as pd
import plotly.express as px
import streamlit as st

from core.columns import EVENT_TYPES
from core.store.warehouse import WarehouseMissing
from dashboard import data
from dashboard.ui import ingest_hint, md_escape, pretty, short

EMPTY_HINT = ingest_hint("customers")
NO_RECS_HINT = (
    "No recommendations yet. Score the customers with the latest model with "
    "`clearmark score` (train one first with `clearmark train`), then reload this page."
)
TOP_CUSTOMERS = 200  # the most active customers offered in the picker
SEARCH_LIMIT = 200
HISTORY_LIMIT = 1000  # most recent events drawn on the timeline
TOP_K = 10
SUPPRESSED = "suppressed (k-anonymity)"
NOT_PROVIDED = "not provided"
CHART_HEIGHT = 360
ATTRIBUTES = (("age_band", "Age band"), ("region", "Region"), ("signup_month", "Signup month"))


def attribute_value(value: object, *, k_anonymity_applied: bool) -> str:
    """A stored attribute as shown. A missing value after a customers ingest (which
    enforces k-anonymity) is labelled suppressed; the warehouse keeps no separate mark
    for a value the source never had."""
    if value is None or pd.isna(value) or str(value).strip() == "":
        return SUPPRESSED if k_anonymity_applied else NOT_PROVIDED
    return str(value)


st.title("Customer profile")

try:
    top = data.load("top_active_customers", limit=TOP_CUSTOMERS)
except WarehouseMissing:
    st.info(EMPTY_HINT, icon=":material/database:")
    st.stop()
if top.empty:
    st.info(EMPTY_HINT, icon=":material/database:")
    st.stop()

st.caption(
    "Customers appear only as keyed pseudonyms: the warehouse holds no name, e-mail "
    "address or customer id, and attributes are generalized (k-anonymity) at ingest. "
    "Everything below is this one customer's own record, not an aggregate over customers."
)

# --- pick a customer ----------------------------------------------------------------------
search_col, pick_col = st.columns([2, 3], gap="medium")
with search_col:
    text = st.text_input(
        "Search a pseudonym",
        placeholder="paste a pseudonym or part of it, e.g. u_3fa9",
        help="Case-insensitive substring match on the pseudonym.",
    ).strip()
if text:
    options = data.load("customer_search", text=text, limit=SEARCH_LIMIT)
    if options.empty:
        search_col.warning(f"No customer's pseudonym contains “{text}”.")
        st.stop()
    more = "+" if len(options) == SEARCH_LIMIT else ""
    picker_label = f"Matching customers ({len(options)}{more})"
else:
    options = top
    picker_label = f"Most active customers (top {len(top)})"

events_of = dict(zip(options["user_pseudonym"], options["events"].astype(int), strict=True))
choices = list(events_of)
linked = st.query_params.get("customer")  # deep link: ?customer=<pseudonym>
if linked and linked not in events_of and not text:
    found = data.load("customer_search", text=linked, limit=1)
    if not found.empty and found["user_pseudonym"].iloc[0] == linked:
        events_of[linked] = int(found["events"].iloc[0])
        choices.insert(0, linked)
with pick_col:
    pseudonym = st.selectbox(
        picker_label,
        choices,
        index=choices.index(linked) if linked in choices else 0,
        format_func=lambda p: f"{short(p)} · {events_of[p]:,} events",
    )
st.code(pseudonym, language=None)

# --- summary and attributes ---------------------------------------------------------------
activity = data.load("customer_activity", user=pseudonym).iloc[0]
attributes = data.load("customer_attributes", user=pseudonym)
k_applied = not data.load("latest_anonymity_report_any_run").empty
record = attributes.iloc[0] if not attributes.empty else pd.Series(dtype=object)

activity_cols = st.columns(4)
activity_cols[0].metric("Events", f"{int(activity['events']):,}", border=True)
activity_cols[1].metric("Distinct items", f"{int(activity['items']):,}", border=True)
for col, (label, ts) in zip(
    activity_cols[2:],
    [("First seen", activity["first_seen"]), ("Last seen", activity["last_seen"])],
    strict=True,
):
    col.metric(label, "—" if pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}", border=True)

st.markdown("**Generalized attributes**")
for col, (column, label) in zip(st.columns(3), ATTRIBUTES, strict=True):
    value = attribute_value(record.get(column), k_anonymity_applied=k_applied)
    with col.container(border=True):
        st.caption(label)
        if value in (SUPPRESSED, NOT_PROVIDED):
            st.markdown(f":gray[:material/visibility_off: {value}]")
        else:
            st.markdown(f"**{md_escape(value)}**")
st.caption(
    "Stored generalized at ingest (age in bands, region instead of city or postcode, "
    "signup month or coarser) so that each combination is shared by several customers; "
    f"a customer in too small a group has them removed, shown as “{SUPPRESSED}”."
)

# --- history and affinities -----------------------------------------------------------------
history_col, affinity_col = st.columns([3, 2], gap="large")

with history_col:
    st.subheader("History")
    history = data.load("customer_history", user=pseudonym, limit=HISTORY_LIMIT)
    if history.empty:
        st.info("This customer has no recorded events.")
    else:
        types = set(history["event_type"])
        order = [t for t in EVENT_TYPES if t in types] + sorted(types - set(EVENT_TYPES))
        # Item text is attacker-controlled: escape it before Plotly renders it as HTML.
        shown = history.assign(
            event=history["event_type"].map(pretty),
            item=history["title"].fillna(history["item_id"]).astype(str).map(html.escape),
            category=history["category"].fillna("unknown category").astype(str).map(html.escape),
        )
        fig = px.scatter(
            shown,
            x="ts",
            y="event",
            color="event",
            category_orders={"event": [pretty(t) for t in order]},
            hover_name="item",
            hover_data={"category": True, "ts": "|%Y-%m-%d %H:%M", "event": False},
            labels={"ts": "Time", "event": "", "category": "Category"},
            height=CHART_HEIGHT,
        )
        fig.update_traces(marker={"size": 9, "opacity": 0.75})
        fig.update_layout(showlegend=False, margin={"t": 10})
        st.plotly_chart(fig)
        total = int(activity["events"])
        st.caption(
            "Each dot is one event; hover for the item. "
            + (
                f"Showing the {len(history):,} most recent of {total:,} events."
                if total > len(history)
                else f"All {total:,} events."
            )
        )

with affinity_col:
    st.subheader("Category affinities")
    affinity = data.load("customer_category_affinity", user=pseudonym)
    if affinity.empty:
        st.info("No interactions to compute affinities from.")
    else:
        fig = px.bar(
            affinity.sort_values("share"),
            x="share",
            y="category",
            orientation="h",
            text_auto=".0%",
            hover_data={"interactions": True, "share": ":.1%"},
            labels={
                "share": "Share of the customer's interactions",
                "category": "",
                "interactions": "Interactions",
            },
            height=max(220, 80 + 36 * len(affinity)),
        )
        fig.update_xaxes(tickformat=".0%", rangemode="tozero")
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig)
        st.caption("Share of all this customer's events (views to purchases) per item category.")

# --- recommendations --------------------------------------------------------------------------
st.divider()
st.subheader(f"Top-{TOP_K} recommendations")
has_recs = bool(data.load("table_exists", table_name="recommendations")["present"].iloc[0])
latest = data.load("latest_scored_run") if has_recs else pd.DataFrame()
if latest.empty:
    st.info(NO_RECS_HINT, icon=":material/recommend:")
    st.stop()

run_id = str(latest["run_id"].iloc[0])
scored_at = pd.Timestamp(latest["created_at"].iloc[0])
scored = int(latest["customers"].iloc[0])
scored_text = f"{scored:,} customer{'' if scored == 1 else 's'}"
recs = data.load("recommendations_for_customer", run_id=run_id, user=pseudonym, limit=TOP_K)
if recs.empty:
    st.info(
        f"The latest scoring run `{run_id}` scored {scored_text}, not this one. Run "
        "`clearmark score` to score every customer.",
        icon=":material/recommend:",
    )
    st.stop()

st.dataframe(
    recs.assign(title=recs["title"].fillna(recs["item_id"])),
    hide_index=True,
    column_order=("rank", "title", "category", "price", "score"),
    column_config={
        "rank": st.column_config.NumberColumn("Rank", format="%d", width="small"),
        "title": "Item",
        "category": "Category",
        "price": st.column_config.NumberColumn("Price", format="dollar"),
        "score": st.column_config.NumberColumn(
            "Score", format="%.3f",
            help="The model's score (a logit): higher ranks first. A new item (no "
                 "purchases in the model's training data) moved into the last place of "
                 "the top 10, kept for new items, shows a score between its neighbours'"),
    },
)
st.caption(
    f"From model run `{run_id}` (details on the Models page), scored "
    f"{scored_at:%Y-%m-%d %H:%M} ({scored_text}). Items the customer already has are left "
    "out by default."
)

# Imported here: it loads the model libraries, needed only for a customer with
# recommendations.
from dashboard.components.explanations import render_explanations  # noqa: E402

render_explanations(run_id, pseudonym, recs)
