"""Overview: what is in the warehouse, how the last ingests went, and the
k-anonymity reached. No individual customer appears on this page; every
aggregate over customers goes through the small-cell floor first."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core.columns import EVENT_TYPES
from core.config import PrivacyConfig
from core.store.warehouse import WarehouseMissing
from dashboard import data
from dashboard.ui import ingest_hint, pretty
from privacy.disclosure import hide_small_cells

EMPTY_HINT = ingest_hint()
CHART_HEIGHT = 360
RUN_COLUMNS = ("finished_at", "source", "table_name", "rows_read", "rows_accepted", "rows_rejected")

privacy = PrivacyConfig()
floor = privacy.min_cell_size

st.title("Overview")

try:
    counts = data.load("table_counts").set_index("table_name")["rows"].astype(int)
except WarehouseMissing:
    st.info(EMPTY_HINT, icon=":material/database:")
    st.stop()
if counts.get("events", 0) == 0:
    st.info(EMPTY_HINT, icon=":material/database:")
    st.stop()

st.caption(
    f"Customers appear only as keyed pseudonyms. Every chart over customers hides "
    f"cells with fewer than {floor} distinct customers (the privacy floor), so a "
    "small group cannot be singled out."
)

for col, (label, table) in zip(
    st.columns(4),
    [("Customers", "users"), ("Items", "items"), ("Events", "events"), ("Reviews", "reviews")],
    strict=True,
):
    col.metric(label, f"{counts.get(table, 0):,}", border=True)


def _hidden_caption(hidden: int, total: int, what: str, detail: str = "") -> None:
    if hidden:
        detail = f" ({detail})" if detail else ""
        st.caption(
            f":material/visibility_off: {hidden} of {total} {what} hidden{detail}: fewer than "
            f"{floor} distinct customers, or hidden with such a cell so that it cannot be "
            "worked out from a total (privacy floor)."
        )
    else:
        st.caption(f"All {total} {what} have at least {floor} distinct customers.")


activity, stars = st.columns([2, 1], gap="large")

with activity:
    st.subheader("Events by type and month")
    by_month = data.load("events_by_type_month")
    shown, hidden = hide_small_cells(by_month, "customers", min_cell=floor, by=["month"])
    # Months each type lost to the floor: the gaps say as much, the caption says why.
    lost = (
        by_month["event_type"].value_counts().sub(shown["event_type"].value_counts(), fill_value=0)
    )
    lost = lost[lost > 0].sort_index()
    if shown.empty:
        st.info(f"Every month × type cell has fewer than {floor} customers: nothing to show.")
    else:
        types = set(shown["event_type"])
        order = [t for t in EVENT_TYPES if t in types] + sorted(types - set(EVENT_TYPES))
        fig = px.bar(
            shown.assign(event_type=shown["event_type"].map(pretty)),
            x="month",
            y="events",
            color="event_type",
            category_orders={"event_type": [pretty(t) for t in order]},
            hover_data={"customers": True},
            labels={
                "month": "Month",
                "events": "Events",
                "event_type": "Event type",
                "customers": "Distinct customers",
            },
            height=CHART_HEIGHT,
        )
        # A tick per month crowds years of data into unreadable labels; the legend
        # sits above the plot so it never collides with them.
        fig.update_xaxes(tickformat="%b %Y", nticks=12, title=None)
        fig.update_layout(
            legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "title": None},
            margin={"t": 30},
        )
        st.plotly_chart(fig)
    detail = ", ".join(
        f"{pretty(t)}: {int(n)} month{'s' if n > 1 else ''}" for t, n in lost.items()
    )
    _hidden_caption(hidden, len(by_month), "month × event-type cells", detail)

with stars:
    st.subheader("Reviews by star rating")
    by_star = data.load("reviews_by_star")
    shown, hidden = hide_small_cells(by_star, "customers", min_cell=floor)
    if by_star.empty:
        st.info("No reviews ingested yet.")
    elif shown.empty:
        st.info(f"Every star rating has fewer than {floor} customers: nothing to show.")
        _hidden_caption(hidden, len(by_star), "star ratings")
    else:
        # Every star keeps its slot on the axis; a hidden one is labelled, not left out.
        star_labels = [f"{s} ★" for s in range(1, 6)]
        stars_all = shown.set_index("stars").reindex(range(1, 6)).assign(label=star_labels)
        fig = px.bar(
            stars_all,
            x="label",
            y="reviews",
            hover_data={"customers": True, "label": False},
            labels={"label": "Stars", "reviews": "Reviews", "customers": "Distinct customers"},
            category_orders={"label": star_labels},
            height=CHART_HEIGHT,
        )
        for label in stars_all.loc[stars_all["reviews"].isna(), "label"]:
            fig.add_annotation(
                x=label,
                y=0,
                yanchor="bottom",
                text=f"hidden<br>(< {floor})",
                showarrow=False,
                font={"color": "gray"},
            )
        fig.update_xaxes(type="category")
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig)
        _hidden_caption(hidden, len(by_star), "star ratings")

st.divider()
runs_col, rejects_col = st.columns([3, 2], gap="large")

with runs_col:
    st.subheader("Last ingest runs")
    runs = data.load("last_ingest_runs", limit=10)
    if runs.empty:
        st.caption("No ingest runs recorded.")
    else:
        st.dataframe(
            runs,
            hide_index=True,
            column_order=RUN_COLUMNS,
            column_config={
                "finished_at": st.column_config.DatetimeColumn(
                    "Finished", format="YYYY-MM-DD HH:mm"
                ),
                "source": "Source file",
                "table_name": "Table",
                "rows_read": st.column_config.NumberColumn("Rows read", format="localized"),
                "rows_accepted": st.column_config.NumberColumn("Accepted", format="localized"),
                "rows_rejected": st.column_config.NumberColumn("Rejected", format="localized"),
            },
        )

with rejects_col:
    st.subheader("Rejected rows by reason")
    rejections = data.load("rejections_by_reason")
    if rejections.empty:
        st.caption("No rows rejected so far.")
    else:
        fig = px.bar(
            rejections.sort_values("rows"),
            x="rows",
            y="reason",
            orientation="h",
            labels={"rows": "Rejected rows (all runs)", "reason": ""},
            height=max(200, 60 + 40 * len(rejections)),
        )
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig)
        st.caption("Rejected rows are kept in the steward's quarantine, never in the warehouse.")

st.divider()
st.subheader("k-anonymity of customer attributes")
report = data.load("latest_anonymity_report_any_run")
if report.empty:
    st.caption("No k-anonymity report yet: one is made each time a customers file is ingested.")
else:
    for row in report.itertuples(index=False):
        k_col, target_col, suppressed_col, detail_col = st.columns([1, 1, 1, 3])
        reached = None if pd.isna(row.k_reached) else int(row.k_reached)
        k_col.metric("k reached", "—" if reached is None else reached, border=True)
        target_col.metric("k target", int(row.k_target), border=True)
        suppressed_col.metric("Suppressed customers", f"{int(row.suppressed_users):,}", border=True)
        with detail_col:
            if reached is None:
                st.warning("No customers with attributes: k could not be measured.")
            elif reached >= row.k_target:
                st.success(
                    f"Every combination of quasi-identifiers is shared by at least {reached} "
                    f"customers (target {int(row.k_target)})."
                )
            else:
                st.error(
                    f"Some combination is shared by only {reached} customers, below the "
                    f"target of {int(row.k_target)}."
                )
            st.caption(
                f"Quasi-identifiers: {row.quasi_identifiers} · generalization: "
                f"{row.generalization} · run {row.run_id}, finished "
                f"{pd.Timestamp(row.finished_at):%Y-%m-%d %H:%M}"
            )
