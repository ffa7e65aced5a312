"""Review sentiment: what the text of the reviews says, over time, by category, item and
customer segment; where stars and text disagree; the aspects that drive negative and
positive reviews; example reviews with the words that drove the prediction.

Every aggregate over customers goes through the small-cell floor first (with
complementary suppression, so a hidden share cannot be recovered from the others);
aspects were already cut to those backed by at least the floor of distinct reviewers
when they were scored. Review text shown here is the scrubbed text of the warehouse.
"""

import html
import json

import pandas as pd
import plotly.express as px
import streamlit as st

from core.config import PrivacyConfig
from core.sentiment.data import LABELS, review_text, suppress_shares
from core.store.warehouse import WarehouseMissing
from dashboard import data

EMPTY_HINT = (
    "No sentiment scores yet. Train a model, then score the reviews: "
    "`clearmark sentiment train` then `clearmark sentiment score` (on a fresh install, "
    "`make run` or `clearmark ingest <file>` first), and reload this page."
)
COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c"}
RGB = {"negative": "214, 39, 40", "neutral": "120, 120, 120", "positive": "44, 160, 44"}
CHART_HEIGHT = 340
TOP_ITEMS = 15
EXAMPLES = 3
MAX_EXAMPLE_CHARS = 900

floor = PrivacyConfig().min_cell_size

st.title("Review sentiment")

try:
    ready = int(data.load("sentiment_tables")["tables"].iloc[0]) == 3
    status = data.load("sentiment_status") if ready else pd.DataFrame()
except WarehouseMissing:
    ready, status = False, pd.DataFrame()
if status.empty:
    st.info(EMPTY_HINT, icon=":material/sentiment_neutral:")
    st.stop()

run = status.iloc[0]
st.caption(
    f"Model `{run['run_id']}` · {int(run['reviews']):,} reviews scored "
    f"{pd.Timestamp(run['scored_at']):%Y-%m-%d %H:%M} UTC · labels read from the text "
    f"(stars are not an input). Every chart over customers hides cells with fewer than "
    f"{floor} distinct reviewers (the privacy floor), and one more cell where needed so "
    "that a hidden share cannot be worked out from the others."
)


def _hidden_caption(hidden: int, dropped: int, groups: str) -> None:
    if hidden or dropped:
        st.caption(
            f":material/visibility_off: {hidden} cell(s) hidden and {dropped} {groups} left "
            f"out: fewer than {floor} distinct reviewers (privacy floor)."
        )
    else:
        st.caption(f"No cell hidden: every cell of the {groups} shown has at least {floor} "
                   "distinct reviewers.")


def _share_chart(shown: pd.DataFrame, x: str, *, x_label: str, horizontal: bool = False,
                 height: int = CHART_HEIGHT, order: list[str] | None = None):
    labels = {"share": "Share of reviews", "label": "Text sentiment", x: x_label,
              "reviews": "Reviews", "customers": "Distinct reviewers"}
    kwargs = dict(color="label", color_discrete_map=COLORS, labels=labels, height=height,
                  category_orders={"label": list(LABELS), **({x: order} if order else {})},
                  hover_data={"reviews": True, "customers": True, "share": ":.1%"})
    if horizontal:
        fig = px.bar(shown, x="share", y=x, orientation="h", **kwargs)
    else:
        fig = px.bar(shown, x=x, y="share", **kwargs)
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.25},
                      margin={"t": 10})
    (fig.update_xaxes if horizontal else fig.update_yaxes)(tickformat=".0%", range=[0, 1])
    return fig


def _highlight(text: str, spans_json: str | None, label: str) -> str:
    """The review with each word's background as strong as its push towards the
    predicted label (HTML-escaped: review text is untrusted)."""
    spans = json.loads(spans_json) if isinstance(spans_json, str) else []
    strongest = max([w for _, _, w in spans if w > 0] + [1e-12])
    out, pos = [], 0
    for start, end, weight in spans:
        if start < pos or end > MAX_EXAMPLE_CHARS:
            continue
        out.append(html.escape(text[pos:start]))
        word = html.escape(text[start:end])
        alpha = max(weight, 0.0) / strongest
        if alpha >= 0.05:
            out.append(f'<span style="background-color: rgba({RGB[label]}, {0.75 * alpha:.2f});'
                       f' border-radius: 3px; padding: 0 1px" title="{weight:+.3f}">{word}</span>')
        else:
            out.append(word)
        pos = end
    rest = text[pos:MAX_EXAMPLE_CHARS]
    out.append(html.escape(rest) + ("…" if len(text) > MAX_EXAMPLE_CHARS else ""))
    return "".join(out)


def _show_examples(examples: pd.DataFrame) -> None:
    for row in examples.itertuples(index=False):
        probability = {"negative": row.p_negative, "neutral": row.p_neutral,
                       "positive": row.p_positive}[row.label]
        text = review_text(row.summary, row.text)
        st.markdown(
            f"**{'★' * int(row.stars)}{'☆' * (5 - int(row.stars))}** · text reads "
            f"**{row.label}** ({probability:.0%})<br>{_highlight(text, row.spans, row.label)}",
            unsafe_allow_html=True,
        )


# --- overall and over time ----------------------------------------------------------------

overall = data.load("sentiment_overall").assign(scope="all")
shown, _, _ = suppress_shares(overall, ["scope"], min_cell=floor)
for col, label in zip(st.columns(3), LABELS, strict=True):
    row = shown[shown["label"] == label]
    col.metric(f"{label.capitalize()} reviews",
               f"{float(row['share'].iloc[0]):.0%}" if len(row) else "hidden", border=True)

by_month = data.load("sentiment_by_month")
st.subheader("Sentiment by month")
shown, hidden, dropped = suppress_shares(by_month, ["month"], min_cell=floor)
if shown.empty:
    st.info(f"No month has {floor} or more distinct reviewers per sentiment: nothing to show.")
else:
    fig = _share_chart(shown, "month", x_label="Month")
    fig.update_xaxes(dtick="M1", tickformat="%b %Y")  # whole months, also for one month
    st.plotly_chart(fig)
_hidden_caption(hidden, dropped, "months")

cat_col, seg_col = st.columns(2, gap="large")
with cat_col:
    st.subheader("By category")
    by_category = data.load("sentiment_by_category")
    shown, hidden, dropped = suppress_shares(by_category, ["category"], min_cell=floor)
    if shown.empty:
        st.info("No category has enough reviewers to show.")
    else:
        st.plotly_chart(_share_chart(shown, "category", x_label="Category", horizontal=True,
                                     height=max(220, 60 + 32 * shown["category"].nunique())))
    _hidden_caption(hidden, dropped, "categories")

with seg_col:
    st.subheader("By customer segment")
    by_segment = data.load("sentiment_by_segment")
    dimension = st.radio("Segment by", ["age band", "region"], horizontal=True)
    part = by_segment[by_segment["dimension"] == dimension]
    shown, hidden, dropped = suppress_shares(part, ["segment"], min_cell=floor)
    if shown.empty:
        st.info(f"No {dimension} has enough reviewers to show.")
    else:
        st.plotly_chart(_share_chart(shown, "segment", x_label=dimension.capitalize(),
                                     horizontal=True,
                                     height=max(220, 60 + 32 * shown["segment"].nunique())))
    _hidden_caption(hidden, dropped, "segments")

st.subheader(f"By item (the {TOP_ITEMS} most reviewed)")
by_item = data.load("sentiment_by_item")
shown, hidden, dropped = suppress_shares(by_item, ["item_id", "title"], min_cell=floor)
if shown.empty:
    st.info(f"No item has {floor} or more distinct reviewers: nothing to show.")
else:
    totals = shown.groupby("item_id")["reviews"].sum().sort_values(ascending=False)
    top = shown[shown["item_id"].isin(totals.index[:TOP_ITEMS])].copy()
    top["item"] = top["title"].str.slice(0, 50) + " · " + top["item_id"]  # titles repeat
    order = (top.drop_duplicates("item_id").set_index("item_id").loc[
        [i for i in totals.index[:TOP_ITEMS] if i in set(top["item_id"])], "item"]).tolist()
    st.plotly_chart(_share_chart(top, "item", x_label="Item", horizontal=True, order=order,
                                 height=max(240, 60 + 30 * len(order))))
_hidden_caption(hidden, dropped, "items")

# --- stars versus text --------------------------------------------------------------------

st.divider()
st.subheader("Stars versus text")
by_stars = data.load("sentiment_by_stars")
shown, hidden, dropped = suppress_shares(by_stars, ["stars"], min_cell=floor)
table = shown.pivot_table(index="stars", columns="label", values="reviews", aggfunc="sum") \
    .reindex(columns=list(LABELS)) if not shown.empty else pd.DataFrame()


def _disagreeing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[((frame["stars"] >= 4) & (frame["label"] == "negative"))
                 | ((frame["stars"] <= 2) & (frame["label"] == "positive"))]


# Counted over the cells shown only: adding hidden cells back would give them away.
count = int(_disagreeing(shown)["reviews"].sum())
some_hidden = len(_disagreeing(by_stars)) > len(_disagreeing(shown))
left, right = st.columns([2, 3], gap="large")
with left:
    st.metric("Stars and text disagree", f"{count:,}" if count else
              ("fewer than " + str(floor) + " per cell" if some_hidden else "0"), border=True,
              help="4-5 stars with a negative text, or 1-2 stars with a positive text; "
                   "cells under the privacy floor are not counted")
    if not table.empty:
        cells = table.rename(index=lambda s: f"{s} ★").map(
            lambda v: "hidden" if pd.isna(v) else f"{int(v):,}")
        st.dataframe(cells, column_config={"stars": "Stars"})
    _hidden_caption(hidden, dropped, "star ratings")
with right:
    examples = data.load("sentiment_disagreements", limit=EXAMPLES * 2)
    if examples.empty:
        st.caption("No review where the stars and the text disagree.")
    else:
        st.caption("Strongest disagreements; highlighted words pushed the text's prediction.")
        _show_examples(examples)

# --- aspects ----------------------------------------------------------------------------

st.divider()
st.subheader("What drives negative and positive reviews")
st.caption(
    f"Words and two-word phrases that carried the model's predictions (gradient × activation "
    f"attributions), aggregated over many reviews. An aspect appears only when at least "
    f"{floor} distinct reviewers' reviews back it. Weight: the average share of a "
    "prediction it carries."
)


def _aspect_charts(aspects: pd.DataFrame, key: str) -> None:
    for col, polarity in zip(st.columns(2, gap="large"), ("negative", "positive"), strict=True):
        with col:
            part = aspects[aspects["polarity"] == polarity].head(12)
            st.markdown(f"**{polarity.capitalize()}**")
            if part.empty:
                st.caption(f"No {polarity} aspect reaches the floor of {floor} reviewers.")
                continue
            fig = px.bar(part.iloc[::-1], x="weight", y="aspect", orientation="h",
                         color_discrete_sequence=[COLORS[polarity]],
                         hover_data={"reviewers": True},
                         labels={"weight": "Weight", "aspect": "",
                                 "reviewers": "Distinct reviewers"},
                         height=max(200, 50 + 26 * len(part)))
            fig.update_layout(margin={"t": 10})
            st.plotly_chart(fig, key=f"aspects-{key}-{polarity}")


_aspect_charts(data.load("sentiment_aspects", scope="all", scope_id=None), "all")
scopes = data.load("sentiment_aspect_scopes")
scopes = scopes[scopes["scope"] != "all"]
if not scopes.empty:
    options = {f"{r.scope}: {r.name}": (r.scope, r.scope_id) for r in scopes.itertuples()}
    choice = st.selectbox("Aspects of one category or item", list(options), index=None,
                          placeholder="Choose a category or an item")
    if choice is not None:
        scope, scope_id = options[choice]
        _aspect_charts(data.load("sentiment_aspects", scope=scope, scope_id=scope_id),
                       "scope")

# --- examples -------------------------------------------------------------------------------

st.divider()
st.subheader("Example reviews")
st.caption("The model's most confident reviews of each label (scrubbed text); the stronger "
           "the background, the more the word pushed towards the label.")
for col, label in zip(st.columns(3, gap="large"), LABELS, strict=True):
    with col:
        st.markdown(f"**{label.capitalize()}**")
        examples = data.load("sentiment_examples", label=label, limit=EXAMPLES)
        if examples.empty:
            st.caption(f"No review is predicted {label}.")
        else:
            _show_examples(examples)
