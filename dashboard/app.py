"""Streamlit entry file: routing only. Run with `streamlit run dashboard/app.py`.

Pages live in `dashboard/views/` and stay thin: they call `dashboard.data` (the cached
warehouse reads), `dashboard.ui` (shared display helpers), `dashboard.components` (parts
such as the explanation panel) and the core/privacy/explain packages.
"""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts only dashboard/ on sys.path; the project packages (core,
# privacy, explain, dashboard) need the repository root when it is not pip-installed.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dashboard.components.pipeline_status import render_sidebar  # noqa: E402  (needs _ROOT)

st.set_page_config(page_title="clearmark", layout="wide")

_PAGES = Path(__file__).resolve().parent / "views"

# One line per page.
PAGES = [
    st.Page(_PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(_PAGES / "models.py", title="Models", icon=":material/model_training:"),
    st.Page(_PAGES / "profile.py", title="Customer profile", icon=":material/person_search:"),
    st.Page(_PAGES / "sentiment.py", title="Review sentiment", icon=":material/reviews:"),
    st.Page(_PAGES / "campaigns.py", title="Campaigns", icon=":material/campaign:"),
    st.Page(_PAGES / "privacy.py", title="Privacy", icon=":material/shield:"),
]
page = st.navigation(PAGES)
render_sidebar()
page.run()
