"""CSV export: injection payloads in item titles come out neutralised, numbers stay
numbers, rows are streamed."""

from __future__ import annotations

import csv
import io

from explain.export import COLUMNS, csv_chunks, explanation_rows, export_csv, read_audience
from explain.result import Explanation, Subject
from explain.service import ExplainService
from tests.explain.conftest import EXPLAIN_USERS, PAYLOADS, TINY_RUN


def _explanation(title: str) -> Explanation:
    return Explanation.build(subject=Subject("run", "u_1", "i_1", 1), method="shap-field",
                             features=("item_title", "h1"), fields=("item_title", "h1"),
                             values=(f"title: {title}", f"purchased: {title} | x"),
                             attributions=[-0.12, 0.25], base_value=0.4, prediction=0.53,
                             evaluations=3, latency_s=0.01)


def test_rows_in_a_spreadsheet_read_as_text_and_numbers():
    rows = [r for p in PAYLOADS for r in explanation_rows(_explanation("x"), item_title=p)]
    text = b"".join(csv_chunks(rows)).decode("utf-8")
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == COLUMNS
    titles = [row[COLUMNS.index("item_title")] for row in table[1:]]
    assert titles == ["'" + p for p in PAYLOADS for _ in range(2)]
    for row in table[1:]:
        assert float(row[COLUMNS.index("attribution")]) in (-0.12, 0.25)
        assert row[COLUMNS.index("attribution")] in ("-0.12", "0.25")  # not quoted
        assert not row[COLUMNS.index("feature_value")].startswith(("=", "+", "-", "@"))


def test_export_of_an_audience_from_the_warehouse(explain_warehouse, tmp_path):
    service = ExplainService.open(TINY_RUN, explain_warehouse)
    audience = tmp_path / "audience.txt"
    audience.write_text("# campaign\n" + "\n".join(EXPLAIN_USERS[:2]) + "\n\n")
    out = tmp_path / "explanations.csv"
    n = export_csv(service, out, pseudonyms=read_audience(audience), k=3)
    raw = out.read_bytes()
    raw.decode("utf-8")
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    assert n == len(table) > 0
    assert {r["pseudonym"] for r in table} == set(EXPLAIN_USERS[:2])
    assert {r["run_id"] for r in table} == {TINY_RUN}
    for row in table:
        for column, value in row.items():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), (column, value)
            if value.startswith("-"):
                float(value)  # only plain negative numbers start with "-"
        assert row["direction"] in ("for", "against", "none")
        float(row["prediction"]), float(row["approximation_error"])
    # every recommendation has one row per field the model reads
    per_rec = {}
    for row in table:
        per_rec.setdefault((row["pseudonym"], row["item_id"]), []).append(row["field"])
    assert all(len(v) == len(set(v)) >= 3 for v in per_rec.values())


def test_export_streams_row_by_row(explain_warehouse):
    service = ExplainService.open(TINY_RUN, explain_warehouse)
    out = io.StringIO()
    seen_before_next = []

    def audience():
        for user in EXPLAIN_USERS[:3]:
            seen_before_next.append(out.getvalue().count("\n"))
            yield user

    export_csv(service, out, pseudonyms=audience(), k=2)
    # rows of the first customer were written before the second one was asked for
    assert seen_before_next[0] == 1  # the header only
    assert seen_before_next[1] > 1
    assert seen_before_next[2] > seen_before_next[1]


def test_read_audience_accepts_a_csv_with_a_pseudonym_column(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("campaign,user_pseudonym\nspring,u_a\nspring,u_b\n")
    assert list(read_audience(path)) == ["u_a", "u_b"]
