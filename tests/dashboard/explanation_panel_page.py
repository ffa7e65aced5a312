"""A tiny page for AppTest: the explanation panel for one customer of the explain test
warehouse (CLEARMARK_DATA), with the registered tiny run."""

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from dashboard.components.explanations import render_explanations  # noqa: E402
from explain.service import get_service  # noqa: E402

run_id = os.environ["EXPLAIN_TEST_RUN"]
pseudonym = os.environ["EXPLAIN_TEST_USER"]
recs = get_service(run_id).recommendations_for([pseudonym], k=2)
render_explanations(run_id, pseudonym, recs[["rank", "item_id", "title", "score", "ts"]])
