"""Models: the trained recommenders of the registry, how well each ranks next to
the baselines, how training went, and what each one spent of the privacy budget.
Reads the run folders' JSON records through `core.registry.runs` (never the weights)."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core.config import Paths
from core.registry import runs as model_runs
from dashboard.ui import number
from privacy.guarantee import record_is_private

EMPTY_HINT = (
    "No trained model yet. Train one with `clearmark train` (DP, ε = 3 by default), "
    "then reload this page."
)
CHART_HEIGHT = 340
MODEL_COLOR = "#1f77b4"
BASELINE_COLORS = ("#bdbdbd", "#969696", "#737373", "#525252")

paths = Paths()

st.title("Models")

runs = model_runs.list_runs(paths)
if runs.empty:
    st.info(EMPTY_HINT, icon=":material/model_training:")
    st.stop()

st.caption(
    "ε bounds what a model can reveal about one customer: **user-level (customer)** means "
    "each customer's whole history counts as one unit (their contribution is capped and "
    "clipped together), not each interaction. A non-private run carries no guarantee and "
    "is recorded with ε = ∞. Metrics rank the full catalogue on a time-ordered split, next "
    "to baselines on the same split."
)


st.subheader("Runs")
st.dataframe(
    runs,
    hide_index=True,
    column_order=(
        "run_id",
        "created_at",
        "epsilon_label",
        "privacy",
        "delta",
        "accountant",
        "epochs",
        "steps",
        "hr@10",
        "ndcg@10",
    ),
    column_config={
        "run_id": "Run",
        "created_at": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
        "epsilon_label": st.column_config.TextColumn("ε", help="Privacy budget spent"),
        "privacy": st.column_config.TextColumn("Guarantee", help="What ε protects"),
        "delta": st.column_config.NumberColumn("δ", format="%.1e"),
        "accountant": "Accountant",
        "epochs": st.column_config.NumberColumn("Epochs", format="%d"),
        "steps": st.column_config.NumberColumn("Steps", format="%d"),
        "hr@10": st.column_config.NumberColumn("HR@10", format="%.3f"),
        "ndcg@10": st.column_config.NumberColumn("NDCG@10", format="%.3f"),
    },
)

run_labels = {
    row.run_id: f"{row.run_id} · ε {row.epsilon_label} · {row.privacy}"
    for row in runs.itertuples(index=False)
}
run_id = st.selectbox("Run", list(run_labels), format_func=run_labels.get, help="Newest first.")
run = model_runs.read_run(paths, run_id)
privacy = run.privacy
private = record_is_private(privacy)

st.divider()
metrics_col, privacy_col = st.columns([3, 2], gap="large")

with metrics_col:
    st.subheader("Ranking quality next to the baselines")
    scores = model_runs.metrics_frame(run.metrics)
    own = model_runs.model_metrics(run.metrics)
    if scores.empty:
        st.info("This run has no evaluation recorded. Evaluate it with `clearmark evaluate`.")
    else:
        names = list(dict.fromkeys(scores["model"]))
        colors = {model_runs.MODEL_LABEL: MODEL_COLOR}
        baselines = [n for n in names if n != model_runs.MODEL_LABEL]
        colors.update(
            {n: BASELINE_COLORS[i % len(BASELINE_COLORS)] for i, n in enumerate(baselines)}
        )
        metric_order = list(dict.fromkeys(scores["metric"]))
        fig = px.bar(
            scores,
            x="value",
            y="metric",
            color="model",
            orientation="h",
            barmode="group",
            text_auto=".3f",
            # Horizontal groups stack traces bottom-up: reversed, the model sits on top.
            category_orders={"model": names[::-1], "metric": metric_order},
            color_discrete_map=colors,
            labels={"metric": "", "value": "Score (0 to 1, higher is better)", "model": ""},
            height=120 + 26 * len(scores),
        )
        fig.update_traces(textposition="outside", cliponaxis=False)
        fig.update_xaxes(range=[0, min(1.0, 1.2 * float(scores["value"].max()) + 0.02)])
        fig.update_layout(
            legend={"orientation": "h", "y": -0.12, "traceorder": "reversed"}, margin={"t": 10}
        )
        st.plotly_chart(fig)
        users = own.get("users")
        split = own.get("split") or run.config.get("split")
        detail = f"{int(users):,} test customers" if isinstance(users, int | float) else ""
        st.caption(
            " · ".join(
                p
                for p in (f"split: {split}" if split else "", detail, "full catalogue ranked")
                if p
            )
            + (
                ""
                if baselines
                else " · no baselines recorded for this run "
                "(train with baseline evaluation to compare)"
            )
        )

    final_mix = model_runs.final_mix_note(run.metrics)
    if final_mix:
        st.caption(final_mix)

    cold = model_runs.segments_frame(run.metrics)
    if not cold.empty:
        st.markdown("**Cold start**, reported apart")
        st.dataframe(
            cold.pivot_table(index=["segment", "users"], columns="model", values="ndcg@10",
                             sort=False).reset_index(),
            hide_index=True,
            column_config={"users": st.column_config.NumberColumn("test customers",
                                                                  format="%d")},
        )
        st.caption("NDCG@10 per segment (for never-seen items: how well they are ranked; "
                   "popularity and item-kNN cannot recommend an item without interactions).")

with privacy_col:
    st.subheader("Privacy spend")
    if not private:
        st.warning(
            "Non-private run: trained without differential privacy, so it gives no "
            "guarantee about any customer (ε recorded as ∞).",
            icon=":material/warning:",
        )
    spent_col, delta_col = st.columns(2)
    target = privacy.get("target_epsilon")
    spent_col.metric(
        "ε spent",
        model_runs.epsilon_label(privacy),
        help="Privacy budget the accountant reports after the last step",
        border=True,
    )
    delta_col.metric("δ", number(privacy.get("delta"), ".1e"), border=True)
    st.markdown(
        f"**Guarantee:** {model_runs.privacy_label(privacy)}  \n"
        + (f"**Target ε:** {number(target, '.2f')}  \n" if private else "")
        + f"**Accountant:** {number(privacy.get('accountant'))}  \n"
        f"**Noise multiplier σ:** {number(privacy.get('noise_multiplier'), '.3f')}  \n"
        f"**Sample rate q:** {number(privacy.get('sample_rate'), '.4g')}  \n"
        f"**Steps:** {number(privacy.get('steps'))}  \n"
        f"**Clip norm C:** {number(privacy.get('max_grad_norm'))}  \n"
        f"**Contribution cap:** {number(privacy.get('contribution_cap'))} example groups "
        "per customer"
    )
    notes = []
    if privacy.get("contribution"):
        notes.append(f"Contribution: {privacy['contribution']}")
    if privacy.get("not_covered"):
        notes.append(f"Not covered by ε: {privacy['not_covered']}")
    release = privacy.get("popularity_release")
    if release:
        if release.get("ledger_run_id"):
            notes.append(
                f"Item popularity: customer counts per item (at most {release['cap']} items "
                f"per customer) released once with Gaussian noise, σ "
                f"{number(release['noise_multiplier'], '.3f')}, ledger entry "
                f"{release['ledger_run_id']}; ε above covers training and this release"
                f"{model_runs.release_quality(release)}")
        else:
            notes.append("Item popularity: exact counts (not private)")
    final_fit = privacy.get("final_fit")
    if final_fit:
        notes.append(f"Final weights: fitted with DP on a Poisson sample of customers' "
                     f"validation targets (rate {number(final_fit['sample_rate'], '.3g')}, σ "
                     f"{number(final_fit['noise_multiplier'], '.3f')}), ledger entry "
                     f"{final_fit['ledger_run_id']}; ε above covers it too")
    if privacy.get("co_visits"):
        notes.append(f"Co-visits: exact counts of customers per item pair "
                     f"({privacy['co_visits'].get('customers', '?')} customers; not private, "
                     f"non-private runs only)")
    if notes:
        st.caption(" · ".join(notes))

st.divider()
st.subheader("Training")
curve = model_runs.curve_frame(run.curve)
if curve.empty:
    st.info("No training curve recorded for this run.")
else:
    loss_col, eps_col = st.columns(2, gap="large")
    with loss_col:
        fig = px.line(
            curve.dropna(subset=["loss"]),
            x="step",
            y="loss",
            labels={"step": "Step", "loss": "Training loss"},
            height=CHART_HEIGHT,
        )
        fig.update_layout(margin={"t": 10})
        st.plotly_chart(fig)
        empty = int(curve["loss"].isna().sum())
        if empty:
            steps = "1 step" if empty == 1 else f"{empty} steps"
            st.caption(
                f"{steps} had an empty batch (Poisson sampling): no loss, but noise "
                "was added and the step counted."
            )
    with eps_col:
        if curve["epsilon"].notna().any():
            fig = px.line(
                curve,
                x="step",
                y="epsilon",
                labels={"step": "Step", "epsilon": "ε spent"},
                height=CHART_HEIGHT,
            )
            if private and target is not None:
                fig.add_hline(
                    y=float(target),
                    line_dash="dot",
                    line_color="gray",
                    annotation_text=f"target ε = {float(target):.2f}",
                )
            fig.update_layout(margin={"t": 10})
            st.plotly_chart(fig)
            st.caption(
                "ε spent grows with every step; the noise was set before training "
                "so that the last step reaches the target."
            )
        else:
            st.info("No ε per step: this run is non-private.")

st.divider()
st.subheader("Reproducibility")
fp = run.fingerprint
train_config = run.config.get("train_config") or {}
left, right = st.columns(2, gap="large")
with left:
    st.markdown("**Data fingerprint** (sha256 over the training rows: user, item, time)")
    st.code(number(fp.get("sha256"), missing="not recorded"), language=None, wrap_lines=True)
    st.caption(
        f"{number(fp.get('rows'), ',')} training rows · {number(fp.get('customers'), ',')} "
        f"customers · split {number(fp.get('split'))} · dataset {number(fp.get('dataset'))}"
    )
with right:
    st.markdown("**Code version** (git commit the run was trained with)")
    st.code(number(run.config.get("code_version"), missing="unknown"), language=None,
            wrap_lines=True)
    created = pd.to_datetime(run.config.get("created_at"), utc=True, errors="coerce")
    st.caption(f"created {created:%Y-%m-%d %H:%M} UTC" if not pd.isna(created) else "created —")
if isinstance(train_config, dict) and train_config:
    with st.expander("Training configuration"):
        st.json(train_config, expanded=True)
