"""The explanation panel of the customer profile page.

`render_explanations(run_id, pseudonym, recs)` shows, for each recommendation, the
reason in words; for the one picked, field attribution bars (the run's preferred method,
field SHAP unless the faithfulness check measured another one more faithful, beside
attention rollout, captioned "where the model looked — not a cause") and a token heat map
of one chosen field on request; then the faithfulness figure of the run and a CSV
download of this customer's explanations.

Item titles are third-party text: every label drawn by Plotly (which renders HTML in
labels) is escaped, and markdown shows them literally.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.ui import md_escape
from explain.attention import CAPTION
from explain.export import COLUMNS, csv_chunks, explanation_rows
from explain.faithfulness import preferred_method, read_summary
from explain.inputs import moment
from explain.reasons import reason
from explain.result import METHOD_LABELS, Explanation
from explain.service import ExplainError, ExplainService, get_service
from explain.warmup import warm_up_in_background

LEFT_METHODS = ("shap-field", "leave-one-out", "attention-rollout", "attention-cls")
ATTENTION = ("attention-rollout", "attention-cls")
ADDITIVE = ("shap-field", "leave-one-out")
LABEL_CHARS = 48
BAR_HEIGHT = 26
# A new item's score is its text's alone; its place may be the one kept for new items.
NEW_ITEM_NOTE = (" *New item: no purchases in the model's training data, so it is judged "
                 "by its text alone; the last place of each top 10 is kept for the best "
                 "new item.*")
_WARM = {"started": False}

# Each recommendation row shown (with its rank) and its explanations by method.
Explained = list[tuple[dict[str, object], dict[str, Explanation]]]


def _label(field: str, value: str) -> str:
    value = value if len(value) <= LABEL_CHARS else value[:LABEL_CHARS - 1] + "…"
    return html.escape(f"{field} · {value}")


def bar_figure(e: Explanation, *, title: str) -> go.Figure:
    """Horizontal bars of one field-level explanation (largest |value| on top)."""
    order = np.argsort(np.abs(e.attributions), kind="stable")
    labels = [_label(e.fields[i], e.values[i]) for i in order]
    values = e.attributions[order]
    colors = ["#2e7d32" if v > 0 else "#c62828" if v < 0 else "#9e9e9e" for v in values]
    if e.method in ATTENTION:
        colors = ["#5c6bc0"] * len(values)
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colors,
                           hovertemplate="%{y}<br>%{x:.4f}<extra></extra>"))
    # The unit goes in the title and the axis gets few ticks: the panel puts two of these
    # side by side, where the long field labels leave the plot too narrow for either.
    unit = ("share of [CLS] attention" if e.method.startswith("attention")
            else "contribution to the score")
    fig.update_layout(title=html.escape(f"{title} — {unit}"),
                      height=90 + BAR_HEIGHT * len(labels),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False)
    fig.update_xaxes(nticks=4)
    return fig


def token_figure(e: Explanation) -> go.Figure:
    """A one-row heat map of token SHAP values (red lowers, green raises the score)."""
    limit = float(np.abs(e.attributions).max()) or 1.0
    tokens = [html.escape(t) for t in e.values]
    fig = go.Figure(go.Heatmap(
        z=[e.attributions.tolist()], x=[f"{i}: {t}" for i, t in enumerate(tokens)], y=[""],
        zmin=-limit, zmax=limit, colorscale="RdYlGn", text=[tokens],
        texttemplate="%{text}", hovertemplate="%{x}<br>%{z:.5f}<extra></extra>"))
    fig.update_layout(height=160, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    fig.update_xaxes(showticklabels=False)
    return fig


def faithfulness_figure(summary: dict[str, object]) -> go.Figure:
    """Comprehensiveness and sufficiency AOPC per method (the random ordering as the
    baseline)."""
    methods = summary.get("methods", {})
    names = [m for m in ("shap-field", "leave-one-out", "attention-rollout", "attention-cls",
                         "random") if m in methods]
    labels = [METHOD_LABELS.get(m, "random order") for m in names]
    comp = [methods[m]["comprehensiveness_aopc"]["mean"] for m in names]
    suff = [methods[m]["sufficiency_aopc"]["mean"] for m in names]
    fig = go.Figure([
        go.Bar(name="comprehensiveness (higher is better)", x=labels, y=comp),
        go.Bar(name="sufficiency (lower is better)", x=labels, y=suff)])
    fig.update_layout(barmode="group", height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis_title="AOPC (probability)", legend={"orientation": "h"})
    return fig


def _start_warm_up() -> None:
    if not _WARM["started"]:
        _WARM["started"] = True
        warm_up_in_background()


def _moment_note(row: dict[str, object]) -> str:
    ts, promotion = moment(row)
    promo = "unknown" if promotion is None else ("on" if promotion else "off")
    return f"context: {ts:%Y-%m-%d} ({ts:%A}), promotion {promo}"


def render_explanations(run_id: str, pseudonym: str, recs: pd.DataFrame) -> None:
    """The explanation panel for one customer's recommendations (see the module
    docstring). `recs` has item_id and rank (title, score, created_at when known).
    A run that cannot be loaded gets a warning in place of the panel."""
    st.subheader("Why these recommendations")
    if recs is None or recs.empty:
        st.info("No recommendations to explain.")
        return
    service = _load_service(run_id)
    if service is None:
        return
    _start_warm_up()
    summary = read_summary(service.run_id, service.paths)
    left = _pick_method(service, pseudonym, summary)
    explained = _explain_rows(service, pseudonym, recs, left)
    # The reason in words comes from an additive method: the picked one when it is, else
    # field SHAP.
    worded = left if left in ADDITIVE else "shap-field"
    titles = _reasons_list(service, explained, worded)
    if explained:
        _picked_charts(service, pseudonym, explained, titles, left=left, worded=worded)
    _faithfulness_section(summary)
    if explained:
        _download(pseudonym, explained)


def _load_service(run_id: str) -> ExplainService | None:
    """The run's explanation service, or None after a warning that says why not."""
    try:
        with st.spinner("Loading the model for explanations…"):
            return get_service(run_id)
    except Exception as exc:  # a missing or damaged run: say so, keep the page
        st.warning(f"Explanations are not available for run `{md_escape(str(run_id))}`: "
                   f"{md_escape(str(exc))}", icon=":material/error:")
        return None


def _pick_method(service: ExplainService, pseudonym: str,
                 summary: dict[str, object] | None) -> str:
    """The attribution method of the left-hand bars (the run's preferred one by
    default), with a caption of what the bars mean."""
    preferred = preferred_method(service.run_id, service.paths)
    left = st.selectbox(
        "Attribution method", LEFT_METHODS, index=LEFT_METHODS.index(preferred),
        format_func=lambda m: METHOD_LABELS[m] + (" (default: measured most faithful)"
                                                  if m == preferred and summary else ""),
        key=f"explain-method-{pseudonym}",
        help="Field SHAP: each field's average contribution to the score over all orders "
             "of adding fields (additive: base + contributions = score). Leave one out: "
             "the score drop when that field alone is removed. Attention: where the model "
             "looked, not a cause.")
    st.caption("The score explained is the model's probability-like output "
               "sigmoid(logit). Green bars raise it, red bars lower it; a removed field is "
               "left out of the text the model reads.")
    return left


def _explain_rows(service: ExplainService, pseudonym: str, recs: pd.DataFrame,
                  left: str) -> Explained:
    """Every recommendation explained by the additive methods the panel needs (`left`
    when additive, and field SHAP); a row that cannot be explained gets a warning and
    is left out."""
    rows = recs.reset_index(drop=True).to_dict("records")
    progress = st.progress(0.0, text="Explaining…") if len(rows) > 1 else None
    explained: Explained = []
    # The reasons need an additive method for every row; the attention charts are drawn
    # for the one recommendation picked later.
    methods = dict.fromkeys(m for m in (left, "shap-field") if m not in ATTENTION)
    for position, row in enumerate(rows):
        ts, promotion = moment(row)
        rank = int(row.get("rank", position + 1))
        try:
            found = {m: service.explain(pseudonym, str(row["item_id"]), method=m, rank=rank,
                                        ts=ts, promotion=promotion) for m in methods}
        except ExplainError as exc:
            st.warning(md_escape(str(exc)))
            continue
        explained.append(({**row, "rank": rank}, found))
        if progress is not None:
            progress.progress((position + 1) / len(rows), text=f"Explained {position + 1} of "
                              f"{len(rows)}")
    if progress is not None:
        progress.empty()
    return explained


def _reasons_list(service: ExplainService, explained: Explained, worded: str) -> list[str]:
    """One markdown line per recommendation: rank, title and the reason in words from
    the `worded` explanation (new items say so). Returns the titles, in order."""
    titles, lines = [], []
    for row, found in explained:
        title = row.get("title")
        titles.append(str(title) if title is not None and not pd.isna(title)
                      else service.title(str(row["item_id"])))
        lines.append(f"- **#{int(row['rank'])} · {md_escape(titles[-1])}**: "
                     f"{md_escape(reason(found[worded]))}"
                     f"{NEW_ITEM_NOTE if service.is_new(str(row['item_id'])) else ''}")
    st.markdown("\n".join(lines))
    return titles


def _picked_charts(service: ExplainService, pseudonym: str, explained: Explained,
                   titles: list[str], *, left: str, worded: str) -> None:
    """The charts of one recommendation at a time (picked in a select box, the first by
    default): `left` beside the other attention method, and the token heat map. Adds the
    explanations it draws to that recommendation's entry in `explained`."""
    right = "attention-cls" if left == "attention-rollout" else "attention-rollout"
    number = st.selectbox(
        "Charts for", range(len(explained)),
        format_func=lambda i: f"#{int(explained[i][0]['rank'])} · {titles[i]}",
        key=f"explain-detail-{pseudonym}")
    row, found = explained[number]
    item = str(row["item_id"])
    ts, promotion = moment(row)
    for method in {left, right} - set(found):
        found[method] = service.explain(pseudonym, item, method=method,
                                        rank=int(row["rank"]), ts=ts, promotion=promotion)
    source = found[worded]
    st.caption(
        f"{METHOD_LABELS[source.method]}: score {source.prediction:.4f}, base (every "
        f"field removed) {source.base_value:.4f}, additivity error "
        f"{source.additivity_error:.1e}, {source.evaluations} model rows, "
        f"{source.latency_s:.2f} s; {_moment_note(row)}.")
    col_left, col_right = st.columns(2, gap="medium")
    with col_left:
        st.plotly_chart(bar_figure(found[left], title=METHOD_LABELS[left]),
                        key=f"bars-left-{item}-{number}")
        if left.startswith("attention"):
            st.caption(CAPTION)
    with col_right:
        st.plotly_chart(bar_figure(found[right], title=METHOD_LABELS[right]),
                        key=f"bars-right-{item}-{number}")
        st.caption(CAPTION)
    _token_section(service, pseudonym, row, found["shap-field"], number)


def _token_section(service: ExplainService, pseudonym: str, row: dict[str, object],
                   shap_e: Explanation, number: int) -> None:
    """A field picker (the one with the largest |SHAP| by default) and, on request, the
    token SHAP heat map of that field (kept in the session state)."""
    item = str(row["item_id"])
    fields = list(shap_e.fields)
    if not fields:
        return
    top = fields[int(np.argmax(np.abs(shap_e.attributions)))]
    pick, go_col = st.columns([3, 1], vertical_alignment="bottom")
    field_name = pick.selectbox("Words of one field", fields, index=fields.index(top),
                                key=f"tok-field-{item}-{number}",
                                help="Token SHAP: which words of this field move the score, "
                                     "the rest of the input fixed (a few seconds).")
    state_key = f"tok-{service.run_id}-{pseudonym}-{item}-{field_name}"
    if go_col.button("Show word heat map", key=f"tok-go-{item}-{number}"):
        ts, promotion = moment(row)
        with st.spinner("Computing token SHAP…"):
            st.session_state[state_key] = service.explain(
                pseudonym, item, method="shap-token", field_name=field_name,
                rank=int(row.get("rank", number + 1)), ts=ts, promotion=promotion)
    token_e = st.session_state.get(state_key)
    if token_e is not None:
        st.plotly_chart(token_figure(token_e), key=f"tok-map-{item}-{number}")
        st.caption(f"Token SHAP of {field_name}: base {token_e.base_value:.4f} (its words "
                   f"deleted), score {token_e.prediction:.4f}, additivity error "
                   f"{token_e.additivity_error:.1e}, {token_e.latency_s:.1f} s.")


def _faithfulness_section(summary: dict[str, object] | None) -> None:
    """The run's faithfulness figure and what it says, or how to measure it."""
    st.markdown("**How faithful are these explanations for this model?**")
    if not summary:
        st.info("Not measured for this model yet: run `clearmark explain-faithfulness` "
                "(comprehensiveness and sufficiency on held-out recommendations).",
                icon=":material/science:")
        return
    st.plotly_chart(faithfulness_figure(summary), key="explain-faithfulness")
    share = summary.get("shap_above_random_share")
    tau = summary.get("kendall_shap_vs_leave_one_out", {}).get("mean")
    st.caption(
        f"On {summary.get('recommendations', 0)} held-out recommendations: removing the "
        "fields a method ranks highest should lower the score most (comprehensiveness) and "
        "keeping only them should keep it (sufficiency). Field SHAP beats a random order on "
        f"{(share or 0):.0%} of them; Kendall tau between field SHAP and leave-one-out "
        f"{(tau if tau is not None else float('nan')):.2f}. Default method: "
        f"{METHOD_LABELS.get(str(summary.get('preferred_method')), 'field SHAP')}.")


def _download(pseudonym: str, explained: Explained) -> None:
    """A download button of every explanation made for this customer (long-format CSV,
    built when clicked)."""
    def csv_bytes() -> bytes:
        rows_out = (r for row, found in explained for e in found.values()
                    for r in explanation_rows(e, item_title=str(row.get("title") or "")))
        return b"".join(csv_chunks(rows_out))

    st.download_button(
        "Download this customer's explanations (CSV)", data=csv_bytes,
        file_name=f"explanations_{pseudonym[:14]}.csv", mime="text/csv",
        icon=":material/download:", key=f"explain-csv-{pseudonym}",
        help=f"Long format, one row per recommendation x field: {', '.join(COLUMNS)}.")
